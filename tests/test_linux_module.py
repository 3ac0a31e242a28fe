"""The module file over the real Linux backend: the pending-query lifecycle, the checks the backend makes
before reading XFRM, threads, and python -m secsock. Answers that depend on the kernel's IPsec state run in a
fresh network namespace (unshare -n), where no policy exists, so the host's own state cannot change them."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

import secsock

pytestmark = pytest.mark.netns


def run_in_new_netns(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run python code in a fresh network namespace with lo up (needs root, as the kernel suites do)."""
    script = f'ip link set lo up && exec "{sys.executable}" -c "$1"'
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script, "sh", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cleartext_tcp_in_a_fresh_namespace_on_both_ends() -> None:
    done = run_in_new_netns(
        """
        import socket, secsock
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
        for sock in (client, server):
            info = secsock.query(sock)
            assert info.protocol is secsock.SecurityProtocol.IPSEC, info
            assert info.flags == 0 and not info.secured and not info.encrypted, info
            assert info.peer_application_token is None and info.mm_sa_id is None, info
            assert info.ipsec == secsock.IpsecDetails((), ()), info
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_pending_query_completes_when_issued_on_linux(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    pending = secsock.begin_query(tcp_pair[0])
    assert pending.done() and pending.event is None
    assert pending.wait(0) and pending.wait()
    assert repr(pending) == "<secsock.PendingQuery done>"
    info = pending.result(timeout=1)
    assert info.protocol is secsock.SecurityProtocol.IPSEC
    with pytest.raises(ValueError, match="the result was already taken"):
        pending.result()
    pending.close()
    pending.close()  # closing twice is harmless, as for files
    assert pending.closed and repr(pending) == "<secsock.PendingQuery closed>"
    for call in (
        pending.done,
        pending.result,
        pending.cancel,
        lambda: pending.event,
        lambda: pending.wait(1),
    ):
        with pytest.raises(ValueError, match="closed pending query"):
            call()


def test_pending_query_as_context_manager_and_cancel_after_completion(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    with secsock.begin_query(tcp_pair[1]) as pending:
        assert pending.cancel() is False  # already done: nothing to cancel
    assert pending.closed


def test_a_non_inet_socket_is_refused_naming_sock() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b, pytest.raises(ValueError, match="sock"):
        secsock.query(a)


def test_udp_needs_peer_and_in_the_sockets_family(udp_pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = udp_pair
    with pytest.raises(ValueError, match="peer"):
        secsock.query(a)
    with pytest.raises(ValueError, match="peer"):
        secsock.query(a, peer=("::1", b.getsockname()[1]))
    assert secsock.query(a, peer=b.getsockname()).protocol is secsock.SecurityProtocol.IPSEC


def test_a_descriptor_that_is_not_a_socket_is_enotsock() -> None:
    with tempfile.TemporaryFile() as file:
        with pytest.raises(OSError) as caught:
            secsock.query(file.fileno())
    assert caught.value.errno == errno.ENOTSOCK


def test_a_closed_descriptor_is_ebadf() -> None:
    sock = socket.socket()
    fd = os.dup(sock.fileno())
    sock.close()
    os.close(fd)
    with pytest.raises(OSError) as caught:
        secsock.query(fd)
    assert caught.value.errno == errno.EBADF


def test_tokens_cannot_be_closed_on_linux_and_say_why() -> None:
    token = secsock.Token(5)
    with pytest.raises(secsock.UnsupportedOperation):
        token.close()
    assert token.closed  # given up, never retried in a finalizer


def test_many_threads_query_at_once(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    errors: list[BaseException] = []
    flags: set[int] = set()

    def worker() -> None:
        try:
            for _ in range(200):
                flags.add(int(secsock.query(tcp_pair[0]).flags))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(flags) == 1


def test_query_async_on_linux(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    info = asyncio.run(secsock.query_async(tcp_pair[0]))
    assert info.protocol is secsock.SecurityProtocol.IPSEC


def test_cli_serve_and_probe_in_a_fresh_namespace() -> None:
    done = run_in_new_netns(
        """
        import json, subprocess, sys
        serve = subprocess.Popen([sys.executable, "-m", "secsock", "serve", "0", "--host", "127.0.0.1",
                                  "--count", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        port = int(serve.stderr.readline().split()[2].rsplit(":", 1)[1])
        probe = subprocess.run([sys.executable, "-m", "secsock", "probe", "127.0.0.1", str(port),
                                "--require", "none"], capture_output=True, text=True, timeout=30)
        out, _ = serve.communicate(timeout=30)
        print(json.dumps({"probe": probe.stdout, "probe_rc": probe.returncode, "serve": out,
                          "serve_rc": serve.returncode}))
        """
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["probe_rc"] == 0 and result["serve_rc"] == 0
    # Nothing secures the traffic, so no protocol is named beside "secured no".
    assert "secured    no" in result["probe"] and "protocol" not in result["probe"]
    answer = json.loads(result["serve"])
    assert answer["ok"] is True and answer["error"] is None
    assert answer["secured"] is False and answer["transport"] == "tcp" and answer["flags"] == 0
    assert answer["ipsec"] == {"outbound": [], "inbound": []}
    no_policy = "no XFRM policy selects the flow"
    assert answer["reason"] == f"outbound: {no_policy}; inbound: {no_policy}"  # issue 14 item 8


def test_the_installed_secsock_script_runs() -> None:
    script = shutil.which("secsock", path=str(Path(sys.executable).parent))
    assert script is not None, "no secsock console script beside this python (pip install -e .)"
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and done.stdout == f"secsock {secsock.__version__} (backend linux)\n"


def test_cli_reports_a_failed_connect_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "secsock", "probe", "127.0.0.1", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 5 and "secsock probe:" in done.stderr and "Traceback" not in done.stderr


def test_cli_on_a_platform_without_backend_says_why() -> None:
    code = (
        "import sys, secsock._extension as x; x.backend = None; from secsock.__main__ import main; "
        "sys.exit(main(['probe', '127.0.0.1', '1']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 3 and "No secsock backend exists" in done.stderr


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda s: secsock.set_security(s), "system policy"),
        (lambda s: secsock.set_security(s, secsock.IpsecSettings(user="u", password="p")), "system policy"),
        (lambda s: secsock.set_peer_target_name(s, "host/x"), "peer target names"),
        (lambda s: secsock.delete_peer_target_name(s, ("127.0.0.1", 1)), "peer target names"),
        (lambda s: secsock.impersonate_peer(s).__enter__(), "no peer access tokens"),
        (lambda s: secsock.SecureSocket.secure_listener(("127.0.0.1", 0)), "system policy"),
    ],
)
def test_family_calls_say_why_they_are_unsupported_on_linux(
    tcp_pair: tuple[socket.socket, socket.socket], call: object, reason: str
) -> None:
    with pytest.raises(secsock.UnsupportedOperation, match=reason) as caught:
        call(tcp_pair[0])  # type: ignore[operator]
    assert isinstance(caught.value, OSError)


@pytest.mark.parametrize(
    "read", [lambda t: t.user, lambda t: t.groups, lambda t: t.is_member("S-1-5-32-544")]
)
def test_token_identity_is_unsupported_on_linux(read: object) -> None:
    token = secsock.Token(5)
    with pytest.raises(secsock.UnsupportedOperation, match="no peer access tokens"):
        read(token)  # type: ignore[operator]
    token.detach()

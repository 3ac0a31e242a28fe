"""Faults on the real Linux backend: sockets closed or reset around a query, peers that vanish between
accept and query, and the notification socket overrun by a storm of XFRM changes. Every outcome is an answer
or a clean OSError, never a crash, and after an overrun the answer is still right (as a fresh process's).

The storm runs in a child process inside a network namespace made here (``python THIS_FILE storm``), writing
policies through a netlink client (benchmarks/xfrm_nl.py), tens of thousands in a few seconds.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import secsock
from fresh_process import run_child

ROOT = Path(__file__).resolve().parent.parent
LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

pytestmark = pytest.mark.netns  # the Linux backend: collected on Linux only (conftest.py)


def outcome(call: Any) -> str:
    """'ok flags=N' for an answer ('ok flags=N blocked' when an outbound block policy applies: the tests' sign
    of which XFRM state answered), 'OSError errno' for a clean failure; anything else propagates."""
    try:
        with call() as info:
            assert info.protocol == secsock.SecurityProtocol.IPSEC
            blocked = (info.reason or "").startswith("outbound: the policy blocks")
            return f"ok flags={int(info.flags)}" + (" blocked" if blocked else "")
    except secsock.UnsupportedOperation as exc:
        return f"UnsupportedOperation {exc}"
    except OSError as exc:
        return f"OSError {errno.errorcode.get(exc.errno or 0, exc.errno)}"


def rst_pair(listener: socket.socket) -> socket.socket:
    """Accept a connection whose client has already gone with an RST: the accepted side."""
    client = socket.create_connection(listener.getsockname()[:2])
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    server, _ = listener.accept()
    client.close()
    return server


# --- peers that disappear, sockets closed around a query -----------------------------------------------


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_peer_reset_between_accept_and_query(family: int, host: str) -> None:
    seen = set()
    with socket.create_server((host, 0), family=family, backlog=64) as listener:
        for _ in range(50):
            with rst_pair(listener) as server:
                result = outcome(lambda server=server: secsock.query(server))
                seen.add(result)
                # Once reset, the connection has no peer: ENOTCONN, as getpeername() itself says.
                if result.startswith("OSError"):
                    with pytest.raises(OSError) as caught:
                        server.getpeername()
                    assert errno.errorcode[caught.value.errno or 0] in result
    assert seen <= {"ok flags=0", "OSError ENOTCONN"}, seen


def test_peer_reset_before_accept() -> None:
    """The client resets while the connection waits in the backlog; accept() still returns it."""
    seen = set()
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        clients = []
        for _ in range(20):
            client = socket.create_connection(listener.getsockname())
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            clients.append(client)
        for client in clients:
            client.close()
        listener.settimeout(0.5)
        while True:
            try:
                server, _ = listener.accept()
            except socket.timeout:  # TimeoutError from 3.10 on; a separate class on 3.9
                break
            with server:
                seen.add(outcome(lambda server=server: secsock.query(server)))
    assert seen <= {"ok flags=0", "OSError ENOTCONN"}, seen


def test_peer_gone_after_fin_is_still_answered() -> None:
    """A peer that closed politely (FIN) leaves a connected socket in CLOSE_WAIT: the query answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        client.close()
        with server:
            assert server.recv(1) == b""
            assert outcome(lambda: secsock.query(server)) == "ok flags=0"


def test_secure_socket_accept_then_reset() -> None:
    with secsock.SecureSocket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        conn, _ = listener.accept()
        client.close()
        with conn:
            assert outcome(conn.query_security) in {"ok flags=0", "OSError ENOTCONN"}
            conn.close()
            with pytest.raises(OSError) as caught:
                conn.query_security()
            assert caught.value.errno == errno.EBADF


def test_pending_query_outlives_its_socket(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """On Linux begin_query() answers at once: closing the socket before result() changes nothing."""
    client, server = tcp_pair
    pending = secsock.begin_query(server)
    server.close()
    client.close()
    with pending:
        assert pending.done()
        assert pending.cancel() is False  # nothing in flight to cancel
        with pending.result() as info:
            assert info.flags == 0
        with pytest.raises(ValueError, match="already taken"):
            pending.result()
    with pytest.raises(ValueError, match="closed pending query"):
        pending.result()


def test_socket_closed_by_another_thread_during_queries() -> None:
    """One thread queries a socket in a loop while another closes it: answers, then clean OSErrors."""
    seen: set[str] = set()
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        for _ in range(40):
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            started = threading.Event()
            fd = server.fileno()

            def hammer(fd: int = fd, started: threading.Event = started) -> None:
                for i in range(400):
                    if i == 5:
                        started.set()
                    try:
                        with secsock.query(fd):
                            seen.add("ok")
                    except OSError as exc:
                        seen.add(f"OSError {errno.errorcode.get(exc.errno or 0)}")
                    except ValueError as exc:
                        # The number was reused by a descriptor that is not an IP socket: named, clean.
                        assert str(exc).startswith("sock:"), exc
                        seen.add("ValueError sock")
                started.set()

            thread = threading.Thread(target=hammer)
            thread.start()
            started.wait(10)
            server.close()
            client.close()
            thread.join(30)
            assert not thread.is_alive()
    assert "ok" in seen
    assert seen <= {"ok", "OSError EBADF", "OSError ENOTSOCK", "OSError ENOTCONN", "ValueError sock"}, seen


def test_udp_peer_that_never_existed(udp_pair: tuple[socket.socket, socket.socket]) -> None:
    """A datagram peer is only an address: asking about one that is gone is still an answer."""
    a, _ = udp_pair
    assert outcome(lambda: secsock.query(a, peer=("127.0.0.1", 9))) == "ok flags=0"


def test_socket_from_another_namespace_gets_its_own_namespaces_answer(xfrm_ns: Any) -> None:
    """The XFRM state that applies is the socket's namespace's, whichever thread asks (was
    hardening/repro/cross_netns.py). A block policy there makes the right answer visible on this host."""
    xfrm_ns.ip("xfrm", "policy", "add", "src", LOCAL, "dst", PEER, "dir", "out", "action", "block")
    sock = xfrm_ns.call(udp_flow)
    with sock:
        inside = xfrm_ns.call(lambda: ask_udp(sock))
        outside = ask_udp(sock)
        from_threads = {ask_udp(sock) for _ in range(3)} | {xfrm_ns.call(lambda: ask_udp(sock))}
    assert inside == "ok flags=0 blocked", inside
    assert outside == inside
    assert from_threads == {inside}


# --- the notification socket overrun by a storm of XFRM changes ----------------------------------------


LOCAL, PEER = "10.66.0.1", "10.66.0.2"
STORM = 40000


def load_xfrm_nl() -> Any:
    spec = importlib.util.spec_from_file_location("xfrm_nl", ROOT / "benchmarks" / "xfrm_nl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["xfrm_nl"] = module
    spec.loader.exec_module(module)
    return module


def udp_flow() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, 0))
    return sock


def ask_udp(sock: socket.socket) -> str:
    return outcome(lambda: secsock.query(sock, peer=(PEER, 500)))


def notify_drops() -> int:
    """Drops on the NETLINK_XFRM sockets bound to groups here (the backend's notification socket)."""
    drops = 0
    with open("/proc/net/netlink") as table:
        next(table)
        for line in table:
            fields = line.split()
            # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
            if int(fields[1]) == 6 and int(fields[3], 16) != 0:
                drops += int(fields[8])
    return drops


def child_storm() -> None:
    """Inside the namespace: query, storm, query, storm, query; each answer beside a fresh process's."""
    x = load_xfrm_nl()
    results: dict[str, Any] = {}
    with udp_flow() as sock, x.XfrmSocket() as xs:
        results["before"] = ask_udp(sock)

        def noise(base: int) -> list[Any]:
            # Distinct /32 destinations, so the kernel hashes them apart and the storm stays fast.
            return [
                x.Policy(x.selector(f"10.{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}",
                                    f"10.{150 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"),
                         priority=base + (i & 7), esp_transport=True)
                for i in range(1, STORM + 1)
            ]  # fmt: skip

        block = x.Policy(x.selector(LOCAL, PEER), direction=x.XFRM_POLICY_OUT, priority=5,
                         action=x.XFRM_POLICY_BLOCK)  # fmt: skip
        storm = noise(100)
        xs.add_policies(storm[: STORM // 2])
        xs.add_policies([block])
        xs.add_policies(storm[STORM // 2 :])
        xs.delete_policies(storm[::2])
        results["drops_1"] = notify_drops()
        results["after_add"] = ask_udp(sock)
        results["fresh_after_add"] = fresh()

        xs.add_policies(storm[::2])
        xs.delete_policies([block])
        xs.delete_policies(storm)
        results["drops_2"] = notify_drops()
        results["after_delete"] = ask_udp(sock)
        results["fresh_after_delete"] = fresh()
    print("RESULT " + json.dumps(results), flush=True)


def fresh() -> str:
    done = run_child(
        [sys.executable, __file__, "fresh"], capture_output=True, text=True, timeout=120, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("FRESH ")]
    assert lines, f"the fresh process failed ({done.returncode}): {done.stderr}"
    return lines[-1][len("FRESH ") :]


def child_fresh() -> None:
    with udp_flow() as sock:
        print("FRESH " + ask_udp(sock), flush=True)


@pytest.fixture
def xfrm_ns() -> Iterator[Any]:
    from linux_netns import Netns, require_root

    require_root()
    ns = Netns("faults")
    try:
        ns.ip("addr", "add", f"{LOCAL}/24", "dev", "lo")
        yield ns
    finally:
        ns.close()


def test_notification_overrun_during_an_xfrm_storm_keeps_the_answer_right(xfrm_ns: Any) -> None:
    from linux_netns import child_env

    argv = xfrm_ns.exec_argv(sys.executable, __file__, "storm")
    done = run_child(argv, capture_output=True, text=True, timeout=300, env=child_env(), check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"the storm child failed ({done.returncode}): {done.stderr}"
    results = json.loads(lines[-1][len("RESULT ") :])
    assert results["before"] == "ok flags=0", results
    # The storm must really have overrun the backend's notification queue, or this test proves nothing.
    assert results["drops_1"] > 0, results
    # The block policy added in the storm selects the flow: the answer must say so (never a stale "clear").
    assert results["after_add"] == "ok flags=0 blocked", results
    assert results["after_add"] == results["fresh_after_add"], results
    # The second storm overran too (the counter is per socket: a backend that reopens it starts again at 0).
    assert results["drops_2"] > 0 and results["drops_2"] != results["drops_1"], results
    assert results["after_delete"] == "ok flags=0", results
    assert results["after_delete"] == results["fresh_after_delete"], results


if __name__ == "__main__":
    {"storm": child_storm, "fresh": child_fresh}[sys.argv[1]]()

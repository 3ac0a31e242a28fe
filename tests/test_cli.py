"""The command line (issue 13, item 4): the console script, --version, probe --require and its exit code,
argument validation in one line, --json lines of one shape, explain. Over a recording backend, against a
loopback listener of this process."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import secsock
from fakes import FakeBackend
from secsock.__main__ import main

CLEAR = (1, 0, 0, 0, None, None, None)
SECURED = (1, 1, 0, 0, None, None, None)
ENCRYPTED = (1, 3, 0, 0, None, ((), ()), None)


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback listener that accepts and closes every connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out), out.getvalue()


@pytest.mark.parametrize(
    ("result", "require", "status"),
    [
        (CLEAR, None, 4),  # the default demand is secured: exit 0 never means "in the clear" unasked
        (CLEAR, "none", 0),
        (SECURED, None, 0),
        (SECURED, "encrypted", 4),
        (ENCRYPTED, "encrypted", 0),
    ],
)
def test_probe_exit_status_follows_the_demand(
    fake_backend: FakeBackend, port: int, result: tuple[Any, ...], require: str | None, status: int
) -> None:
    fake_backend.result = result
    argv = ["probe", "127.0.0.1", str(port)] + (["--require", require] if require else [])
    code, text = run(argv)
    assert code == status
    if require != "none":
        assert ("required   " in text) and (("NOT MET" in text) == (status == 4))


def test_json_answer_and_error_lines_have_one_shape(fake_backend: FakeBackend, port: int) -> None:
    fake_backend.result = SECURED
    code, text = run(["probe", "127.0.0.1", str(port), "--require", "encrypted", "--json"])
    answer = json.loads(text)
    assert code == 4 and answer["ok"] is True and answer["met"] is False and answer["failed"] == "encrypted"
    assert answer["secured"] is True and answer["protocol"] == "IPSEC" and answer["error"] is None

    def refuse(*request: Any) -> tuple[Any, ...]:
        raise ConnectionResetError(104, "Connection reset by peer")

    fake_backend.query = refuse  # type: ignore[method-assign]
    code, text = run(["probe", "127.0.0.1", str(port), "--json"])
    error = json.loads(text)
    assert code == 1 and error["ok"] is False and error["errno"] == 104 and "reset" in error["error"]
    assert set(error) == set(answer) and error["secured"] is None and error["peer"] == answer["peer"]


def test_json_error_line_for_a_failed_connect(no_system_call: None, port: int) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]  # bound, never listening: the connect is refused
        code, text = run(["probe", "127.0.0.1", str(closed_port), "--json"])
    error = json.loads(text)
    assert code == 5 and error["ok"] is False and error["peer"] == f"127.0.0.1:{closed_port}"
    assert error["local"] is None and error["errno"] is not None


def test_text_names_no_protocol_when_nothing_secures_the_traffic(
    fake_backend: FakeBackend, port: int
) -> None:
    fake_backend.result = CLEAR
    _, text = run(["probe", "127.0.0.1", str(port), "--require", "none"])
    assert "secured    no" in text and "protocol" not in text
    fake_backend.result = SECURED
    _, text = run(["probe", "127.0.0.1", str(port)])
    assert "protocol   IPSEC" in text and "required   secured: met" in text


def test_explain_prints_the_backend_reason_where_there_is_one(fake_backend: FakeBackend, port: int) -> None:
    fake_backend.result = CLEAR
    code, text = run(["explain", "127.0.0.1", str(port)])
    assert code == 0 and "reason     this backend gives no reason" in text
    # Issue 14 item 8: the Linux backend's reason (the raw answer's last item) is SecurityInfo.reason.
    fake_backend.result = (*CLEAR[:-1], "outbound: no XFRM policy selects the flow; inbound: the same")
    _, text = run(["explain", "127.0.0.1", str(port)])
    assert "reason     outbound: no XFRM policy selects the flow; inbound: the same" in text
    _, text = run(["explain", "127.0.0.1", str(port), "--json"])
    assert json.loads(text)["reason"] == "outbound: no XFRM policy selects the flow; inbound: the same"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe", "127.0.0.1", "99999"], "argument port: '99999' is not a port number (1 to 65535)"),
        (["probe", "127.0.0.1", "0"], "argument port: '0' is not a port number (1 to 65535)"),
        (["probe", "127.0.0.1", "http"], "argument port: 'http' is not a port number"),
        (["probe", "127.0.0.1", "\u0668\u0660"], "argument port: '\u0668\u0660' is not a port number"),
        (["probe", "127.0.0.1", " 80"], "argument port: ' 80' is not a port number"),
        (["probe", "127.0.0.1", "+80"], "argument port: '+80' is not a port number"),
        (["probe", "127.0.0.1", "8_0"], "argument port: '8_0' is not a port number"),
        (["serve", "0", "--count", "\u00b2"], "argument --count: '\u00b2' is not a positive count"),
        (["probe", "localhost", "80"], "argument host: 'localhost' is not a numeric IP address"),
        (["explain", "example.com", "80"], "argument host: 'example.com' is not a numeric IP address"),
        (["serve", "65536"], "argument port: '65536' is not a port number (0 to 65535)"),
        (["serve", "0", "--host", "localhost"], "argument --host: 'localhost' is not a numeric IP address"),
        (["serve", "0", "--count", "0"], "argument --count: '0' is not a positive count"),
        (["probe", "127.0.0.1", "1", "--timeout", "-1"], "argument --timeout: '-1' is not a time-out"),
        (["probe", "127.0.0.1", "1", "--require", "maybe"], "argument --require: invalid choice"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    no_system_call: None, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"secsock {secsock.__version__} (backend {secsock.BACKEND})\n"


def test_every_exit_status_is_documented() -> None:
    import secsock.__main__ as cli

    doc = cli.__doc__ or ""
    statuses = (0, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_UNSUPPORTED, cli.EXIT_NOT_MET)
    statuses += (cli.EXIT_NO_CONNECTION, cli.EXIT_INTERRUPTED)
    for status in statuses:
        assert f"\n  {status:<4} " in doc
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for status in statuses:
        assert f"| {status} |" in readme


def test_console_script_entry_point_is_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # From the distribution's metadata, so it holds for an unpacked wheel too (the Wine layer); the
    # installed script itself is run in tests/test_linux_module.py.
    from importlib import metadata

    found = metadata.entry_points()
    scripts = (
        found.select(group="console_scripts")
        if hasattr(found, "select")
        else found.get("console_scripts", [])  # type: ignore[attr-defined]
    )
    (script,) = [entry for entry in scripts if entry.name == "secsock"]
    assert script.value == "secsock.__main__:main"
    with pytest.raises(SystemExit) as caught:
        script.load()(["--version"])
    assert caught.value.code == 0 and capsys.readouterr().out.startswith("secsock ")


def test_json_lines_always_carry_the_reason(fake_backend: FakeBackend, port: int) -> None:
    fake_backend.result = CLEAR
    for command in ("probe", "explain"):
        _, text = run([command, "127.0.0.1", str(port), "--json"])
        assert json.loads(text)["reason"] is None  # the key is there when the backend gives no reason
    fake_backend.result = (*CLEAR[:-1], "no policy selects the flow")
    _, text = run(["explain", "127.0.0.1", str(port), "--json"])
    assert json.loads(text)["reason"] == "no policy selects the flow"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        _, text = run(["probe", "127.0.0.1", str(unused.getsockname()[1]), "--json"])
    assert "reason" in json.loads(text) and json.loads(text)["reason"] is None  # an error line too


def test_a_listener_that_cannot_bind_has_its_own_exit_status(no_system_call: None) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        code, _ = run(["serve", str(taken.getsockname()[1]), "--host", "127.0.0.1", "--count", "1"])
    assert code == 5  # not 1, which says a query failed

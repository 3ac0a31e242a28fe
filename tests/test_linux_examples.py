"""The programs in examples/ (issue 13, item 6), each run against a local peer over the real Linux backend.
Loopback here is in the clear: the servers refuse it unless told to require nothing, and Microsoft's secure
listener and client (Windows flows) refuse cleanly with UnsupportedOperation, in one line, exit 3."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@contextmanager
def example_server(name: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start examples/NAME on a free loopback port; yields the process and the port it announced."""
    argv = [sys.executable, str(EXAMPLES / name), "--host", "127.0.0.1", "--port", "0", *args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        announced = process.stderr.readline()
        assert announced.startswith("listening on 127.0.0.1:"), announced
        yield process, int(announced.split()[2].rstrip(",").rsplit(":", 1)[1])
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def exchange(port: int, line: bytes) -> list[bytes]:
    """Connect, send one line, read until the server closes (or 3 lines); a reset counts as closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(line)
        reader = client.makefile("rb")
        lines: list[bytes] = []
        try:
            while len(lines) < 3 and (got := reader.readline()):
                lines.append(got)
                if got == line:
                    break
        except ConnectionResetError:
            pass
        return lines


@pytest.mark.parametrize("name", ["socketserver_encrypted.py", "asyncio_server.py"])
def test_server_example_refuses_cleartext_before_its_handler(name: str) -> None:
    with example_server(name, "--require", "secured", "--count", "2") as (process, port):
        assert exchange(port, b"ping\n") == []
        assert exchange(port, b"ping\n") == []
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert err.count("secsock: refused") == 2 and "not secured" in err and "Traceback" not in err


def test_socketserver_example_serves_when_nothing_is_required() -> None:
    with example_server("socketserver_encrypted.py", "--require", "none", "--count", "1") as (process, port):
        assert exchange(port, b"ping\n") == [b"ping\n"]
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "refused" not in err


def test_asyncio_example_serves_and_reports_the_answer_when_nothing_is_required() -> None:
    with example_server("asyncio_server.py", "--require", "none", "--count", "1") as (process, port):
        answer, echo = exchange(port, b"ping\n")
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert json.loads(answer)["secured"] is False and echo == b"ping\n"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["secure_listener.py", "--host", "127.0.0.1", "--port", "0"], "system policy"),
        (["secure_client.py", "127.0.0.1", "9", "host/server.corp.example"], "system policy"),
    ],
)
def test_windows_flows_refuse_cleanly_on_linux(argv: list[str], reason: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and reason in done.stderr and "Traceback" not in done.stderr


def test_the_secure_listener_example_refuses_member_of_on_linux_first() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "secure_listener.py"), "--port", "0", "--member-of", "S-1-5-32-544"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "member_of cannot be checked on Linux" in done.stderr


def test_asyncio_example_survives_a_client_that_resets() -> None:
    with example_server("asyncio_server.py", "--require", "none", "--count", "1") as (process, port):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"ping\n")
            with client.makefile("rb") as reader:  # closed first: it holds the socket open
                assert json.loads(reader.readline())["secured"] is False and reader.readline() == b"ping\n"
            client.sendall(b"unread\n")  # data the server has not read yet turns the close into a reset
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Unhandled exception" not in err

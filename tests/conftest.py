"""Shared fixtures. Platform suites are left out of collection elsewhere (never skipped into a pass):
tests/windows_only runs on real Windows (the GitHub Actions job), the Linux kernel suites on Linux."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fakes import FakeBackend, FakeFamilyBackend

collect_ignore_glob: list[str] = []
if sys.platform != "win32":
    collect_ignore_glob.append("windows_only/*")
if not sys.platform.startswith("linux"):
    collect_ignore_glob += ["test_linux_*.py", "vm/*"]
# The VM suite boots its own kernel: tests/vm/run.sh runs it inside the VM, never on the host.
collect_ignore_glob.append("vm/*")


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    from secsock import _extension

    backend = FakeBackend()
    monkeypatch.setattr(_extension, "backend", backend)
    return backend


@pytest.fixture
def family_backend(monkeypatch: pytest.MonkeyPatch) -> FakeFamilyBackend:
    from secsock import _extension

    backend = FakeFamilyBackend()
    monkeypatch.setattr(_extension, "backend", backend)
    return backend


@pytest.fixture
def no_system_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argument checks must fire before any system call: the backend fails the test if reached."""
    from secsock import _extension

    class Untouchable:
        BACKEND = "untouchable"

        def __getattr__(self, name: str) -> Any:
            pytest.fail(f"the backend was reached ({name}) although the arguments were bad")

    monkeypatch.setattr(_extension, "backend", Untouchable())


@pytest.fixture
def tcp6_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected IPv6 loopback TCP pair: (client, accepted server side)."""
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:
        client = socket.create_connection(listener.getsockname()[:2])
        server, _ = listener.accept()
    with client, server:
        yield client, server


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two bound loopback UDP sockets that have exchanged a datagram; neither is connected."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.sendto(b"hello", b.getsockname())
        b.recvfrom(16)
        yield a, b


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair: (client, accepted server side)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server

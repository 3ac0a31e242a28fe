"""Shared fixtures. Platform suites are left out of collection elsewhere (never skipped into a pass):
tests/windows_only runs on real Windows (the GitHub Actions job), the Linux kernel suites on Linux."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

collect_ignore_glob: list[str] = []
if sys.platform != "win32":
    collect_ignore_glob.append("windows_only/*")
if not sys.platform.startswith("linux"):
    collect_ignore_glob += ["test_linux_*.py", "vm/*"]
# The VM suite boots its own kernel: tests/vm/run.sh runs it inside the VM, never on the host.
collect_ignore_glob.append("vm/*")


class FakeBackend:
    """Stands in for secsock._secsock to test the facade's own logic: it records every call."""

    BACKEND = "fake"

    def __init__(self, result: tuple[Any, ...] | None = None) -> None:
        self.result = result if result is not None else (1, 0, 0, 0, None, None)
        self.queries: list[tuple[Any, ...]] = []
        self.closed_tokens: list[int] = []

    def query(self, *request: Any) -> tuple[Any, ...]:
        self.queries.append(request)
        return self.result

    def close_token(self, handle: int) -> None:
        self.closed_tokens.append(handle)


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    from secsock import _query

    backend = FakeBackend()
    monkeypatch.setattr(_query, "_backend", backend)
    return backend


@pytest.fixture
def no_system_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argument checks must fire before any system call: the backend fails the test if reached."""
    from secsock import _query

    class Untouchable:
        BACKEND = "untouchable"

        def __getattr__(self, name: str) -> Any:
            pytest.fail(f"the backend was reached ({name}) although the arguments were bad")

    monkeypatch.setattr(_query, "_backend", Untouchable())


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair: (client, accepted server side)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server

"""Shared fixtures. Platform suites are left out of collection elsewhere (never skipped into a pass):
tests/windows_only runs on Windows (the GitHub Actions job, and under Wine against the double),
tests/windows_double only under Wine with the fwpuclnt double (SECSOCK_DOUBLE=1, tools/windows_python.py), the
Linux kernel suites and tests marked `linux` or `netns` on Linux."""

from __future__ import annotations

import importlib.util
import os
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
# Scripts the fwpuclnt double: only where the Windows-Python layer installed it beside the module.
if os.environ.get("SECSOCK_DOUBLE") != "1":
    collect_ignore_glob.append("windows_double/*")

LINUX_ONLY = ("linux", "netns")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "linux: a test of the Linux backend itself (its checks, its errnos); not collected elsewhere",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Elsewhere than on Linux, tests of the Linux backend are deselected: not run, and not a skip either. So
    are tests that need CPython's _testcapi where the build lacks it (the Windows embeddable ones)."""
    markers: tuple[str, ...] = () if sys.platform.startswith("linux") else LINUX_ONLY
    if importlib.util.find_spec("_testcapi") is None:
        markers += ("testcapi",)
    unrunnable = [item for item in items if any(item.get_closest_marker(m) for m in markers)]
    if unrunnable:
        config.hook.pytest_deselected(items=unrunnable)
        items[:] = [item for item in items if item not in unrunnable]


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

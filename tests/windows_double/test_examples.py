"""Microsoft's "Using Secure Socket Extensions" flows (examples/secure_listener.py and secure_client.py) run
whole on Windows CPython under Wine against the fwpuclnt double: the listener sets security, accepts, reads
the peer's tokens, verifies, impersonates and answers; the client demands encryption and names the server's
SPN before connecting, then sends and reads the answer.

The double's script lives in the process that loads it, so both programs' main() run in this process (the
listener in a thread), each as its command line would run it; the double is scripted to answer every call
with success, each query with a secured and encrypted connection (so IPsec "authenticated" the peer and the
listener gets tokens). tests/test_linux_examples.py runs the same programs on Linux, where they refuse.
"""

from __future__ import annotations

import importlib.util
import io
import socket
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from double import ANSWER, Double
from secsock import SecurityProtocol

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECURED_ENCRYPTED = 0x3


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Output(io.StringIO):
    """Both programs' stdout or stderr; `listening` is set once the listener has announced itself."""

    def __init__(self) -> None:
        super().__init__()
        self.listening = threading.Event()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            written = super().write(text)
        if "listening on" in text:
            self.listening.set()
        return written


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_secure_listener_and_client_complete_the_sample_flow(
    double: Double, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    for _ in range(16):  # more than the calls of both programs; each call takes one
        double.script(ANSWER, flags=SECURED_ENCRYPTED, protocol=int(SecurityProtocol.IPSEC))
    out, err = Output(), Output()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    port = free_port(host)
    results: dict[str, Any] = {}

    def listen() -> None:
        try:
            results["listener"] = example("secure_listener").main(
                ["--host", host, "--port", str(port), "--count", "1"]
            )
        except BaseException as exc:  # handed to the test below
            results["listener"] = exc
            err.listening.set()

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        assert err.listening.wait(60), err.getvalue()
        client = example("secure_client").main([host, str(port), "host/server.corp.example"])
    finally:
        listener.join(60)
    assert not listener.is_alive()
    assert results["listener"] == 0 and client == 0, (results, out.getvalue(), err.getvalue())
    printed = out.getvalue()
    assert "connected: secured=True encrypted=True" in printed
    assert "hello " in printed and ", you sent hello" in printed  # the listener's answer, as read
    assert "served " in err.getvalue() and "refused" not in err.getvalue()
    functions = [call.function for call in double.calls()]
    # Each program's calls reached the double: two set_security, the SPN, two queries, the impersonation.
    assert len(functions) >= 6, functions


def test_secure_listener_refuses_a_connection_in_the_clear(
    double: Double, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unscripted, the double answers in the clear (its default, DOUBLE.md B13): the listener refuses, the
    # client is closed without an answer.
    out, err = Output(), Output()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    port = free_port("127.0.0.1")
    results: dict[str, Any] = {}
    listener = threading.Thread(
        target=lambda: results.setdefault(
            "listener",
            example("secure_listener").main(["--host", "127.0.0.1", "--port", str(port), "--count", "1"]),
        )
    )
    listener.start()
    try:
        assert err.listening.wait(60), err.getvalue()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"hello")
            try:
                assert client.recv(64) == b""
            except ConnectionResetError:  # closed with "hello" unread
                pass
    finally:
        listener.join(60)
    assert results["listener"] == 0
    assert "refused" in err.getvalue() and "not secured" in err.getvalue()

"""Reproducers for the facade (src/secsock/) found while cataloguing bad input. Each prints what happens and
what the README promises; exit 1 while any still reproduces. No privilege needed.

    .venv/bin/python hardening/repro/facade.py
"""

import socket
import sys
from typing import ClassVar

import secsock
from secsock import _extension


class Untouchable:
    """Stands in for the C extension: any use means a system call was about to be made."""

    BACKEND = "untouchable"

    def __getattr__(self, name):
        raise AssertionError(f"the backend was reached ({name})")


class RecordingRaw:
    """A pending query's C object that records the timeouts it is asked to wait for."""

    timeouts: ClassVar[list[int]] = []

    def wait(self, timeout_ms):
        RecordingRaw.timeouts.append(timeout_ms)
        return True


def outcome(call):
    try:
        call()
        return "no error"
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"


def main() -> int:
    real = _extension.backend
    bugs = 0
    checks = [
        (
            "1 PendingQuery.wait(float('inf')): a ValueError naming timeout, or waiting forever (-1)",
            lambda: secsock.PendingQuery(RecordingRaw()).wait(float("inf")),
            lambda r: (
                r.startswith("ValueError: timeout")
                or (r == "no error" and RecordingRaw.timeouts[-1:] == [-1])
            ),
            False,
        ),
        (
            "2 query(peer=('fe80::1%4294967296', 80)): a scope index beyond 32 bits must be a ValueError "
            "naming peer before any system call",
            lambda: secsock.query(3, peer=("fe80::1%4294967296", 80)),
            lambda r: r.startswith("ValueError: peer"),
            True,
        ),
        (
            "3 SecureSocket.secure_connect(addr, target_name=5): the bad name must fail before "
            "WSASetSocketSecurity",
            lambda: secsock.SecureSocket.secure_connect(("127.0.0.1", 9), 5),
            lambda r: r.startswith(("TypeError: name", "TypeError: target_name")),
            True,
        ),
    ]
    for title, call, ok, untouchable in checks:
        _extension.backend = Untouchable() if untouchable else real
        try:
            result = outcome(call)
        finally:
            _extension.backend = real
        good = ok(result)
        bugs += not good
        print(f"{'ok ' if good else 'BUG'} {title}\n      got: {result}")
    return 1 if bugs else 0


if __name__ == "__main__":
    socket.setdefaulttimeout(2)
    sys.exit(main())

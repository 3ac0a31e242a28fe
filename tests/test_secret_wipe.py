"""Issue 11, defect 1: the extension wipes its own copy of a password, never an object CPython shares.

CPython hands out one shared bytes object for each single-byte (and the empty) UTF-8 encoding; wiping the
bytes object PyUnicode_AsUTF8String returned once zeroed that shared object for the whole process. Each case
runs in a fresh interpreter, so a corrupted one cannot spoil the rest of the suite.
"""

from __future__ import annotations

import sys

import pytest

from fresh_process import run_child

# Whatever the platform answers (UnsupportedOperation on Linux, an OSError or success on Windows), the
# strings passed must still encode as before.
CHILD = """
import socket, sys
import secsock
text = sys.argv[1]
with socket.socket() as sock:
    for settings in (
        secsock.IpsecSettings(password=text),
        secsock.IpsecSettings(user=text, domain=text, password=text),
    ):
        try:
            secsock.set_security(sock, settings)
        except (secsock.UnsupportedOperation, OSError):
            pass
    try:
        secsock.set_peer_target_name(sock, text or "n")
    except (secsock.UnsupportedOperation, OSError, ValueError):
        pass
print(repr(text.encode()), repr("k".encode()), repr(b"k"), repr("".encode()))
"""


@pytest.mark.parametrize("text", ["k", "", "\u00e9", "secret"])
def test_password_wipe_leaves_shared_bytes_alone(text: str) -> None:
    done = run_child(
        [sys.executable, "-c", CHILD, text], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [repr(text.encode()), "b'k'", "b'k'", "b''"]

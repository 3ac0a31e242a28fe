"""The C extension's own argument checks (issue 11, defect 9): values are range-checked, never truncated.

The facade checks these first; the extension must not rely on it (a C long is 32 bits on Windows, where the
`k` format masked a flag value to its low bits without a word).
"""

from __future__ import annotations

import socket
import uuid

import pytest

from secsock import _secsock

ZERO = uuid.UUID(int=0).bytes_le
TOO_BIG = (1 << 32) | 1  # truncated, it would read as 1


@pytest.mark.parametrize(("index", "name"), [(1, "protocol"), (2, "security_flags"), (3, "ipsec_flags")])
def test_set_security_values_above_32_bits_are_refused(index: int, name: str) -> None:
    settings: list[object] = [True, 1, 0, 0, ZERO, ZERO, None, None, None]
    settings[index] = TOO_BIG
    with socket.socket() as sock, pytest.raises(ValueError, match=rf"^{name}: "):
        _secsock.set_security_begin(sock.fileno(), tuple(settings))


def test_set_peer_target_name_protocol_above_32_bits_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(ValueError, match=r"^protocol: "):
        _secsock.set_peer_target_name_begin(sock.fileno(), TOO_BIG, None, "host/x")

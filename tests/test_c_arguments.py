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


V4 = b"\x7f\x00\x00\x01"
V6 = b"\x00" * 15 + b"\x01"


@pytest.mark.parametrize(
    ("peer", "name"),
    [
        ((False, V4, (1 << 32) + 80, 0, 0), "port"),  # `I` masked it to 80
        ((False, V4, 65536, 0, 0), "port"),
        ((True, V6, 80, (1 << 64) + 5, 0), "flowinfo"),  # `K` masked it to 5
        ((True, V6, 80, -(1 << 64) + 5, 0), "flowinfo"),
        ((True, V6, 80, 0, (1 << 64) + 5), "scope_id"),
        ((True, V6, 80, 0, -1), "scope_id"),
    ],
    ids=["port-2**32+80", "port-65536", "flowinfo-2**64+5", "flowinfo--2**64+5", "scope-2**64+5", "scope--1"],
)
def test_peer_values_out_of_range_are_refused_never_truncated(peer: tuple[object, ...], name: str) -> None:
    """Review of issue 11, finding 10: the peer's port, flowinfo and scope id are range-checked by name."""
    family = socket.AF_INET6 if peer[0] else socket.AF_INET
    with (
        socket.socket(family, socket.SOCK_DGRAM) as sock,
        pytest.raises(ValueError, match=rf"^peer: {name}\b"),
    ):
        _secsock.query(sock.fileno(), peer, 0, False)

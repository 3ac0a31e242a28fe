"""Requirement(member_of=name) against the double's peer tokens: the name is looked up once, when the
requirement is built, and every check passes its SID to CheckTokenMembership."""

from __future__ import annotations

import socket

import pytest

import secsock
from double import ANSWER, Double
from secsock import SecurityProtocol, _accounts


def test_member_of_is_looked_up_once_not_per_connection(
    double: Double, tcp_pair: tuple[socket.socket, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    sid_of = _accounts.sid_of

    def counting(argument: str, name: str) -> str:
        lookups.append(name)
        return sid_of(argument, name)

    monkeypatch.setattr(_accounts, "sid_of", counting)
    requirement = secsock.Requirement(encrypted=True, member_of="Everyone")
    outsiders = secsock.Requirement(encrypted=True, member_of="BUILTIN\\Guests")
    for _ in range(3):
        double.script(ANSWER, flags=0x3, protocol=int(SecurityProtocol.IPSEC))
    for _ in range(2):
        with requirement.check(tcp_pair[1]) as info:  # the double's tokens are this process's: Everyone
            assert info.peer_application_token is not None
    with pytest.raises(secsock.NotSecuredError, match="BUILTIN") as caught:
        outsiders.check(tcp_pair[1])
    assert caught.value.demand == "member_of"
    assert lookups == ["Everyone", "BUILTIN\\Guests"]  # at construction only

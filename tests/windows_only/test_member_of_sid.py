"""Requirement(member_of=...) on Windows: an account name becomes its SID once, when the requirement is built
(LookupAccountNameW), so no connection's check looks a name up; an unknown name is a ValueError there. Wine
knows the well-known names used here."""

from __future__ import annotations

import pytest

import secsock


@pytest.mark.parametrize(
    ("member_of", "sid"),
    [
        ("Everyone", "S-1-1-0"),
        ("BUILTIN\\Administrators", "S-1-5-32-544"),
        ("S-1-1-0", "S-1-1-0"),
        ("s-1-5-32-544", "S-1-5-32-544"),  # a SID string, in canonical form
    ],
)
def test_member_of_is_a_sid_from_construction_on(member_of: str, sid: str) -> None:
    requirement = secsock.Requirement(member_of=member_of)
    assert requirement._member_sid == sid
    assert requirement.member_of == member_of  # what the caller gave stays, for messages and equality


@pytest.mark.parametrize(
    ("member_of", "message"),
    [
        ("secsock-no-such-group-7f3a", "member_of: no account or group named 'secsock-no-such-group-7f3a'"),
        ("S-1-x-bad", "member_of: 'S-1-x-bad' is not a valid SID"),
    ],
)
def test_an_unknown_member_of_is_refused_at_construction(member_of: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        secsock.Requirement(member_of=member_of)
    assert str(caught.value) == message

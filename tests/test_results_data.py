"""Results as data (issue 13, item 2): SecurityInfo, IpsecDetails and SecurityAssociation compare by value,
serialize with as_dict() (JSON-ready, tokens only as present or absent) and keep their pickling."""

from __future__ import annotations

import copy
import json
import pickle
import uuid

import pytest

import secsock
from fakes import FakeBackend
from secsock import ConnectionFlags, IpsecMode, IpsecProtocol, SecurityProtocol

GUID = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
SA_OUT = (50, 0, 0x1000, 7, "cbc(aes)", "hmac(sha256)", "")
SA_IN = (51, 1, 0x2000, 7, "", "hmac(sha1)", "")


def secured_answer(fake_backend: FakeBackend) -> secsock.SecurityInfo:
    fake_backend.result = (1, 3, 0, 0, None, ((SA_OUT,), (SA_IN,)), None)
    return secsock.query(5)


def test_answers_compare_by_value_and_are_not_hashable(fake_backend: FakeBackend) -> None:
    a, b = secured_answer(fake_backend), secured_answer(fake_backend)
    assert a is not b and a == b and not (a != b)
    b.flags = ConnectionFlags.SECURED
    assert a != b
    assert a != "not an answer"
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)  # its fields can be set, as a list's items can


def test_answers_with_tokens_are_equal_only_when_they_share_them(fake_backend: FakeBackend) -> None:
    token = secsock.Token(0x10)
    with token:
        a = secsock.SecurityInfo(SecurityProtocol.IPSEC, ConnectionFlags.SECURED, token)
        b = secsock.SecurityInfo(SecurityProtocol.IPSEC, ConnectionFlags.SECURED, token)
        with secsock.Token(0x10) as other:
            c = secsock.SecurityInfo(SecurityProtocol.IPSEC, ConnectionFlags.SECURED, other)
            assert a == b and a != c


def test_ipsec_details_and_sas_are_immutable_values(fake_backend: FakeBackend) -> None:
    ipsec = secured_answer(fake_backend).ipsec
    assert ipsec is not None
    again = secured_answer(fake_backend).ipsec
    assert ipsec == again and hash(ipsec) == hash(again)
    assert len({ipsec.outbound[0], again.outbound[0]}) == 1
    with pytest.raises(AttributeError):
        ipsec.outbound[0].spi = 1  # type: ignore[misc]


def test_as_dict_is_json_ready_with_names_and_every_field(fake_backend: FakeBackend) -> None:
    why = "outbound: protected by SAs that encrypt; inbound: protected by SAs that encrypt"
    fake_backend.result = (2, 3, 0, 0, (11, 22, 0, GUID.bytes_le), ((SA_OUT,), (SA_IN,)), why)
    data = secsock.query(5, ipsec2=True).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "secured": True,
        "encrypted": True,
        "protocol": "IPSEC2",
        "flags": 3,
        "peer_application_token": False,
        "peer_machine_token": False,
        "mm_sa_id": 11,
        "qm_sa_id": 22,
        "negotiation_error": 0,
        "sa_lookup_context": str(GUID),
        "ipsec": {
            "outbound": [
                {
                    "protocol": "ESP",
                    "mode": "TRANSPORT",
                    "spi": 0x1000,
                    "reqid": 7,
                    "encryption": "cbc(aes)",
                    "integrity": "hmac(sha256)",
                    "aead": None,
                }
            ],
            "inbound": [
                {
                    "protocol": "AH",
                    "mode": "TUNNEL",
                    "spi": 0x2000,
                    "reqid": 7,
                    "encryption": None,
                    "integrity": "hmac(sha1)",
                    "aead": None,
                }
            ],
        },
        "reason": why,  # issue 14 item 8
    }


def test_as_dict_keeps_values_this_version_does_not_know_as_ints() -> None:
    sa = secsock.SecurityAssociation(99, 42, 1, 0, None, None, "rfc4106(gcm(aes))")
    info = secsock.SecurityInfo(7, ConnectionFlags(0x13), ipsec=secsock.IpsecDetails((sa,), ()))
    data = info.as_dict()
    assert data["protocol"] == 7 and data["flags"] == 0x13
    assert data["ipsec"]["outbound"][0]["protocol"] == 99 and data["ipsec"]["outbound"][0]["mode"] == 42
    assert (
        secsock.SecurityAssociation(IpsecProtocol.ESP, IpsecMode.BEET, 1, 0, None, None, None).as_dict()[
            "mode"
        ]
        == "BEET"
    )


def test_as_dict_shows_tokens_as_present_never_as_handles(fake_backend: FakeBackend) -> None:
    with secsock.Token(0x4242) as application:
        info = secsock.SecurityInfo(SecurityProtocol.IPSEC, ConnectionFlags.SECURED, application)
        data = info.as_dict()
        assert data["peer_application_token"] is True and data["peer_machine_token"] is False
        assert str(0x4242) not in json.dumps(data) and "0x4242" not in json.dumps(data)


def test_pickling_and_copying_keep_the_value(fake_backend: FakeBackend) -> None:
    info = secured_answer(fake_backend)
    for clone in (pickle.loads(pickle.dumps(info)), copy.copy(info), copy.deepcopy(info)):
        assert type(clone) is secsock.SecurityInfo and clone == info
        assert clone.as_dict() == info.as_dict()
    assert info.ipsec is not None and pickle.loads(pickle.dumps(info.ipsec)) == info.ipsec


def test_as_dict_names_no_protocol_for_traffic_in_the_clear_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    from secsock import _extension

    linux = FakeBackend((1, 0, 0, 0, None, ((), ()), None))
    linux.BACKEND = "linux"
    monkeypatch.setattr(_extension, "backend", linux)
    clear = secsock.query(5)
    assert clear.protocol is SecurityProtocol.IPSEC  # the attribute is what the backend said
    data = clear.as_dict()
    assert data["protocol"] is None and data["secured"] is False
    linux.result = (1, 3, 0, 0, None, ((), ()), None)
    secured = secsock.query(5).as_dict()
    assert secured["protocol"] == "IPSEC" and set(secured) == set(data)  # one key set either way
    windows = FakeBackend((1, 0, 0, 0, None, None, None))
    monkeypatch.setattr(_extension, "backend", windows)
    assert secsock.query(5).as_dict()["protocol"] == "IPSEC"  # elsewhere the system's word stands

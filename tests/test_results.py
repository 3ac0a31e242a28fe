"""Typed results and owned tokens (issue 2, items 2 and 3), through the facade over a recording backend."""

from __future__ import annotations

import gc
import threading
import uuid
import warnings

import pytest

import secsock
from fakes import FakeBackend
from secsock import ConnectionFlags, SecurityProtocol

GUID = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")


def test_enum_values_match_mstcpip() -> None:
    assert [(m.name, int(m)) for m in SecurityProtocol] == [
        ("DEFAULT", 0),
        ("IPSEC", 1),
        ("IPSEC2", 2),
        ("INVALID", 3),
    ]
    assert (
        int(ConnectionFlags.SECURED),
        int(ConnectionFlags.ENCRYPTED),
        int(ConnectionFlags.IMPERSONATED),
    ) == (
        1,
        2,
        4,
    )


def test_plain_answer_decodes_to_protocol_and_flags(fake_backend: FakeBackend) -> None:
    fake_backend.result = (1, 3, 0, 0, None, None, None)
    info = secsock.query(5)
    assert info.protocol is SecurityProtocol.IPSEC
    assert info.flags == ConnectionFlags.SECURED | ConnectionFlags.ENCRYPTED
    assert info.secured and info.encrypted
    assert info.peer_application_token is None and info.peer_machine_token is None
    assert info.mm_sa_id is None and info.qm_sa_id is None
    assert info.negotiation_error is None and info.sa_lookup_context is None
    assert info.ipsec is None


def test_in_the_clear(fake_backend: FakeBackend) -> None:
    fake_backend.result = (0, 0, 0, 0, None, None, None)
    info = secsock.query(5)
    assert not info.secured and not info.encrypted
    assert repr(info) == "<secsock.SecurityInfo protocol=DEFAULT flags=0 (in the clear)>"


def test_ipsec2_fields_decode_with_the_guid_in_memory_order(fake_backend: FakeBackend) -> None:
    fake_backend.result = (2, 1, 0, 0, (0x1122334455667788, 42, 13801, GUID.bytes_le), None, None)
    info = secsock.query(5, ipsec2=True)
    assert info.protocol is SecurityProtocol.IPSEC2
    assert (info.mm_sa_id, info.qm_sa_id, info.negotiation_error) == (0x1122334455667788, 42, 13801)
    assert info.sa_lookup_context == GUID
    assert "mm_sa_id=1234605616436508552" in repr(info) and str(GUID) in repr(info)


def test_unknown_protocol_stays_an_int_rather_than_a_guess(fake_backend: FakeBackend) -> None:
    fake_backend.result = (9, 0, 0, 0, None, None, None)
    info = secsock.query(5)
    assert info.protocol == 9 and not isinstance(info.protocol, SecurityProtocol)


def test_ipsec_details_decode_per_direction(fake_backend: FakeBackend) -> None:
    out = ((50, 0, 0xC0FFEE, 7, "", "", "rfc4106(gcm(aes))"),)
    inbound = (
        (51, 1, 0x100, 0, "", "hmac(sha256)", ""),
        (50, 1, 0x101, 0, "ecb(cipher_null)", "hmac(sha1)", ""),
    )
    fake_backend.result = (1, 1, 0, 0, None, (out, inbound), None)
    info = secsock.query(5)
    assert info.ipsec is not None
    (sa,) = info.ipsec.outbound
    assert sa == secsock.SecurityAssociation(
        secsock.IpsecProtocol.ESP, secsock.IpsecMode.TRANSPORT, 0xC0FFEE, 7, None, None, "rfc4106(gcm(aes))"
    )
    assert sa.encrypts
    ah, null_esp = info.ipsec.inbound
    assert ah.protocol is secsock.IpsecProtocol.AH and ah.mode is secsock.IpsecMode.TUNNEL and not ah.encrypts
    assert null_esp.encryption == "ecb(cipher_null)" and not null_esp.encrypts
    assert "ESP transport spi=0x00c0ffee rfc4106(gcm(aes))" in repr(info)
    assert "AH tunnel spi=0x00000100 hmac(sha256) + ESP tunnel" in repr(info)


def test_tokens_are_owned_and_closed_exactly_once_by_info_close(fake_backend: FakeBackend) -> None:
    fake_backend.result = (1, 1, 0x1A4, 0x1A8, None, None, None)
    info = secsock.query(5, token_access=8)
    app, machine = info.peer_application_token, info.peer_machine_token
    assert app is not None and machine is not None
    assert (app.handle, int(machine)) == (0x1A4, 0x1A8)
    assert repr(app) == "<secsock.Token handle=0x1a4>"
    info.close()
    info.close()
    app.close()
    assert fake_backend.closed_tokens == [0x1A4, 0x1A8]
    assert app.closed and repr(app) == "<secsock.Token closed>"
    with pytest.raises(ValueError, match="closed token"):
        app.handle  # noqa: B018
    with pytest.raises(ValueError, match="closed token"):
        int(app)
    with pytest.raises(ValueError, match="closed token"):
        app.detach()


def test_with_info_closes_its_tokens(fake_backend: FakeBackend) -> None:
    fake_backend.result = (1, 1, 0x10, 0, None, None, None)
    with secsock.query(5, token_access=8) as info:
        assert info.peer_application_token is not None
    assert fake_backend.closed_tokens == [0x10]


def test_with_token_closes_it(fake_backend: FakeBackend) -> None:
    fake_backend.result = (1, 1, 0x10, 0x14, None, None, None)
    info = secsock.query(5, token_access=8)
    assert info.peer_machine_token is not None
    with info.peer_machine_token as token:
        assert token.handle == 0x14
    assert fake_backend.closed_tokens == [0x14]
    with pytest.raises(ValueError, match="closed token"), info.peer_machine_token:
        pass
    info.close()
    assert fake_backend.closed_tokens == [0x14, 0x10]


def test_detach_hands_the_handle_over_and_nothing_closes_it(fake_backend: FakeBackend) -> None:
    fake_backend.result = (1, 1, 0x20, 0, None, None, None)
    info = secsock.query(5, token_access=8)
    assert info.peer_application_token is not None
    assert info.peer_application_token.detach() == 0x20
    info.close()
    del info
    gc.collect()
    assert fake_backend.closed_tokens == []


def test_collected_open_token_warns_and_closes(fake_backend: FakeBackend) -> None:
    fake_backend.result = (1, 1, 0x30, 0, None, None, None)
    info = secsock.query(5, token_access=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del info
        gc.collect()
    assert fake_backend.closed_tokens == [0x30]
    assert [w.category for w in caught] == [ResourceWarning]
    assert "unclosed <secsock.Token handle=0x30>" in str(caught[0].message)


def test_concurrent_closes_close_once(fake_backend: FakeBackend) -> None:
    tokens = [secsock.Token(h) for h in range(1, 201)]
    barrier = threading.Barrier(4)

    def close_all() -> None:
        barrier.wait()
        for token in tokens:
            token.close()

    threads = [threading.Thread(target=close_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(fake_backend.closed_tokens) == list(range(1, 201))


@pytest.mark.parametrize(
    ("handle", "error"), [(0, ValueError), (-3, ValueError), ("1", TypeError), (True, TypeError)]
)
def test_token_rejects_what_is_not_a_handle(handle: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="handle"):
        secsock.Token(handle)  # type: ignore[arg-type]


def test_cli_describes_the_peer_identity_from_its_tokens(fake_backend: FakeBackend) -> None:
    from secsock.__main__ import _identity

    class FakeToken(secsock.Token):
        @property
        def user(self) -> secsock.Account:
            if self.handle == 0x99:
                raise PermissionError(5, "GetTokenInformation: access denied")
            return secsock.Account("S-1-5-21-1-2-3-1001", "CORP\\\\alice")

    info = secsock.SecurityInfo(
        SecurityProtocol.IPSEC, ConnectionFlags.SECURED, FakeToken(0x10), FakeToken(0x99)
    )
    with info:
        assert _identity(info) == {
            "application": {"sid": "S-1-5-21-1-2-3-1001", "name": "CORP\\\\alice"},
            "machine": {"error": "[Errno 5] GetTokenInformation: access denied"},
        }
    assert _identity(secsock.SecurityInfo(SecurityProtocol.IPSEC, ConnectionFlags(0))) is None

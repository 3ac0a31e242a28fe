"""The rest of the family through the facade (issue 4): what reaches the C extension, in which order, and
what is refused before it. The C side runs under Wine against the fwpuclnt double (tests/windows)."""

from __future__ import annotations

import socket
import uuid

import pytest

import secsock
from fakes import FakeFamilyBackend
from secsock import IpsecFlags, IpsecSettings, SecuritySettings, SecuritySettingsFlags

ZERO = uuid.UUID(int=0).bytes_le
MM = uuid.UUID("0f3c5c2e-7a4b-4d8e-9a4f-3d2b1c0e9f81")


def test_default_settings_send_none(family_backend: FakeFamilyBackend) -> None:
    secsock.set_security(7)
    assert family_backend.calls == [("set_security", 7, None), ("close",)]


def test_plain_settings_pack_protocol_and_flags(family_backend: FakeFamilyBackend) -> None:
    settings = SecuritySettings(secsock.SecurityProtocol.IPSEC, SecuritySettingsFlags.GUARANTEE_ENCRYPTION)
    secsock.set_security(7, settings)
    assert family_backend.calls[0] == ("set_security", 7, (False, 1, 1, 0, ZERO, ZERO, None, None, None))
    assert (
        repr(settings)
        == "SecuritySettings(protocol=IPSEC, flags=<SecuritySettingsFlags.GUARANTEE_ENCRYPTION: 1>)"
    )


def test_ipsec_settings_always_send_protocol_ipsec_and_zero_guid_for_none(
    family_backend: FakeFamilyBackend,
) -> None:
    settings = IpsecSettings(
        flags=SecuritySettingsFlags.ALLOW_INSECURE,
        ipsec_flags=IpsecFlags.SKIP_FILTER_INSTANTIATION,
        mm_policy_key=MM,
        user="alice",
        domain="CORP",
        password="s3cret",
    )
    secsock.set_security(7, settings)
    assert family_backend.calls[0] == (
        "set_security",
        7,
        (True, 1, 2, 1, MM.bytes_le, ZERO, "alice", "CORP", "s3cret"),
    )
    assert "s3cret" not in repr(settings) and "password=<hidden>" in repr(settings)


def test_a_failed_set_call_raises_and_is_still_freed(family_backend: FakeFamilyBackend) -> None:
    family_backend.fail["set_security"] = ConnectionResetError(104, "WSASetSocketSecurity: reset")
    with pytest.raises(ConnectionResetError, match="WSASetSocketSecurity"):
        secsock.set_security(7)
    assert family_backend.pendings[0].closed


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: SecuritySettings(flags=8), ValueError, "flags: 0x8 has bits"),
        (lambda: SecuritySettings(flags=True), TypeError, "flags"),
        (
            lambda: SecuritySettings(protocol=secsock.SecurityProtocol.INVALID),
            ValueError,
            "INVALID is not a legal value",
        ),
        (lambda: SecuritySettings(protocol=9), ValueError, "protocol: 9"),
        (lambda: IpsecSettings(ipsec_flags=2), ValueError, "ipsec_flags"),
        (lambda: IpsecSettings(mm_policy_key="0f3c"), TypeError, "mm_policy_key"),  # type: ignore[arg-type]
        (lambda: IpsecSettings(password="a\0b"), ValueError, "password: must not contain a NUL"),
        (lambda: IpsecSettings(user=b"alice"), TypeError, "user"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_are_refused_when_made(make: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


def test_set_security_refuses_what_is_not_settings(no_system_call: None) -> None:
    with pytest.raises(TypeError, match="settings: expected SecuritySettings"):
        secsock.set_security(7, {"protocol": 1})  # type: ignore[arg-type]


def test_peer_target_name_is_passed_with_protocol_and_peer(family_backend: FakeFamilyBackend) -> None:
    secsock.set_peer_target_name(7, "host/server.corp.example")
    secsock.set_peer_target_name(7, "host/ü", ("192.0.2.7", 500), protocol=secsock.SecurityProtocol.DEFAULT)
    assert family_backend.calls[0] == ("set_peer_target_name", 7, 1, None, "host/server.corp.example")
    assert family_backend.calls[2] == (
        "set_peer_target_name",
        7,
        0,
        (False, socket.inet_aton("192.0.2.7"), 500, 0, 0),
        "host/ü",
    )


@pytest.mark.parametrize(("name", "error"), [("", ValueError), ("a\0b", ValueError), (b"host", TypeError)])
def test_bad_target_names_are_refused_before_the_call(
    no_system_call: None, name: object, error: type
) -> None:
    with pytest.raises(error, match="name"):
        secsock.set_peer_target_name(7, name)  # type: ignore[arg-type]


def test_delete_peer_target_name_needs_a_peer(no_system_call: None) -> None:
    with pytest.raises(ValueError, match="peer: required"):
        secsock.delete_peer_target_name(7, None)  # type: ignore[arg-type]


def test_impersonation_reverts_on_normal_exit(family_backend: FakeFamilyBackend) -> None:
    with secsock.impersonate_peer(7):
        family_backend.calls.append(("body",))
    assert family_backend.calls == [("impersonate", 7, None), ("body",), ("revert",)]


def test_impersonation_reverts_when_the_body_raises(family_backend: FakeFamilyBackend) -> None:
    with pytest.raises(KeyError), secsock.impersonate_peer(7, ("::1", 4500)):
        raise KeyError("inside")
    assert [call[0] for call in family_backend.calls] == ["impersonate", "revert"]


def test_no_revert_when_impersonation_failed(family_backend: FakeFamilyBackend) -> None:
    family_backend.fail["impersonate"] = PermissionError(13, "WSAImpersonateSocketPeer: denied")
    with pytest.raises(PermissionError), secsock.impersonate_peer(7):
        pytest.fail("the body must not run")
    assert [call[0] for call in family_backend.calls] == ["impersonate"]


WSAEINVAL = 10022


def bound_port(sock: socket.socket) -> int:
    """The socket's local port, 0 while it is not bound (Windows has no name for it yet: WSAEINVAL)."""
    try:
        return int(sock.getsockname()[1])
    except OSError as exc:
        if getattr(exc, "winerror", None) != WSAEINVAL:
            raise
        return 0


def test_secure_listener_sets_security_before_bind(family_backend: FakeFamilyBackend) -> None:
    seen: list[tuple[str, int]] = []

    def observe(name: str, fd: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd) as view:
            try:
                seen.append((name, bound_port(view)))
            finally:
                view.detach()

    family_backend.observe = observe
    with secsock.SecureSocket.secure_listener(("127.0.0.1", 0)) as listener:
        assert listener.getsockname()[1] != 0
    assert seen == [("set_security", 0)]  # not yet bound when security was set


def test_secure_connect_names_the_peer_before_connect(family_backend: FakeFamilyBackend) -> None:
    connected: list[tuple[str, bool]] = []

    def observe(name: str, fd: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd) as view:
            try:
                view.getpeername()
                connected.append((name, True))
            except OSError:
                connected.append((name, False))
            view.detach()

    family_backend.observe = observe
    with socket.create_server(("127.0.0.1", 0)) as server:
        settings = SecuritySettings(secsock.SecurityProtocol.IPSEC)
        with secsock.SecureSocket.secure_connect(
            server.getsockname(), "host/srv", settings, timeout=5
        ) as conn:
            assert conn.getpeername() == server.getsockname()
    assert connected == [("set_security", False), ("set_peer_target_name", False)]
    assert family_backend.calls[2][2] == 1  # the settings' protocol names the target


def test_secure_helpers_close_the_socket_when_a_step_fails(family_backend: FakeFamilyBackend) -> None:
    family_backend.fail["set_security"] = OSError(22, "WSASetSocketSecurity: invalid")
    before = family_backend.calls
    with pytest.raises(OSError, match="WSASetSocketSecurity"):
        secsock.SecureSocket.secure_listener(("127.0.0.1", 0))
    fd = before[0][1]
    with pytest.raises(OSError):
        socket.socket(fileno=fd).close()  # already closed by the helper


@pytest.mark.parametrize(("arg", "error"), [("", ValueError), (5, TypeError), ("S-1\0", ValueError)])
def test_is_member_refuses_bad_names_before_the_call(no_system_call: None, arg: object, error: type) -> None:
    token = secsock.Token(4)
    with pytest.raises(error, match="sid_or_account"):
        token.is_member(arg)  # type: ignore[arg-type]
    token.detach()  # a made-up handle: nothing to close


@pytest.mark.parametrize(
    "call",
    [
        lambda: secsock.set_peer_target_name(7, "spn", protocol=9),  # type: ignore[arg-type]
        lambda: secsock.set_peer_target_name(7, "spn", peer=("host", 1)),
        lambda: secsock.delete_peer_target_name(7, ("::1", 70000)),
    ],
)
def test_bad_arguments_win_over_a_missing_backend(monkeypatch: pytest.MonkeyPatch, call: object) -> None:
    from secsock import _extension

    monkeypatch.setattr(_extension, "backend", None)
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_a_closed_token_is_a_value_error_even_without_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from secsock import _extension

    token = secsock.Token(9)
    token.detach()
    monkeypatch.setattr(_extension, "backend", None)
    for read in (lambda: token.user, lambda: token.groups, lambda: token.is_member("S-1-1-0")):
        with pytest.raises(ValueError, match="closed token"):
            read()

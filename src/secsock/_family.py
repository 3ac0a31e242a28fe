"""The rest of the Winsock Secure Socket Extensions: set security, name the peer, act as the peer.

Windows only: on Linux these raise UnsupportedOperation with the reason (IPsec there is system policy, and
carries no peer tokens). Every call here that takes an OVERLAPPED in Windows is issued with one and waited
for without the GIL, as query() is.
"""

from __future__ import annotations

import contextlib
import enum
import uuid
from collections.abc import Iterator
from typing import Any

from ._extension import require_backend as _require_backend
from ._query import Peer, SocketLike, _raw_peer, _socket_handle
from ._types import SecurityProtocol

__all__ = [
    "IpsecFlags",
    "IpsecSettings",
    "SecuritySettings",
    "SecuritySettingsFlags",
    "delete_peer_target_name",
    "impersonate_peer",
    "set_peer_target_name",
    "set_security",
]

_ZERO_GUID = uuid.UUID(int=0)


class SecuritySettingsFlags(enum.IntFlag):
    """SOCKET_SECURITY_SETTINGS.SecurityFlags (mstcpip.h)."""

    GUARANTEE_ENCRYPTION = 0x1
    ALLOW_INSECURE = 0x2


class IpsecFlags(enum.IntFlag):
    """SOCKET_SECURITY_SETTINGS_IPSEC.IpsecFlags (mstcpip.h)."""

    SKIP_FILTER_INSTANTIATION = 0x1


class SecuritySettings:
    """SOCKET_SECURITY_SETTINGS: which protocol secures the socket and what it must guarantee."""

    __slots__ = ("flags", "protocol")

    def __init__(
        self,
        protocol: SecurityProtocol = SecurityProtocol.DEFAULT,
        flags: SecuritySettingsFlags | int = 0,
    ) -> None:
        self.protocol = _protocol(protocol)
        self.flags = _flags(SecuritySettingsFlags, flags, "flags")

    def _raw(self) -> tuple[Any, ...]:
        return (
            False,
            int(self.protocol),
            int(self.flags),
            0,
            _ZERO_GUID.bytes_le,
            _ZERO_GUID.bytes_le,
            None,
            None,
            None,
        )

    def __repr__(self) -> str:
        return f"SecuritySettings(protocol={self.protocol.name}, flags={self.flags!r})"


class IpsecSettings:
    """SOCKET_SECURITY_SETTINGS_IPSEC: IPsec settings, AuthIP policy keys and explicit credentials.

    The protocol sent is always IPSEC (the page forbids DEFAULT here). A policy key of None is the zero GUID,
    which the system ignores. user, domain and password are packed as UTF-16 into AllStrings with their
    lengths in bytes; the C extension wipes its copy of the password after the call. The password is never
    shown by repr().
    """

    __slots__ = ("domain", "flags", "ipsec_flags", "mm_policy_key", "password", "qm_policy_key", "user")

    def __init__(
        self,
        flags: SecuritySettingsFlags | int = 0,
        ipsec_flags: IpsecFlags | int = 0,
        mm_policy_key: uuid.UUID | None = None,
        qm_policy_key: uuid.UUID | None = None,
        user: str | None = None,
        domain: str | None = None,
        password: str | None = None,
    ) -> None:
        self.flags = _flags(SecuritySettingsFlags, flags, "flags")
        self.ipsec_flags = _flags(IpsecFlags, ipsec_flags, "ipsec_flags")
        for name, key in (("mm_policy_key", mm_policy_key), ("qm_policy_key", qm_policy_key)):
            if key is not None and not isinstance(key, uuid.UUID):
                raise TypeError(f"{name}: expected a uuid.UUID or None, not {type(key).__name__}")
        for name, text in (("user", user), ("domain", domain), ("password", password)):
            if text is not None and not isinstance(text, str):
                raise TypeError(f"{name}: expected a str or None, not {type(text).__name__}")
            if text is not None and "\0" in text:
                raise ValueError(f"{name}: must not contain a NUL character")
        self.mm_policy_key = mm_policy_key
        self.qm_policy_key = qm_policy_key
        self.user = user
        self.domain = domain
        self.password = password

    def _raw(self) -> tuple[Any, ...]:
        mm = (self.mm_policy_key or _ZERO_GUID).bytes_le
        qm = (self.qm_policy_key or _ZERO_GUID).bytes_le
        return (
            True,
            int(SecurityProtocol.IPSEC),
            int(self.flags),
            int(self.ipsec_flags),
            mm,
            qm,
            self.user,
            self.domain,
            self.password,
        )

    def __repr__(self) -> str:
        password = "<hidden>" if self.password is not None else None
        return (
            f"IpsecSettings(flags={self.flags!r}, ipsec_flags={self.ipsec_flags!r}, "
            f"mm_policy_key={self.mm_policy_key}, qm_policy_key={self.qm_policy_key}, user={self.user!r}, "
            f"domain={self.domain!r}, password={password})"
        )


def _protocol(protocol: object) -> SecurityProtocol:
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise TypeError(f"protocol: expected a SecurityProtocol, not {type(protocol).__name__}")
    try:
        value = SecurityProtocol(protocol)
    except ValueError:
        raise ValueError(f"protocol: {protocol} is not a SecurityProtocol") from None
    if value is SecurityProtocol.INVALID:
        raise ValueError("protocol: INVALID is not a legal value")
    return value


def _flags(flag_type: type[enum.IntFlag], value: object, name: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected {flag_type.__name__} flags, not {type(value).__name__}")
    known = sum(int(member) for member in flag_type)
    if value < 0 or value & ~known:
        raise ValueError(f"{name}: {value:#x} has bits {flag_type.__name__} does not define")
    return flag_type(value)


def _complete(raw_pending: Any) -> None:
    """Wait for a set/delete call issued with an OVERLAPPED and raise its error, freeing it on every path."""
    try:
        raw_pending.result()
    finally:
        raw_pending.close()


def set_security(sock: SocketLike, settings: SecuritySettings | IpsecSettings | None = None) -> None:
    """WSASetSocketSecurity: require security on sock (before bind for a listener, before connect for a
    client). settings None means the system's default settings. Windows only; UnsupportedOperation on Linux.
    """
    if settings is not None and not isinstance(settings, (SecuritySettings, IpsecSettings)):
        raise TypeError(
            f"settings: expected SecuritySettings, IpsecSettings or None, not {type(settings).__name__}"
        )
    fd = _socket_handle(sock)
    raw = settings._raw() if settings is not None else None
    _complete(_require_backend("set_security").set_security_begin(fd, raw))


def set_peer_target_name(
    sock: SocketLike,
    name: str,
    peer: Peer | None = None,
    *,
    protocol: SecurityProtocol = SecurityProtocol.IPSEC,
) -> None:
    """WSASetSocketPeerTargetName: the SPN the peer must authenticate as (a client calls it before connect;
    peer is required for datagram sockets). Windows only; UnsupportedOperation on Linux.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, not {type(name).__name__}")
    if not name or "\0" in name:
        raise ValueError("name: the target name must be non-empty and hold no NUL character")
    # Every argument is checked before the backend is looked up, so bad input is a TypeError/ValueError on
    # every platform, never UnsupportedPlatformError.
    fd, protocol_value, raw_peer = _socket_handle(sock), int(_protocol(protocol)), _raw_peer(peer)
    backend = _require_backend("set_peer_target_name")
    _complete(backend.set_peer_target_name_begin(fd, protocol_value, raw_peer, name))


def delete_peer_target_name(sock: SocketLike, peer: Peer) -> None:
    """WSADeleteSocketPeerTargetName for peer. Windows only; UnsupportedOperation on Linux."""
    if peer is None:
        raise ValueError("peer: required, the address whose target name is deleted")
    fd, raw_peer = _socket_handle(sock), _raw_peer(peer)
    _complete(_require_backend("delete_peer_target_name").delete_peer_target_name_begin(fd, raw_peer))


@contextlib.contextmanager
def impersonate_peer(sock: SocketLike, peer: Peer | None = None) -> Iterator[None]:
    """Act as the peer inside a ``with`` block: WSAImpersonateSocketPeer, then WSARevertImpersonation on every
    exit path, exceptions included.

    Impersonation belongs to the calling OS thread: only code running on this thread inside the block acts
    as the peer (not other threads, not an executor), and the block must not move to another thread (do not
    await inside it). peer is needed for datagram sockets. Windows only; UnsupportedOperation on Linux.
    """
    fd = _socket_handle(sock)
    raw_peer = _raw_peer(peer)
    backend = _require_backend("impersonate_peer")
    backend.impersonate_peer(fd, raw_peer)
    try:
        yield
    finally:
        backend.revert_impersonation()

"""The typed results of a query: protocol, flags, owned token handles and the IPsec details."""

from __future__ import annotations

import enum
import threading
import uuid
import warnings
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from . import _extension

__all__ = [
    "Account",
    "ConnectionFlags",
    "IpsecDetails",
    "IpsecMode",
    "IpsecProtocol",
    "SecurityAssociation",
    "SecurityInfo",
    "SecurityProtocol",
    "Token",
]


class SecurityProtocol(enum.IntEnum):
    """SOCKET_SECURITY_PROTOCOL (mstcpip.h): the protocol securing the traffic."""

    DEFAULT = 0
    IPSEC = 1
    IPSEC2 = 2
    INVALID = 3


class ConnectionFlags(enum.IntFlag):
    """SOCKET_INFO_CONNECTION_* (mstcpip.h). ENCRYPTED always comes with SECURED."""

    SECURED = 0x1
    ENCRYPTED = 0x2
    IMPERSONATED = 0x4


class IpsecProtocol(enum.IntEnum):
    """The IP protocol number of an IPsec transform."""

    ESP = 50
    AH = 51
    IPCOMP = 108


class IpsecMode(enum.IntEnum):
    """How an SA is applied (Linux XFRM_MODE_*)."""

    TRANSPORT = 0
    TUNNEL = 1
    ROUTE_OPTIMIZATION = 2
    IN_TRIGGER = 3
    BEET = 4


class SecurityAssociation(NamedTuple):
    """One IPsec SA applied to the connection in one direction."""

    protocol: IpsecProtocol | int
    mode: IpsecMode | int
    spi: int
    reqid: int
    encryption: str | None
    integrity: str | None
    aead: str | None

    @property
    def encrypts(self) -> bool:
        """True when this SA encrypts: an AEAD, or ESP with an encryption algorithm other than null."""
        if self.aead:
            return True
        return (
            self.protocol == IpsecProtocol.ESP
            and bool(self.encryption)
            and "cipher_null" not in str(self.encryption)
        )

    def as_dict(self) -> dict[str, Any]:
        """The SA as JSON-ready data: protocol and mode by name (a value this version does not know stays
        an int), the rest as is."""
        return {name: _plain(getattr(self, name)) for name in self._fields}


class IpsecDetails(NamedTuple):
    """The SAs protecting each direction, outermost first; an empty tuple means that direction is in clear."""

    outbound: tuple[SecurityAssociation, ...]
    inbound: tuple[SecurityAssociation, ...]

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        """Each direction's SAs as a list of SecurityAssociation.as_dict(), outermost first."""
        return {
            "outbound": [sa.as_dict() for sa in self.outbound],
            "inbound": [sa.as_dict() for sa in self.inbound],
        }


class Account(NamedTuple):
    """A security principal: its SID string and, where the system can name it, DOMAIN\\name ("" if not)."""

    sid: str
    name: str

    def __str__(self) -> str:
        return self.name or self.sid


class Token:
    """An access token handle that belongs to you (SOCKET_SECURITY_QUERY_INFO, R4: close it after use).

    It is closed exactly once: by close(), by leaving a ``with`` block, by SecurityInfo.close(), or, with a
    ResourceWarning as for an unclosed file, when it is collected. detach() hands the raw handle over (to
    pywin32 or ctypes) and then closing is yours. Using a closed token raises ValueError.
    """

    __slots__ = ("__weakref__", "_handle", "_lock")

    def __init__(self, handle: int) -> None:
        if isinstance(handle, bool) or not isinstance(handle, int):
            raise TypeError(f"handle: expected an int, not {type(handle).__name__}")
        if handle <= 0:
            raise ValueError(f"handle: {handle} is not a token handle")
        self._handle: int | None = handle
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        """True once the handle was closed or detached."""
        return self._handle is None

    @property
    def handle(self) -> int:
        """The raw HANDLE value; still owned by this object."""
        handle = self._handle
        if handle is None:
            raise ValueError("operation on a closed token")
        return handle

    def __int__(self) -> int:
        return self.handle

    def __index__(self) -> int:
        return self.handle

    def _take(self) -> int | None:
        # The lock makes "closed exactly once" hold when several threads close or detach at the same time.
        with self._lock:
            handle, self._handle = self._handle, None
        return handle

    def detach(self) -> int:
        """Give up ownership and return the raw handle; you must CloseHandle it yourself."""
        handle = self._take()
        if handle is None:
            raise ValueError("operation on a closed token")
        return handle

    def close(self) -> None:
        """CloseHandle the token. Closing a closed token does nothing."""
        handle = self._take()
        if handle is not None:
            _extension.close_token_handle(handle)

    @property
    def user(self) -> Account:
        """The account the token stands for (GetTokenInformation TokenUser, LookupAccountSid).
        Raises OSError with the Windows code; UnsupportedOperation on Linux."""
        handle = self.handle  # a closed token is a ValueError on every platform
        sid, name = _extension.require_backend("Token.user").token_user(handle)
        return Account(sid, name)

    @property
    def groups(self) -> tuple[Account, ...]:
        """The groups in the token (GetTokenInformation TokenGroups). Windows only."""
        handle = self.handle
        groups = _extension.require_backend("Token.groups").token_groups(handle)
        return tuple(Account(sid, name) for sid, name in groups)

    def is_member(self, sid_or_account: str) -> bool:
        """True when the token is a member of the group, given as "S-1-..." or "DOMAIN\\group"
        (CheckTokenMembership, which honours deny-only groups). Windows only."""
        if not isinstance(sid_or_account, str):
            raise TypeError(f"sid_or_account: expected a str, not {type(sid_or_account).__name__}")
        if not sid_or_account or "\0" in sid_or_account:
            raise ValueError("sid_or_account: must be a non-empty SID string or account name")
        handle = self.handle
        backend = _extension.require_backend("Token.is_member")
        return bool(backend.token_is_member(handle, sid_or_account))

    def __reduce__(self) -> NoReturn:
        # A handle is owned by this process, once: a copy or another process could not use or close it.
        raise TypeError(
            "cannot pickle or copy a secsock.Token: it is a handle this process owns (detach() it, or read "
            "what you need, such as .user, first)"
        )

    def __enter__(self) -> Token:
        self.handle  # noqa: B018 - raises ValueError on a closed token, as files do
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        handle = self._handle
        if handle is None:
            return "<secsock.Token closed>"
        return f"<secsock.Token handle={handle:#x}>"


# SecurityInfo's fields, in the order its constructor takes them.
_FIELDS = (
    "protocol",
    "flags",
    "peer_application_token",
    "peer_machine_token",
    "mm_sa_id",
    "qm_sa_id",
    "negotiation_error",
    "sa_lookup_context",
    "ipsec",
    "reason",
)

_TOKEN_FIELDS = frozenset({"peer_application_token", "peer_machine_token"})

# SecurityInfo's fields live in the compiled backend where there is one, so that a query fills its answer
# without running Python code (issue 5: the query runs on every accepted connection); elsewhere in Python.
if TYPE_CHECKING:
    from ._secsock import SecurityInfoBase as _SecurityInfoBase
else:
    try:
        from ._secsock import SecurityInfoBase as _SecurityInfoBase
    except ImportError:  # a platform without a backend (secsock._extension decides whether that is an error)

        class _SecurityInfoBase:
            __slots__ = _FIELDS


class SecurityInfo(_SecurityInfoBase):
    """What the system says about how a connection is secured (SOCKET_SECURITY_QUERY_INFO[_IPSEC2]).

    It owns the peer token handles it holds: close it (or use ``with``) to close them, or take a Token and
    close or detach it yourself. The IPsec2 fields are None when not asked for or not returned; ``ipsec`` is
    None where the platform does not say which SAs apply (Windows). ``reason`` says why, per direction, the
    answer is what it is (Linux: what the backend saw in XFRM); None where the platform does not say.
    """

    __slots__ = ()

    def __init__(
        self,
        protocol: SecurityProtocol | int,
        flags: ConnectionFlags,
        peer_application_token: Token | None = None,
        peer_machine_token: Token | None = None,
        mm_sa_id: int | None = None,
        qm_sa_id: int | None = None,
        negotiation_error: int | None = None,
        sa_lookup_context: uuid.UUID | None = None,
        ipsec: IpsecDetails | None = None,
        reason: str | None = None,
    ) -> None:
        self.protocol = protocol
        self.flags = flags
        self.peer_application_token = peer_application_token
        self.peer_machine_token = peer_machine_token
        self.mm_sa_id = mm_sa_id
        self.qm_sa_id = qm_sa_id
        self.negotiation_error = negotiation_error
        self.sa_lookup_context = sa_lookup_context
        self.ipsec = ipsec
        self.reason = reason

    def __reduce__(self) -> tuple[type[SecurityInfo], tuple[object, ...]]:
        # Picklable as before its fields moved to C (a worker process may send an answer on); a Token is not.
        return (SecurityInfo, tuple(getattr(self, name) for name in _FIELDS))

    # Compared by value, field for field; a Token is a handle you own and compares by identity, so two
    # answers that carry tokens are equal only when they share them. Mutable (the fields can be set), so
    # not hashable, as a list is not.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecurityInfo):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def as_dict(self) -> dict[str, Any]:
        """The answer as JSON-ready data (``json.dumps(info.as_dict())``): every field by its name, with
        ``secured`` and ``encrypted``; enums by name (an unknown value stays an int), flags as an int, the
        SA lookup context as a string, ``ipsec`` as IpsecDetails.as_dict(), and each token only as present
        (True) or absent (False), never as a handle. On Linux ``protocol`` is None when the traffic is not
        secured: the backend always says IPSEC there (the question is answered from XFRM), which names
        nothing when nothing secures the traffic; the attribute keeps what the backend said."""
        data: dict[str, Any] = {"secured": self.secured, "encrypted": self.encrypted}
        for name in _FIELDS:
            value = getattr(self, name)
            data[name] = (value is not None) if name in _TOKEN_FIELDS else _plain(value)
        if not data["secured"] and getattr(_extension.backend, "BACKEND", None) == "linux":
            data["protocol"] = None
        return data

    @property
    def secured(self) -> bool:
        """Traffic is secured by a security protocol (SOCKET_INFO_CONNECTION_SECURED)."""
        return bool(self.flags & ConnectionFlags.SECURED)

    @property
    def encrypted(self) -> bool:
        """Traffic is encrypted (SOCKET_INFO_CONNECTION_ENCRYPTED)."""
        return bool(self.flags & ConnectionFlags.ENCRYPTED)

    def close(self) -> None:
        """Close the peer token handles still held (each exactly once)."""
        for token in (self.peer_application_token, self.peer_machine_token):
            if token is not None:
                token.close()

    def __enter__(self) -> SecurityInfo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        protocol = self.protocol.name if isinstance(self.protocol, SecurityProtocol) else str(self.protocol)
        parts = [f"protocol={protocol}", f"flags={_flags_text(self.flags)}"]
        for name in ("peer_application_token", "peer_machine_token", "mm_sa_id", "qm_sa_id"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        if self.negotiation_error is not None:
            parts.append(f"negotiation_error={self.negotiation_error}")
        if self.sa_lookup_context is not None:
            parts.append(f"sa_lookup_context={self.sa_lookup_context}")
        if self.ipsec is not None:
            parts.append(
                f"ipsec=(out: {_sas_text(self.ipsec.outbound)}; in: {_sas_text(self.ipsec.inbound)})"
            )
        return f"<secsock.SecurityInfo {' '.join(parts)}>"


def _flags_text(flags: int) -> str:
    names = [member.name for member in ConnectionFlags if member.name and flags & member]
    rest = int(flags) & ~sum(int(member) for member in ConnectionFlags)
    if rest:
        names.append(hex(rest))
    return "|".join(names) if names else "0 (in the clear)"


def _sas_text(sas: tuple[SecurityAssociation, ...]) -> str:
    if not sas:
        return "clear"
    texts = []
    for sa in sas:
        protocol = sa.protocol.name if isinstance(sa.protocol, IpsecProtocol) else str(sa.protocol)
        mode = sa.mode.name.lower() if isinstance(sa.mode, IpsecMode) else str(sa.mode)
        algorithms = ",".join(name for name in (sa.aead, sa.encryption, sa.integrity) if name)
        texts.append(f"{protocol} {mode} spi={sa.spi:#010x} {algorithms}".rstrip())
    return " + ".join(texts)


def _plain(value: Any) -> Any:
    """value as JSON-ready data: an enum member by name, a flag set or int as an int, a UUID as a string,
    IpsecDetails through its as_dict(); str, bool and None as they are."""
    if isinstance(value, enum.IntFlag):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, IpsecDetails):
        return value.as_dict()
    return value

"""Enforcement: secsock.require() and Requirement, a server's demand checked on each connection."""

from __future__ import annotations

import dataclasses
import errno
from typing import TYPE_CHECKING, Any

from . import _accounts, _extension
from ._errors import NotSecuredError, UnsupportedOperation
from ._log import logger
from ._query import Peer, SocketLike, query
from ._types import SecurityInfo

if TYPE_CHECKING:
    from ._asyncio import GuardedHandler, StreamHandler

__all__ = ["Requirement", "require"]

# What Token.is_member needs of a peer token: TOKEN_QUERY to read it, TOKEN_DUPLICATE because
# CheckTokenMembership wants an impersonation token and the backend checks a duplicate.
_MEMBERSHIP_TOKEN_ACCESS = 0x0008 | 0x0002


@dataclasses.dataclass(frozen=True)
class Requirement:
    """What a connection must be to be served: secured, encrypted, its peer a member of a group (Windows).

    Immutable and compared by value. ``check(sock)`` queries and returns the answer or raises
    NotSecuredError; ``verify(info)`` checks an answer you already have. ``encrypted=True`` implies
    secured (the system never reports encryption without it). ``member_of`` ("S-1-..." or "DOMAIN\\group")
    is checked against the peer's application token (CheckTokenMembership); on Windows an account name is
    turned into its SID once, here (ValueError if no such account exists); on Linux it raises
    UnsupportedOperation here, at construction: XFRM authenticates no user, so no peer could ever pass,
    and a NotSecuredError would blame the peer for what the platform cannot tell.
    """

    secured: bool = True
    encrypted: bool = False
    member_of: str | None = None
    # member_of as the SID each check passes to CheckTokenMembership: on Windows looked up once, here.
    _member_sid: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("secured", "encrypted"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name}: expected a bool, not {type(value).__name__}")
        member_of = self.member_of
        if member_of is not None:
            if not isinstance(member_of, str):
                raise TypeError(f"member_of: expected a str or None, not {type(member_of).__name__}")
            if not member_of or "\0" in member_of:
                raise ValueError("member_of: must be a non-empty SID string or account name")
            backend = _extension.backend  # the tests swap it
            kind = getattr(backend, "BACKEND", None)
            if kind == "linux":
                raise UnsupportedOperation(
                    errno.EOPNOTSUPP,
                    "secsock: member_of cannot be checked on Linux: IPsec (XFRM) there authenticates no "
                    "peer user, so no peer token exists to check",
                )
            # An account name is looked up now (ValueError if there is none), not on every connection.
            sid = _accounts.sid_of("member_of", member_of) if kind == "windows" else member_of
            object.__setattr__(self, "_member_sid", sid)

    @property
    def token_access(self) -> int:
        """The access to the peer's tokens a check asks for: enough for member_of, else none."""
        return _MEMBERSHIP_TOKEN_ACCESS if self.member_of is not None else 0

    def verify(self, info: SecurityInfo) -> None:
        """Raise NotSecuredError (carrying info) if the answer info does not meet this requirement."""
        failed = self._failure(info)
        if failed is not None:
            demand, message = failed
            logger.debug("refused (%s): %s", demand, message)
            raise NotSecuredError(message, demand=demand, info=info)

    def _failure(self, info: SecurityInfo) -> tuple[Any, str] | None:
        # Checked in this order, so the demand named is the most basic one that failed.
        if (self.secured or self.encrypted) and not info.secured:
            return "secured", _why("the connection is not secured (in the clear)", info)
        if self.encrypted and not info.encrypted:
            return "encrypted", _why("the connection is secured but not encrypted", info)
        if self.member_of is not None:
            token = info.peer_application_token
            if token is None:
                return "member_of", (
                    f"no peer application token came back, so membership of '{self.member_of}' cannot "
                    "be checked (IPsec did not authenticate the peer's user)"
                )
            if not token.is_member(self._member_sid or self.member_of):
                return "member_of", f"the peer ({_who(token)}) is not a member of '{self.member_of}'"
        return None

    def check(self, sock: SocketLike, *, peer: Peer | None = None) -> SecurityInfo:
        """Query sock (see secsock.query) and return the answer if it meets this requirement; otherwise
        close the answer's tokens and raise NotSecuredError. Query errors propagate unchanged."""
        return self._checked(query(sock, peer=peer, token_access=self.token_access))

    async def check_async(self, sock: Any, *, peer: Peer | None = None) -> SecurityInfo:
        """check() for asyncio; sock may also be a transport or a StreamWriter (see query_async)."""
        from ._asyncio import query_async

        return self._checked(await query_async(sock, peer=peer, token_access=self.token_access))

    def _checked(self, info: SecurityInfo) -> SecurityInfo:
        try:
            self.verify(info)
        except BaseException:
            info.close()  # nobody else will: the caller never gets this answer
            raise
        return info

    def guard(self, handler: StreamHandler) -> GuardedHandler:
        """An asyncio.start_server callback that checks each connection first and closes, without calling
        handler, those that fail: ``await asyncio.start_server(requirement.guard(handle), host, port)``.
        handler may be a coroutine function or a plain function, as start_server's callback."""
        from ._asyncio import guard

        return guard(self, handler)


def _why(text: str, info: SecurityInfo) -> str:
    # The Linux backend's reason for its answer, where this version has one (issue 14).
    reason = getattr(info, "reason", None)
    return f"{text}: {reason}" if reason else text


def _who(token: Any) -> str:
    try:
        return str(token.user)
    except OSError:  # the name is for the message only; the check itself already answered
        return "unnamed"


def require(
    sock: SocketLike,
    *,
    secured: bool = True,
    encrypted: bool = False,
    member_of: str | None = None,
    peer: Peer | None = None,
) -> SecurityInfo:
    """Return the answer for sock if the connection meets the demand, else raise NotSecuredError.

    ``info = secsock.require(conn, encrypted=True)``: as query(), then the checks of Requirement.
    NotSecuredError is a PermissionError naming the failed demand (``.demand``) and carrying the answer
    (``.info``, its tokens closed). On success the answer is yours to close (``with``), as from query().
    """
    return Requirement(secured, encrypted, member_of).check(sock, peer=peer)

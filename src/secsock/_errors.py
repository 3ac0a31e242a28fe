"""Exceptions of secsock. Every one is a secsock.Error; each is also the builtin exception a caller would
catch without knowing secsock (an OSError, a PermissionError), so existing handlers keep working."""

from __future__ import annotations

import copy
import errno
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._types import SecurityInfo

SUPPORTED_PLATFORMS = ("win32", "linux")

#: The demands secsock.require() checks, in the order it checks them.
Demand = Literal["secured", "encrypted", "member_of"]


class Error(Exception):
    """The base of every exception secsock raises itself (``except secsock.Error`` catches them all).

    Bad arguments are still ValueError/TypeError, and a failed system call the builtin OSError subclass
    carrying the system's code (errno; winerror on Windows), as the socket module raises them; those are
    not secsock.Error.
    """


class UnsupportedPlatformError(Error, OSError):
    """No secsock backend exists for this operating system (supported: Windows and Linux)."""


class UnsupportedOperation(Error, OSError):
    """The backend exists, but this call has no meaning on this platform; it never pretends to succeed."""


class SocketClosedError(Error, OSError):
    """The socket given was already closed (errno EBADF), found by secsock before any system call."""


class QueryTimeoutError(Error, TimeoutError):
    """PendingQuery.result(timeout) gave up waiting; the query is still in flight until closed."""


class NotSecuredError(Error, PermissionError):
    """The connection does not meet a demand of secsock.require() (as ssl.SSLCertVerificationError is a
    failed verification): ``demand`` names the one that failed ("secured", "encrypted" or "member_of"),
    ``info`` is the answer it was checked against (its peer tokens already closed), ``errno`` is EACCES.
    """

    def __init__(self, message: str, *, demand: Demand, info: SecurityInfo | None = None) -> None:
        super().__init__(errno.EACCES, message)
        self.demand: Demand = demand
        self.info = info

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> Any:
        # OSError pickles as cls(*args); this constructor takes the message and keywords instead. The
        # answer goes without its tokens: they are closed already, and a Token does not pickle.
        info = self.info
        if info is not None and (info.peer_application_token, info.peer_machine_token) != (None, None):
            info = copy.copy(info)
            info.peer_application_token = info.peer_machine_token = None
        return (_not_secured, (self.strerror, self.demand, info))


def _not_secured(message: str, demand: Demand, info: SecurityInfo | None) -> NotSecuredError:
    return NotSecuredError(message, demand=demand, info=info)

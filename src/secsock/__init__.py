"""secsock: ask the operating system how a socket's traffic is secured.

On Windows it calls WSAQuerySocketSecurity (Winsock Secure Socket Extensions); on Linux it answers the same
question from the kernel's IPsec state (XFRM). A server calls it on each accepted connection to learn whether
the traffic is secured and encrypted and who the peer is.

    import secsock
    conn, _ = listener.accept()
    try:
        secsock.require(conn, encrypted=True).close()   # or: with secsock.query(conn) as info: ...
    except secsock.NotSecuredError:
        conn.close()
"""

from typing import TYPE_CHECKING, Any

from ._errors import (
    SUPPORTED_PLATFORMS,
    Error,
    NotSecuredError,
    QueryTimeoutError,
    SocketClosedError,
    UnsupportedOperation,
    UnsupportedPlatformError,
)
from ._family import (
    IpsecFlags,
    IpsecSettings,
    SecuritySettings,
    SecuritySettingsFlags,
    delete_peer_target_name,
    impersonate_peer,
    set_peer_target_name,
    set_security,
)
from ._query import BACKEND, PendingQuery, begin_query, query
from ._require import Requirement, require
from ._server import RequireSecurityMixIn
from ._socket import SecureSocket
from ._types import (
    Account,
    ConnectionFlags,
    IpsecDetails,
    IpsecMode,
    IpsecProtocol,
    SecurityAssociation,
    SecurityInfo,
    SecurityProtocol,
    Token,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._asyncio import query_async, require_async


def __getattr__(name: str) -> Any:
    """query_async and require_async, imported on first use: `import secsock` does not import asyncio. A
    server that never uses it does not pay for it, and on CPython 3.9 a subinterpreter that imports secsock
    does not import asyncio's _asyncio before the main interpreter does (that crashes 3.9 at exit)."""
    if name in ("query_async", "require_async"):
        from . import _asyncio

        # Bound here once: a module __getattr__ runs on every access of a name the module lacks, which cost
        # `await secsock.query_async(sock)` ~1.4 us per call (benchmarks/async_query.py).
        globals().update(query_async=_asyncio.query_async, require_async=_asyncio.require_async)
        return getattr(_asyncio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKEND",
    "SUPPORTED_PLATFORMS",
    "Account",
    "ConnectionFlags",
    "Error",
    "IpsecDetails",
    "IpsecFlags",
    "IpsecMode",
    "IpsecProtocol",
    "IpsecSettings",
    "NotSecuredError",
    "PendingQuery",
    "QueryTimeoutError",
    "RequireSecurityMixIn",
    "Requirement",
    "SecureSocket",
    "SecurityAssociation",
    "SecurityInfo",
    "SecurityProtocol",
    "SecuritySettings",
    "SecuritySettingsFlags",
    "SocketClosedError",
    "Token",
    "UnsupportedOperation",
    "UnsupportedPlatformError",
    "__version__",
    "begin_query",
    "delete_peer_target_name",
    "impersonate_peer",
    "query",
    "query_async",
    "require",
    "require_async",
    "set_peer_target_name",
    "set_security",
]

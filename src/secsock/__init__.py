"""secsock: ask the operating system how a socket's traffic is secured.

On Windows it calls WSAQuerySocketSecurity (Winsock Secure Socket Extensions); on Linux it answers the same
question from the kernel's IPsec state (XFRM). A server calls it on each accepted connection to learn whether
the traffic is secured and encrypted and who the peer is.

    import secsock
    conn, _ = listener.accept()
    with secsock.query(conn) as info:
        if not info.encrypted:
            conn.close()
"""

from ._errors import SUPPORTED_PLATFORMS, UnsupportedOperation, UnsupportedPlatformError
from ._query import BACKEND, PendingQuery, begin_query, query, query_async
from ._socket import SecureSocket
from ._types import (
    ConnectionFlags,
    IpsecDetails,
    IpsecMode,
    IpsecProtocol,
    SecurityAssociation,
    SecurityInfo,
    SecurityProtocol,
    Token,
)

__version__ = "0.1.0"

__all__ = [
    "BACKEND",
    "SUPPORTED_PLATFORMS",
    "ConnectionFlags",
    "IpsecDetails",
    "IpsecMode",
    "IpsecProtocol",
    "PendingQuery",
    "SecureSocket",
    "SecurityAssociation",
    "SecurityInfo",
    "SecurityProtocol",
    "Token",
    "UnsupportedOperation",
    "UnsupportedPlatformError",
    "__version__",
    "begin_query",
    "query",
    "query_async",
]

"""Servers that refuse a connection before its handler sees it: SecureSocket.create_server's listener and
RequireSecurityMixIn for socketserver."""

from __future__ import annotations

import errno
import socket
from typing import Any, ClassVar

from ._errors import NotSecuredError
from ._log import logger
from ._require import Requirement

__all__ = ["RequireSecurityMixIn", "admit", "peer_gone"]

# A query fails with these when the peer left before it ran (reset, or closed with SO_LINGER 0): a server
# drops that connection and carries on, as it would after a failed recv(). Anything else (EPERM, ENOMEM,
# EBADMSG: the backend could not read the truth) is still raised.
_PEER_GONE_ERRNOS = frozenset({errno.ENOTCONN, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})
_PEER_GONE_WINERRORS = frozenset({10057, 10054, 10053})  # WSAENOTCONN, WSAECONNRESET, WSAECONNABORTED


def peer_gone(exc: BaseException) -> bool:
    """True if exc, raised by a query, says only that the peer has already disconnected."""
    if not isinstance(exc, OSError):
        return False
    winerror = getattr(exc, "winerror", None)
    if winerror is not None:
        return winerror in _PEER_GONE_WINERRORS
    return exc.errno in _PEER_GONE_ERRNOS


def admit(conn: socket.socket, address: Any, requirement: Requirement, peer: Any = None) -> bool:
    """True if conn meets requirement. A refusal, or a peer that disconnected before the query, is logged
    at INFO and answers False; any other failed query raises (the truth could not be read). conn is left
    open either way: closing is the caller's."""
    try:
        requirement.check(conn, peer=peer).close()
    except NotSecuredError as exc:
        logger.info("refused %s: %s", address, exc)
        return False
    except OSError as exc:
        if not peer_gone(exc):
            raise
        logger.info("dropped %s: the peer disconnected before the query (%s)", address, exc)
        return False
    return True


class RequireSecurityMixIn:
    """A socketserver mix-in that refuses, in verify_request, each connection (or UDP datagram) that does
    not meet ``requirement``, before a handler is made for it; socketserver then closes it::

        class Server(secsock.RequireSecurityMixIn, socketserver.ThreadingTCPServer):
            requirement = secsock.Requirement(encrypted=True)

    A peer that disconnected before the query is dropped (logged at INFO). Any other query that fails
    (the truth could not be read) goes to handle_error() and the request is refused.
    """

    requirement: ClassVar[Requirement] = Requirement()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Check the request against ``requirement`` first, then the next class's verify_request."""
        if isinstance(request, tuple):  # a UDP server's (data, socket): the datagram's sender is the peer
            sock, peer = request[1], client_address
        else:
            sock, peer = request, None
        try:
            if not admit(sock, client_address, self.requirement, peer):
                return False
        except OSError:
            self.handle_error(request, client_address)  # type: ignore[attr-defined]
            return False
        return bool(super().verify_request(request, client_address))  # type: ignore[misc]

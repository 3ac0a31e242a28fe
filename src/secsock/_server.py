"""Servers that refuse a connection before its handler sees it: SecureSocket.create_server's listener and
RequireSecurityMixIn for socketserver."""

from __future__ import annotations

import socket
from typing import Any, ClassVar

from ._errors import NotSecuredError
from ._log import logger
from ._require import Requirement

__all__ = ["RequireSecurityMixIn", "admit"]


def admit(conn: socket.socket, address: Any, requirement: Requirement, peer: Any = None) -> bool:
    """True if conn meets requirement. A refusal is logged at INFO and answers False; a query that
    fails raises (the truth could not be read). conn is left open either way: closing is the caller's."""
    try:
        requirement.check(conn, peer=peer).close()
    except NotSecuredError as exc:
        logger.info("refused %s: %s", address, exc)
        return False
    return True


class RequireSecurityMixIn:
    """A socketserver mix-in that refuses, in verify_request, each connection (or UDP datagram) that does
    not meet ``requirement``, before a handler is made for it; socketserver then closes it::

        class Server(secsock.RequireSecurityMixIn, socketserver.ThreadingTCPServer):
            requirement = secsock.Requirement(encrypted=True)

    A query that fails (the truth could not be read) goes to handle_error() and the request is refused.
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

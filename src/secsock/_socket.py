"""SecureSocket: a socket.socket whose connections can be asked how they are secured."""

from __future__ import annotations

import socket
from typing import Any

from ._query import Peer, PendingQuery, begin_query, query
from ._types import SecurityInfo

__all__ = ["SecureSocket"]


class SecureSocket(socket.socket):
    """socket.socket with query_security() and begin_query(); accept() returns SecureSocket too."""

    __slots__ = ()

    def query_security(
        self, *, peer: Peer | None = None, token_access: int = 0, ipsec2: bool = False
    ) -> SecurityInfo:
        """secsock.query() on this socket."""
        return query(self, peer=peer, token_access=token_access, ipsec2=ipsec2)

    def begin_query(
        self, *, peer: Peer | None = None, token_access: int = 0, ipsec2: bool = False
    ) -> PendingQuery:
        """secsock.begin_query() on this socket."""
        return begin_query(self, peer=peer, token_access=token_access, ipsec2=ipsec2)

    def accept(self) -> tuple[SecureSocket, Any]:
        """Accept a connection as a SecureSocket (socket.socket.accept() would return a plain socket)."""
        fd, address = self._accept()  # type: ignore[attr-defined]
        conn = SecureSocket(self.family, self.type, self.proto, fileno=fd)
        # As socket.socket.accept: a listener with a timeout must not leave the new socket non-blocking.
        if socket.getdefaulttimeout() is None and self.gettimeout():
            conn.setblocking(True)
        return conn, address

    @classmethod
    def from_socket(cls, sock: socket.socket) -> SecureSocket:
        """Adopt a socket made elsewhere: sock is detached (left closed) and its descriptor moves over."""
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock: expected a socket.socket, not {type(sock).__name__}")
        if isinstance(sock, cls):
            return sock
        if sock.fileno() < 0:
            raise OSError(9, "SecureSocket.from_socket: sock is closed")
        timeout = sock.gettimeout()
        family, type_, proto = sock.family, sock.type, sock.proto
        adopted = cls(family, type_, proto, fileno=sock.detach())
        adopted.settimeout(timeout)
        return adopted

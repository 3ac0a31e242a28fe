"""SecureSocket: a socket.socket whose connections can be asked how they are secured."""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Any

from ._errors import SocketClosedError
from ._family import (
    IpsecSettings,
    SecuritySettings,
    delete_peer_target_name,
    impersonate_peer,
    set_peer_target_name,
    set_security,
)
from ._query import Peer, PendingQuery, begin_query, query
from ._require import Requirement, require
from ._server import admit
from ._types import SecurityInfo, SecurityProtocol

__all__ = ["SecureSocket"]


class SecureSocket(socket.socket):
    """socket.socket with query_security() and begin_query(); accept() returns SecureSocket too."""

    __slots__ = ("_requirement",)
    _requirement: Requirement | None  # create_server's: what accept() demands of each connection

    def query_security(
        self, *, peer: Peer | None = None, token_access: int = 0, ipsec2: bool = False
    ) -> SecurityInfo:
        """secsock.query() on this socket."""
        return query(self, peer=peer, token_access=token_access, ipsec2=ipsec2)

    def require_security(
        self,
        *,
        secured: bool = True,
        encrypted: bool = False,
        member_of: str | None = None,
        peer: Peer | None = None,
    ) -> SecurityInfo:
        """secsock.require() on this socket: the answer, or NotSecuredError naming the failed demand."""
        return require(self, secured=secured, encrypted=encrypted, member_of=member_of, peer=peer)

    def begin_query(
        self, *, peer: Peer | None = None, token_access: int = 0, ipsec2: bool = False
    ) -> PendingQuery:
        """secsock.begin_query() on this socket."""
        return begin_query(self, peer=peer, token_access=token_access, ipsec2=ipsec2)

    def set_security(self, settings: SecuritySettings | IpsecSettings | None = None) -> None:
        """secsock.set_security() on this socket (Windows)."""
        set_security(self, settings)

    def set_peer_target_name(
        self, name: str, peer: Peer | None = None, *, protocol: SecurityProtocol = SecurityProtocol.IPSEC
    ) -> None:
        """secsock.set_peer_target_name() on this socket (Windows)."""
        set_peer_target_name(self, name, peer, protocol=protocol)

    def delete_peer_target_name(self, peer: Peer) -> None:
        """secsock.delete_peer_target_name() on this socket (Windows)."""
        delete_peer_target_name(self, peer)

    def impersonate_peer(self, peer: Peer | None = None) -> contextlib.AbstractContextManager[None]:
        """secsock.impersonate_peer() on this socket (Windows): ``with conn.impersonate_peer(): ...``."""
        return impersonate_peer(self, peer)

    @classmethod
    def secure_listener(
        cls,
        address: tuple[Any, ...],
        settings: SecuritySettings | IpsecSettings | None = None,
        *,
        family: socket.AddressFamily = socket.AF_INET,
        backlog: int | None = None,
    ) -> SecureSocket:
        """A listening TCP socket that requires security, in the order of Microsoft's sample: set_security
        before bind, then bind and listen. Windows only (UnsupportedOperation on Linux)."""
        sock = cls(family, socket.SOCK_STREAM)
        try:
            sock.set_security(settings)
            sock.bind(address)
            sock.listen() if backlog is None else sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    @classmethod
    def secure_connect(
        cls,
        address: tuple[Any, ...],
        target_name: str | None,
        settings: SecuritySettings | IpsecSettings | None = None,
        *,
        family: socket.AddressFamily = socket.AF_INET,
        timeout: float | None = None,
    ) -> SecureSocket:
        """A TCP connection that requires security, in the order of Microsoft's sample: set_security and the
        server's target name (SPN; None to skip) before connect.

        Windows only (UnsupportedOperation on Linux)."""
        if target_name is not None and not isinstance(target_name, str):
            # Refused before any system call, like every other bad argument.
            raise TypeError(f"target_name: expected a str or None, not {type(target_name).__name__}")
        sock = cls(family, socket.SOCK_STREAM)
        try:
            sock.set_security(settings)
            if target_name is not None:
                protocol = (
                    SecurityProtocol.IPSEC
                    if isinstance(settings, IpsecSettings)
                    else (settings.protocol if settings is not None else SecurityProtocol.DEFAULT)
                )
                sock.set_peer_target_name(target_name, protocol=protocol)
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    @classmethod
    def create_server(
        cls,
        address: tuple[Any, ...],
        *,
        require: Requirement | None,
        family: socket.AddressFamily = socket.AF_INET,
        backlog: int | None = None,
        reuse_port: bool = False,
        dualstack_ipv6: bool = False,
    ) -> SecureSocket:
        """socket.create_server() as a SecureSocket whose accept() refuses connections that do not meet
        ``require`` (a secsock.Requirement; None: accept all): each is closed, logged at INFO on the
        ``secsock`` logger, and accept() waits for the next, so the caller only ever gets connections that
        passed. A peer that disconnected before its query is dropped the same way (logged at INFO); any other
        query that fails is raised from accept() (the connection closed). A timeout restarts after each
        refused connection; a non-blocking listener raises BlockingIOError when nothing else is queued.
        asyncio's selector loops call accept() too (the query runs on the loop's thread; on Windows it
        blocks it); the proactor loop (Windows) does not, so it would let everyone in: use
        Requirement.guard there."""
        if require is not None and not isinstance(require, Requirement):
            raise TypeError(f"require: expected a secsock.Requirement or None, not {type(require).__name__}")
        listener = cls.from_socket(
            socket.create_server(
                address, family=family, backlog=backlog, reuse_port=reuse_port, dualstack_ipv6=dualstack_ipv6
            )
        )
        listener._requirement = require
        return listener

    def accept(self) -> tuple[SecureSocket, Any]:
        """Accept a connection as a SecureSocket (socket.socket.accept() would return a plain socket).
        On a create_server() listener, only a connection that meets its requirement."""
        requirement = getattr(self, "_requirement", None)
        while True:
            fd, address = self._accept()  # type: ignore[attr-defined]
            conn = SecureSocket(self.family, self.type, self.proto, fileno=fd)
            # As socket.socket.accept: a listener with a timeout must not leave the new socket non-blocking.
            if socket.getdefaulttimeout() is None and self.gettimeout():
                conn.setblocking(True)
            if requirement is None:
                return conn, address
            try:
                if admit(conn, address, requirement):
                    return conn, address
            except BaseException:
                conn.close()
                raise
            conn.close()

    def dup(self) -> SecureSocket:
        """socket.dup() as a SecureSocket; a create_server() listener's copy keeps its requirement."""
        copy: SecureSocket = super().dup()
        copy._requirement = getattr(self, "_requirement", None)
        return copy

    @classmethod
    def from_socket(cls, sock: socket.socket) -> SecureSocket:
        """Adopt a socket made elsewhere: sock is detached (left closed) and its descriptor moves over, with
        its timeout and, from a create_server() listener, its requirement."""
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock: expected a socket.socket, not {type(sock).__name__}")
        if isinstance(sock, cls):
            return sock
        if sock.fileno() < 0:
            raise SocketClosedError(errno.EBADF, "SecureSocket.from_socket: sock is closed")
        timeout = sock.gettimeout()
        requirement = getattr(sock, "_requirement", None)
        family, type_, proto = sock.family, sock.type, sock.proto
        adopted = cls(family, type_, proto, fileno=sock.detach())
        adopted.settimeout(timeout)
        adopted._requirement = requirement
        return adopted

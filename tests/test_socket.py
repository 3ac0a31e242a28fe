"""SecureSocket (issue 2, item 5) and query_async on loops without a proactor (item 4)."""

from __future__ import annotations

import asyncio
import socket

import pytest

import secsock
from fakes import FakeBackend


def test_accept_returns_a_secure_socket_and_queries_it(fake_backend: FakeBackend) -> None:
    with secsock.SecureSocket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            conn, address = listener.accept()
            with conn:
                assert type(conn) is secsock.SecureSocket
                assert address == client.getsockname()
                conn.query_security(token_access=4)
                assert fake_backend.queries == [(conn.fileno(), None, 4, False)]


def test_accept_keeps_socket_semantics_for_timeouts() -> None:
    with secsock.SecureSocket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(5)
        with socket.create_connection(listener.getsockname()):
            conn, _ = listener.accept()
            with conn:
                # As socket.socket.accept: a listener with a timeout hands out a blocking socket.
                assert conn.gettimeout() is None


def test_from_socket_adopts_the_descriptor(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = tcp_pair
    fd, timeout = server.fileno(), 2.5
    server.settimeout(timeout)
    adopted = secsock.SecureSocket.from_socket(server)
    with adopted:
        assert adopted.fileno() == fd and server.fileno() == -1
        assert adopted.gettimeout() == timeout
        assert (adopted.family, adopted.type) == (socket.AF_INET, socket.SOCK_STREAM)
        assert secsock.SecureSocket.from_socket(adopted) is adopted


def test_from_socket_rejects_what_it_cannot_adopt() -> None:
    with pytest.raises(TypeError, match=r"sock: expected a socket\.socket"):
        secsock.SecureSocket.from_socket(3)  # type: ignore[arg-type]
    closed = socket.socket()
    closed.close()
    with pytest.raises(OSError, match="sock is closed"):
        secsock.SecureSocket.from_socket(closed)


def test_query_async_runs_in_a_worker_on_a_selector_loop(fake_backend: FakeBackend) -> None:
    fake_backend.result = (1, 3, 0, 0, None, None, None)

    async def main() -> secsock.SecurityInfo:
        return await secsock.query_async(11, token_access=2)

    info = asyncio.run(main())
    assert info.encrypted and fake_backend.queries == [(11, None, 2, False)]


def test_query_async_checks_arguments_before_leaving_the_loop(no_system_call: None) -> None:
    with pytest.raises(ValueError, match="token_access"):
        asyncio.run(secsock.query_async(3, token_access=-1))

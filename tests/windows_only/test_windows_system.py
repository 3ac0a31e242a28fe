"""Against the real WSAQuerySocketSecurity on Windows (the GitHub Actions Windows jobs run this file).

A GitHub runner has no IPsec policy on loopback, so every connection here is a real "in the clear" case:
the call succeeds, SECURED is not set and no token is returned.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile

import pytest

import secsock
from secsock import SecurityProtocol

TOKEN_QUERY = 0x0008
WSAENOTSOCK = 10038


def assert_in_the_clear(info: secsock.SecurityInfo) -> None:
    assert isinstance(info.protocol, SecurityProtocol)
    assert not info.secured and not info.encrypted
    assert info.peer_application_token is None and info.peer_machine_token is None


def test_loopback_tcp_is_in_the_clear_on_both_ends(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    for sock in (client, server):
        with secsock.query(sock) as info:
            assert_in_the_clear(info)
            assert info.ipsec is None


def test_raw_handle_and_socket_give_the_same_answer(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = tcp_pair
    assert secsock.query(server.fileno()).flags == secsock.query(server).flags


def test_asking_for_tokens_on_a_clear_connection_returns_none(tcp_pair: tuple[socket.socket, ...]) -> None:
    with secsock.query(tcp_pair[1], token_access=TOKEN_QUERY) as info:
        assert_in_the_clear(info)


def test_ipsec2_query_succeeds_and_decodes_either_shape(tcp_pair: tuple[socket.socket, ...]) -> None:
    with secsock.query(tcp_pair[1], ipsec2=True) as info:
        assert_in_the_clear(info)
        if info.protocol is SecurityProtocol.IPSEC2:
            assert info.mm_sa_id is not None and info.sa_lookup_context is not None
        else:
            assert info.mm_sa_id is None and info.sa_lookup_context is None


def test_ipv6_loopback(tcp6_pair: tuple[socket.socket, socket.socket]) -> None:
    for sock in tcp6_pair:
        assert_in_the_clear(secsock.query(sock))


def test_begin_query_waits_on_the_event(tcp_pair: tuple[socket.socket, ...]) -> None:
    with secsock.begin_query(tcp_pair[1]) as pending:
        assert isinstance(pending.event, int) and pending.event != 0
        assert pending.wait(10)
        assert pending.done()
        assert_in_the_clear(pending.result())
        with pytest.raises(ValueError):
            pending.result()  # a result is taken once
    assert pending.closed
    with pytest.raises(ValueError, match="closed"):
        pending.done()


def test_secure_socket_accepts_and_queries() -> None:
    with secsock.SecureSocket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            conn, _ = listener.accept()
            with conn:
                assert_in_the_clear(conn.query_security())
                with conn.begin_query() as pending:
                    assert_in_the_clear(pending.result(timeout=10))


def test_udp_with_peer_and_without(udp_pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = udp_pair
    host, port = b.getsockname()
    assert_in_the_clear(secsock.query(a, peer=(host, port)))
    with pytest.raises(ValueError, match="peer"):
        secsock.query(a)
    with pytest.raises(ValueError, match="peer"):
        secsock.query(a, peer=("::1", port))


def test_a_handle_that_is_not_a_socket_is_wsaenotsock() -> None:
    import msvcrt

    with tempfile.TemporaryFile() as file:
        handle = msvcrt.get_osfhandle(file.fileno())
        with pytest.raises(OSError) as caught:
            secsock.query(handle)
    assert caught.value.winerror == WSAENOTSOCK


def test_proactor_loop_gets_no_stray_completion(caplog: pytest.LogCaptureFixture) -> None:
    """The socket is bound to asyncio's completion port; the query must not post a packet there."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert hasattr(loop, "_proactor")
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        async with server:
            listener = server.sockets[0]
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, listener.getsockname())  # associates sock with the IOCP
            with sock:
                for _ in range(20):
                    assert_in_the_clear(await secsock.query_async(sock))
                # Real I/O on the same socket afterwards still completes normally.
                await loop.sock_sendall(sock, b"x")
                await loop.sock_recv(sock, 1)

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_query_async_on_a_selector_loop(tcp_pair: tuple[socket.socket, ...]) -> None:
    loop = asyncio.SelectorEventLoop()
    try:
        assert_in_the_clear(loop.run_until_complete(secsock.query_async(tcp_pair[1])))
    finally:
        loop.close()


def test_a_long_peer_target_name_is_accepted() -> None:
    """Review of issue 11, finding 7: the SOCKET_PEER_TARGET_NAME page says PeerTargetNameStringLen is in
    bytes, Microsoft's sample sets it to wcslen (characters). secsock sends bytes. A system reading characters
    would need twice the bytes for this 40-character name and refuse it (WSAEMSGSIZE, as the double's
    DBL_VAR_TARGET_NAME_CHARS shows): this call on real Windows settles which reading holds. The socket is
    set up as the sample's client does it, security first, before connect."""
    name = "host/" + "a" * 23 + ".example.org"
    assert len(name) == 40
    with socket.socket() as sock:
        secsock.set_security(sock)
        secsock.set_peer_target_name(sock, name)

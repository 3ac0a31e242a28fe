"""Enforcement and asyncio over the real Linux backend (issue 13, items 1 and 3): loopback in this
namespace is in the clear, so every demand for security is refused and the refusal names it."""

from __future__ import annotations

import asyncio
import logging
import socket
import socketserver
import struct
import sys
import time
from typing import Any

import pytest

import secsock
from secsock import _query

pytestmark = pytest.mark.netns


def test_require_refuses_cleartext_loopback(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(secsock.NotSecuredError) as caught:
        secsock.require(tcp_pair[1], encrypted=True)
    assert caught.value.demand == "secured" and caught.value.info is not None
    assert not caught.value.info.secured
    with secsock.require(tcp_pair[1], secured=False) as info:
        assert info.protocol is secsock.SecurityProtocol.IPSEC and not info.secured


def test_member_of_is_unsupported_on_linux() -> None:
    with pytest.raises(secsock.UnsupportedOperation, match="member_of"):
        secsock.Requirement(member_of="S-1-5-32-544")


def test_create_server_refuses_cleartext_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=secsock.Requirement()) as listener:
        listener.settimeout(0.5)
        with socket.create_connection(listener.getsockname()) as client:
            with caplog.at_level(logging.INFO, logger="secsock"):
                with pytest.raises(socket.timeout):
                    listener.accept()  # the one connection was refused; nothing else came
            client.settimeout(10)
            assert client.recv(1) == b""
    assert any("refused" in r.message and "not secured" in r.message for r in caplog.records)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(16))
    await writer.drain()
    writer.close()


async def _exchange(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    await writer.drain()
    try:
        data = await reader.read(16)
    except ConnectionResetError:  # a refusal closes with "ping" unread: the kernel answers with a reset
        data = b""
    writer.close()
    return data


def test_guard_refuses_before_the_handler_and_admits_what_passes() -> None:
    calls: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        calls.append("handled")
        await _echo(reader, writer)

    async def main() -> tuple[bytes, bytes]:
        strict = await asyncio.start_server(secsock.Requirement().guard(handler), "127.0.0.1", 0)
        lax = await asyncio.start_server(secsock.Requirement(secured=False).guard(handler), "127.0.0.1", 0)
        async with strict, lax:
            refused = await _exchange(strict.sockets[0].getsockname()[1])
            admitted = await _exchange(lax.sockets[0].getsockname()[1])
        return refused, admitted

    assert asyncio.run(main()) == (b"", b"ping")
    assert calls == ["handled"]


def test_query_async_takes_a_socket_a_transport_or_a_stream_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Inline on Linux: no thread, not even the executor's.
    def no_executor(*args: object) -> None:
        pytest.fail("query_async used the executor on Linux")

    monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", no_executor)
    answers: list[secsock.SecurityInfo] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answers.append(await secsock.query_async(writer))
        answers.append(await secsock.query_async(writer.transport))
        answers.append(await secsock.query_async(writer.get_extra_info("socket")))
        with pytest.raises(secsock.NotSecuredError):
            await secsock.require_async(writer)
        answers.append(await secsock.require_async(writer, secured=False))
        await _echo(reader, writer)

    async def main() -> bytes:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        async with server:
            return await _exchange(server.sockets[0].getsockname()[1])

    assert asyncio.run(main()) == b"ping"
    assert len(answers) == 4 and all(not info.secured for info in answers)


def test_query_async_refuses_a_transport_without_a_socket() -> None:
    class NoSocket:
        def get_extra_info(self, name: str) -> None:
            return None

    with pytest.raises(ValueError, match="has no socket"):
        asyncio.run(secsock.query_async(NoSocket()))


def test_query_async_outside_asyncio_needs_no_loop(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    # What trio and anyio see on Linux: a coroutine that never suspends, driven by hand here.
    coroutine = secsock.query_async(tcp_pair[1])
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    assert isinstance(done.value.value, secsock.SecurityInfo)
    assert _query.BACKEND == "linux"


def _reset_connection(address: tuple[str, int]) -> None:
    """Connect to address and leave at once with a reset (SO_LINGER 0): the server's query finds no peer."""
    client = socket.create_connection(address)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def test_create_server_drops_a_peer_that_reset_before_the_query(caplog: pytest.LogCaptureFixture) -> None:
    # The query's getpeername fails with ENOTCONN: accept() drops that connection and returns the next.
    with secsock.SecureSocket.create_server(
        ("127.0.0.1", 0), require=secsock.Requirement(secured=False)
    ) as listener:
        listener.settimeout(10)
        _reset_connection(listener.getsockname())
        time.sleep(0.2)  # the reset has reached the accept queue before the next connection comes
        with socket.create_connection(listener.getsockname()) as admitted:
            with caplog.at_level(logging.INFO, logger="secsock"):
                conn, address = listener.accept()
            conn.close()
            assert address == admitted.getsockname()
    assert any("dropped" in r.message and "disconnected" in r.message for r in caplog.records)


def test_guard_drops_a_peer_that_reset_before_the_query(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        calls.append("handled")
        await _echo(reader, writer)

    async def main() -> bytes:
        server = await asyncio.start_server(secsock.Requirement(secured=False).guard(handler), "127.0.0.1", 0)
        async with server:
            _reset_connection(server.sockets[0].getsockname())
            await asyncio.sleep(0.2)
            return await _exchange(server.sockets[0].getsockname()[1])

    with caplog.at_level(logging.INFO):
        assert asyncio.run(main()) == b"ping"
    assert calls == ["handled"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no "Unhandled exception in ..."
    assert any(r.name == "secsock" and "dropped" in r.message for r in caplog.records)


def test_socketserver_mixin_drops_a_peer_that_reset_before_the_query() -> None:
    errors: list[Any] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            errors.append("handled")

    class Server(secsock.RequireSecurityMixIn, socketserver.TCPServer):
        requirement = secsock.Requirement(secured=False)

        def handle_error(self, request: Any, client_address: Any) -> None:
            errors.append(sys.exc_info()[1])

    with Server(("127.0.0.1", 0), Handler) as server:
        _reset_connection(server.server_address)
        time.sleep(0.2)
        server.handle_request()
    assert errors == []  # neither handled nor a traceback through handle_error


def test_cli_json_names_no_protocol_for_cleartext_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from secsock.__main__ import main

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert main(["probe", "127.0.0.1", str(port), "--require", "none", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["secured"] is False and record["protocol"] is None and "protocol" in record


def _query_loopback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()) as client, listener.accept()[0] as conn:
            secsock.query(conn).close()
            assert client.fileno() >= 0


def test_debug_log_shows_snapshot_reloads_and_namespace_switches(caplog: pytest.LogCaptureFixture) -> None:
    from linux_netns import Netns

    ns = Netns("upkeep")
    try:
        with caplog.at_level(logging.DEBUG, logger="secsock"):
            _query_loopback()  # the snapshot is this namespace's now (loaded, or already)
            ns.call(_query_loopback)  # a socket in another namespace: the snapshot moves there, and back
            _query_loopback()
    finally:
        ns.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "secsock"]
    assert any(m.startswith("namespace switch:") for m in messages), messages
    assert any(m.startswith("snapshot reload:") for m in messages), messages


def test_the_upkeep_counters_are_read_only_while_debug_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[object] = []
    monkeypatch.setattr(_query, "_log_backend_upkeep", reads.append)
    logger = logging.getLogger("secsock")
    for level, expected in ((logging.INFO, []), (logging.DEBUG, [_query._COMPILED])):
        logger.setLevel(level)
        try:
            _query_loopback()  # the extension's direct path
        finally:
            logger.setLevel(logging.NOTSET)
        assert reads == expected


def test_a_logger_disabled_after_debug_was_remembered_reads_no_counters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The query reads isEnabledFor's memo first (issue 14, speed): a remembered True must not skip the call,
    # which also says False for a disabled logger.
    reads: list[object] = []
    monkeypatch.setattr(_query, "_log_backend_upkeep", reads.append)
    logger = logging.getLogger("secsock")
    logger.setLevel(logging.DEBUG)
    try:
        _query_loopback()
        assert reads == [_query._COMPILED] and logger._cache.get(logging.DEBUG) is True
        monkeypatch.setattr(logger, "disabled", True)
        _query_loopback()
    finally:
        logger.setLevel(logging.NOTSET)
    assert reads == [_query._COMPILED]

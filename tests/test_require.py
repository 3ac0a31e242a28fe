"""Enforcement (issue 13, item 1): require(), Requirement, NotSecuredError and one base for every exception,
through the facade over recording backends."""

from __future__ import annotations

import errno
import logging
import pickle
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import secsock
from fakes import FakeBackend

CLEAR = (1, 0, 0, 0, None, None, None)
SECURED = (1, 1, 0, 0, None, None, None)
ENCRYPTED = (1, 3, 0, 0, None, None, None)


class MemberBackend(FakeBackend):
    """A Windows-like double: the answer carries tokens; token_is_member answers from `members`."""

    BACKEND = "windows-double"

    def __init__(self) -> None:
        super().__init__((1, 3, 0x10, 0x20, None, None, None))
        self.members: dict[int, set[str]] = {0x10: {"CORP\\Payroll"}}
        self.membership_checks: list[tuple[int, str]] = []

    def token_is_member(self, handle: int, group: str) -> bool:
        self.membership_checks.append((handle, group))
        return group in self.members.get(handle, set())

    def token_user(self, handle: int) -> tuple[str, str]:
        return ("S-1-5-21-1-2-3-1001", "CORP\\alice")


@pytest.fixture
def member_backend(monkeypatch: pytest.MonkeyPatch) -> MemberBackend:
    from secsock import _extension

    backend = MemberBackend()
    monkeypatch.setattr(_extension, "backend", backend)
    return backend


def test_the_exceptions_secsock_decides_itself_are_secsock_errors_and_keep_their_builtin_base() -> None:
    for error, builtin in (
        (secsock.UnsupportedPlatformError, OSError),
        (secsock.UnsupportedOperation, OSError),
        (secsock.NotSecuredError, PermissionError),
        (secsock.SocketClosedError, OSError),
        (secsock.QueryTimeoutError, TimeoutError),
    ):
        assert issubclass(error, secsock.Error) and issubclass(error, builtin)
    exported = [getattr(secsock, name) for name in secsock.__all__]
    errors = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseException)]
    assert errors and all(issubclass(error, secsock.Error) for error in errors)
    # An OSError subclass still takes (errno, message) as before.
    exc = secsock.UnsupportedOperation(errno.EOPNOTSUPP, "no")
    assert exc.errno == errno.EOPNOTSUPP and str(exc) == f"[Errno {errno.EOPNOTSUPP}] no"  # 10045 on Windows


def test_a_closed_socket_is_a_secsock_error_with_ebadf(no_system_call: None) -> None:
    closed = socket.socket()
    closed.close()
    for call in (secsock.query, secsock.begin_query, secsock.SecureSocket.from_socket):
        with pytest.raises(secsock.SocketClosedError) as caught:
            call(closed)
        assert isinstance(caught.value, OSError) and caught.value.errno == errno.EBADF


def test_a_result_that_times_out_is_a_secsock_error_and_a_timeout_error() -> None:
    class InFlight:
        def wait(self, timeout_ms: int) -> bool:
            return False

    with pytest.raises(secsock.QueryTimeoutError) as caught:
        secsock.PendingQuery(InFlight()).result(timeout=0.01)
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, secsock.Error)


def test_a_failed_system_call_stays_the_builtin_os_error_it_is(fake_backend: FakeBackend) -> None:
    # As the socket module: the builtin OSError subclass with the system's errno (winerror on Windows);
    # secsock does not re-wrap what the system said.
    fail_queries(fake_backend, ConnectionResetError(errno.ECONNRESET, "reset"))
    with pytest.raises(ConnectionResetError) as caught:
        secsock.query(7)
    assert type(caught.value) is ConnectionResetError and not isinstance(caught.value, secsock.Error)


@pytest.mark.parametrize(
    ("result", "kwargs", "demand"),
    [
        (CLEAR, {}, "secured"),
        (CLEAR, {"encrypted": True}, "secured"),
        (CLEAR, {"secured": False, "encrypted": True}, "secured"),
        (SECURED, {"encrypted": True}, "encrypted"),
    ],
)
def test_require_names_the_demand_that_failed(
    fake_backend: FakeBackend, result: tuple[Any, ...], kwargs: dict[str, Any], demand: str
) -> None:
    fake_backend.result = result
    with pytest.raises(secsock.NotSecuredError) as caught:
        secsock.require(7, **kwargs)
    exc = caught.value
    assert exc.demand == demand and isinstance(exc, PermissionError) and exc.errno == errno.EACCES
    assert exc.info is not None and int(exc.info.flags) == result[1]
    assert "not secured" in str(exc) if demand == "secured" else "not encrypted" in str(exc)
    assert not str(exc).startswith("[Errno")


@pytest.mark.parametrize(
    ("result", "kwargs"),
    [(SECURED, {}), (ENCRYPTED, {"encrypted": True}), (CLEAR, {"secured": False})],
)
def test_require_returns_the_answer_when_the_demand_is_met(
    fake_backend: FakeBackend, result: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    fake_backend.result = result
    info = secsock.require(7, **kwargs)
    assert isinstance(info, secsock.SecurityInfo) and int(info.flags) == result[1]
    assert fake_backend.queries == [(7, None, 0, False)]  # no tokens asked for without member_of


def test_require_passes_the_udp_peer_on(fake_backend: FakeBackend) -> None:
    fake_backend.result = SECURED
    secsock.require(7, peer=("192.0.2.1", 500))
    assert fake_backend.queries[0][1] == (False, bytes([192, 0, 2, 1]), 500, 0, 0)


def test_member_of_checks_the_peer_application_token(member_backend: MemberBackend) -> None:
    with secsock.require(7, encrypted=True, member_of="CORP\\Payroll") as info:
        assert info.peer_application_token is not None
    # TOKEN_QUERY | TOKEN_DUPLICATE: what CheckTokenMembership on a duplicate needs.
    assert member_backend.queries == [(7, None, 0x000A, False)]
    assert member_backend.membership_checks == [(0x10, "CORP\\Payroll")]
    assert sorted(member_backend.closed_tokens) == [0x10, 0x20]


def test_member_of_refuses_a_peer_outside_the_group_and_closes_its_tokens(
    member_backend: MemberBackend,
) -> None:
    with pytest.raises(secsock.NotSecuredError) as caught:
        secsock.require(7, member_of="CORP\\Admins")
    assert caught.value.demand == "member_of"
    assert "CORP\\alice" in str(caught.value) and "CORP\\Admins" in str(caught.value)
    assert sorted(member_backend.closed_tokens) == [0x10, 0x20]
    info = caught.value.info
    assert info is not None and info.peer_application_token is not None
    assert info.peer_application_token.closed


def test_member_of_without_a_peer_token_is_refused(member_backend: MemberBackend) -> None:
    member_backend.result = (1, 3, 0, 0, None, None, None)
    with pytest.raises(secsock.NotSecuredError, match="no peer application token") as caught:
        secsock.require(7, member_of="S-1-5-32-544")
    assert caught.value.demand == "member_of" and member_backend.membership_checks == []


def test_member_of_on_linux_is_unsupported_before_any_system_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from secsock import _extension

    class LinuxUntouchable:
        BACKEND = "linux"

        def __getattr__(self, name: str) -> Any:
            pytest.fail(f"the backend was reached ({name})")

    monkeypatch.setattr(_extension, "backend", LinuxUntouchable())
    with pytest.raises(secsock.UnsupportedOperation, match="member_of cannot be checked on Linux"):
        secsock.require(7, member_of="wheel")
    with pytest.raises(secsock.UnsupportedOperation):
        secsock.Requirement(member_of="wheel")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"secured": 1}, TypeError, "secured"),
        ({"encrypted": "yes"}, TypeError, "encrypted"),
        ({"member_of": 5}, TypeError, "member_of"),
        ({"member_of": ""}, ValueError, "member_of"),
        ({"member_of": "a\0b"}, ValueError, "member_of"),
    ],
)
def test_bad_demands_are_refused_before_any_system_call(
    no_system_call: None, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        secsock.require(7, **kwargs)


def test_requirement_is_immutable_and_compares_by_value() -> None:
    a, b = secsock.Requirement(encrypted=True), secsock.Requirement(True, True, None)
    assert a == b and hash(a) == hash(b) and a != secsock.Requirement()
    with pytest.raises(AttributeError):
        a.encrypted = False  # type: ignore[misc]


def test_not_secured_error_pickles_with_its_demand_and_answer(fake_backend: FakeBackend) -> None:
    fake_backend.result = SECURED
    with pytest.raises(secsock.NotSecuredError) as caught:
        secsock.require(7, encrypted=True)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is secsock.NotSecuredError and copy.demand == "encrypted"
    assert str(copy) == str(caught.value) and copy.errno == errno.EACCES
    assert copy.info is not None and copy.info.flags == secsock.ConnectionFlags.SECURED


def test_secure_socket_require_security(fake_backend: FakeBackend) -> None:
    fake_backend.result = SECURED
    with secsock.SecureSocket() as sock:
        assert sock.require_security().secured
        with pytest.raises(secsock.NotSecuredError):
            sock.require_security(encrypted=True)
        assert [query[0] for query in fake_backend.queries] == [sock.fileno()] * 2


class ScriptedBackend(FakeBackend):
    """Answers each query with the next result of `script` (connections in order)."""

    def __init__(self, script: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self.script = list(script)

    def query(self, *request: Any) -> tuple[Any, ...]:
        self.queries.append(request)
        return self.script.pop(0)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedBackend]:
    from secsock import _extension

    backend = ScriptedBackend([CLEAR, ENCRYPTED])
    monkeypatch.setattr(_extension, "backend", backend)
    yield backend


def test_create_server_refuses_before_accept_returns(scripted: ScriptedBackend) -> None:
    with secsock.SecureSocket.create_server(
        ("127.0.0.1", 0), require=secsock.Requirement(encrypted=True)
    ) as listener:
        listener.settimeout(10)
        refused = socket.create_connection(listener.getsockname())
        admitted = socket.create_connection(listener.getsockname())
        with refused, admitted:
            conn, address = listener.accept()  # the first connection is refused and closed inside
            with conn:
                assert type(conn) is secsock.SecureSocket and address == admitted.getsockname()
                refused.settimeout(10)
                assert refused.recv(1) == b""  # closed by the server without a word
        assert len(scripted.queries) == 2


def test_create_server_without_a_requirement_accepts_everything(no_system_call: None) -> None:
    with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=None) as listener:
        with socket.create_connection(listener.getsockname()):
            conn, _ = listener.accept()
            conn.close()
    with pytest.raises(TypeError, match="require"):
        secsock.SecureSocket.create_server(("127.0.0.1", 0), require="encrypted")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(errno.EPERM, "no CAP_NET_ADMIN"),
        OSError(errno.ENOMEM, "no memory"),
        OSError(errno.EBADMSG, "a netlink message the backend cannot read"),
    ],
)
def test_create_server_raises_a_failed_query_and_closes_the_connection(
    fake_backend: FakeBackend, error: OSError
) -> None:
    fail_queries(fake_backend, error)
    with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=secsock.Requirement()) as listener:
        with socket.create_connection(listener.getsockname()) as client:
            with pytest.raises(OSError) as caught:
                listener.accept()
            assert caught.value is error
            client.settimeout(10)
            assert client.recv(1) == b""


def winsock_error(code: int, errno_value: int) -> OSError:
    """An OSError as Windows raises it, with winerror (which only Windows' constructor sets)."""
    error = OSError(errno_value, f"winsock error {code}")
    error.winerror = code  # type: ignore[attr-defined]
    return error


PEER_GONE = [
    OSError(errno.ENOTCONN, "getpeername failed"),
    ConnectionResetError(errno.ECONNRESET, "reset"),
    ConnectionAbortedError(errno.ECONNABORTED, "aborted"),
    BrokenPipeError(errno.EPIPE, "broken pipe"),
    winsock_error(10057, errno.ENOTCONN),  # WSAENOTCONN
    winsock_error(10054, errno.ECONNRESET),  # WSAECONNRESET
    winsock_error(10053, errno.ECONNABORTED),  # WSAECONNABORTED
]


@pytest.mark.parametrize("error", PEER_GONE)
def test_peer_gone_names_only_a_peer_that_disconnected(error: OSError) -> None:
    from secsock._server import peer_gone

    assert peer_gone(error)
    assert not peer_gone(OSError(errno.EPERM, "denied"))
    assert not peer_gone(winsock_error(5, errno.ECONNRESET))  # ERROR_ACCESS_DENIED: the winerror decides
    assert not peer_gone(ValueError("not an OSError"))


@pytest.mark.parametrize("error", PEER_GONE[:2])
def test_create_server_drops_a_peer_that_left_and_accepts_the_next(
    scripted: ScriptedBackend, error: OSError, caplog: pytest.LogCaptureFixture
) -> None:
    answers = [error, ENCRYPTED]

    def query(*request: Any) -> tuple[Any, ...]:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    scripted.query = query  # type: ignore[method-assign]
    with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=secsock.Requirement()) as listener:
        listener.settimeout(10)
        with socket.create_connection(listener.getsockname()) as gone:
            with socket.create_connection(listener.getsockname()) as admitted:
                with caplog.at_level(logging.INFO, logger="secsock"):
                    conn, address = listener.accept()
                conn.close()
                assert address == admitted.getsockname()
                gone.settimeout(10)
                assert gone.recv(1) == b""  # closed
    assert any("dropped" in r.message for r in caplog.records)


class Echo(socketserver.BaseRequestHandler):
    seen: ClassVar[list[Any]] = []

    def handle(self) -> None:
        Echo.seen.append(self.client_address)
        if isinstance(self.request, tuple):
            data, sock = self.request
            sock.sendto(data, self.client_address)
        else:
            self.request.sendall(self.request.recv(16))


class EncryptedTCPServer(secsock.RequireSecurityMixIn, socketserver.TCPServer):
    requirement = secsock.Requirement(encrypted=True)


def serve_one(server: socketserver.BaseServer) -> threading.Thread:
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    return thread


def assert_refused(server: socketserver.TCPServer) -> None:
    """One connection to server is closed without a word and no handler runs for it."""
    seen = list(Echo.seen)
    thread = serve_one(server)
    with socket.create_connection(server.server_address, timeout=10) as client:
        assert client.recv(16) == b""
    thread.join(10)
    assert Echo.seen == seen


def fail_queries(backend: FakeBackend, error: OSError) -> None:
    def failing(*request: Any) -> tuple[Any, ...]:
        raise error

    backend.query = failing  # type: ignore[method-assign]


def test_socketserver_mixin_refuses_before_the_handler(scripted: ScriptedBackend) -> None:
    Echo.seen = []
    with EncryptedTCPServer(("127.0.0.1", 0), Echo) as server:
        assert_refused(server)
        thread = serve_one(server)
        with socket.create_connection(server.server_address, timeout=10) as admitted:
            admitted.sendall(b"ping")
            assert admitted.recv(16) == b"ping"
        thread.join(10)
        assert len(Echo.seen) == 1


class SecuredUDPServer(secsock.RequireSecurityMixIn, socketserver.UDPServer):
    pass


def test_socketserver_mixin_checks_each_datagram_with_its_sender_as_peer(scripted: ScriptedBackend) -> None:
    Echo.seen = []
    with SecuredUDPServer(("127.0.0.1", 0), Echo) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(10)
            for _ in range(2):
                thread = serve_one(server)
                client.sendto(b"ping", server.server_address)
                thread.join(10)
            assert client.recv(16) == b"ping"  # only the second datagram was answered
            host, port = client.getsockname()
        assert [query[1][2] for query in scripted.queries] == [port, port]
        assert Echo.seen == [(host, port)]


def test_socketserver_mixin_refuses_when_the_query_fails(fake_backend: FakeBackend) -> None:
    errors: list[Any] = []

    class Server(secsock.RequireSecurityMixIn, socketserver.TCPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            import sys

            errors.append(sys.exc_info()[0])

    fail_queries(fake_backend, PermissionError(errno.EPERM, "no CAP_NET_ADMIN"))
    Echo.seen = []
    with Server(("127.0.0.1", 0), Echo) as server:
        assert_refused(server)
    assert errors == [PermissionError]


class AdoptingListener(secsock.SecureSocket):
    pass


COPIES = {
    "dup": lambda listener: listener.dup(),
    "from_socket": lambda listener: AdoptingListener.from_socket(listener.dup()),
}


@pytest.mark.parametrize("copy_of", COPIES.values(), ids=COPIES.keys())
def test_a_copy_of_a_refusing_listener_refuses_too(scripted: ScriptedBackend, copy_of: Any) -> None:
    requirement = secsock.Requirement(encrypted=True)
    with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=requirement) as original:
        with copy_of(original) as copy:
            assert isinstance(copy, secsock.SecureSocket) and copy._requirement == requirement
            copy.settimeout(10)
            with socket.create_connection(original.getsockname()) as refused:
                with socket.create_connection(original.getsockname()) as admitted:
                    conn, address = copy.accept()  # CLEAR is refused through the copy too
                    conn.close()
                    assert address == admitted.getsockname()
                    refused.settimeout(10)
                    assert refused.recv(1) == b""


class RecordingWriter:
    """A StreamWriter's surface as guard uses it, recording close() and wait_closed()."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls: list[str] = []

    def get_extra_info(self, name: str) -> Any:
        return {"socket": self.sock, "peername": ("192.0.2.1", 1)}.get(name)

    def close(self) -> None:
        self.calls.append("close")

    async def wait_closed(self) -> None:
        self.calls.append("wait_closed")


def test_guard_takes_a_plain_callback_and_waits_for_a_refused_connection_to_close(
    scripted: ScriptedBackend,
) -> None:
    import asyncio

    handled: list[Any] = []

    def plain(reader: Any, writer: Any) -> None:  # start_server accepts a plain function too
        handled.append(writer)

    guarded = secsock.Requirement(encrypted=True).guard(plain)
    with socket.socket() as sock:
        refused, admitted = RecordingWriter(sock), RecordingWriter(sock)
        asyncio.run(guarded(None, refused))  # type: ignore[arg-type]  # CLEAR
        asyncio.run(guarded(None, admitted))  # type: ignore[arg-type]  # ENCRYPTED
    assert refused.calls == ["close", "wait_closed"]
    assert handled == [admitted] and admitted.calls == []


def test_not_secured_error_with_tokens_pickles_without_them(member_backend: MemberBackend) -> None:
    with pytest.raises(secsock.NotSecuredError) as caught:
        secsock.require(7, member_of="CORP\\Sales")
    info = caught.value.info
    assert info is not None and info.peer_application_token is not None  # closed, but still there
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.demand == "member_of" and copy.info is not None
    assert copy.info.peer_application_token is None and copy.info.peer_machine_token is None
    assert copy.info.flags == info.flags
    assert info.peer_application_token is not None  # the original keeps its (closed) tokens


def test_a_token_refuses_pickling_and_copying_with_a_clear_type_error(fake_backend: FakeBackend) -> None:
    import copy

    token = secsock.Token(0x10)
    try:
        for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
            with pytest.raises(TypeError, match=r"cannot pickle or copy a secsock\.Token"):
                attempt(token)
    finally:
        token.close()


def test_encrypted_without_secured_is_refused_as_not_secured(fake_backend: FakeBackend) -> None:
    # ConnectionFlags.ENCRYPTED alone (no SECURED bit): encrypted=True demands secured first, so it names
    # "secured"; secured=False demands nothing and passes it.
    fake_backend.result = (1, 2, 0, 0, None, None, None)
    with pytest.raises(secsock.NotSecuredError) as caught:
        secsock.require(7, encrypted=True)
    assert caught.value.demand == "secured" and caught.value.info is not None
    assert caught.value.info.flags == secsock.ConnectionFlags.ENCRYPTED and not caught.value.info.secured
    with secsock.require(7, secured=False) as info:
        assert info.flags == secsock.ConnectionFlags.ENCRYPTED
    with pytest.raises(secsock.NotSecuredError, match="not secured"):
        secsock.require(7)


def test_a_non_blocking_refusing_listener_raises_blocking_io_error_after_a_refusal(
    scripted: ScriptedBackend,
) -> None:
    import select

    with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=secsock.Requirement()) as listener:
        listener.setblocking(False)
        with socket.create_connection(listener.getsockname()) as refused:
            assert select.select([listener], [], [], 10)[0] == [listener]
            with pytest.raises(BlockingIOError):
                listener.accept()  # woken for a connection it refused (CLEAR): nothing left to accept
            refused.settimeout(10)
            assert refused.recv(1) == b""

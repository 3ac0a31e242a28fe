"""Enforcement (issue 13, item 1): require(), Requirement, NotSecuredError and one base for every exception,
through the facade over recording backends."""

from __future__ import annotations

import errno
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


def test_every_exception_of_the_package_is_a_secsock_error_and_keeps_its_builtin_base() -> None:
    assert issubclass(secsock.UnsupportedPlatformError, secsock.Error)
    assert issubclass(secsock.UnsupportedPlatformError, OSError)
    assert issubclass(secsock.UnsupportedOperation, secsock.Error)
    assert issubclass(secsock.UnsupportedOperation, OSError)
    assert issubclass(secsock.NotSecuredError, secsock.Error)
    assert issubclass(secsock.NotSecuredError, PermissionError)
    exported = [getattr(secsock, name) for name in secsock.__all__]
    errors = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseException)]
    assert errors and all(issubclass(error, secsock.Error) for error in errors)
    # An OSError subclass still takes (errno, message) as before.
    exc = secsock.UnsupportedOperation(errno.EOPNOTSUPP, "no")
    assert exc.errno == errno.EOPNOTSUPP and str(exc) == "[Errno 95] no"


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


def test_create_server_raises_a_failed_query_and_closes_the_connection(fake_backend: FakeBackend) -> None:
    fail_queries(fake_backend, ConnectionResetError(errno.ECONNRESET, "reset"))
    with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=secsock.Requirement()) as listener:
        with socket.create_connection(listener.getsockname()) as client:
            with pytest.raises(ConnectionResetError):
                listener.accept()
            client.settimeout(10)
            assert client.recv(1) == b""


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

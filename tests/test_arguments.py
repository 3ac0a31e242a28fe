"""Bad arguments get a clear exception naming the argument, before any system call (issue 2, item 6)."""

from __future__ import annotations

import errno
import socket

import pytest

import secsock
from fakes import FakeBackend


def test_object_without_fileno_is_a_type_error_naming_sock(no_system_call: None) -> None:
    with pytest.raises(TypeError, match="sock: expected a socket"):
        secsock.query(object())


def test_bool_is_not_a_socket_handle(no_system_call: None) -> None:
    with pytest.raises(TypeError, match="sock"):
        secsock.query(True)


def test_negative_handle_is_a_value_error(no_system_call: None) -> None:
    with pytest.raises(ValueError, match="sock: a socket handle cannot be negative"):
        secsock.query(-5)


def test_closed_socket_is_ebadf(no_system_call: None) -> None:
    sock = socket.socket()
    sock.close()
    with pytest.raises(OSError, match="sock is closed") as caught:
        secsock.query(sock)
    assert caught.value.errno == errno.EBADF


def test_fileno_returning_a_non_int_is_a_type_error(no_system_call: None) -> None:
    class Odd:
        def fileno(self) -> str:
            return "3"

    with pytest.raises(TypeError, match="fileno"):
        secsock.query(Odd())


@pytest.mark.parametrize("token_access", [-1, 1 << 32, 2**64])
def test_token_access_outside_32_bits(no_system_call: None, token_access: int) -> None:
    with pytest.raises(ValueError, match="token_access: must be from 0 to 0xFFFFFFFF"):
        secsock.query(3, token_access=token_access)


def test_token_access_of_the_wrong_type(no_system_call: None) -> None:
    with pytest.raises(TypeError, match="token_access"):
        secsock.query(3, token_access="all")  # type: ignore[arg-type]


def test_ipsec2_must_be_a_bool(no_system_call: None) -> None:
    with pytest.raises(TypeError, match="ipsec2"):
        secsock.query(3, ipsec2=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        ("127.0.0.1", "peer: expected \\(host, port\\)"),
        (("127.0.0.1",), "peer: expected \\(host, port\\)"),
        (("127.0.0.1", 1, 2), "peer: expected \\(host, port\\)"),
        (("example.org", 80), "not a numeric IPv4 or IPv6 address"),
        ((b"127.0.0.1", 80), "the host must be a str"),
        (("127.0.0.1", 70000), "peer: port must be an int from 0 to 65535"),
        (("127.0.0.1", -1), "peer: port must be"),
        (("127.0.0.1", True), "peer: port must be"),
        (("127.0.0.1", 80, 0, 0), "flowinfo and scope_id apply to IPv6 addresses only"),
        (("::1", 80, 1 << 20, 0), "peer: flowinfo must be"),
        (("fe80::1%1", 80, 0, 2), "not both"),
        (("fe80::1%no-such-interface0", 80), "no network interface named"),
        (("fe80::1%4294967296", 80), "peer: the scope id 4294967296 does not fit in 32 bits"),
    ],
)
def test_bad_peer_is_a_value_error_naming_peer(no_system_call: None, peer: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        secsock.query(3, peer=peer)  # type: ignore[arg-type]


def test_good_peers_reach_the_backend_packed(fake_backend: FakeBackend) -> None:
    secsock.query(7, peer=("192.0.2.1", 500))
    secsock.query(7, peer=("2001:db8::1", 4500, 5, 2))
    secsock.query(7, peer=("fe80::1%3", 1))
    peers = [request[1] for request in fake_backend.queries]
    assert peers[0] == (False, socket.inet_pton(socket.AF_INET, "192.0.2.1"), 500, 0, 0)
    assert peers[1] == (True, socket.inet_pton(socket.AF_INET6, "2001:db8::1"), 4500, 5, 2)
    assert peers[2] == (True, socket.inet_pton(socket.AF_INET6, "fe80::1"), 1, 0, 3)


def test_request_passes_handle_access_and_ipsec2(
    fake_backend: FakeBackend, tcp_pair: tuple[socket.socket, ...]
) -> None:
    client, _ = tcp_pair
    secsock.query(client, token_access=0x8, ipsec2=True)
    assert fake_backend.queries == [(client.fileno(), None, 0x8, True)]


@pytest.mark.parametrize("timeout", [-1, float("nan"), "1"])
def test_bad_wait_timeout(fake_backend: FakeBackend, timeout: object) -> None:
    pending = secsock.PendingQuery(object())
    with pytest.raises((ValueError, TypeError), match="timeout"):
        pending.wait(timeout)  # type: ignore[arg-type]


def test_an_infinite_wait_timeout_means_forever(fake_backend: FakeBackend) -> None:
    waited: list[int] = []

    class Raw:
        def wait(self, timeout_ms: int) -> bool:
            waited.append(timeout_ms)
            return True

    assert secsock.PendingQuery(Raw()).wait(float("inf"))
    assert waited == [-1]


def test_secure_connect_refuses_a_bad_target_name_before_any_call(no_system_call: None) -> None:
    with pytest.raises(TypeError, match="target_name: expected a str or None"):
        secsock.SecureSocket.secure_connect(("127.0.0.1", 9), 5)  # type: ignore[arg-type]

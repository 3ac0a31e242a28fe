"""Every bad input the public API can receive, in one place, with the exact exception and a message fragment
naming the argument (issue 5). tests/test_arguments.py holds the first of these; this is the whole catalogue.

Two tables:
- FACADE: rejected by the Python facade before any system call (the ``no_system_call`` fixture fails the test
  if the backend is even looked at);
- BACKEND: arguments whose fault only the socket itself can show (its family, type, state), that
  the C module checks, or that the facade checks while it builds the backend call's arguments (after it has
  looked the backend up); each is rejected before the kernel's XFRM state is read: no privilege needed.
Every entry is a callable of ``env`` (sockets from the conftest fixtures) and runs in a fresh test.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import secsock
from fakes import FilenoBool, FilenoClosed, FilenoNotCallable, FilenoStr, NoFileno
from fresh_process import run_child
from handles import open_handles
from secsock import SecurityProtocol


@dataclass
class Env:
    tcp: socket.socket  # connected TCP client (IPv4)
    tcp6: socket.socket  # connected TCP client (IPv6)
    udp: socket.socket  # bound, unconnected UDP (IPv4)
    closed: socket.socket  # a socket already closed


@pytest.fixture
def env(
    tcp_pair: tuple[socket.socket, socket.socket],
    tcp6_pair: tuple[socket.socket, socket.socket],
    udp_pair: tuple[socket.socket, socket.socket],
) -> Iterator[Env]:
    closed = socket.socket()
    closed.close()
    yield Env(tcp=tcp_pair[0], tcp6=tcp6_pair[0], udp=udp_pair[0], closed=closed)


def closed_token() -> secsock.Token:
    token = secsock.Token(0x1234)
    token.detach()  # closed without a CloseHandle, so no backend is needed
    return token


def closed_pending() -> secsock.PendingQuery:
    class Raw:
        closed = True

        def __getattr__(self, name: str) -> Any:
            raise ValueError("operation on a closed pending query")

    return secsock.PendingQuery(Raw())


def case(call: Callable[[Env], Any], exc: type[BaseException], match: str, id: str, marks: Any = ()) -> Any:
    return pytest.param(call, exc, match, id=id, marks=marks)


# The socket argument (query, begin_query, query_async and every family call take it the same way).
SOCK = [
    case(lambda e: secsock.query(object()), TypeError, r"^sock: expected a socket", "sock-object"),
    case(lambda e: secsock.query(None), TypeError, r"^sock: expected a socket.*not NoneType", "sock-None"),
    case(lambda e: secsock.query("3"), TypeError, r"^sock: expected a socket.*not str", "sock-str"),
    case(lambda e: secsock.query(3.0), TypeError, r"^sock: expected a socket.*not float", "sock-float"),
    case(lambda e: secsock.query(True), TypeError, r"^sock: .*not bool", "sock-bool"),
    case(
        lambda e: secsock.query(-5),
        ValueError,
        r"^sock: a socket handle cannot be negative \(-5\)",
        "sock-neg",
    ),
    case(
        lambda e: secsock.query(NoFileno()),
        TypeError,
        r"^sock: expected a socket.*not NoFileno",
        "sock-nofileno",
    ),
    case(
        lambda e: secsock.query(FilenoNotCallable()),
        TypeError,
        r"^sock: expected a socket",
        "sock-fileno-attr",
    ),
    case(
        lambda e: secsock.query(FilenoStr()),
        TypeError,
        r"^sock: fileno\(\) returned str, not int",
        "fileno-str",
    ),
    case(lambda e: secsock.query(FilenoBool()), TypeError, r"^sock: fileno\(\) returned bool", "fileno-bool"),
    case(lambda e: secsock.query(FilenoClosed()), OSError, r"sock is closed", "fileno-negative"),
    case(lambda e: secsock.query(e.closed), OSError, r"sock is closed", "sock-closed"),
    case(lambda e: secsock.begin_query(e.closed), OSError, r"sock is closed", "begin-sock-closed"),
    case(
        lambda e: secsock.begin_query(object()), TypeError, r"^sock: expected a socket", "begin-sock-object"
    ),
    case(
        lambda e: asyncio.run(secsock.query_async(object())),
        TypeError,
        r"^sock: expected",
        "async-sock-object",
    ),
    case(
        lambda e: asyncio.run(secsock.query_async(e.closed)), OSError, r"sock is closed", "async-sock-closed"
    ),
]

PEER = [
    case(
        lambda e: secsock.query(e.udp, peer="127.0.0.1"), ValueError, r"^peer: expected \(host, port\)", "str"
    ),
    case(
        lambda e: secsock.query(e.udp, peer=["127.0.0.1", 80]),
        ValueError,
        r"^peer: expected \(host, port\)",
        "list",
    ),
    case(lambda e: secsock.query(e.udp, peer=("127.0.0.1",)), ValueError, r"^peer: expected", "1-tuple"),
    case(lambda e: secsock.query(e.udp, peer=("127.0.0.1", 1, 2)), ValueError, r"^peer: expected", "3-tuple"),
    case(lambda e: secsock.query(e.udp, peer=("::1", 1, 0, 0, 0)), ValueError, r"^peer: expected", "5-tuple"),
    case(
        lambda e: secsock.query(e.udp, peer=(b"127.0.0.1", 80)),
        ValueError,
        r"^peer: the host must be a str.*bytes",
        "host-bytes",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=(None, 80)),
        ValueError,
        r"^peer: the host must be a str.*NoneType",
        "host-None",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("example.org", 80)),
        ValueError,
        r"^peer: 'example.org' is not a numeric IPv4 or IPv6 address",
        "host-name",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("", 80)), ValueError, r"^peer: '' is not a numeric", "host-empty"
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("[::1]", 80)),
        ValueError,
        r"^peer: '\[::1\]' is not a numeric",
        "host-brackets",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("1.2.3.4%1", 80)),
        ValueError,
        r"^peer: '1.2.3.4%1' is not a numeric",
        "host-v4-scope",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("256.1.1.1", 80)),
        ValueError,
        r"^peer: '256.1.1.1' is not",
        "host-v4-range",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("127.0.0.1", 70000)),
        ValueError,
        r"^peer: port must be an int from 0 to 65535, not 70000",
        "port-big",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("127.0.0.1", -1)),
        ValueError,
        r"^peer: port must be.*not -1",
        "port-neg",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("127.0.0.1", True)),
        ValueError,
        r"^peer: port must be.*not True",
        "port-bool",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("127.0.0.1", 80.0)),
        ValueError,
        r"^peer: port must be.*not 80.0",
        "port-float",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("127.0.0.1", "80")),
        ValueError,
        r"^peer: port must be.*not '80'",
        "port-str",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("::1", 80, 1 << 20, 0)),
        ValueError,
        r"^peer: flowinfo must be an int from 0 to 1048575",
        "flowinfo-big",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("::1", 80, -1, 0)),
        ValueError,
        r"^peer: flowinfo must be",
        "flowinfo-neg",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("::1", 80, 0, 1 << 32)),
        ValueError,
        r"^peer: scope_id must be an int from 0 to 4294967295",
        "scope-big",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("::1", 80, 0, -1)),
        ValueError,
        r"^peer: scope_id must be",
        "scope-neg",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("::1", 80, 0, "1")),
        ValueError,
        r"^peer: scope_id must be",
        "scope-str",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("127.0.0.1", 80, 0, 0)),
        ValueError,
        r"^peer: flowinfo and scope_id apply to IPv6 addresses only",
        "v4-4-tuple",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("fe80::1%1", 80, 0, 2)),
        ValueError,
        r"^peer: give the IPv6 scope in the address or as scope_id, not both",
        "scope-twice",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("fe80::1%no-such-interface0", 80)),
        ValueError,
        r"^peer: no network interface named 'no-such-interface0'",
        "scope-unknown-name",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("fe80::1%4294967296", 80)),
        ValueError,
        r"^peer: the scope id 4294967296 does not fit in 32 bits",
        "scope-in-address-33-bits",
    ),
    case(lambda e: secsock.begin_query(e.udp, peer=("x", 1)), ValueError, r"^peer: 'x' is not", "begin"),
    case(
        lambda e: asyncio.run(secsock.query_async(e.udp, peer=("x", 1))),
        ValueError,
        r"^peer: 'x' is not",
        "async",
    ),
]

OPTIONS = [
    case(
        lambda e: secsock.query(e.tcp, token_access=-1),
        ValueError,
        r"^token_access: must be from 0 to 0xFFFFFFFF \(32 bits\), not -0x1",
        "access-neg",
    ),
    case(
        lambda e: secsock.query(e.tcp, token_access=1 << 32),
        ValueError,
        r"^token_access: must be from 0 to",
        "access-33-bits",
    ),
    case(
        lambda e: secsock.query(e.tcp, token_access=2**64),
        ValueError,
        r"^token_access: must be",
        "access-65-bits",
    ),
    case(
        lambda e: secsock.query(e.tcp, token_access="all"),
        TypeError,
        r"^token_access: expected an int access mask, not str",
        "access-str",
    ),
    case(
        lambda e: secsock.query(e.tcp, token_access=8.0),
        TypeError,
        r"^token_access: .*not float",
        "access-float",
    ),
    case(
        lambda e: secsock.query(e.tcp, token_access=None),
        TypeError,
        r"^token_access: .*not NoneType",
        "access-None",
    ),
    case(
        lambda e: secsock.query(e.tcp, token_access=True),
        TypeError,
        r"^token_access: .*not bool",
        "access-bool",
    ),
    case(
        lambda e: secsock.query(e.tcp, ipsec2=1),
        TypeError,
        r"^ipsec2: expected a bool, not int",
        "ipsec2-int",
    ),
    case(
        lambda e: secsock.query(e.tcp, ipsec2=None),
        TypeError,
        r"^ipsec2: expected a bool, not NoneType",
        "ipsec2-None",
    ),
    case(lambda e: secsock.query(e.tcp, ipsec2="yes"), TypeError, r"^ipsec2: .*not str", "ipsec2-str"),
    case(lambda e: secsock.begin_query(e.tcp, ipsec2=0), TypeError, r"^ipsec2:", "begin-ipsec2"),
    case(
        lambda e: secsock.query(e.udp, ("127.0.0.1", 9)),
        TypeError,
        r"takes 1 positional argument",
        "peer-positional",
    ),
    case(
        lambda e: secsock.query(e.tcp, bogus=1),
        TypeError,
        r"unexpected keyword argument 'bogus'",
        "unknown-kw",
    ),
    case(lambda e: secsock.query(), TypeError, r"missing 1 required positional argument: 'sock'", "no-sock"),
]

PENDING = [
    case(
        lambda e: secsock.PendingQuery(object()).wait(-1),
        ValueError,
        r"^timeout: must be non-negative, not -1",
        "wait-neg",
    ),
    case(
        lambda e: secsock.PendingQuery(object()).wait(float("nan")),
        ValueError,
        r"^timeout: must be non-negative",
        "wait-nan",
    ),
    case(
        lambda e: secsock.PendingQuery(object()).wait("1"),
        TypeError,
        r"^timeout: expected seconds as a number or None, not str",
        "wait-str",
    ),
    case(
        lambda e: secsock.PendingQuery(object()).wait(True), TypeError, r"^timeout: .*not bool", "wait-bool"
    ),
    case(
        lambda e: secsock.PendingQuery(object()).result(-0.5),
        ValueError,
        r"^timeout: must be non-negative",
        "result-neg",
    ),
    case(
        lambda e: secsock.PendingQuery(object()).result("1"), TypeError, r"^timeout: .*not str", "result-str"
    ),
    case(lambda e: closed_pending().done(), ValueError, r"closed pending query", "closed-done"),
    case(lambda e: closed_pending().result(), ValueError, r"closed pending query", "closed-result"),
]

TOKEN = [
    case(lambda e: secsock.Token(0), ValueError, r"^handle: 0 is not a token handle", "handle-0"),
    case(lambda e: secsock.Token(-1), ValueError, r"^handle: -1 is not a token handle", "handle-neg"),
    case(lambda e: secsock.Token(True), TypeError, r"^handle: expected an int, not bool", "handle-bool"),
    case(lambda e: secsock.Token(1.5), TypeError, r"^handle: expected an int, not float", "handle-float"),
    case(lambda e: secsock.Token("5"), TypeError, r"^handle: expected an int, not str", "handle-str"),
    case(lambda e: closed_token().handle, ValueError, r"operation on a closed token", "closed-handle"),
    case(lambda e: int(closed_token()), ValueError, r"operation on a closed token", "closed-int"),
    case(lambda e: closed_token().detach(), ValueError, r"operation on a closed token", "closed-detach"),
    case(lambda e: closed_token().__enter__(), ValueError, r"operation on a closed token", "closed-with"),
    case(
        lambda e: closed_token().is_member(544),
        TypeError,
        r"^sid_or_account: expected a str, not int",
        "is_member-int",
    ),
    case(
        lambda e: closed_token().is_member(""),
        ValueError,
        r"^sid_or_account: must be a non-empty",
        "is_member-empty",
    ),
    case(
        lambda e: closed_token().is_member("a\0b"),
        ValueError,
        r"^sid_or_account: must be a non-empty",
        "is_member-nul",
    ),
]

SETTINGS = [
    case(
        lambda e: secsock.SecuritySettings("ipsec"),
        TypeError,
        r"^protocol: expected a SecurityProtocol, not str",
        "protocol-str",
    ),
    case(lambda e: secsock.SecuritySettings(True), TypeError, r"^protocol: .*not bool", "protocol-bool"),
    case(
        lambda e: secsock.SecuritySettings(9),
        ValueError,
        r"^protocol: 9 is not a SecurityProtocol",
        "protocol-9",
    ),
    case(
        lambda e: secsock.SecuritySettings(SecurityProtocol.INVALID),
        ValueError,
        r"^protocol: INVALID is not a legal value",
        "protocol-INVALID",
    ),
    case(
        lambda e: secsock.SecuritySettings(flags=4),
        ValueError,
        r"^flags: 0x4 has bits SecuritySettingsFlags does not define",
        "flags-unknown-bit",
    ),
    case(lambda e: secsock.SecuritySettings(flags=-1), ValueError, r"^flags: ", "flags-neg"),
    case(
        lambda e: secsock.SecuritySettings(flags="1"),
        TypeError,
        r"^flags: expected SecuritySettingsFlags flags, not str",
        "flags-str",
    ),
    case(lambda e: secsock.SecuritySettings(flags=True), TypeError, r"^flags: .*not bool", "flags-bool"),
    case(lambda e: secsock.IpsecSettings(flags=8), ValueError, r"^flags: 0x8 has bits", "ipsec-flags"),
    case(
        lambda e: secsock.IpsecSettings(ipsec_flags=2),
        ValueError,
        r"^ipsec_flags: 0x2 has bits IpsecFlags does not define",
        "ipsec_flags-bit",
    ),
    case(
        lambda e: secsock.IpsecSettings(ipsec_flags=1.0),
        TypeError,
        r"^ipsec_flags: expected IpsecFlags flags",
        "ipsec_flags-float",
    ),
    case(
        lambda e: secsock.IpsecSettings(mm_policy_key="key"),
        TypeError,
        r"^mm_policy_key: expected a uuid.UUID or None, not str",
        "mm-key-str",
    ),
    case(
        lambda e: secsock.IpsecSettings(qm_policy_key=uuid.uuid4().bytes),
        TypeError,
        r"^qm_policy_key: expected a uuid.UUID or None, not bytes",
        "qm-key-bytes",
    ),
    case(
        lambda e: secsock.IpsecSettings(user=b"me"),
        TypeError,
        r"^user: expected a str or None, not bytes",
        "user-bytes",
    ),
    case(
        lambda e: secsock.IpsecSettings(domain=5),
        TypeError,
        r"^domain: expected a str or None, not int",
        "domain-int",
    ),
    case(
        lambda e: secsock.IpsecSettings(password="a\0b"),
        ValueError,
        r"^password: must not contain a NUL",
        "password-nul",
    ),
    case(
        lambda e: secsock.IpsecSettings(user="me\0"), ValueError, r"^user: must not contain a NUL", "user-nul"
    ),
]

FAMILY = [
    case(
        lambda e: secsock.set_security(e.tcp, "ipsec"),
        TypeError,
        r"^settings: expected SecuritySettings, IpsecSettings or None, not str",
        "set_security-settings",
    ),
    case(
        lambda e: secsock.set_security(object()), TypeError, r"^sock: expected a socket", "set_security-sock"
    ),
    case(lambda e: secsock.set_security(e.closed), OSError, r"sock is closed", "set_security-closed"),
    case(
        lambda e: secsock.set_peer_target_name(e.tcp, b"host/x"),
        TypeError,
        r"^name: expected a str, not bytes",
        "target-name-bytes",
    ),
    case(
        lambda e: secsock.set_peer_target_name(e.tcp, None),
        TypeError,
        r"^name: expected a str, not NoneType",
        "target-name-None",
    ),
    case(
        lambda e: secsock.set_peer_target_name(e.tcp, ""),
        ValueError,
        r"^name: the target name must be non-empty and hold no NUL",
        "target-name-empty",
    ),
    case(
        lambda e: secsock.set_peer_target_name(e.tcp, "a\0b"),
        ValueError,
        r"^name: the target name must be",
        "target-name-nul",
    ),
    case(
        lambda e: secsock.set_peer_target_name(object(), "host/x"),
        TypeError,
        r"^sock: expected",
        "target-name-sock",
    ),
    case(
        lambda e: secsock.delete_peer_target_name(e.udp, None),
        ValueError,
        r"^peer: required, the address whose target name is deleted",
        "delete-target-peer-None",
    ),
    case(
        lambda e: secsock.delete_peer_target_name(e.closed, ("127.0.0.1", 1)),
        OSError,
        r"sock is closed",
        "delete-target-closed",
    ),
    case(
        lambda e: secsock.impersonate_peer(object()).__enter__(),
        TypeError,
        r"^sock: expected",
        "impersonate-sock",
    ),
    case(
        lambda e: secsock.impersonate_peer(e.udp, peer="x").__enter__(),
        ValueError,
        r"^peer: expected",
        "impersonate-peer",
    ),
    case(
        lambda e: secsock.SecureSocket.from_socket(5),
        TypeError,
        r"^sock: expected a socket.socket, not int",
        "from_socket-int",
    ),
    case(
        lambda e: secsock.SecureSocket.from_socket(e.closed),
        OSError,
        r"from_socket: sock is closed",
        "from_socket-closed",
    ),
    case(
        lambda e: secsock.SecureSocket.secure_connect(("127.0.0.1", 9), 5),
        TypeError,
        r"^target_name: expected a str or None, not int",
        "secure_connect-target-name",
    ),
    case(
        lambda e: secsock.SecureSocket.secure_listener(("127.0.0.1", 0), "ipsec"),
        TypeError,
        r"^settings: expected",
        "secure_listener-settings",
    ),
]

FACADE = SOCK + PEER + OPTIONS + PENDING + TOKEN + SETTINGS + FAMILY


class RecordingRaw:
    """Stands in for the C pending query: records the timeouts wait() is asked for."""

    def __init__(self) -> None:
        self.timeouts: list[int] = []

    def wait(self, timeout_ms: int) -> bool:
        self.timeouts.append(timeout_ms)
        return True


@pytest.mark.parametrize(
    ("timeout", "expected"), [(float("inf"), -1), (None, -1), (1e300, 0x7FFFFFFF), (0, 0)]
)
def test_extreme_timeouts_are_not_bad_input(
    no_system_call: None, timeout: float | None, expected: int
) -> None:
    """An infinite or huge timeout waits forever or as long as the system can; it is not an error."""
    raw = RecordingRaw()
    assert secsock.PendingQuery(raw).wait(timeout) is True
    assert raw.timeouts == [expected]


@pytest.mark.parametrize(("call", "exc", "match"), FACADE)
def test_facade_rejects_before_any_system_call(
    no_system_call: None, env: Env, call: Callable[[Env], Any], exc: type[BaseException], match: str
) -> None:
    before = open_handles()
    with pytest.raises(exc, match=match) as caught:
        call(env)
    # Exactly that type, not a subclass standing in for it (an OSError subclass is fine for OSError).
    assert type(caught.value) is exc or (exc is OSError and isinstance(caught.value, OSError)), caught.value
    if exc is OSError:
        assert caught.value.errno == errno.EBADF
    # What the call made is freed with its traceback (a Token's lock is a semaphore handle on 3.9 Windows).
    del caught
    gc.collect()
    assert open_handles() == before, "a rejected call left a descriptor or handle open"


# --- checked by the C module or against the socket itself (Linux backend) --------------------------------


def unix_socket(e: Env) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        return secsock.query(sock)


def raw_socket(e: Env) -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        return secsock.query(sock)


def pipe_end(e: Env) -> Any:
    r, w = os.pipe()
    try:
        return secsock.query(r)
    finally:
        os.close(r)
        os.close(w)


def not_open(e: Env) -> Any:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return secsock.query(fd)


def unbound_udp(e: Env, peer: Any = None) -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return secsock.query(sock, peer=peer)


def unconnected_tcp(e: Env) -> Any:
    with socket.socket() as sock:
        return secsock.query(sock)


def listening_tcp(e: Env) -> Any:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return secsock.query(sock)


def connected_udp_other_peer(e: Env) -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", 9))
        return secsock.query(sock, peer=("127.0.0.2", 9))


def mapped_mixed(e: Env) -> Any:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind(("::ffff:127.0.0.1", 0))
        return secsock.query(sock, peer=("::1", 9))


def target_name_protocol(protocol: Any) -> Callable[[Env], Any]:
    # The protocol is checked while the backend call's arguments are built, before the call itself.
    return lambda e: secsock.set_peer_target_name(e.tcp, "host/x", protocol=protocol)


BACKEND = [
    case(unix_socket, ValueError, r"^sock: the socket's family is not AF_INET or AF_INET6", "family-unix"),
    case(
        raw_socket,
        ValueError,
        r"^sock: the socket's type is not SOCK_STREAM or SOCK_DGRAM",
        "type-raw",
        pytest.mark.net_raw,  # opening a SOCK_RAW socket needs CAP_NET_RAW
    ),
    case(pipe_end, OSError, r"Socket operation on non-socket", "not-a-socket"),
    case(not_open, OSError, r"Bad file descriptor", "not-open"),
    case(
        lambda e: secsock.query(1 << 40),
        OSError,
        r"^\[Errno 9\] sock: the socket descriptor 1099511627776 is not",
        "fd-beyond-int",
    ),
    case(
        lambda e: secsock.query(1 << 64),
        ValueError,
        r"^sock: the socket handle must be a non-negative integer",
        "fd-beyond-64-bits",
    ),
    case(
        unbound_udp,
        ValueError,
        r"^peer: peer is required for a datagram socket that is not connected",
        "udp-no-peer-unbound",
    ),
    case(
        lambda e: secsock.query(e.udp),
        ValueError,
        r"^peer: peer is required for a datagram socket",
        "udp-no-peer",
    ),
    case(
        lambda e: unbound_udp(e, ("127.0.0.1", 9)),
        ValueError,
        r"^sock: the socket has no local port yet: bind it",
        "udp-unbound",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("::1", 9)),
        ValueError,
        r"^peer: peer is an IPv6 address but the socket is AF_INET",
        "peer-family-v6",
    ),
    case(
        lambda e: secsock.query(e.tcp6, peer=("127.0.0.1", 9)),
        ValueError,
        r"^peer: peer is an IPv4 address but the socket is AF_INET6",
        "peer-family-v4",
    ),
    case(
        lambda e: secsock.query(e.udp, peer=("127.0.0.1", 0)),
        ValueError,
        r"^peer: peer has port 0",
        "peer-port-0",
    ),
    case(
        connected_udp_other_peer,
        ValueError,
        r"^peer: peer differs from the address the socket is connected to",
        "peer-not-the-connected-one",
    ),
    case(
        lambda e: secsock.query(e.tcp, peer=("127.0.0.1", 1)),
        ValueError,
        r"^peer: peer differs",
        "tcp-peer-differs",
    ),
    case(
        mapped_mixed,
        ValueError,
        r"^peer: the flow mixes an IPv4-mapped and a native IPv6 address",
        "v4-mapped-mixed",
        # The backend checks the flow after it has read the socket's namespace, which needs CAP_NET_ADMIN.
        pytest.mark.net_admin,
    ),
    case(unconnected_tcp, OSError, r"getpeername \(the socket is not connected\)", "tcp-not-connected"),
    case(listening_tcp, OSError, r"getpeername \(the socket is not connected\)", "tcp-listener"),
    case(
        target_name_protocol("ipsec"),
        TypeError,
        r"^protocol: expected a SecurityProtocol, not str",
        "target-protocol-str",
    ),
    case(target_name_protocol(9), ValueError, r"^protocol: 9 is not a SecurityProtocol", "target-protocol-9"),
    case(
        target_name_protocol(SecurityProtocol.INVALID),
        ValueError,
        r"^protocol: INVALID is not a legal value",
        "target-protocol-INVALID",
    ),
    case(
        lambda e: secsock.set_peer_target_name(e.udp, "host/x", ("x", 1)),
        ValueError,
        r"^peer: 'x' is not",
        "target-peer",
    ),
    case(
        lambda e: secsock.delete_peer_target_name(e.udp, ("x", 1)),
        ValueError,
        r"^peer: 'x' is not",
        "delete-target-peer",
    ),
    # A closed token's handle is read while the backend call's arguments are built.
    case(lambda e: closed_token().user, ValueError, r"operation on a closed token", "closed-user"),
    case(lambda e: closed_token().groups, ValueError, r"operation on a closed token", "closed-groups"),
    case(
        lambda e: closed_token().is_member("S-1-5-32-544"),
        ValueError,
        r"operation on a closed token",
        "closed-is_member",
    ),
]

# What the Windows backend refuses the same way (it runs on Windows CPython too, against the double); the rest
# are the Linux backend's own checks and errnos (Windows': tests/windows_double), run on Linux only.
SHARED_WITH_WINDOWS = {
    "fd-beyond-64-bits",
    "peer-family-v6",
    "peer-family-v4",
    "target-protocol-str",
    "target-protocol-9",
    "target-protocol-INVALID",
    "target-peer",
    "delete-target-peer",
    # Not yet closed-user/groups/is_member: they pass on Windows CPython 3.13, but on 3.9 under pytest the
    # handle count after the call is one above the one before (not so in a plain loop): to be explained first.
}
BACKEND = [
    param
    if param.id in SHARED_WITH_WINDOWS
    else pytest.param(*param.values, id=param.id, marks=[*param.marks, pytest.mark.linux])
    for param in BACKEND
]

BACKEND_ERRNO = {
    "not-a-socket": errno.ENOTSOCK,
    "not-open": errno.EBADF,
    "fd-beyond-int": errno.EBADF,
    "tcp-not-connected": errno.ENOTCONN,
    "tcp-listener": errno.ENOTCONN,
}


@pytest.mark.parametrize(("call", "exc", "match"), BACKEND)
def test_backend_rejects(
    request: pytest.FixtureRequest, env: Env, call: Callable[[Env], Any], exc: type[BaseException], match: str
) -> None:
    before = open_handles()
    with pytest.raises(exc, match=match) as caught:
        call(env)
    name = request.node.callspec.id
    if exc is OSError:
        assert caught.value.errno == BACKEND_ERRNO[name], caught.value
    else:
        assert type(caught.value) is exc, caught.value
    assert open_handles() == before, "a rejected call left a descriptor or handle open"


def test_catalogue_ids_are_unique() -> None:
    ids = [param.id for param in FACADE + BACKEND]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


# --- anything at all: never a crash, never an exception type outside the documented ones -------------------


def random_value(rng: Any, depth: int = 0) -> Any:
    choices: list[Callable[[], Any]] = [
        lambda: rng.choice([0, 1, 2, -1, 3, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, -(2**63)]),
        lambda: rng.randrange(-(2**70), 2**70),
        lambda: rng.choice(
            ["", "127.0.0.1", "::1", "fe80::1%1", "fe80::1%4294967295", "x" * 300, "1.2.3.4\0"]
        ),
        lambda: rng.choice([b"", b"\x7f\0\0\1", b"\0" * 16]),
        lambda: rng.choice([0.0, -1.5, float("nan"), float("inf"), 1e300]),
        lambda: rng.choice([None, True, False, object(), [], {}, FilenoStr(), FilenoBool(), FilenoClosed()]),
    ]
    if depth < 2:
        choices.append(lambda: tuple(random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))))
    return rng.choice(choices)()


# On Linux it needs CAP_NET_ADMIN: an answer is one of the outcomes it requires, and without the capability
# every well-formed query is a PermissionError. On Windows it runs as it is.
@pytest.mark.net_admin
def test_random_arguments_never_crash(env: Env) -> None:
    """3,000 calls with random arguments (seeded): each ends in an answer or a documented exception type."""
    import random

    rng = random.Random(20261124)
    seen: dict[str, int] = {}
    sockets = [env.tcp, env.tcp6, env.udp, env.closed]
    for _ in range(3000):
        sock = rng.choice(sockets) if rng.random() < 0.5 else random_value(rng)
        kwargs = {}
        if rng.random() < 0.7:
            kwargs["peer"] = (
                random_value(rng)
                if rng.random() < 0.5
                else (rng.choice(["127.0.0.1", "::1", "10.0.0.1"]), random_value(rng))
            )
        if rng.random() < 0.3:
            kwargs["token_access"] = random_value(rng)
        if rng.random() < 0.3:
            kwargs["ipsec2"] = rng.choice([True, False, random_value(rng)])
        call = rng.choice([secsock.query, secsock.begin_query])
        try:
            result = call(sock, **kwargs)
            result.close()
            outcome = "answer"
        except (TypeError, ValueError, OSError) as exc:
            outcome = type(exc).__name__
            # Every TypeError/ValueError names the argument it is about.
            if not isinstance(exc, OSError):
                assert str(exc).split(":")[0] in {"sock", "peer", "token_access", "ipsec2"}, exc
        seen[outcome] = seen.get(outcome, 0) + 1
    print(seen)  # the spread, for -s
    assert seen.get("answer", 0) > 0 and seen.get("ValueError", 0) > 0 and seen.get("TypeError", 0) > 0, seen


def test_facade_reproducers_still_run_and_pass() -> None:
    """hardening/repro/facade.py (the bugs this catalogue came from) must keep running: it swaps the backend
    for stand-ins through secsock._extension, so a move of that seam breaks it here, not silently."""
    script = Path(__file__).resolve().parent.parent / "hardening" / "repro" / "facade.py"
    argv = [sys.executable, str(script)]
    done = run_child(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == 3, done.stdout

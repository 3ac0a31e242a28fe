"""query(sock) in one call to the extension (issue 5): _secsock.query_info answers the per-connection case
whole, builds the facade's own SecurityInfo, and declines (None, no system call) everything else, which then
meets the facade's checks exactly as before. Also SecurityInfoBase, the C home of SecurityInfo's fields."""

from __future__ import annotations

import copy
import errno
import gc
import pickle
import socket
import uuid
from typing import Any

import pytest

import secsock
from fakes import FilenoBool, FilenoNotCallable, FilenoStr, NoFileno
from secsock import _query, _secsock
from secsock._types import SecurityInfo

FIELDS = (
    "protocol",
    "flags",
    "peer_application_token",
    "peer_machine_token",
    "mm_sa_id",
    "qm_sa_id",
    "negotiation_error",
    "sa_lookup_context",
    "ipsec",
    "reason",
)


class _IntSub(int):
    pass


class FilenoIntSubclass:
    def fileno(self) -> int:
        return _IntSub(3)


def _via_query_info(sock: Any) -> Any:
    return _secsock.query_info(sock, None, 0, False)


# The one-call path's two entries: query_info (it checks every argument) and query_sock (sock alone: query()
# checks the others itself and passes one object, issue 14's clear-answer speed). Each must answer the same.
ONE_CALL = [
    pytest.param(_via_query_info, id="query_info"),
    pytest.param(_secsock.query_sock, id="query_sock"),
]


def _closed_socket() -> socket.socket:
    sock = socket.socket()
    sock.close()
    return sock


# Each sock the one-call path leaves to the facade, with what the facade then raises (before any system call).
DECLINED_SOCKS: list[tuple[str, Any, type[BaseException], str]] = [
    ("no fileno", NoFileno(), TypeError, "sock: expected a socket"),
    ("fileno not callable", FilenoNotCallable(), TypeError, "sock: expected a socket"),
    ("fileno returns str", FilenoStr(), TypeError, "sock: fileno.. returned str"),
    ("fileno returns bool", FilenoBool(), TypeError, "sock: fileno.. returned bool"),
    ("bool", True, TypeError, "sock: .* not bool"),
    ("negative int", -5, ValueError, "sock: a socket handle cannot be negative"),
    ("closed socket", _closed_socket(), OSError, "sock is closed"),
]


@pytest.mark.parametrize(
    ("sock", "exc", "match"), [case[1:] for case in DECLINED_SOCKS], ids=[case[0] for case in DECLINED_SOCKS]
)
@pytest.mark.parametrize("one_call", ONE_CALL)
def test_a_sock_that_is_not_plain_is_declined_and_gets_the_facades_error(
    sock: Any, exc: type[BaseException], match: str, one_call: Any
) -> None:
    assert one_call(sock) is None
    with pytest.raises(exc, match=match):
        secsock.query(sock)


@pytest.mark.parametrize("one_call", ONE_CALL)
def test_an_int_subclass_is_declined_for_the_facade_to_take(one_call: Any) -> None:
    assert one_call(FilenoIntSubclass()) is None
    assert one_call(_IntSub(3)) is None


@pytest.mark.parametrize("one_call", ONE_CALL)
def test_a_handle_too_large_for_the_extension_is_declined(one_call: Any) -> None:
    assert one_call(2**70) is None


@pytest.mark.parametrize("one_call", ONE_CALL)
def test_fileno_raising_propagates_as_the_general_path_would_let_it(one_call: Any) -> None:
    class Broken:
        def fileno(self) -> int:
            raise OSError(errno.EIO, "fileno broke")

    with pytest.raises(OSError, match="fileno broke"):
        one_call(Broken())
    with pytest.raises(OSError, match="fileno broke"):
        secsock.query(Broken())


@pytest.mark.parametrize(
    ("peer", "token_access", "ipsec2"),
    [
        (("127.0.0.1", 9), 0, False),
        (None, 1, False),
        (None, False, False),  # bool is not an access mask: the facade says so
        (None, 0.0, False),
        (None, 0, True),
        (None, 0, 0),
        (None, 0, None),
    ],
)
def test_any_argument_besides_sock_is_declined(
    tcp_pair: tuple[socket.socket, socket.socket], peer: Any, token_access: Any, ipsec2: Any
) -> None:
    assert _secsock.query_info(tcp_pair[0], peer, token_access, ipsec2) is None


def test_the_wrong_number_of_arguments_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="query_info"):
        _secsock.query_info(3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="query_sock"):
        _secsock.query_sock(3, None)  # type: ignore[call-arg]


@pytest.mark.net_admin
@pytest.mark.parametrize("pair", ["tcp_pair", "tcp6_pair"])
@pytest.mark.parametrize("one_call", ONE_CALL)
def test_the_one_call_answer_is_the_general_paths_answer(
    pair: str, one_call: Any, request: pytest.FixtureRequest
) -> None:
    client, server = request.getfixturevalue(pair)
    for sock in (client, server, server.fileno()):
        fast = one_call(sock)
        fd = sock if isinstance(sock, int) else sock.fileno()
        general = _query._info_from_raw(_secsock.query(fd, None, 0, False))
        assert type(fast) is SecurityInfo
        for field in FIELDS:
            assert getattr(fast, field) == getattr(general, field), field
        assert repr(fast) == repr(general)
        # The enum members themselves, not equal ints: `info.protocol is SecurityProtocol.IPSEC` holds.
        assert type(fast.protocol) is secsock.SecurityProtocol
        assert type(fast.flags) is secsock.ConnectionFlags
        if secsock.BACKEND == "linux":
            assert fast.protocol is secsock.SecurityProtocol.IPSEC
            assert fast.ipsec is _query._IN_THE_CLEAR


@pytest.mark.net_admin
def test_query_takes_the_one_call_path_with_the_real_backend(
    tcp_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    def general_path_used(*args: Any) -> None:
        raise AssertionError("the general path was taken for sock alone")

    monkeypatch.setattr(_query, "_request", general_path_used)
    info = secsock.query(tcp_pair[1])
    assert isinstance(info, SecurityInfo) and not info.secured


def test_a_system_error_on_the_one_call_path_is_the_general_paths_oserror(tmp_path: Any) -> None:
    with open(tmp_path / "f", "w") as not_a_socket:
        with pytest.raises(OSError) as fast:
            secsock.query(not_a_socket)
        with pytest.raises(OSError) as general:
            _secsock.query(not_a_socket.fileno(), None, 0, False)
    assert type(fast.value) is type(general.value)
    assert fast.value.errno == general.value.errno != 0
    assert str(fast.value) == str(general.value)


# --- SecurityInfoBase -------------------------------------------------------------------------------------


def test_unset_fields_read_as_none_and_every_field_can_be_set_and_deleted() -> None:
    info = SecurityInfo.__new__(SecurityInfo)
    assert [getattr(info, field) for field in FIELDS] == [None] * len(FIELDS)
    for number, field in enumerate(FIELDS):
        setattr(info, field, number)
    assert [getattr(info, field) for field in FIELDS] == list(range(len(FIELDS)))
    del info.mm_sa_id
    assert info.mm_sa_id is None
    with pytest.raises(AttributeError):
        info.not_a_field = 1  # type: ignore[attr-defined]


def test_a_result_without_tokens_pickles_and_copies_field_for_field() -> None:
    sa = secsock.SecurityAssociation(
        secsock.IpsecProtocol.ESP, secsock.IpsecMode.TUNNEL, 0x1234, 1, None, None, "gcm"
    )
    info = SecurityInfo(
        secsock.SecurityProtocol.IPSEC2,
        secsock.ConnectionFlags.SECURED | secsock.ConnectionFlags.ENCRYPTED,
        mm_sa_id=1,
        qm_sa_id=2,
        negotiation_error=0,
        sa_lookup_context=uuid.UUID(int=5),
        ipsec=secsock.IpsecDetails((sa,), (sa,)),
    )
    for twin in (pickle.loads(pickle.dumps(info)), copy.copy(info)):
        assert type(twin) is SecurityInfo and twin is not info
        assert [getattr(twin, field) for field in FIELDS] == [getattr(info, field) for field in FIELDS]
        assert repr(twin) == repr(info)


def test_a_result_in_a_reference_cycle_is_collected() -> None:
    collected = []

    class Marker:
        def __del__(self) -> None:
            collected.append(True)

    info = SecurityInfo(secsock.SecurityProtocol.IPSEC, secsock.ConnectionFlags(0))
    info.ipsec = [info, Marker()]  # type: ignore[assignment]
    assert gc.is_tracked(info)
    del info
    gc.collect()
    assert collected == [True]


def _bind_args(cls: Any = SecurityInfo, protocols: Any = None, flags: Any = None) -> tuple[Any, ...]:
    return (
        cls,
        tuple(secsock.SecurityProtocol(v) for v in range(4)) if protocols is None else protocols,
        tuple(_query._FLAGS[v] for v in range(8)) if flags is None else flags,
        _query._IN_THE_CLEAR,
        _query._info_from_raw,
        secsock.SecurityAssociation,
        _query._IPSEC_PROTOCOLS,
        _query._IPSEC_MODES,
    )


class WithDict(_secsock.SecurityInfoBase):
    pass


class WithField(_secsock.SecurityInfoBase):
    __slots__ = ("extra",)


class Unrelated:
    __slots__ = ()


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        (_bind_args(WithDict), TypeError),
        (_bind_args(WithField), TypeError),
        (_bind_args(Unrelated), TypeError),
        (_bind_args(object()), TypeError),
        (_bind_args(protocols=(1, 2, 3)), ValueError),
        (_bind_args(flags=tuple(range(9))), ValueError),
        (_bind_args(protocols=[0, 1, 2, 3]), TypeError),
        ((*_bind_args()[:3], (), *_bind_args()[4:]), TypeError),  # in_the_clear: not a pair
        ((*_bind_args()[:5], dict, *_bind_args()[6:]), TypeError),  # sa_cls: not a tuple class
        ((*_bind_args()[:6], {300: 1}, _query._IPSEC_MODES), ValueError),
        ((*_bind_args()[:7], {-1: 1}), ValueError),
    ],
)
def test_bind_results_refuses_what_query_info_could_not_fill(
    args: tuple[Any, ...], exc: type[BaseException]
) -> None:
    with pytest.raises(exc, match="bind_results"):
        _secsock.bind_results(*args)


@pytest.mark.net_admin
def test_a_refused_binding_keeps_the_one_in_place(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(TypeError):
        _secsock.bind_results(*_bind_args(WithDict))
    assert type(_secsock.query_info(tcp_pair[0], None, 0, False)) is SecurityInfo

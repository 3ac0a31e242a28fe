"""secsock.query is the extension's function (csrc/module/query_entry.c, issue 14: the answer's cost): it
answers sock alone in C and hands every other call, with its arguments as given, to the facade's general path
(secsock._query._general_query). These tests hold it to what the Python function it replaced promised: the
same signature and documentation, the same answers and errors, the tests' fakes honoured, the upkeep log."""

from __future__ import annotations

import inspect
import socket
import sys
from typing import Any

import pytest

import secsock
from fakes import FakeBackend, NoFileno
from secsock import _query, _secsock


def test_query_is_the_extensions_function_with_the_general_paths_signature() -> None:
    query: Any = secsock.query
    assert type(query).__name__ == "builtin_function_or_method"
    assert (query.__name__, query.__module__) == ("query", "secsock")
    assert query.__self__ is _secsock  # its state is this interpreter's module's
    documented = inspect.signature(query)
    general = inspect.signature(_query._general_query)
    assert str(documented) == "(sock, *, peer=None, token_access=0, ipsec2=False)"
    assert [(p.name, p.kind, p.default) for p in documented.parameters.values()] == [
        (p.name, p.kind, p.default) for p in general.parameters.values()
    ]
    assert query.__doc__.startswith("Ask the system how the traffic on sock is secured")
    assert "ipsec2" in query.__doc__ and "PermissionError" in query.__doc__


@pytest.mark.net_admin
@pytest.mark.parametrize(
    "keywords",
    [
        {},
        {"peer": None},
        {"token_access": 0},
        {"ipsec2": False},
        {"peer": None, "token_access": 0, "ipsec2": False},
    ],
)
def test_sock_with_default_keywords_is_answered_without_the_general_path(
    tcp_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch, keywords: dict[str, Any]
) -> None:
    # query_async passes every keyword with its default: that is the per-connection case too.
    def general_path_used(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(_query, "_request", general_path_used)
    info = secsock.query(tcp_pair[1], **keywords)
    assert isinstance(info, secsock.SecurityInfo) and not info.secured


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: secsock.query(), TypeError, r"query\(\) missing 1 required positional argument: 'sock'"),
        (lambda s: secsock.query(s, None), TypeError, r"query\(\) takes 1 positional argument but 2"),
        (
            lambda s: secsock.query(s, bogus=1),
            TypeError,
            r"query\(\) got an unexpected keyword argument 'bogus'",
        ),
        (lambda s: secsock.query(s, ipsec2=0), TypeError, "ipsec2: expected a bool, not int"),
        (
            lambda s: secsock.query(s, token_access=False),
            TypeError,
            "token_access: expected an int access mask",
        ),
        (lambda s: secsock.query(s, token_access=-1), ValueError, "token_access: must be from 0"),
        (lambda s: secsock.query(s, peer="127.0.0.1"), ValueError, "peer: expected"),
        (lambda s: secsock.query(NoFileno()), TypeError, "sock: expected a socket"),
    ],
)
def test_what_the_extension_does_not_answer_gets_the_general_paths_error(
    call: Any, error: type[Exception], message: str, no_system_call: None
) -> None:
    # no_system_call puts a fake in _extension.backend: every call here must be refused before reaching it.
    with pytest.raises(error, match=message):
        call(3)


def test_a_fake_backend_gets_even_sock_alone(fake_backend: FakeBackend) -> None:
    # The tests swap _extension.backend: the extension reads it on every call and leaves fakes to the facade.
    info = secsock.query(7)
    assert fake_backend.queries == [(7, None, 0, False)]
    assert info.protocol == secsock.SecurityProtocol.IPSEC


@pytest.mark.net_admin
def test_sock_by_keyword_is_answered_by_the_general_path(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    assert secsock.query(sock=tcp_pair[1]) == secsock.query(tcp_pair[1])


@pytest.mark.net_admin
def test_the_direct_path_keeps_no_reference_to_its_argument(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    sock = tcp_pair[1]
    before = sys.getrefcount(sock)
    for _ in range(100):
        secsock.query(sock)
        secsock.query(sock, peer=None)
    assert sys.getrefcount(sock) == before


def test_bind_query_binds_once_per_module() -> None:
    with pytest.raises(RuntimeError, match="already bound"):
        _secsock.bind_query(print, {}, {}, 10, print)
    with pytest.raises(TypeError, match="bind_query"):
        _secsock.bind_query(print, [], {}, 10, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be callable"):
        _secsock.bind_query(1, {}, {}, 10, print)  # type: ignore[arg-type]

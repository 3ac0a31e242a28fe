"""secsock.query is the extension's function (csrc/module/query_entry.c, issue 14: the answer's cost): it
answers sock alone in C and hands every other call, with its arguments as given, to the facade's general path
(secsock._query._general_query). These tests hold it to what the Python function it replaced promised: the
same signature and documentation, the same answers and errors, the tests' fakes honoured, the upkeep log."""

from __future__ import annotations

import inspect
import socket
import subprocess
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


@pytest.mark.net_admin
@pytest.mark.parametrize(
    "keywords",
    [
        {"token_access": 1},
        {"token_access": -1},
        {"token_access": True},
        {"ipsec2": True},
        {"ipsec2": 0},
        {"peer": ("127.0.0.1", 9)},
        {"bogus": None},
    ],
)
def test_any_keyword_but_its_default_goes_to_the_general_path_with_the_real_backend(
    tcp_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch, keywords: dict[str, Any]
) -> None:
    # With the real extension in _extension.backend the C keyword check decides alone: a value it took for
    # the default would be answered as sock alone (ipsec2=True without its fields: a wrong answer on Windows).
    taken: list[tuple[Any, ...]] = []
    request = _query._request

    def recorded(*args: Any) -> Any:
        taken.append(args)
        return request(*args)

    monkeypatch.setattr(_query, "_request", recorded)
    try:
        secsock.query(tcp_pair[1], **keywords)
    except (TypeError, ValueError, OSError):
        pass  # the general path's own verdict on the value
    if "bogus" in keywords:
        assert taken == []  # refused by the general path's signature, before its checks
    else:
        assert len(taken) == 1 and taken[0][0] is tcp_pair[1], taken


def test_a_reload_of_the_facade_binds_query_again() -> None:
    # importlib.reload(secsock._query) binds the reloaded general path to the same module (outside review of
    # i14-centry, item 3): before, the second bind raised and left query_async on the slow Python path.
    script = (
        "import importlib, inspect, secsock, secsock._query as q\n"
        "old = secsock.query\n"
        "importlib.reload(q)\n"
        "print(type(q.query).__name__, type(old).__name__, str(inspect.signature(q.query)))\n"
        "try:\n"
        "    old()\n"
        "except TypeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "builtin_function_or_method builtin_function_or_method"
        " (sock, *, peer=None, token_access=0, ipsec2=False)",
        "query() missing 1 required positional argument: 'sock'",
    ], done.stdout


def test_bind_query_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="bind_query"):
        _secsock.bind_query(print, [], {}, 10, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be callable"):
        _secsock.bind_query(1, {}, {}, 10, print)  # type: ignore[arg-type]

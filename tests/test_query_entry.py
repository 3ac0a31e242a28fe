"""secsock.query is the extension's function (csrc/module/query_entry.c, issue 14: the answer's cost): it
answers sock alone in C and hands every other call, with its arguments as given, to the facade's general path
(secsock._query._general_query). These tests hold it to what the Python function it replaced promised: the
same signature and documentation, the same answers and errors, the tests' fakes honoured, the upkeep log."""

from __future__ import annotations

import ctypes
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


def general_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The requests the general path makes from now on (_query._request's arguments), each still made."""
    taken: list[tuple[Any, ...]] = []
    request = _query._request

    def recorded(*args: Any) -> Any:
        taken.append(args)
        return request(*args)

    monkeypatch.setattr(_query, "_request", recorded)
    return taken


METH_VARARGS, METH_KEYWORDS, METH_O, METH_FASTCALL = 0x0001, 0x0002, 0x0008, 0x0080


def method_flags(function: Any) -> int:
    """The calling convention a builtin function was made with (PyCFunction_GetFlags: stable ABI)."""
    get_flags = ctypes.pythonapi.PyCFunction_GetFlags
    get_flags.argtypes = [ctypes.py_object]
    get_flags.restype = ctypes.c_int
    return int(get_flags(function))


def test_query_takes_its_arguments_without_a_tuple_where_the_stable_abi_allows() -> None:
    # METH_FASTCALL joined the stable ABI in 3.10 (issue 14, speed: the per-call tuple cost ~0.15x
    # getpeername); the wheel is built for 3.9's, so the entry picks its convention from sys.hexversion.
    assert method_flags(len) == METH_O  # the layout read above is the interpreter's
    expected = METH_FASTCALL if sys.version_info >= (3, 10) else METH_VARARGS
    assert method_flags(secsock.query) == expected | METH_KEYWORDS


# Run by an interpreter told it is 3.9 before the import: the 3.9 entry (METH_VARARGS) with the real backend.
AS_IF_39 = """
import ctypes, socket, sys
sys.hexversion = HEXVERSION
import secsock
from secsock import _query
get_flags = ctypes.pythonapi.PyCFunction_GetFlags
get_flags.argtypes = [ctypes.py_object]
print(hex(get_flags(secsock.query)))
listener = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname())
server = listener.accept()[0]
taken = []
request = _query._request
_query._request = lambda *args: taken.append(args) or request(*args)
answers = [secsock.query(server), secsock.query(server, peer=None, token_access=0, ipsec2=False)]
print(len(taken), answers[0] == answers[1])
print(secsock.query(sock=server) == answers[0], len(taken))
_query._request = request
before = sys.getrefcount(server)
for _ in range(50):
    secsock.query(server)
    secsock.query(server, peer=None)
    secsock.query(sock=server)
print(sys.getrefcount(server) - before)
for call in (lambda: secsock.query(), lambda: secsock.query(server, ipsec2=0)):
    try:
        call()
    except TypeError as exc:
        print(exc)
"""


@pytest.mark.net_admin
@pytest.mark.parametrize("hexversion", ["0x030911F0", '"3.11"', "None", "-1"])
def test_the_39_entry_answers_as_the_310_one(hexversion: str) -> None:
    # An interpreter that says it is 3.9, or whose version cannot be read, gets METH_VARARGS (right on every
    # version): the import does not fail over it.
    script = AS_IF_39.replace("HEXVERSION", hexversion)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        hex(METH_VARARGS | METH_KEYWORDS),
        "0 True",  # sock alone, and with the defaults: answered in C, the same answer
        "True 1",  # sock by keyword: the general path, the same answer
        "0",  # no reference kept on either path
        "query() missing 1 required positional argument: 'sock'",
        "ipsec2: expected a bool, not int",
    ], done.stdout


@pytest.mark.net_admin
def test_a_keyword_name_made_at_run_time_gets_the_same_answer(
    tcp_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The C check compares interned names by identity; a name built at run time is not the interned one, so
    # the general path answers it, with the same answer.
    name = "".join(("pe", "er"))
    assert name is not "peer"  # noqa: F632 (the identity is the point)
    taken = general_requests(monkeypatch)
    assert secsock.query(tcp_pair[1], **{name: None}) == secsock.query(tcp_pair[1])
    assert len(taken) == 1 and taken[0][0] is tcp_pair[1]


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
        secsock.query(sock=sock)  # the general path, given the arguments the entry received
        with pytest.raises(TypeError):
            secsock.query(sock, sock)
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
    taken = general_requests(monkeypatch)
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

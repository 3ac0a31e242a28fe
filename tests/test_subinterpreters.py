"""The extension under legacy subinterpreters: per-interpreter module state (issue 11, defect 9d).

secsock._secsock is a multi-phase module (PEP 489) whose types and tables live in each module object's state
(PEP 573/630). A subinterpreter that shares the main interpreter's GIL (the "legacy" configuration, the only
one before 3.12) gets its own module object, its own Pending and SecurityInfoBase types and its own bound
SecurityInfo tables, and ending either interpreter's module leaves the other's working. An interpreter with
its own GIL (3.12+) is refused: the module does not declare that support (Py_mod_multiple_interpreters is
not in the 3.9 limited API).

Each scenario runs in a fresh process: a use of freed state would crash it, and the exit code shows that. The
subinterpreter API is whichever the running CPython has: _interpreters (3.13+) or _xxsubinterpreters
(3.8-3.12), both in the official Windows builds too.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

import fresh_process
from fresh_process import MODULE_DEF

# Shared by the main interpreter's script and every subinterpreter's code: say() writes straight to fd 1, so
# lines of both interpreters come out in the order they were said; checked_query() queries an accepted
# connection the way a server does and checks that this interpreter's own classes built the answer.
COMMON = textwrap.dedent(
    """
    import gc, os, socket, sys

    def say(text):
        os.write(1, (text + "\\n").encode())

    def checked_query():
        import secsock
        from secsock import _secsock
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            server = listener.accept()[0]
            with client, server:
                fast = _secsock.query_info(server, None, 0, False)  # built in C from the bound tables
                info = secsock.query(server)
                pending = _secsock.begin_query(server.fileno(), None, 0, False)
                try:
                    raw = pending.result()
                finally:
                    pending.close()
        assert type(fast) is secsock.SecurityInfo, (type(fast), id(type(fast)), id(secsock.SecurityInfo))
        assert type(info) is secsock.SecurityInfo and isinstance(info, _secsock.SecurityInfoBase)
        assert fast == info, (fast, info)
        assert type(pending) is _secsock.Pending and type(raw) is tuple
        return info
    """
)

SCENARIOS = textwrap.dedent(
    """
    import weakref

    try:
        import _interpreters as interpreters  # 3.13+

        def create(config="legacy"):
            return interpreters.create(config)
    except ImportError:
        import _xxsubinterpreters as interpreters  # 3.8-3.12

        def create(config="legacy"):
            if sys.version_info >= (3, 12):
                return interpreters.create(isolated=config == "isolated")
            assert config == "legacy", "no interpreter with its own GIL before 3.12"
            return interpreters.create()

    def run(sub, code):
        # 3.13+ returns the failure; earlier versions raise it.
        failure = interpreters.run_string(sub, COMMON + "sys.path[:0] = %r\\n" % (sys.path,) + code)
        assert failure is None, failure

    def import_main():
        import secsock
        from secsock import _secsock
        return secsock, _secsock

    def forget_main():
        # Drop every reference the main interpreter holds to the facade and the extension's module object.
        for name in [name for name in sys.modules if name == "secsock" or name.startswith("secsock.")]:
            del sys.modules[name]
        gc.collect()

    scenario = sys.argv[1]
    if scenario == "types":
        secsock, _secsock = import_main()
        say("main %d %d" % (id(_secsock.SecurityInfoBase), id(_secsock.Pending)))
        assert secsock.SecurityInfo.__mro__[1] is _secsock.SecurityInfoBase
        sub = create()
        run(sub, "from secsock import _secsock\\n"
                 "say('sub %d %d' % (id(_secsock.SecurityInfoBase), id(_secsock.Pending)))")
        interpreters.destroy(sub)
    elif scenario == "sub-ends-first":
        secsock, _secsock = import_main()
        checked_query()
        sub = create()
        run(sub, "checked_query(); say('sub queried')")
        interpreters.destroy(sub)
        gc.collect()
        checked_query()  # the main interpreter's tables: not the sub's, not freed with it
        say("main queried after the sub ended")
    elif scenario == "main-ends-first":
        # The subinterpreter imports secsock first. CPython 3.9's own _asyncio (single-phase, static state)
        # crashes the process at exit when a subinterpreter imported it first: `import secsock` must not.
        sub = create()
        run(sub, "checked_query(); say('sub queried')")
        secsock, _secsock = import_main()
        checked_query()
        types = [weakref.ref(_secsock.SecurityInfoBase), weakref.ref(_secsock.Pending)]
        del secsock, _secsock
        forget_main()
        # The main module's state (its types, the facade's classes bound into it) went with the module.
        assert [ref() for ref in types] == [None, None], "the main interpreter's module state was not freed"
        say("main module freed")
        run(sub, "checked_query(); say('sub queried after the main module ended')")
        checked_query()  # a new module object, a new exec, while the sub's is alive
        interpreters.destroy(sub)
        checked_query()
        say("main queried after the sub ended")
    elif scenario == "no-asyncio":
        import secsock
        say("asyncio after import secsock: %s" % ("asyncio" in sys.modules))
        lazy = secsock.query_async
        say("query_async is secsock._asyncio's: %s" % (lazy is sys.modules["secsock._asyncio"].query_async))
        # Bound in the module once used: the module __getattr__ ran on every access (~1.4 us a call).
        bound = sorted(n for n in ("query_async", "require_async") if n in vars(secsock))
        say("bound after first use: %s" % bound)
    elif scenario == "state-freed":
        secsock, _secsock = import_main()
        types = [weakref.ref(_secsock.SecurityInfoBase), weakref.ref(_secsock.Pending)]
        del secsock, _secsock
        forget_main()
        say("main types alive: %s" % [ref() is not None for ref in types])
    elif scenario == "own-gil":
        from secsock import _secsock
        say("slots: %s" % slot_ids(_secsock))
        if sys.version_info >= (3, 12):
            sub = create("isolated")
            try:
                failure = interpreters.run_string(sub, "import secsock._secsock")
            except Exception as exc:  # 3.12 raises what the subinterpreter raised
                failure = exc
            say("own GIL: %s" % (failure,))
            interpreters.destroy(sub)
    say("alive")
    """
)
# The main interpreter's script: COMMON, its text (handed on to each subinterpreter), then the scenarios.
MAIN = f"COMMON = {COMMON!r}\n" + COMMON + MODULE_DEF + SCENARIOS


def run_scenario(scenario: str) -> list[str]:
    return fresh_process.run_scenario(MAIN, scenario)


def test_a_subinterpreter_gets_its_own_types() -> None:
    (main, sub) = (line.split() for line in run_scenario("types"))
    assert main[0] == "main" and sub[0] == "sub"
    # SecurityInfoBase, then Pending: other objects than the main interpreter's, while both are alive.
    assert main[1] != sub[1] and main[2] != sub[2], (main, sub)


def test_import_secsock_does_not_import_asyncio() -> None:
    # Nor, therefore, does a subinterpreter that imports it (see main-ends-first): asyncio comes with the
    # first use of query_async or require_async.
    assert run_scenario("no-asyncio") == [
        "asyncio after import secsock: False",
        "query_async is secsock._asyncio's: True",
        "bound after first use: ['query_async', 'require_async']",
    ]


def test_the_module_state_goes_with_its_module() -> None:
    # A single-phase module (m_size -1) kept its types for the whole process.
    assert run_scenario("state-freed") == ["main types alive: [False, False]"]


# On Linux the queries need CAP_NET_ADMIN (the socket's namespace is read first).
@pytest.mark.net_admin
def test_the_main_interpreter_queries_after_a_subinterpreter_ended() -> None:
    assert run_scenario("sub-ends-first") == ["sub queried", "main queried after the sub ended"]


@pytest.mark.net_admin
def test_a_subinterpreter_queries_after_the_main_interpreters_module_ended() -> None:
    assert run_scenario("main-ends-first") == [
        "sub queried",
        "main module freed",
        "sub queried after the main module ended",
        "main queried after the sub ended",
    ]


def test_an_interpreter_with_its_own_gil_is_refused() -> None:
    # Not declared (Py_mod_multiple_interpreters is in the limited API from 3.12 only, not in the 3.9 one we
    # build against): the module's only slot is Py_mod_exec (2), on every version, so 3.12+ applies its
    # default for a multi-phase module, "subinterpreters that share the GIL only", and the import says so
    # naming the module (Python/import.c, _PyImport_CheckSubinterpIncompatibleExtensionAllowed): a refusal
    # of some stdlib module the import needs could not pass for it.
    said = run_scenario("own-gil")
    assert said[0] == "slots: [2]", said
    if sys.version_info >= (3, 12):  # before 3.12 no interpreter has a GIL of its own
        (refusal,) = said[1:]
        assert refusal.startswith("own GIL: "), said
        assert "module secsock._secsock does not support loading in subinterpreters" in refusal, said
    else:
        assert said[1:] == [], said

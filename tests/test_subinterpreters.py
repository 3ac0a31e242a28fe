"""The extension's process-wide types under legacy subinterpreters (review of issue 11, finding 11).

The module is single-phase (m_size -1): a subinterpreter may run its PyInit again and free its module copy
before or after the main interpreter's. The types the main interpreter uses must survive that: each order is
run in a fresh process, whose exit code tells a crash (PendingType freed under the main interpreter).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import socket, sys
    try:
        import _interpreters as interpreters
        def create(): return interpreters.create("legacy")
    except ImportError:
        import _xxsubinterpreters as interpreters
        def create():
            if sys.version_info >= (3, 12):
                return interpreters.create(isolated=False)
            return interpreters.create()

    def in_subinterpreter():
        sub = create()
        code = "import sys; sys.path[:0] = %r; import secsock._secsock" % (sys.path,)
        assert interpreters.run_string(sub, code) is None
        interpreters.destroy(sub)

    if sys.argv[1] == "sub-first":
        in_subinterpreter()
    from secsock import _secsock
    if sys.argv[1] == "main-first":
        in_subinterpreter()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server = listener.accept()[0]
        with client, server:
            pending = _secsock.begin_query(server.fileno(), None, 0, False)
            pending.close()
            assert isinstance(pending, _secsock.Pending)
    print("alive")
    """
)


# On Linux the query it makes needs CAP_NET_ADMIN (the socket's namespace is read first).
@pytest.mark.net_admin
@pytest.mark.parametrize("order", ["sub-first", "main-first"])
def test_a_subinterpreter_leaves_the_main_interpreters_types_alive(order: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, order],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outcome = (done.returncode, done.stdout, done.stderr)
    assert done.returncode == 0 and done.stdout.strip() == "alive", outcome

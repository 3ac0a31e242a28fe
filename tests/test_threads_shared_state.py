"""The extension's shared state under threads, with no privilege needed: the thread test the wheel
workflow runs on the free-threaded CPython (3.14t), and every other build.

The module keeps state that an interpreter's threads share: the result classes and tables bind_results() binds
at import (in the module's state), the backend's process-wide snapshot, and in each pending query the count of
threads inside wait() and result(). Here threads query shared sockets, rebind the result tables and share
pending queries all at once, and each outcome must be the one a single thread gets. Without CAP_NET_ADMIN on
Linux (a build container) that outcome is a PermissionError, so the error paths run concurrently there; with
it, and on Windows, real answers.
tests/test_hardening_threads.py stresses the Linux backend itself, as root.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import sysconfig
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import secsock
from fresh_process import run_child
from secsock import _query

THREADS = 8
SECONDS = 2.0
# What a thread may meet in a pending query another thread shares with it, besides the answer (the start of
# each message: Linux and Windows word "already taken" differently).
SHARED_PENDING_ERRORS = (
    "ValueError: operation on a closed pending query",
    "ValueError: pending: the result ",
    "RuntimeError: cannot close a pending query while another thread waits on it",
    "RuntimeError: result() is already running in another thread",
)


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """What a query ended in, comparable across threads: the answer's fields, or the error type and errno."""
    try:
        info = call()
    except OSError as exc:
        return (type(exc).__name__, exc.errno)
    with info:
        return ("answer", info.protocol, info.flags, info.ipsec)


def issue(sock: socket.socket) -> secsock.PendingQuery | tuple[Any, ...]:
    """A pending query on sock, or the outcome begin_query() ended in."""
    try:
        return secsock.begin_query(sock)
    except OSError as exc:
        return (type(exc).__name__, exc.errno)


def test_threads_sharing_the_module_state_get_the_answer_one_thread_gets(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    socks = list(tcp_pair)
    expected = {sock.fileno(): outcome(lambda sock=sock: secsock.query(sock)) for sock in socks}
    for sock in socks:
        pending = issue(sock)
        if isinstance(pending, tuple):
            via_pending = pending
        else:
            with pending:
                via_pending = outcome(pending.result)
        assert via_pending == expected[sock.fileno()], "begin_query() and query() disagree on one thread"

    stop = time.monotonic() + SECONDS
    lock = threading.Lock()
    seen: Counter[str] = Counter()
    wrong: list[str] = []
    shared: list[tuple[int, secsock.PendingQuery]] = []  # pending queries any thread may use or close

    def check(name: str, fd: int, got: tuple[Any, ...]) -> None:
        with lock:
            seen[name] += 1
            if got != expected[fd] and len(wrong) < 10:
                wrong.append(f"{name}: {got!r}, one thread got {expected[fd]!r}")

    def query() -> None:
        sock = random.choice(socks)
        check("query", sock.fileno(), outcome(lambda: secsock.query(sock)))

    def rebind() -> None:
        # What the facade bound at import, bound again while other threads build answers from it.
        if _query._COMPILED is not None:
            _query._bind_results(_query._COMPILED)
        with lock:
            seen["rebind"] += 1

    def share() -> None:
        sock = random.choice(socks)
        pending = issue(sock)
        if isinstance(pending, tuple):
            check("begin_query", sock.fileno(), pending)
            return
        with lock:
            shared.append((sock.fileno(), pending))
            old = shared.pop(0) if len(shared) > THREADS else None
        if old is not None:
            use(*old, action="close")

    def use_shared() -> None:
        with lock:
            picked = random.choice(shared) if shared else None
        if picked is not None:
            use(*picked, action=random.choice(("result", "wait", "done", "close")))

    def use(fd: int, pending: secsock.PendingQuery, action: str) -> None:
        try:
            if action == "result":
                check("shared result", fd, outcome(pending.result))
            elif action == "wait":
                pending.wait(0)
            elif action == "done":
                pending.done()
            else:
                pending.close()
        except (ValueError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            with lock:
                seen[error] += 1
                if not error.startswith(SHARED_PENDING_ERRORS) and len(wrong) < 10:
                    wrong.append(f"{action} on a shared pending query: {error}")

    def worker(step: Callable[[], None]) -> None:
        try:
            while time.monotonic() < stop:
                step()
        except BaseException as exc:  # anything else is a failure: record it, do not lose it in a thread
            with lock:
                wrong.append(f"{step.__name__}: {type(exc).__name__}: {exc}")

    steps = [query, query, query, rebind, share, use_shared, use_shared, query][:THREADS]
    threads = [threading.Thread(target=worker, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _, pending in shared:
        pending.close()
    print(dict(seen))  # the spread, for -s
    assert not wrong, wrong
    assert seen["query"] > 100 and seen["rebind"] > 10, seen


def test_the_extension_does_not_claim_to_run_without_the_gil() -> None:
    """_secsock declares Py_MOD_GIL_USED: the tables bind_results() replaces, the cache of recent answers'
    IpsecDetails and a pending query's count of waiting threads rely on the GIL, so a free-threaded CPython
    turns the GIL back on when it is imported, and says so; told to keep it off (PYTHON_GIL=0, unsupported),
    it does, and the module still answers. (On a build with a GIL this holds trivially.) Declaring
    Py_MOD_GIL_NOT_USED means showing that state safe first, then changing this test."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHON_GIL"}
    code = "import sys, secsock; print(getattr(sys, '_is_gil_enabled', lambda: True)())"
    done = run_child(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert done.stdout.strip() == "True", done
    if sysconfig.get_config_var("Py_GIL_DISABLED") and _query._COMPILED is not None:
        assert "secsock._secsock" in done.stderr, done.stderr  # the interpreter's RuntimeWarning
        # Told to keep the GIL off (PYTHON_GIL=0), the interpreter does, and a query answers as with the GIL.
        with_gil, without = query_once(env), query_once({**env, "PYTHON_GIL": "0"})
        assert with_gil[0] == "gil True", with_gil
        assert without[0] == "gil False", without
        assert without[1:] == with_gil[1:], (with_gil, without)


# One query of an accepted loopback connection, after import: whether the GIL is on, then the answer's flags
# or the error's type and errno (PermissionError without CAP_NET_ADMIN on Linux).
QUERY_ONCE = """
import socket, sys
import secsock
print("gil", sys._is_gil_enabled())
with socket.create_server(("127.0.0.1", 0)) as listener:
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
with client, server:
    try:
        with secsock.query(server) as info:
            print("answer", int(info.flags))
    except OSError as exc:
        print(type(exc).__name__, exc.errno)
"""


def query_once(env: dict[str, str]) -> list[str]:
    done = run_child(
        [sys.executable, "-c", QUERY_ONCE], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    return done.stdout.splitlines()

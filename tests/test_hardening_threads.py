"""Thread stress on the real Linux backend: many threads querying, closing sockets and closing tokens at once.

No crash, no unexpected exception type, no leaked file descriptor, and memory flat (tracemalloc for Python
objects, RSS for the C side) once a warm-up has sized the allocator's per-thread arenas. Bounded: about
10 s on 2 cores; SECSOCK_STRESS_SECONDS=300 runs the measured phase longer by hand.
"""

from __future__ import annotations

import gc
import os
import random
import socket
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import secsock
from linux_netns import require_root

pytestmark = pytest.mark.netns  # the Linux backend: collected on Linux only (conftest.py)

THREADS = 8
PAIRS = 24
MEASURE_SECONDS = float(os.environ.get("SECSOCK_STRESS_SECONDS", "6"))
WARMUP_SECONDS = 2.5
# After the warm-up: what may still grow without it being a leak (bytes).
TRACEMALLOC_BOUND = 64 * 1024
RSS_BOUND = 4 * 1024 * 1024
CLOSES_LOCK = threading.Lock()


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def under_asan() -> bool:
    """ASan's quarantine holds freed memory on purpose, so RSS says nothing there (hardening/sanitize.sh)."""
    with open("/proc/self/maps") as maps:
        return "libclang_rt.asan" in maps.read()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Pool:
    """Connected loopback TCP pairs that threads query, close and replace concurrently."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = [self.new_pair() for _ in range(PAIRS)]

    def new_pair(self) -> tuple[socket.socket, socket.socket]:
        client = socket.create_connection(self.listener.getsockname())
        server, _ = self.listener.accept()
        return client, server

    def pick(self) -> socket.socket:
        with self.lock:
            client, server = random.choice(self.pairs)
        return random.choice((client, server))

    def churn(self) -> None:
        """Close a random pair (sometimes with RST) and put a fresh one in its place."""
        fresh = self.new_pair()
        with self.lock:
            index = random.randrange(len(self.pairs))
            old, self.pairs[index] = self.pairs[index], fresh
        if random.random() < 0.5:
            old[1].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        for sock in old:
            sock.close()

    def close(self) -> None:
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                sock.close()


def expected_failure(exc: BaseException) -> bool:
    """A socket closed (or its number reused by another descriptor) under a running query."""
    if isinstance(exc, OSError):
        return True
    # The descriptor number was reused by something that is not an IP socket: the argument is named.
    return isinstance(exc, ValueError) and str(exc).startswith(("sock:", "operation on a closed pending"))


def run_workers(pool: Pool, seconds: float, closes: Counter[int]) -> Counter[str]:
    stop = time.monotonic() + seconds
    closes_lock = CLOSES_LOCK
    outcomes: Counter[str] = Counter()
    unexpected: list[BaseException] = []
    lock = threading.Lock()

    def record(key: str) -> None:
        with lock:
            outcomes[key] += 1

    def guarded(step: Callable[[], None]) -> Callable[[], None]:
        def loop() -> None:
            while time.monotonic() < stop and not unexpected:
                try:
                    step()
                except BaseException as exc:
                    if expected_failure(exc):
                        record(type(exc).__name__)
                    else:
                        with lock:
                            unexpected.append(exc)

        return loop

    def query() -> None:
        with secsock.query(pool.pick()) as info:
            assert info.protocol == secsock.SecurityProtocol.IPSEC
            assert info.ipsec is not None
            assert info.peer_application_token is None and info.peer_machine_token is None
        record("query")

    def pending() -> None:
        pending = secsock.begin_query(pool.pick())
        assert pending.done()
        if random.random() < 0.8:
            with pending:
                pending.result().close()
            record("pending")
            return
        # result() and close() race from two threads: one answer or a clean ValueError, never a crash.
        other = threading.Thread(target=pending.close)
        other.start()
        try:
            pending.result().close()
            record("pending-raced")
        finally:
            other.join()
            pending.close()

    def churn() -> None:
        pool.churn()
        record("churn")
        time.sleep(0.001)

    def tokens() -> None:
        # Linux returns no tokens; the ownership logic of Token is exercised with counted fake handles.
        handles = random.sample(range(1, 1 << 40), 4)
        objs = [secsock.Token(handle) for handle in handles]
        info = secsock.SecurityInfo(
            secsock.SecurityProtocol.IPSEC, secsock.ConnectionFlags(0), objs[0], objs[1]
        )
        racers = [
            threading.Thread(target=info.close),
            threading.Thread(target=objs[0].close),
            threading.Thread(target=objs[2].close),
            threading.Thread(target=lambda: [t.close() for t in objs[1:]]),
        ]
        for racer in racers:
            racer.start()
        objs[3].close()
        for racer in racers:
            racer.join()
        assert all(t.closed for t in objs)
        # Each handle was closed exactly once, whichever thread got there first; forget them (bounded memory).
        with closes_lock:
            counts = [closes.pop(handle, 0) for handle in handles]
        assert counts == [1, 1, 1, 1], f"token handles closed {counts} times"
        record("tokens")

    roles = [query, query, query, pending, query, churn, tokens, query][:THREADS]
    threads = [threading.Thread(target=guarded(role), name=role.__name__) for role in roles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    assert not any(thread.is_alive() for thread in threads), "a stress thread hung"
    if unexpected:
        raise AssertionError(f"{len(unexpected)} unexpected exception(s), first: {unexpected[0]!r}") from (
            unexpected[0]
        )
    return outcomes


@pytest.fixture
def counted_token_close(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[int]]:
    """Token.close() on fake handles: count each CloseHandle instead of calling the backend."""
    from secsock import _extension

    closed: Counter[int] = Counter()

    def close_token_handle(handle: int) -> None:
        with CLOSES_LOCK:
            closed[handle] += 1

    monkeypatch.setattr(_extension, "close_token_handle", close_token_handle)
    yield closed


def test_threads_query_close_sockets_and_tokens_without_leaks(counted_token_close: Counter[int]) -> None:
    require_root()
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        # The backend's notification socket is opened by the first query and kept: open it before counting.
        with socket.create_connection(listener.getsockname()) as first:
            secsock.query(first)
            listener.accept()[0].close()
        fds_before = open_fds()

        pool = Pool(listener)
        warm = run_workers(pool, WARMUP_SECONDS, counted_token_close)
        gc.collect()
        tracemalloc.start()
        try:
            traced_before = tracemalloc.get_traced_memory()[0]
            rss_before = rss_bytes()
            measured = run_workers(pool, MEASURE_SECONDS, counted_token_close)
            gc.collect()
            traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
            if os.environ.get("SECSOCK_STRESS_DEBUG"):
                for stat in tracemalloc.take_snapshot().statistics("lineno")[:15]:
                    print(stat)
            rss_growth = rss_bytes() - rss_before
        finally:
            tracemalloc.stop()
        pool.close()
        gc.collect()
        fds_after = open_fds()

    report = (
        f"warm-up {dict(warm)}, measured {dict(measured)}, "
        f"tracemalloc +{traced_growth} B, RSS +{rss_growth} B"
    )
    print(report)
    assert (
        measured["query"] > 1000
        and measured["pending"] > 100
        and measured["churn"] > 50
        and measured["tokens"] > 20
    ), report
    # No descriptor may be added. The backend may renumber its own (the XFRM notification and request sockets
    # and the epoll instance): with both tables due (check_age_locked: 30 s after their last full read, which
    # in a long pytest process may be long before this test's first query) it drops the notification socket
    # and dumps under a new one, and the new descriptors may take numbers the churn freed (seen under ASan:
    # 29 and 30 became 26 and 27). It may also close, never add (a deleted namespace's, parked).
    renumbered = fds_after - fds_before
    leaked = f"descriptors leaked: {sorted(renumbered)} (before: {sorted(fds_before)}); {report}"
    assert len(fds_after) <= len(fds_before), leaked
    assert len(renumbered) <= 3 and all(is_backend_descriptor(fd) for fd in renumbered), leaked
    assert not counted_token_close, "a token handle was closed after its check"
    assert traced_growth < TRACEMALLOC_BOUND, report
    if not under_asan():
        assert rss_growth < RSS_BOUND, report


def test_real_token_close_from_threads_is_a_clean_unsupported_operation() -> None:
    """The Linux backend has no tokens: closing one from many threads raises, never crashes."""
    from secsock import _extension

    errors: list[BaseException] = []

    def close_many() -> None:
        for handle in range(1, 2000):
            try:
                _extension.close_token_handle(handle)
            except secsock.UnsupportedOperation:
                pass
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=close_many) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[0]


def test_many_threads_same_socket_same_answer() -> None:
    """A snapshot shared by every thread gives all of them the same answer for the same socket."""
    require_root()
    answers: list[Any] = []
    lock = threading.Lock()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()):
            server, _ = listener.accept()
            with server:
                expected = secsock.query(server)

                def ask() -> None:
                    for _ in range(300):
                        info = secsock.query(server)
                        with lock:
                            answers.append((int(info.flags), info.ipsec))

                threads = [threading.Thread(target=ask) for _ in range(THREADS)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
    assert len(answers) == THREADS * 300
    assert set(answers) == {(int(expected.flags), expected.ipsec)}


def is_backend_descriptor(fd: int) -> bool:
    """The descriptor is the backend's notification or request socket (NETLINK_XFRM) or the epoll instance on
    the former."""
    if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]":
        return True
    view = socket.socket(fileno=os.dup(fd))
    try:
        return view.family == socket.AF_NETLINK and view.proto == 6  # NETLINK_XFRM
    finally:
        view.close()


def thread_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_threads_in_three_namespaces_query_sockets_of_two() -> None:
    """Threads in the root namespace and in two others query sockets of both others at once: each answer is
    the socket's namespace's (a block policy in one makes it visible here), no thread is left in another
    namespace, and no descriptor stays open."""
    from linux_netns import Netns

    require_root()
    spiky, plain = Netns("threads-block"), Netns("threads-plain")
    try:
        for ns in (spiky, plain):
            ns.ip("addr", "add", "10.88.0.1/24", "dev", "lo")
        spiky.ip("xfrm", "policy", "add", "src", "10.88.0.1", "dst", "10.88.0.2", "dir", "out",
                 "action", "block")  # fmt: skip

        def udp() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("10.88.0.1", 0))
            return sock

        socks = [(spiky.call(udp), "blocked"), (plain.call(udp), "clear")]
        for sock, _ in socks:  # warm: the backend's sockets exist before counting
            secsock.query(sock, peer=("10.88.0.2", 500))
        fds_before = open_fds()
        stop = time.monotonic() + 3.0
        problems: list[str] = []
        counts: Counter[str] = Counter()
        lock = threading.Lock()

        def hammer() -> int:
            home = thread_netns_inode()
            while time.monotonic() < stop and not problems:
                sock, expected = random.choice(socks)
                try:
                    with secsock.query(sock, peer=("10.88.0.2", 500)) as info:
                        reason = info.reason or ""
                    if reason.startswith("outbound: the policy blocks"):
                        got = "blocked"
                    elif reason.startswith("outbound: no XFRM policy"):
                        got = "clear"
                    else:
                        got = reason
                except OSError as exc:
                    got = repr(exc)
                with lock:
                    counts[got] += 1
                    if got != expected:
                        problems.append(f"expected {expected}, got {got}")
                    if thread_netns_inode() != home:
                        problems.append("a query left its thread in another network namespace")
            return home

        threads = [spiky.start_thread(hammer), plain.start_thread(hammer)]
        runners = [threading.Thread(target=hammer) for _ in range(3)]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join(60)
        for thread in threads:
            thread.result(60)
        for sock, _ in socks:
            sock.close()
        gc.collect()
        fds_after = open_fds()
    finally:
        spiky.close()
        plain.close()
    print(dict(counts))  # with -s: how many queries 3 s allowed
    assert not problems, f"{len(problems)} problems, first: {problems[0]}; {dict(counts)}"
    assert counts["blocked"] > 50 and counts["clear"] > 50, dict(counts)
    # Closing the two sockets frees two descriptors and nothing else may be added. The one exception is
    # numbers, not descriptors: queries of sockets from the other namespace make the backend reopen its XFRM
    # notification socket there, with the epoll instance that watches it and its request socket, and any of
    # them may get a new number. It may also close, never add: the descriptors of a namespace an earlier test
    # deleted, parked until the backend finds it spent (seen under load: 23 after 26).
    assert len(fds_after) <= len(fds_before) - 2, (fds_before, fds_after)
    renumbered = fds_after - fds_before
    assert len(renumbered) <= 3, (fds_before, fds_after)
    assert all(is_backend_descriptor(fd) for fd in renumbered), (fds_before, fds_after)

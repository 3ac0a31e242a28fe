"""query_async on a proactor loop (issue 11, defect 7), with a scripted stand-in for the Windows pending.

The loop thread may never block: result() is taken only once the query is done (a WSAEMSGSIZE completion
is re-issued by wait() in a worker thread, and the loop waits on the event again), and a cancelled query is
closed only after the system completed it and after every wait the loop registered on its event has fired
or been cancelled, so the event is never closed under a registered wait.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import secsock
from secsock import _extension

ANSWER = (1, 3, 0, 0, None, None, None)


class ScriptedPending:
    """Stands in for _secsock.Pending: `completions` says how many event waits the query needs to be done
    (2: a WSAEMSGSIZE completion re-issued once). Anything that would block the loop raises: done() (it may
    re-issue: a synchronous size query), wait() on the loop's thread, result() or close() while in flight."""

    def __init__(self, completions: int) -> None:
        self.left = completions
        self.signalled = False
        self.cancelled = False
        self.cancel_error: OSError | None = None
        self.closed = False
        self.closed_on: threading.Thread | None = None
        self.loop_thread = threading.current_thread()
        self.proactor: FakeProactor | None = None

    def poll(self) -> int:
        if self.signalled and self.left == 1:
            self.left = 0
            self.signalled = False
        if self.signalled and self.left > 1:
            return 2  # a WSAEMSGSIZE completed: wait() must re-issue it, off the loop
        return 1 if self.left == 0 else 0

    def done(self) -> bool:
        raise AssertionError("done() may re-issue the call (a synchronous size query): never on the loop")

    def wait(self, timeout_ms: int) -> bool:
        if threading.current_thread() is self.loop_thread:
            raise AssertionError("wait() on the loop's thread: a re-issue blocks it")
        if self.signalled and self.left > 1:
            self.left -= 1  # the size query and the call again, in this worker thread
            self.signalled = False
        return self.left == 0

    def event(self) -> int:
        return 1234

    def result(self) -> tuple[Any, ...]:
        if self.poll() != 1:
            raise AssertionError("result() on the loop thread while the query is in flight: it would block")
        return ANSWER

    def cancel(self) -> bool:
        self.cancelled = True
        if self.cancel_error is not None:
            raise self.cancel_error
        return True

    def close(self) -> None:
        self.closed_on = threading.current_thread()
        if self.closed_on is self.loop_thread:
            if self.poll() == 0:
                raise AssertionError("close() on the loop while the system owns the OVERLAPPED: it blocks")
            assert self.proactor is not None
            if self.proactor.registered():
                raise AssertionError("close() while the loop still has a wait registered on the event")
        self.closed = True


class FakeProactor:
    """wait_for_handle as the proactor offers it: a future per registered wait, completed by signal()."""

    def __init__(self, pending: ScriptedPending) -> None:
        self.pending = pending
        self.waits: list[asyncio.Future[None]] = []
        pending.proactor = self

    def wait_for_handle(self, handle: int) -> asyncio.Future[None]:
        assert handle == 1234
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waits.append(fut)
        return fut

    def registered(self) -> int:
        return sum(not fut.done() for fut in self.waits)

    def signal(self) -> None:
        """The system completes the call in flight: the event fires every registered wait."""
        self.pending.signalled = True
        for fut in self.waits:
            if not fut.done():
                fut.set_result(None)


class PendingBackend:
    BACKEND = "windows"

    def __init__(self, pending: ScriptedPending) -> None:
        self.pending = pending

    def begin_query(self, *request: Any) -> ScriptedPending:
        return self.pending


def _install(monkeypatch: pytest.MonkeyPatch, completions: int) -> tuple[ScriptedPending, FakeProactor]:
    pending = ScriptedPending(completions)
    proactor = FakeProactor(pending)
    monkeypatch.setattr(_extension, "backend", PendingBackend(pending))
    return pending, proactor


def _run(main: Any) -> Any:
    """asyncio.run on a selector loop given the fake proactor (on Windows asyncio.run's loop is a real
    proactor, which the fake cannot stand in for): the leftover tasks are cancelled at the end, as there."""
    loop = asyncio.SelectorEventLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.close()


async def _until(predicate: Any) -> None:
    for _ in range(5000):  # the re-issue runs in the loop's executor: give its thread time
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never came")


@pytest.mark.parametrize("completions", [1, 2, 3])
def test_result_is_taken_only_when_done(monkeypatch: pytest.MonkeyPatch, completions: int) -> None:
    pending, proactor = _install(monkeypatch, completions)

    async def main() -> secsock.SecurityInfo:
        asyncio.get_running_loop()._proactor = proactor  # type: ignore[attr-defined]
        task = asyncio.ensure_future(secsock.query_async(5))
        for _ in range(completions):
            await _until(lambda: proactor.registered() == 1)
            proactor.signal()
        return await task

    info = _run(main())
    assert info.secured and info.encrypted
    assert pending.closed and not pending.cancelled


async def _start_and_cancel(pending: ScriptedPending, proactor: FakeProactor) -> None:
    """query_async on the fake proactor, cancelled while the system holds the query."""
    asyncio.get_running_loop()._proactor = proactor  # type: ignore[attr-defined]
    task = asyncio.ensure_future(secsock.query_async(5))
    await _until(lambda: proactor.registered() == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # also when cancel() raised: the first exception stands
        await task
    assert pending.cancelled and not pending.closed


@pytest.mark.parametrize(("completions", "cancel_fails"), [(1, False), (2, False), (1, True)])
def test_cancelled_query_is_closed_after_the_system_and_the_wait(
    monkeypatch: pytest.MonkeyPatch, completions: int, cancel_fails: bool
) -> None:
    """cancel_fails: review of issue 11, finding 4: an OSError from cancel() must not replace the task's
    CancelledError, and the close is scheduled all the same."""
    pending, proactor = _install(monkeypatch, completions)
    if cancel_fails:
        pending.cancel_error = OSError(22, "CancelIoEx failed")

    async def main() -> None:
        await _start_and_cancel(pending, proactor)
        # The cancel completes the call (as WSA_OPERATION_ABORTED): only then may the pending be closed.
        await _until(lambda: proactor.registered() == 1)
        pending.left = 1
        proactor.signal()
        await _until(lambda: pending.closed)

    _run(main())


def test_loop_shutdown_hands_the_close_to_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of issue 11, finding 3: asyncio.run cancels the task that waits to close a cancelled query; the
    close then must not run on the loop's thread (it would wait for the system there, and close the event
    while the cancelled wait may still be unregistering)."""
    pending, proactor = _install(monkeypatch, 1)

    # Returns with the query still in flight: asyncio.run cancels the closing task.
    _run(_start_and_cancel(pending, proactor))
    for _ in range(500):
        if pending.closed:
            break
        threading.Event().wait(0.01)
    assert pending.closed and pending.closed_on is not pending.loop_thread

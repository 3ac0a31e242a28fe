"""query_async on a proactor loop (issue 11, defect 7), with a scripted stand-in for the Windows pending.

The loop thread may never block: result() is taken only once the query is done (a WSAEMSGSIZE completion is
re-issued by done(), and the loop waits on the event again), and a cancelled query is closed only after the
system completed it and after every wait the loop registered on its event has fired or been cancelled, so
the event is never closed under a registered wait.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import secsock
from secsock import _extension

ANSWER = (1, 3, 0, 0, None, None, None)


class ScriptedPending:
    """Stands in for _secsock.Pending: `completions` says how many event waits the query needs to be done
    (2: a WSAEMSGSIZE completion re-issued once). Anything that would block the loop raises."""

    def __init__(self, completions: int) -> None:
        self.left = completions
        self.signalled = False
        self.cancelled = False
        self.closed = False
        self.proactor: FakeProactor | None = None

    def done(self) -> bool:
        if self.signalled and self.left > 0:
            self.left -= 1  # the completion is settled; a WSAEMSGSIZE one is re-issued here, not waited on
            self.signalled = False
        return self.left == 0

    def event(self) -> int:
        return 1234

    def result(self) -> tuple[Any, ...]:
        if not self.done():
            raise AssertionError("result() on the loop thread while the query is in flight: it would block")
        return ANSWER

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def close(self) -> None:
        if not self.done():
            raise AssertionError("close() on the loop while the system owns the OVERLAPPED: it would block")
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


async def _until(predicate: Any) -> None:
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0)
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

    info = asyncio.run(main())
    assert info.secured and info.encrypted
    assert pending.closed and not pending.cancelled


@pytest.mark.parametrize("completions", [1, 2])
def test_cancelled_query_is_closed_after_the_system_and_the_wait(
    monkeypatch: pytest.MonkeyPatch, completions: int
) -> None:
    pending, proactor = _install(monkeypatch, completions)

    async def main() -> None:
        asyncio.get_running_loop()._proactor = proactor  # type: ignore[attr-defined]
        task = asyncio.ensure_future(secsock.query_async(5))
        await _until(lambda: proactor.registered() == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pending.cancelled and not pending.closed
        # The cancel completes the call (as WSA_OPERATION_ABORTED): only then may the pending be closed.
        await _until(lambda: proactor.registered() == 1)
        pending.left = 1
        proactor.signal()
        await _until(lambda: pending.closed)

    asyncio.run(main())

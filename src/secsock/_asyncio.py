"""asyncio: query_async() and require_async() on a socket, a transport or a StreamWriter, and the guard
for asyncio.start_server callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Union

from . import _extension, _query
from ._errors import NotSecuredError
from ._log import logger
from ._query import Peer
from ._require import Requirement
from ._server import peer_gone
from ._types import SecurityInfo

__all__ = ["guard", "query_async", "require_async"]

#: What asyncio.start_server calls back: a coroutine function or a plain function.
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Union[Awaitable[None], None]]
#: What guard returns: always a coroutine function.
GuardedHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _socket_of(sock: Any) -> Any:
    """The socket behind a transport or a StreamWriter (get_extra_info("socket")); anything else as is."""
    get_extra_info = getattr(sock, "get_extra_info", None)
    if get_extra_info is None:
        return sock
    inner = get_extra_info("socket")
    if inner is None:
        raise ValueError(f"sock: this {type(sock).__name__} has no socket (get_extra_info('socket') is None)")
    return inner


async def query_async(
    sock: Any, *, peer: Peer | None = None, token_access: int = 0, ipsec2: bool = False
) -> SecurityInfo:
    """query() for asyncio. sock: a socket (as for query()), an asyncio transport or a StreamWriter.

    On Linux the query never waits on anything outside the process (it reads an in-process snapshot of the
    kernel's IPsec state), so it is answered inline, without a thread. On Windows' proactor loop it waits on
    the completion event without blocking the loop or a thread; on other loops it runs the blocking call in
    the loop's default executor. Cancelling the task cancels the system call.
    """
    sock = _socket_of(sock)
    backend = _extension.backend  # the tests swap it
    if backend is not None and backend.BACKEND == "linux":
        return _query.query(sock, peer=peer, token_access=token_access, ipsec2=ipsec2)
    return await _query.query_async(sock, peer=peer, token_access=token_access, ipsec2=ipsec2)


async def require_async(
    sock: Any,
    *,
    secured: bool = True,
    encrypted: bool = False,
    member_of: str | None = None,
    peer: Peer | None = None,
) -> SecurityInfo:
    """require() for asyncio; sock may also be a transport or a StreamWriter (see query_async)."""
    return await Requirement(secured, encrypted, member_of).check_async(sock, peer=peer)


def guard(requirement: Requirement, handler: StreamHandler) -> GuardedHandler:
    """Requirement.guard: a start_server callback that refuses before handler runs."""
    if not isinstance(requirement, Requirement):
        raise TypeError(f"requirement: expected a secsock.Requirement, not {type(requirement).__name__}")
    if not callable(handler):
        raise TypeError(f"handler: expected a function or coroutine function, not {type(handler).__name__}")

    @functools.wraps(handler)
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            info = await requirement.check_async(writer)
        except BaseException as exc:
            writer.close()  # refused, or the truth could not be read: nothing is served
            peername = writer.get_extra_info("peername")
            if isinstance(exc, NotSecuredError):
                logger.info("refused %s: %s", peername, exc)
            elif peer_gone(exc):
                logger.info("dropped %s: the peer disconnected before the query (%s)", peername, exc)
            else:
                raise
            with contextlib.suppress(OSError):  # the peer may reset the closing connection
                await writer.wait_closed()
            return
        info.close()
        # As asyncio.start_server, the callback may be a plain function or a coroutine function.
        result = handler(reader, writer)
        if inspect.isawaitable(result):
            await result

    return guarded

"""query(), begin_query() and query_async(): argument checks here, the system call in the C extension."""

from __future__ import annotations

import errno
import functools
import ipaddress
import threading
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

from . import _extension
from ._errors import QueryTimeoutError, SocketClosedError
from ._extension import require_backend as _require_backend
from ._log import DEBUG as _DEBUG
from ._log import debug_enabled as _debug_enabled
from ._log import debug_memo_dict as _debug_memo_dict
from ._log import log_backend_upkeep as _log_backend_upkeep
from ._types import (
    ConnectionFlags,
    IpsecDetails,
    IpsecMode,
    IpsecProtocol,
    SecurityAssociation,
    SecurityInfo,
    SecurityProtocol,
    Token,
)

if TYPE_CHECKING:
    import asyncio  # imported where it is used: `import secsock` does not import asyncio

__all__ = ["BACKEND", "PendingQuery", "begin_query", "query", "query_async"]

#: The compiled backend ("windows" or "linux"), or None where this platform has none.
BACKEND: str | None = _extension.backend.BACKEND if _extension.backend is not None else None

SocketLike = Any  # socket.socket, anything with fileno(), or a raw socket handle (int)
Peer = Union[tuple[str, int], tuple[str, int, int, int]]
_RawPeer = tuple[bool, bytes, int, int, int]
_MAX_TOKEN_ACCESS = 0xFFFFFFFF


def _socket_handle(sock: SocketLike) -> int:
    """The descriptor or SOCKET handle behind sock, checked before any system call."""
    if isinstance(sock, bool):
        raise TypeError("sock: expected a socket, an object with fileno() or a socket handle, not bool")
    if isinstance(sock, int):
        if sock < 0:
            raise ValueError(f"sock: a socket handle cannot be negative ({sock})")
        return sock
    fileno = getattr(sock, "fileno", None)
    if fileno is None or not callable(fileno):
        raise TypeError(
            f"sock: expected a socket, an object with fileno() or a socket handle, not {type(sock).__name__}"
        )
    handle = fileno()
    if isinstance(handle, bool) or not isinstance(handle, int):
        raise TypeError(f"sock: fileno() returned {type(handle).__name__}, not int")
    if handle < 0:
        raise SocketClosedError(errno.EBADF, "secsock: sock is closed")
    return handle


def _raw_peer(peer: Peer | None) -> _RawPeer | None:
    """(is_ipv6, packed address, port, flowinfo, scope_id) from (host, port[, flowinfo, scope_id]).

    The host must be a numeric IP address: a security check does not depend on a DNS answer.
    """
    if peer is None:
        return None
    if not isinstance(peer, tuple) or len(peer) not in (2, 4):
        raise ValueError("peer: expected (host, port) or (host, port, flowinfo, scope_id)")
    host, port = peer[0], peer[1]
    flowinfo, scope_id = (peer[2], peer[3]) if len(peer) == 4 else (0, 0)
    if not isinstance(host, str):
        raise ValueError(f"peer: the host must be a str holding an IP address, not {type(host).__name__}")
    for name, value, limit in (
        ("port", port, 0xFFFF),
        ("flowinfo", flowinfo, 0xFFFFF),
        ("scope_id", scope_id, 0xFFFFFFFF),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"peer: {name} must be an int from 0 to {limit}, not {value!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"peer: {host!r} is not a numeric IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:  # "fe80::1%eth0" or "fe80::1%3"
            if scope_id:
                raise ValueError("peer: give the IPv6 scope in the address or as scope_id, not both")
            scope_id = _scope_index(address.scope_id)
        return (True, address.packed, port, flowinfo, scope_id)
    if len(peer) == 4:
        raise ValueError("peer: flowinfo and scope_id apply to IPv6 addresses only")
    return (False, address.packed, port, 0, 0)


def _scope_index(scope: str) -> int:
    if scope.isdigit():
        index = int(scope)
        if index > 0xFFFFFFFF:
            raise ValueError(f"peer: the scope id {index} does not fit in 32 bits")
        return index
    import socket

    try:
        return socket.if_nametoindex(scope)
    except OSError:
        raise ValueError(f"peer: no network interface named {scope!r}") from None


def _token_access(token_access: int) -> int:
    if isinstance(token_access, bool) or not isinstance(token_access, int):
        raise TypeError(f"token_access: expected an int access mask, not {type(token_access).__name__}")
    if not 0 <= token_access <= _MAX_TOKEN_ACCESS:
        raise ValueError(f"token_access: must be from 0 to 0xFFFFFFFF (32 bits), not {token_access:#x}")
    return token_access


def _request(sock: SocketLike, peer: Peer | None, token_access: int, ipsec2: bool) -> tuple[Any, ...]:
    if not isinstance(ipsec2, bool):
        raise TypeError(f"ipsec2: expected a bool, not {type(ipsec2).__name__}")
    return (_socket_handle(sock), _raw_peer(peer), _token_access(token_access), ipsec2)


# The decoder runs once per accepted connection: enum members come from tables built once, not from calls.
_PROTOCOLS: dict[int, SecurityProtocol] = {int(member): member for member in SecurityProtocol}
_FLAGS: dict[int, ConnectionFlags] = {value: ConnectionFlags(value) for value in range(8)}
_IPSEC_PROTOCOLS: dict[int, IpsecProtocol] = {int(member): member for member in IpsecProtocol}
_IPSEC_MODES: dict[int, IpsecMode] = {int(member): member for member in IpsecMode}
_IN_THE_CLEAR = IpsecDetails((), ())


def _info_from_raw(raw: tuple[Any, ...]) -> SecurityInfo:
    protocol, flags, application_handle, machine_handle, ipsec2, detail, reason = raw
    # Wrap the handles first: from here on each one has an owner that closes it.
    application = Token(application_handle) if application_handle else None
    machine = Token(machine_handle) if machine_handle else None
    info = SecurityInfo(
        _PROTOCOLS.get(protocol, protocol),  # a value this version does not know stays an int: never a guess
        _FLAGS[flags] if flags in _FLAGS else ConnectionFlags(flags),
        application,
        machine,
    )
    if ipsec2 is not None:
        info.mm_sa_id, info.qm_sa_id, info.negotiation_error, context = ipsec2
        info.sa_lookup_context = uuid.UUID(bytes_le=context)
    if detail is not None:
        outbound, inbound = detail
        if outbound or inbound:
            info.ipsec = IpsecDetails(tuple(map(_sa, outbound)), tuple(map(_sa, inbound)))
        else:
            info.ipsec = _IN_THE_CLEAR
    info.reason = reason
    return info


def _bind_results(backend: Any) -> None:
    """Hand the extension what it builds query()'s answers from (done at import; the thread tests redo it)."""
    backend.bind_results(
        SecurityInfo,
        tuple(SecurityProtocol(value) for value in range(4)),
        tuple(_FLAGS[value] for value in range(8)),
        _IN_THE_CLEAR,
        _info_from_raw,
        SecurityAssociation,
        _IPSEC_PROTOCOLS,
        _IPSEC_MODES,
    )


# query() hands the common case to the extension whole (see query()); it builds its answers from these.
# _COMPILED is the extension as imported: tests put fakes in _extension.backend; fakes take the general path.
_COMPILED = _extension.backend
if _COMPILED is not None:
    _bind_results(_COMPILED)


def _sa(item: tuple[Any, ...]) -> SecurityAssociation:
    proto, mode, spi, reqid, encryption, integrity, aead = item
    return SecurityAssociation(
        _IPSEC_PROTOCOLS.get(proto, proto),
        _IPSEC_MODES.get(mode, mode),
        spi,
        reqid,
        encryption or None,
        integrity or None,
        aead or None,
    )


def query(
    sock: SocketLike, *, peer: Peer | None = None, token_access: int = 0, ipsec2: bool = False
) -> SecurityInfo:
    """Ask the system how the traffic on sock is secured; see secsock.query (documented by the extension).

    The general path: every call the extension's query does not answer whole (an argument besides sock,
    sock not plainly a socket handle, a test's fake backend) comes here with its arguments as given. On a
    platform without a backend it is secsock.query itself, and raises UnsupportedPlatformError.
    """
    request = _request(sock, peer, token_access, ipsec2)
    info = _info_from_raw(_require_backend("query").query(*request))
    if _debug_enabled(_DEBUG):
        _log_backend_upkeep(_extension.backend)
    return info


def _after_direct_query() -> None:
    """The upkeep log after an answer the extension gave whole (it calls this unless DEBUG is off)."""
    if _debug_enabled(_DEBUG):
        _log_backend_upkeep(_COMPILED)


_general_query = query
if not TYPE_CHECKING and _COMPILED is not None:
    # secsock.query is the extension's function (csrc/module/query_entry.c): the per-connection case, sock
    # alone, is answered without a Python frame around it (issue 14: the answer's cost), and the rest calls
    # the function above. Type checkers read the definition above.
    query = _COMPILED.bind_query(
        _general_query, vars(_extension), _debug_memo_dict, _DEBUG, _after_direct_query
    )


class PendingQuery:
    """A query issued with an OVERLAPPED: poll it, wait on it, or hand its event to another event loop.

    The system's buffers stay alive until it is done with them: close() (or ``with``, or collection) of a
    query still in flight cancels it and waits for the system, as CPython's _overlapped does. On Linux the
    query completes when it is issued.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def done(self) -> bool:
        """True once the system is done with the query. After a "buffer too small" that completed later it
        re-issues the call (a synchronous size query, without the GIL): not for an event loop's thread."""
        return bool(self._raw.done())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to timeout seconds (None: forever) without the GIL; True once done."""
        timeout_ms = _timeout_ms(timeout)  # checked before the backend is touched
        return bool(self._raw.wait(timeout_ms))

    def result(self, timeout: float | None = None) -> SecurityInfo:
        """Wait for the answer and decode it; negotiates a larger buffer if the system asks for one.

        Raises QueryTimeoutError (a TimeoutError) if timeout seconds pass first, and the query's OSError if
        it failed (an OSError with winerror 995, ERROR_OPERATION_ABORTED, after cancel()).
        """
        if timeout is not None and not self.wait(timeout):
            raise QueryTimeoutError(f"secsock: the query did not complete within {timeout} s")
        return _info_from_raw(self._raw.result())

    def cancel(self) -> bool:
        """Ask the system to cancel (CancelIoEx); True if a cancel was requested, False if already done.

        Never re-issues the call. Raises OSError if the system cannot cancel the call still in flight.
        """
        return bool(self._raw.cancel())

    @property
    def event(self) -> int | None:
        """The Windows event handle signalled on completion (for other event loops), or None on Linux."""
        event: int | None = self._raw.event()
        return event

    @property
    def closed(self) -> bool:
        """True once close() has run (the system is done and everything is released)."""
        return bool(self._raw.closed)

    def close(self) -> None:
        """Cancel if still in flight, wait until the system is done, release everything."""
        self._raw.close()

    def __enter__(self) -> PendingQuery:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._raw.closed:
            state = "closed"
        else:  # poll(): a repr makes no call that may block or re-issue the query
            state = "done" if self._raw.poll() == _POLL_DONE else "pending"
        return f"<secsock.PendingQuery {state}>"


def _timeout_ms(timeout: float | None) -> int:
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout: expected seconds as a number or None, not {type(timeout).__name__}")
    if not timeout >= 0:  # also rejects NaN
        raise ValueError(f"timeout: must be non-negative, not {timeout!r}")
    if timeout == float("inf"):
        return -1  # as None: wait forever
    return min(int(timeout * 1000), 0x7FFFFFFF)


def begin_query(
    sock: SocketLike, *, peer: Peer | None = None, token_access: int = 0, ipsec2: bool = False
) -> PendingQuery:
    """Issue the query without waiting; same arguments and errors as query()."""
    request = _request(sock, peer, token_access, ipsec2)
    return PendingQuery(_require_backend("begin_query").begin_query(*request))


async def query_async(
    sock: SocketLike, *, peer: Peer | None = None, token_access: int = 0, ipsec2: bool = False
) -> SecurityInfo:
    """query() for asyncio. On Windows' proactor loop it waits on the completion event without blocking
    the loop or a thread; on other loops (and on Linux) it runs the query in the loop's default executor.
    Cancelling the task cancels the system call.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    request = _request(sock, peer, token_access, ipsec2)
    backend = _require_backend("query_async")
    proactor = getattr(loop, "_proactor", None)
    if backend.BACKEND != "windows" or not hasattr(proactor, "wait_for_handle"):
        raw = await loop.run_in_executor(None, functools.partial(backend.query, *request))
        return _info_from_raw(raw)
    pending = PendingQuery(backend.begin_query(*request))
    raw = pending._raw
    event = pending.event
    assert event is not None
    try:
        # poll() never blocks the loop. A WSAEMSGSIZE that completed later needs a synchronous size query
        # and the call again: a worker thread makes them (wait(0) re-issues), then the loop waits again.
        while (state := raw.poll()) != _POLL_DONE:
            if state == _POLL_NEEDS_REISSUE:
                await loop.run_in_executor(None, raw.wait, 0)
            else:
                await proactor.wait_for_handle(event)  # type: ignore[union-attr]
        info = pending.result()  # done: takes the outcome without waiting
    except BaseException:
        try:
            pending.cancel()  # never re-issues; a completion racing it ends the query
        except OSError:
            pass  # the close below still runs, and warns if the system cannot be made to let go
        # Closing now would block the loop until the system is done, and would close the event under the wait
        # the loop may still have registered on it: close once the event has fired again.
        closing = asyncio.ensure_future(_close_when_done(pending, proactor))
        _CLOSING.add(closing)
        closing.add_done_callback(_CLOSING.discard)
        raise
    pending.close()  # done: frees without waiting
    return info


#: PendingQuery's raw poll(): in flight, done, or a WSAEMSGSIZE completed and wait() must re-issue the call.
_POLL_IN_FLIGHT, _POLL_DONE, _POLL_NEEDS_REISSUE = 0, 1, 2

#: Cancelled proactor queries waiting for the system before they are closed (a strong reference to each task).
_CLOSING: set[asyncio.Future[None]] = set()


async def _close_when_done(pending: PendingQuery, proactor: Any) -> None:
    """Close a cancelled query once the system has completed it. The event fires when it does, which also ends
    every wait the loop registered on it, so closing it after that closes no handle a wait still uses. Nothing
    here re-issues: a WSAEMSGSIZE completion (poll() says so) is ended by close() without new I/O."""
    import asyncio

    try:
        while pending._raw.poll() == _POLL_IN_FLIGHT:
            await proactor.wait_for_handle(pending.event)
    except asyncio.CancelledError:
        # The loop is shutting down (asyncio.run cancels what is left): closing here would wait for the system
        # on the loop's thread, and close the event while the just-cancelled wait may still be unregistering
        # (asyncio's UnregisterWaitEx is asynchronous). A thread of its own closes it instead.
        threading.Thread(target=pending.close, name="secsock-close", daemon=True).start()
        raise
    pending.close()

"""The ``secsock`` logger. Nothing on a query's hot path logs: a query costs the same whatever the level.

At INFO: each connection a server helper refused (SecureSocket.create_server, RequireSecurityMixIn,
Requirement.guard), and each connection they dropped because its peer left before the query, since neither
reaches a caller as an exception. At DEBUG: each refusal of require() / Requirement.check(), which the caller
also gets as NotSecuredError, and the backend's upkeep as its counters show it after a query: snapshot reloads
(full re-reads of the XFRM tables), notification overruns, network namespace switches that needed a new
snapshot, and tables re-read because the kernel's counts showed a change no notification announced (Linux;
the Windows backend keeps no state, so it has none). A query reads those counters only while DEBUG is enabled.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger("secsock")

#: What a query checks, bound once: logger.isEnabledFor(logging.DEBUG) costs one cached lookup.
debug_enabled = logger.isEnabledFor
DEBUG = logging.DEBUG


def _enabled_memo() -> dict[int, bool]:
    memo = getattr(logger, "_cache", None)
    if type(logger).isEnabledFor is logging.Logger.isEnabledFor and type(memo) is dict:
        return memo
    return {}  # a logger class of its own: isEnabledFor is asked every time


#: isEnabledFor's own memo of its answers by level (logging.Logger._cache, which logging empties in place
#: whenever a level changes or logging.disable is called): a False there is exactly what isEnabledFor(DEBUG)
#: answers, read by the extension's query() (csrc/module/query_entry.c) for a fraction of the call's cost on
#: every query (issue 14: the clear answer's speed). No entry, or True (the logger may since be disabled),
#: asks isEnabledFor itself.
debug_memo_dict = _enabled_memo()

_UPKEEP = (
    "snapshot reload: the backend re-read the XFRM tables (%d full dumps since last logged, %d in all)",
    "notification overrun: XFRM notifications were lost, so the tables are re-read"
    " (%d since last logged, %d in all)",
    "namespace switch: a network namespace without a kept snapshot was queried, so its tables were read"
    " (%d since last logged, %d in all)",
    "count cross-check: the kernel's XFRM counts showed a change no notification announced, so the tables"
    " are re-read (%d since last logged, %d in all)",
)
_last_upkeep: tuple[int, ...] = (0, 0, 0, 0)
_upkeep_lock = threading.Lock()


def log_backend_upkeep(backend: Any) -> None:
    """Log at DEBUG what the backend's upkeep counters (reloads, overruns, namespace switches, cross-check
    re-reads) say happened
    since they were last logged. Called after a query only when DEBUG is enabled."""
    read = getattr(backend, "backend_stats", None)
    if read is None:  # a test double of the extension
        return
    global _last_upkeep
    counters = tuple(read())
    with _upkeep_lock:  # each change is logged once, whichever thread's query sees it first
        last, _last_upkeep = _last_upkeep, counters
    for message, now, before in zip(_UPKEEP, counters, last):
        if now > before:
            logger.debug(message, now - before, now)

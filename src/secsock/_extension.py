"""The compiled extension (secsock._secsock), or None where there is none: the facade's one way to reach it.

secsock._query and Token (secsock._types) both reach the backend through this module, so neither imports the
other. Tests put fakes in ``backend``; every call looks it up here when it is made.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

from ._errors import SUPPORTED_PLATFORMS, UnsupportedPlatformError

__all__ = ["backend", "close_token_handle", "has_backend", "require_backend"]

try:
    from . import _secsock as backend
except ImportError:
    # Only a platform without a backend may lack the extension; elsewhere a broken install must show.
    if sys.platform.startswith(SUPPORTED_PLATFORMS):
        raise
    backend = None  # type: ignore[assignment]


def has_backend() -> bool:
    """True when this platform has a compiled backend."""
    return backend is not None


def require_backend(call: str) -> Any:
    if backend is None:
        raise UnsupportedPlatformError(
            errno.ENOSYS,
            f"secsock.{call}: no backend for {sys.platform!r}; supported platforms: Windows and Linux",
        )
    return backend


def close_token_handle(handle: int) -> None:
    """CloseHandle a token handle (used by Token.close)."""
    require_backend("Token.close").close_token(handle)

"""Exceptions of secsock. Every failure is an OSError (or a ValueError/TypeError for a bad argument)."""

from __future__ import annotations

SUPPORTED_PLATFORMS = ("win32", "linux")


class UnsupportedPlatformError(OSError):
    """No secsock backend exists for this operating system (supported: Windows and Linux)."""


class UnsupportedOperation(OSError):
    """The backend exists, but this call has no meaning on this platform; it never pretends to succeed."""

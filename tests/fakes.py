"""Test doubles of the C extension, for testing the facade's own logic."""

from __future__ import annotations

from typing import Any


class FakeBackend:
    """Stands in for secsock._secsock to test the facade's own logic: it records every call."""

    BACKEND = "fake"

    def __init__(self, result: tuple[Any, ...] | None = None) -> None:
        self.result = result if result is not None else (1, 0, 0, 0, None, None)
        self.queries: list[tuple[Any, ...]] = []
        self.closed_tokens: list[int] = []

    def query(self, *request: Any) -> tuple[Any, ...]:
        self.queries.append(request)
        return self.result

    def close_token(self, handle: int) -> None:
        self.closed_tokens.append(handle)

"""Windows CPython under Wine with the fwpuclnt double beside secsock's module (tools/windows_python.py):
these tests script the double through its control API (tests/double.py) and check the whole Python path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from double import Double


@pytest.fixture(scope="session")
def _double() -> Double:
    return Double()


@pytest.fixture
def double(_double: Double) -> Iterator[Double]:
    """The double, reset; no step of a test may be left in flight after it."""
    _double.reset()
    _double.loopback_clear(False)
    yield _double
    assert _double.in_flight() == 0, "a query was left in flight"
    _double.reset()

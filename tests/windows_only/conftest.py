"""Under Wine (the Windows-Python layer) these tests meet the fwpuclnt double, not the system: there the
double answers a loopback connection as real Windows does (in the clear, no tokens), an assumed variant."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def loopback_as_windows() -> Iterator[None]:
    if os.environ.get("SECSOCK_DOUBLE") != "1":
        yield  # real Windows
        return
    from double import Double

    double = Double()
    double.reset()
    double.loopback_clear(True)
    try:
        yield
    finally:
        double.loopback_clear(False)

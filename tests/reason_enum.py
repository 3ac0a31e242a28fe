"""The backend's reason codes (enum in csrc/secsock_backend.h), read by the host and VM suites alike."""

from __future__ import annotations

import re
from pathlib import Path

HEADER = Path(__file__).resolve().parent.parent / "csrc" / "secsock_backend.h"


def reason_names() -> list[str]:
    """The enum's member names without the SECSOCK_REASON_ prefix, by value from NONE (0) on; it ends before
    SECSOCK_REASON_COUNT, so no count and no name mentioned after the enum (in a comment) is taken."""
    body = HEADER.read_text().split("SECSOCK_REASON_NONE = 0,")[1].split("SECSOCK_REASON_COUNT")[0]
    members = [line.strip() for line in body.splitlines() if line.strip().startswith("SECSOCK_REASON_")]
    return ["NONE"] + [re.split(r"[,\s]", m, maxsplit=1)[0].removeprefix("SECSOCK_REASON_") for m in members]

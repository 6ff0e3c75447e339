"""What the job did so far: filled in step by step, reported by the final event either way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    command: str | None
    revisions_before: list[str] | None = None
    revisions_after: list[str] | None = None
    applied: int = 0
    lock_wait_s: float | None = None
    running: dict[str, Any] | None = field(default=None, repr=False)  # the revision in flight

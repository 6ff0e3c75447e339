"""What the job did so far: filled in step by step, reported by the final event either way."""

from __future__ import annotations

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from typing import Any


class Outcome:
    def __init__(self, command: str | None) -> None:
        self.command = command
        self.revisions_before: list[str] | None = None
        self.revisions_after: list[str] | None = None
        self.applied = 0
        self.lock_wait_s: float | None = None
        self.running: dict[str, Any] | None = None  # the revision in flight

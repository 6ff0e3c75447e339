"""What the job did so far: filled in step by step, reported by the final event either way."""

from __future__ import annotations

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from typing import Any


UNKNOWN = "unknown"  # revisions_after when the database could not be read on the way out


class Outcome:
    def __init__(self, command: str | None) -> None:
        self.command = command
        self.revisions_before: list[str] | None = None
        # None: never read (the job did not get that far); UNKNOWN: it could not be read.
        self.revisions_after: list[str] | str | None = None
        self.applied = 0
        self.lock_wait_s: float | None = None  # None: the run never needed the lock
        self.running: dict[str, Any] | None = None  # the revision in flight

    def waited_for_lock(self, seconds: float) -> None:
        self.lock_wait_s = seconds

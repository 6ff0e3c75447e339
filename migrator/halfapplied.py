"""The half-applied record: a revision that failed halfway on MySQL, kept in the database.

Where: the COMMENT of the version table (alembic_version), as compact JSON behind a fixed
prefix. Why there: the record must live in the database the revision changed (a file or a
second database could disagree with it), be read in the same place as the version, after the
lock and before anything runs, and survive the job. A table of our own would sit in the user's
default schema, where Alembic's autogenerate compares every table and would propose dropping
it; autogenerate never compares the version table, and its comment is ours to use (Alembic
neither reads nor writes it). The cost: a MySQL table comment holds 2048 characters, so the
record keeps statement texts shortened, and drops the last ones (keeping their count) to fit.
Writing it is an `ALTER TABLE ... COMMENT`, DDL that commits at once: durable by itself.

Before each revision runs, a marker (a record whose error is IN_FLIGHT) goes there first, as
golang-migrate's "dirty" flag: a run that ends without a word (SIGKILL, a lost connection)
leaves it, and the next run refuses rather than run the revision's first statements again. A
run that fails with statements committed replaces it with the record; one that leaves nothing
(or commits) clears it.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

from migrator.account import Failure, account_text, shortened
from migrator.backends import Backend, Raw, VersionTable
from migrator.errors import HalfApplied

PREFIX = "migrate-job half-applied "
# The `error` of the marker written before each revision runs (MySQL): left in place, it means a
# run ended without saying what the revision left (SIGKILL, OOM, node loss, a lost connection).
IN_FLIGHT = "in flight"
NOTE_LIMIT = 2048  # characters: MySQL's (and MariaDB's) limit for a table comment
RECORD_TEXT_LIMIT = 200  # characters of one statement in the record


class Record(NamedTuple):
    """What the next run needs to refuse with the same account."""

    revision: str
    direction: str
    down_revision: str | None
    failed_statement: int | None
    committed: list[str]  # shortened; the first ones when they did not all fit
    committed_count: int
    error: str  # the error's class: the driver's message may be long, the event has it
    at: str  # UTC, ISO 8601

    @classmethod
    def of(cls, details: dict[str, Any], error: str) -> Record:
        """The record of a failure, from its details (failures.py): revision, direction,
        failed_statement, committed_statements, committed_count, and the cause if known."""
        committed = list(details.get("committed_statements") or [])
        return cls(
            revision=details["revision"],
            direction=details["direction"],
            down_revision=details.get("down_revision"),
            failed_statement=details.get("failed_statement"),
            committed=committed,
            committed_count=details.get("committed_count", len(committed)),
            error=details.get("cause") or details.get("kind") or error,
            at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    @classmethod
    def in_flight(cls, running: dict[str, Any]) -> Record:
        """The marker for the revision about to run: replaced by the record if it fails with
        statements committed, cleared once it commits or fails leaving nothing."""
        return cls.of({**running, "committed_statements": [], "committed_count": 0}, IN_FLIGHT)

    @property
    def is_in_flight(self) -> bool:
        return self.error == IN_FLIGHT

    @classmethod
    def parse(cls, note: str | None) -> Record | None:
        """The record in a version table's comment; None when the comment is not one."""
        if not note or not note.startswith(PREFIX):
            return None
        try:
            fields = json.loads(note[len(PREFIX) :])
            if not isinstance(fields.get("revision"), str):
                raise ValueError("no revision")
            record = {name: fields.get(name) for name in cls._fields}
            return cls(**{**record, "committed": list(record["committed"] or [])})
        except (ValueError, TypeError, AttributeError):
            # Ours, but edited or cut: still a half-applied revision, never ignored.
            return cls("unknown", "unknown", None, None, [], 0, "unreadable record", "")

    def note(self) -> str:
        """The record as a table comment: compact JSON within NOTE_LIMIT characters."""
        texts = [shortened(text, RECORD_TEXT_LIMIT) for text in self.committed]
        while True:
            fields = {**self._asdict(), "committed": texts}
            note = PREFIX + json.dumps(fields, separators=(",", ":"))
            if len(note) <= NOTE_LIMIT or not texts:
                return note[:NOTE_LIMIT]
            texts = texts[:-1]  # committed_count still says how many there were

    @property
    def details(self) -> dict[str, Any]:
        return self._asdict()

    def account(self) -> str:
        if self.is_in_flight:
            return (
                f"revision {self.revision} was running when an earlier run ended without saying "
                "what it left (SIGKILL, OOM, node loss, a lost connection, or a crash): which of "
                "its statements ran, and so were committed by MySQL, is not known: check the schema"
            )
        text = account_text(self.revision, Failure(self.failed_statement, self.committed, None))
        missing = self.committed_count - len(self.committed)
        return text + (f"; ... and {missing} more" if missing > 0 else "")


def read(backend: Backend, raw: Raw, table: VersionTable) -> Record | None:
    """The half-applied record, where the backend can have one (not where DDL rolls back)."""
    if backend.transactional_ddl:
        return None
    return Record.parse(backend.read_note(raw, table))


def repair_steps(record: Record) -> str:
    """The documented repair (README: MySQL, a revision that failed halfway)."""
    finished = record.revision if record.direction == "upgrade" else record.down_revision or "base"
    return (
        "to repair, with no other runner migrating: (1) finish the revision's remaining "
        "statements by hand, or undo the committed ones; (2) run `resolve`, which clears this "
        f"record; (3) if you finished it by hand, run `stamp {finished}`; if you undid them, fix "
        "the revision and run the job again, which runs it from its first statement"
    )


def refusal(record: Record, command: str) -> HalfApplied:
    """Why `command` does not run on this database, and what to do."""
    when = f" at {record.at}" if record.at else ""
    what = (
        "a revision that may be half-applied" if record.is_in_flight else "a half-applied revision"
    )
    return HalfApplied(
        f"{command} refused: the database holds {what}, recorded{when} "
        f"({record.direction}, {record.error}): {record.account()}; {repair_steps(record)}",
        half_applied=record.details,
    )

"""The job model: what was asked (`Request`), what happened (`Outcome`), and the commands.

`COMMANDS` is the one registry: the parser, the checks on a request and the dispatch are all
built from it. A command's code is named, not imported, so that the first log line is out
before the driver (a third of a run with nothing to do) is even loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from migrator.settings import FLEET_OPTIONS

UNKNOWN = "unknown"  # revisions_after when the database could not be read on the way out


class Flag(NamedTuple):
    """A command's own flag: a switch (stamp's --purge) or one that takes a value (lint's)."""

    name: str
    flag: str
    help: str
    takes_value: bool = False


class Command(NamedTuple):
    """One command of the job."""

    name: str
    summary: str
    run: str  # "module:function", imported when the command runs
    revision: str | None = None  # how it takes REVISION: None, "optional" or "required"
    default: str | None = None  # REVISION when none is given
    sql: bool = False  # whether --sql (write the SQL, no database) applies
    options: tuple[str, ...] = ()  # variables (settings.OPTIONS) whose flag only it accepts
    flags: tuple[Flag, ...] = ()

    def function(self) -> Callable[[Any], None]:
        module, _, name = self.run.partition(":")
        function: Callable[[Any], None] = getattr(importlib.import_module(module), name)
        return function


PURGE = Flag(
    "purge",
    "--purge",
    "stamp: empty the version table first, even of revisions the scripts do not know",
)
LINT_FLAGS = (
    Flag("since", "--since", "lint: the revisions after REV (those a pull request adds)", True),
    Flag("format", "--format", "lint: json (events, the default), github or sarif", True),
    Flag("output", "--output", "lint: write the report to this file instead of stdout", True),
    Flag("pg-version", "--pg-version", "lint: the PostgreSQL version the rules assume", True),
)
HISTORY_FLAGS = (
    Flag("runs", "--runs", "history: the last runs recorded in the database, newest first"),
    Flag("limit", "--limit", "history --runs: how many runs (default 20)", True),
)

COMMANDS: Mapping[str, Command] = {
    command.name: command
    for command in (
        Command(
            "upgrade",
            "upgrade the database (REVISION default: head)",
            "migrator.commands.migrate:upgrade",
            revision="optional",
            default="head",
            sql=True,
        ),
        Command(
            "downgrade",
            "downgrade the database to REVISION: -1, a revision id, or base",
            "migrator.commands.migrate:downgrade",
            revision="required",
            sql=True,
        ),
        Command(
            "stamp",
            "record REVISION as current without running migrations",
            "migrator.commands.migrate:stamp",
            revision="required",
            sql=True,
            flags=(PURGE,),
        ),
        Command(
            "resolve",
            "clear a half-applied revision's record (MySQL) once the schema is repaired",
            "migrator.commands.resolve:resolve",
        ),
        Command(
            "fleet-upgrade",
            "upgrade every target of MIGRATE_TARGETS_FILE in this shard (exit 9 if any failed)",
            "migrator.commands.fleet:fleet_upgrade",
            revision="optional",
            default="head",
            options=FLEET_OPTIONS,
        ),
        Command("current", "report the database's revision", "migrator.commands.inspect:current"),
        Command("heads", "report the scripts' head revisions", "migrator.commands.inspect:heads"),
        Command(
            "history",
            "report every revision, oldest first (--runs: the last runs recorded)",
            "migrator.commands.inspect:history",
            flags=HISTORY_FLAGS,
        ),
        Command(
            "status",
            "what upgrade would do: pending and unknown revisions (exit 7 pending, 2 unknown)",
            "migrator.commands.status:status",
        ),
        Command(
            "check",
            "compare the models with the database (exit 7 on any difference)",
            "migrator.commands.check:check",
        ),
        Command(
            "wait",
            "only wait until the database accepts connections",
            "migrator.commands.waiting:wait",
        ),
        Command(
            "await-head",
            "poll until the database is at head (exit 7 at --timeout)",
            "migrator.commands.waiting:await_head",
            options=("MIGRATE_AWAIT_TIMEOUT",),
        ),
        Command(
            "lint",
            "check the revisions offline (REVISION: a range A:B, default all; exit 8 on findings)",
            "migrator.commands.lint:lint",
            revision="optional",
            flags=LINT_FLAGS,
        ),
    )
}


class Request(NamedTuple):
    """What the command line asked for."""

    command: str
    revision: str | None = None
    sql: bool = False
    purge: bool = False  # stamp: empty the version table first (Alembic's --purge)
    options: Mapping[str, str] = {}

    @property
    def document_on_stdout(self) -> bool:
        """Whether stdout carries a document (SQL, lint's annotations or SARIF), not the log."""
        lint_report = self.options.get("format") in ("github", "sarif")
        return self.sql or (lint_report and "output" not in self.options)


class Outcome:
    """What the job did so far: filled in step by step, reported by the final event either way.

    Mutable by design, unlike the values above: each step adds what it learnt.
    """

    def __init__(self, command: str | None) -> None:
        self.command = command
        self.revisions_before: list[str] | None = None
        # None: never read (the job did not get that far); UNKNOWN: it could not be read.
        self.revisions_after: list[str] | str | None = None
        self.applied = 0
        self.lock_wait_s: float | None = None  # None: the run never needed the lock
        self.running: dict[str, Any] | None = None  # the revision in flight
        # Passwords learnt while running (a fleet's targets from its query, read after the
        # settings): masked from then on, the final event included, as the settings' are.
        self.secrets: tuple[str, ...] = ()

    def waited_for_lock(self, seconds: float) -> None:
        self.lock_wait_s = seconds

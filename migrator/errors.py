"""What can go wrong, grouped by cause, and the exit code each failure ends with.

    MigrateError                      exit 1 unless a subclass says otherwise (a bug in the job)
    ├── Permanent                     2  the request cannot succeed as given; retrying never helps
    │   ├── UsageError                   a bad argument on the command line
    │   ├── ConfigError                  a variable or flag is missing or malformed
    │   ├── RevisionError                unknown revision, several heads, corrupt version table
    │   ├── ProjectError                 alembic.ini, env.py or a script cannot be read, loaded or
    │   │                                run as the job promises
    │   ├── DatabaseRejected             authentication failed, database or role does not exist
    │   ├── LockNotHeld                  the session lock is not ours (a transaction pooler)
    │   └── HalfApplied                  a revision failed halfway on MySQL: repair, then resolve
    ├── Transient                        something else was in the way; a later run may succeed
    │   ├── DatabaseUnavailable       3  not reachable before the wait timeout, or lost
    │   └── LockTimeout               4  another runner held the lock past the lock timeout
    ├── MigrationError                   a revision did not complete; its transaction rolled back
    │   ├── MigrationFailed           5  the revision raised
    │   └── DDLTimeout                6  lock_timeout / statement_timeout fired (retries exhausted)
    ├── NotUpToDate                   7  a verdict: `check` differs, `await-head` timed out
    ├── LintFindings                  8  a verdict: `lint` found problems in the revisions
    └── TargetsFailed                 9  a verdict: some of a fleet's targets failed (each
                                         target's own code is in its `target_failed` event)
    Interrupted (BaseException)     130 / 143  SIGINT / SIGTERM

`RevisionError` keeps its name, though Alembic has one too: the class name is the `error` field
of the final event, which alerting rules match on. Inside the job Alembic's is only ever
imported as `AlembicRevisionError` (failures.py).

`Interrupted` derives from BaseException, like KeyboardInterrupt, so that no `except Exception`
in Alembic, SQLAlchemy or a revision script swallows it.
"""

from __future__ import annotations

import enum
import signal
from typing import Any


class ExitCode(enum.IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    UNAVAILABLE = 3
    LOCK_TIMEOUT = 4
    MIGRATION_FAILED = 5
    DDL_TIMEOUT = 6
    NOT_UP_TO_DATE = 7
    LINT_FINDINGS = 8
    TARGETS_FAILED = 9
    SIGINT = 128 + signal.SIGINT
    SIGTERM = 128 + signal.SIGTERM


class MigrateError(Exception):
    """Base of every failure the runner expects and reports; `details` go into the final event."""

    def __init__(self, message: str, /, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class Permanent(MigrateError):
    """The request cannot succeed as given: the user's to fix, never a retry."""


class UsageError(Permanent):
    """A bad argument on the command line."""


class ConfigError(Permanent):
    """A variable or flag is missing or malformed."""


class RevisionError(Permanent):
    """A revision argument or the version table does not fit the script directory."""


class ProjectError(Permanent):
    """The project (alembic.ini, env.py, a script) cannot be read or loaded (syntax, import,
    permissions), fails, or does something the job cannot make safe."""


class DatabaseRejected(Permanent):
    """The server answered and refused us for good (credentials, database name, privileges),
    or is a server the job must not change (a Galera node: backends/mysql.py)."""


class LockNotHeld(Permanent):
    """The advisory lock is not held by our session: the connection is pooled per transaction."""


class HalfApplied(Permanent):
    """A revision failed halfway on a server without transactional DDL and was recorded so:
    nothing runs until the user repairs the schema and runs `resolve`."""


class Transient(MigrateError):
    """The database or another runner was in the way; nothing changed."""


class DatabaseUnavailable(Transient):
    """The database did not accept a connection before the wait timeout, or went away."""


class LockTimeout(Transient):
    """The migration lock was not acquired before the lock timeout."""


class MigrationError(MigrateError):
    """A revision did not complete; its transaction was rolled back."""


class MigrationFailed(MigrationError):
    """A revision raised."""


class DDLTimeout(MigrationError):
    """A revision's statement hit lock_timeout or statement_timeout."""


class NotUpToDate(MigrateError):
    """The database is not at the state the models or scripts describe."""


class LintFindings(MigrateError):
    """`lint` found revisions that would lock tables or break running pods."""


class TargetsFailed(MigrateError):
    """`fleet-upgrade`: some targets failed; the others were migrated (or were at head)."""


class Interrupted(BaseException):
    """A termination signal arrived; unwinding rolls back and releases the lock."""

    def __init__(self, signum: int, message: str | None = None, /, **details: Any) -> None:
        self.signum = signum
        self.details = details  # on MySQL: the account of the revision it stopped
        super().__init__(message or signal.Signals(signum).name)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


# The one table from failure to exit code; the most specific class wins.
EXIT_CODES: dict[type[BaseException], ExitCode] = {
    Permanent: ExitCode.USAGE,
    DatabaseUnavailable: ExitCode.UNAVAILABLE,
    LockTimeout: ExitCode.LOCK_TIMEOUT,
    MigrationFailed: ExitCode.MIGRATION_FAILED,
    DDLTimeout: ExitCode.DDL_TIMEOUT,
    NotUpToDate: ExitCode.NOT_UP_TO_DATE,
    LintFindings: ExitCode.LINT_FINDINGS,
    TargetsFailed: ExitCode.TARGETS_FAILED,
}


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code a failure ends the process with."""
    if isinstance(error, Interrupted):
        return ExitCode(128 + error.signum)
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return ExitCode.INTERNAL

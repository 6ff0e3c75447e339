"""What the job needs of a database, behind one small interface; one module per backend.

A backend connects with the driver alone, holds the migration lock, reads the version table,
sets the session's limits, and says what a driver error means. The steps (waiting, locking,
running) are written once against this interface: a new backend is one new module here.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import Any, NamedTuple

from migrator.errors import DatabaseRejected
from migrator.urls import DatabaseURL

Raw = Any  # a DB-API connection: psycopg2's, PyMySQL's or sqlite3's


class ConnectFailed(Exception):
    """The driver could not open a connection; the message is the driver's.

    `heals`: whether waiting could make it go away (the server starting, a DNS name not there
    yet), as opposed to what repeats on every attempt (a wrong password).
    """

    def __init__(self, message: str, *, heals: bool) -> None:
        super().__init__(message)
        self.heals = heals


class VersionTable(NamedTuple):
    """Where Alembic keeps the revisions: the table and its schema, as alembic.ini names them."""

    name: str = "alembic_version"
    schema: str | None = None

    @property
    def lock_name(self) -> str:
        """The default migration lock: one per version table, so one per migration history."""
        return f"alembic:{self.schema}.{self.name}" if self.schema else f"alembic:{self.name}"


class Limits(NamedTuple):
    """Seconds; 0 means no limit."""

    ddl_lock_timeout: float
    statement_timeout: float


class Lock:
    """The migration lock on one connection; the steps of acquiring it are locking.py's."""

    LONGEST_PAUSE = 1.0  # seconds between polls, at most
    key: Any = None  # what the server calls the lock, where that differs from its name

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def listen(self, on: bool = True) -> None:
        """Ask to be woken when the holder lets go (where the backend can)."""

    def pause(self, seconds: float) -> None:
        raise NotImplementedError

    def verify(self) -> None:
        """Prove the lock just taken is held by this session (raises LockNotHeld)."""

    def holder(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def release(self) -> bool:
        """Give the lock back; False when it turns out it was not held."""
        raise NotImplementedError

    def gone(self) -> bool:
        """Whether the session the lock lives in has ended (and the lock with it)."""
        return False


class Watch:
    """The latest sessions seen blocking our DDL, since the last `reset()` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[dict[str, Any]] = []

    def reset(self) -> None:
        with self._lock:
            self._seen = []

    def seen(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._seen)

    def record(self, sessions: list[dict[str, Any]]) -> None:
        if sessions:  # an empty answer after a timeout must not erase who caused it
            with self._lock:
                self._seen = sessions


class Backend:
    """One kind of database. Subclasses override what their server does differently."""

    # Whether a failed revision's transaction takes its DDL back with it (not on MySQL, where
    # each DDL statement commits as it runs).
    transactional_ddl = True
    # Why the job keeps no run history here (history.py), or None where it does: a backend
    # adds it by giving its SQL a home the user's autogenerate does not compare.
    no_history: str | None = "this backend keeps no run history"

    def quote(self, identifier: str) -> str:
        """An identifier as the server's SQL quotes it."""
        return f'"{identifier}"'

    def connect(self, database: DatabaseURL, timeout: float) -> Raw:
        """One attempt at a connection; ConnectFailed says why it failed."""
        raise NotImplementedError

    def connect_to_read(self, database: DatabaseURL, timeout: float) -> Raw:
        """As `connect`, for a command that only reads: it must not create the database."""
        return self.connect(database, timeout)

    def prepare(self, raw: Raw) -> None:
        """Session settings for a connection about to lock and migrate."""

    def refusal(self, raw: Raw) -> DatabaseRejected | None:
        """Why this server must not be changed by the job at all (a Galera node), if it must
        not: `prepare` raises it, `status` says it instead of "upgrade applies them"."""
        return None

    def lock(self, raw: Raw, database: DatabaseURL, name: str) -> Lock:
        raise NotImplementedError

    def read_versions(self, raw: Raw, table: VersionTable) -> list[str]:
        """The revisions in the version table, committed state; [] when there is none yet."""
        quoted = ".".join(map(self.quote, filter(None, (table.schema, table.name))))
        cursor = raw.cursor()
        try:
            cursor.execute(f"SELECT version_num FROM {quoted}")
            rows = cursor.fetchall()
        except Exception as error:
            if self.classify(error) != "missing_table":
                raise
            rows = []
        finally:
            cursor.close()
        raw.rollback()  # a poller must not keep a transaction (and its snapshot) open
        return sorted(row[0] for row in rows)

    def read_note(self, raw: Raw, table: VersionTable) -> str:
        """The version table's comment, where a half-applied revision is recorded ("" when it
        has none, or there is no table). Only backends without transactional DDL keep one."""
        return ""

    def write_note(self, raw: Raw, table: VersionTable, note: str) -> None:
        """Set the version table's comment, committed ("" clears it), with whatever the
        session had open (on MySQL, as any DDL statement)."""
        raise NotImplementedError  # never needed where a failed revision rolls back

    def uncommitted_rows(self, raw: Raw) -> int | None:
        """Rows the open transaction changed and has not committed; None when the server cannot
        say (asked where DDL commits as it runs, as a statement fails)."""
        return None

    def canceller(self, raw: Raw) -> Callable[[], None]:
        """What stops this connection's running statement from another thread."""
        raise NotImplementedError

    def lost(self, raw: Raw) -> bool:
        """Whether the server side of the connection is gone."""
        return False

    def classify(self, error: BaseException) -> str | None:
        """What a driver error means to the job: "missing_table", "refused" (for good: a
        privilege, a missing object), "lock_timeout", "statement_timeout", or None."""
        return None

    def apply_limits(self, connection: Any, limits: Limits, own: object) -> None:
        """Set the next revision's limits on the SQLAlchemy connection; `own` is the revision's
        `ddl_lock_timeout` attribute, or UNSET."""

    def watch_blockers(
        self, raw: Raw, database: DatabaseURL, lock_timeout: float
    ) -> AbstractContextManager[Watch]:
        """While the body runs, note who blocks our DDL (where the server can say)."""
        return nullcontext(Watch())

    def sqlalchemy(self, raw: Raw, database: DatabaseURL) -> Any:
        """A SQLAlchemy engine whose one connection is `raw`, the one holding the lock."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import StaticPool

        # StaticPool keeps `raw` open when SQLAlchemy is done with it: the lock is released on
        # it afterwards, and we close it ourselves.
        return create_engine(database.url, creator=lambda: raw, poolclass=StaticPool)


UNSET = object()  # a revision that sets no ddl_lock_timeout of its own


def for_database(database: DatabaseURL) -> Backend:
    """The backend for this URL; its driver is loaded now, and only its own."""
    module: ModuleType = importlib.import_module(f"migrator.backends.{database.dialect}")
    backend: Backend = module.BACKEND
    return backend


def holder_text(holder: dict[str, Any] | None) -> str:
    """A session for a sentence: `pid 4242 (application_name web-1, state idle, ...)`."""
    if not holder:
        return "an unknown session"
    rest = ", ".join(f"{key} {value}" for key, value in holder.items() if key != "pid" and value)
    head = f"pid {holder['pid']}" if holder.get("pid") is not None else "a session"
    return f"{head} ({rest})" if rest else head

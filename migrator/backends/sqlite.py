"""SQLite through the standard library: a file, and an exclusive `flock` beside it as the lock.

The flock gives processes on one host the guarantee the advisory lock gives on PostgreSQL. An
in-memory database is refused before any lock (settings.py): it would vanish with the job.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from migrator.backends import Backend, ConnectFailed, Lock, Raw
from migrator.urls import DatabaseURL


class SQLite(Backend):
    no_history = (
        "SQLite has no schemas, and a table beside the application's would show in autogenerate"
    )

    def connect(self, database: DatabaseURL, timeout: float) -> Raw:
        path = database.sqlite_file or ":memory:"
        try:
            # No implicit transactions from the driver: SQLAlchemy emits BEGIN (see
            # `sqlalchemy`), so a revision's DDL commits or rolls back as one.
            return sqlite3.connect(path, isolation_level=None)
        except sqlite3.OperationalError as error:
            heals = "unable to open database file" not in str(error)
            raise ConnectFailed(f"{error}: {path}", heals=heals) from None

    def connect_to_read(self, database: DatabaseURL, timeout: float) -> Raw:
        """A file not created yet reads as what `upgrade` would create: an empty database. An
        empty in-memory one stands in for it, so that reading never creates the file; a
        missing directory is still the driver's error, as for `upgrade`. Only for a single
        read: a poller (await-head) keeps its connection and would never see the file appear."""
        path = database.sqlite_file
        if (
            path is not None
            and not os.path.exists(path)
            and os.path.isdir(os.path.dirname(os.path.abspath(path)))
        ):
            return sqlite3.connect(":memory:", isolation_level=None)
        return self.connect(database, timeout)

    def lock(self, raw: Raw, database: DatabaseURL, name: str) -> Lock:
        if database.sqlite_file is None:
            raise AssertionError("in-memory SQLite reached the lock: settings should refuse it")
        return FileLock(f"{database.sqlite_file}.lock")

    def canceller(self, raw: Raw) -> Callable[[], None]:
        interrupt: Callable[[], None] = raw.interrupt
        return interrupt

    def classify(self, error: BaseException) -> str | None:
        return "missing_table" if "no such table" in str(error) else None

    def sqlalchemy(self, raw: Raw, database: DatabaseURL) -> Any:
        from sqlalchemy import event

        engine = super().sqlalchemy(raw, database)

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

        return engine


class FileLock(Lock):
    LONGEST_PAUSE = 0.25  # nothing wakes a waiter here: polling is all there is

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename}).encode())
        self._fd = fd
        return True

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def holder(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as file:
                return dict(json.loads(file.read() or "null") or {}) or None
        except (OSError, ValueError):
            return None

    def release(self) -> bool:
        if self._fd is None:
            return False
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None
        return True


BACKEND = SQLite()

"""Connections: the driver alone first, SQLAlchemy on top of the same connection only when needed.

Every deploy runs this job, nearly always with nothing to do. Waiting, locking and reading the
version table need only the driver, so a run that finds nothing to do never imports SQLAlchemy
or Alembic (about 0.8 s of CPU). When there is work, SQLAlchemy wraps the very connection that
holds the migration lock, so the lock and the migrations share one database session.
"""

from __future__ import annotations

import math
import os
import sys

from migrator.errors import ConfigError
from migrator.settings import DatabaseURL

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from typing import Any

    from sqlalchemy import Engine

    Raw = Any  # a DB-API connection: psycopg2's or sqlite3's


def _import_psycopg2() -> Any:
    """psycopg2, loaded without Python's `ssl` module.

    At load, psycopg2 imports `ssl` only so that Python sets up libcrypto's locking callbacks
    before libpq would; OpenSSL 1.1 and later lock by themselves and libpq 14 and later ignore
    that setup. The import costs ~20 ms, a fifth of a run with nothing to do. When it fails,
    psycopg2 takes its own fallback (libpq sets up libcrypto, as for a Python built without
    ssl); libpq's TLS is untouched (tests/test_tls.py connects with sslmode=verify-full).
    `ssl` stays importable for everything loaded later.
    """
    if "ssl" in sys.modules:
        import psycopg2
    else:
        sys.modules["ssl"] = None  # type: ignore[assignment]  # makes `import ssl` fail
        try:
            import psycopg2
        finally:
            del sys.modules["ssl"]
    return psycopg2


psycopg2 = _import_psycopg2()


class ConnectFailed(Exception):
    """The driver could not open a connection; the message is the driver's."""


def application_name() -> str:
    """How the runner shows up in pg_stat_activity: the pod's hostname identifies it."""
    return f"migrate-job@{os.uname().nodename}"[:63]


def connect(database: DatabaseURL, connect_timeout: float) -> Raw:
    """One attempt at a connection; ConnectFailed says why it failed."""
    if database.dialect == "sqlite":
        return _sqlite(database)
    return _postgresql(database, connect_timeout)


def _postgresql(database: DatabaseURL, connect_timeout: float) -> Raw:
    options: dict[str, Any] = {
        # libpq takes whole seconds; rounding up never makes a short timeout shorter.
        "connect_timeout": max(1, math.ceil(connect_timeout)),
        # A silently dead peer is noticed in about a minute rather than the kernel's two hours.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if "application_name=" not in database.url:
        options["application_name"] = application_name()
    # libpq reads the same URL SQLAlchemy does, once the driver name is taken out of the scheme.
    dsn = database.url.replace("postgresql+psycopg2://", "postgresql://", 1)
    try:
        raw = psycopg2.connect(dsn, **options)
    except psycopg2.OperationalError as error:
        raise ConnectFailed(" ".join(str(error).split())) from None
    except psycopg2.ProgrammingError as error:
        raise ConfigError(f"DATABASE_URL is not usable: {' '.join(str(error).split())}") from None
    return raw


def prepare_for_work(raw: Raw) -> None:
    """Session settings for a connection about to lock and migrate (not needed to just read)."""
    if isinstance(raw, psycopg2.extensions.connection) and raw.server_version >= 140000:
        # If this runner is killed mid-statement, the backend checks its socket every few
        # seconds, stops, rolls back and frees the lock, instead of running on.
        with raw.cursor() as cursor:
            cursor.execute("SET client_connection_check_interval = '2s'")
        raw.commit()


def sqlite_path(database: DatabaseURL) -> str | None:
    """The file behind a SQLite URL; None for a private in-memory database."""
    return database.sqlite_file


def _sqlite(database: DatabaseURL) -> Raw:
    import sqlite3  # only SQLite users pay for it

    path = sqlite_path(database) or ":memory:"
    try:
        # No implicit transactions from the driver: SQLAlchemy emits BEGIN (see engine_on), so
        # a revision's DDL commits or rolls back as one.
        return sqlite3.connect(path, isolation_level=None)
    except sqlite3.OperationalError as error:
        raise ConnectFailed(f"{error}: {path}") from None


def cancel_function(raw: Raw) -> Any:
    """What stops this connection's running statement from another thread."""
    return raw.cancel if isinstance(raw, psycopg2.extensions.connection) else raw.interrupt


def missing_table(error: Exception) -> bool:
    """Whether a query failed only because its table does not exist (yet)."""
    return getattr(error, "pgcode", None) == "42P01" or "no such table" in str(error)


def lost(raw: Raw) -> bool:
    """Whether the server side of the connection is gone."""
    return bool(getattr(raw, "closed", 0))


def refused(error: BaseException) -> bool:
    """Whether the server refused a query for good: privileges, a missing object (SQLSTATE
    classes 28, 3D, 42), which no retry will change."""
    code = getattr(getattr(error, "orig", None) or error, "pgcode", None) or ""
    return code[:2] in ("28", "3D", "42")


def engine_on(raw: Raw, database: DatabaseURL) -> Engine:
    """A SQLAlchemy engine whose one connection is `raw`, the one holding the lock."""
    # Imported here, not at the top: a run with nothing to do never pays for SQLAlchemy.
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import StaticPool

    # StaticPool keeps `raw` open when SQLAlchemy is done with it: the lock is released on it
    # afterwards, and we close it ourselves.
    engine = create_engine(database.url, creator=lambda: raw, poolclass=StaticPool)
    if database.dialect == "sqlite":

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

    return engine

"""Engines for the two supported dialects, with the connection options a job needs."""

from __future__ import annotations

import math
import socket
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from migrator.errors import ConfigError
from migrator.settings import DatabaseURL, Settings


def application_name() -> str:
    """How the runner shows up in pg_stat_activity: the pod's hostname identifies it."""
    return f"migrate-job@{socket.gethostname()}"[:63]


def build_engine(settings: Settings) -> Engine:
    database = settings.require_database()
    try:
        if database.dialect == "sqlite":
            return _sqlite_engine(database)
        return _postgresql_engine(database, settings.connect_timeout)
    except ArgumentError as error:
        raise ConfigError(f"DATABASE_URL is malformed: {error}") from None


def _postgresql_engine(database: DatabaseURL, connect_timeout: float) -> Engine:
    connect_args: dict[str, Any] = {
        # libpq takes whole seconds; rounding up never makes a short timeout shorter.
        "connect_timeout": max(1, math.ceil(connect_timeout)),
        # A silently dead peer is noticed in about a minute rather than the kernel's two hours.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if "application_name" not in database.url:
        connect_args["application_name"] = application_name()
    # One connection for the whole job: wait, lock and migrations share it, so no pool.
    engine = create_engine(database.url, poolclass=NullPool, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _notice_dead_client(dbapi_connection: Any, _: Any) -> None:
        # PostgreSQL 14+: if this runner is killed mid-statement, the backend checks the socket
        # every few seconds, stops, rolls back and frees the lock, instead of running on.
        if dbapi_connection.server_version >= 140000:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET client_connection_check_interval = '2s'")
            dbapi_connection.commit()

    return engine


def _sqlite_engine(database: DatabaseURL) -> Engine:
    engine = create_engine(database.url, poolclass=NullPool)

    # pysqlite commits DDL implicitly, so a failing revision would leave half its tables behind.
    # SQLAlchemy's documented recipe: take transaction control from the driver, emit BEGIN
    # ourselves.
    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine

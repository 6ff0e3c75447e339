"""Alembic environment, shared by the runner and the plain `alembic` CLI.

The runner hands over the connection it already holds, with the migration lock taken on it, in
`config.attributes["connection"]` (Alembic's connection-sharing pattern); an Engine there is
accepted too. The plain CLI has none, so one is built from DATABASE_URL. This file does not call
logging.config.fileConfig: that would disable the runner's loggers.
"""

from __future__ import annotations

import logging
import os

from alembic import context
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.pool import NullPool

from migrator.errors import ConfigError
from migrator.settings import database_from
from models import Base

config = context.config
target_metadata = Base.metadata

if not logging.getLogger().handlers:
    # The plain `alembic` CLI: show its progress as fileConfig would, without disabling loggers.
    logging.basicConfig(level=logging.INFO, format="%(levelname)-5.5s [%(name)s] %(message)s")


def database_url() -> str:
    """The runner's URL, else DATABASE_URL / DATABASE_URL_FILE, normalised the runner's way."""
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    database = database_from(os.environ)
    if database is None:
        raise ConfigError("DATABASE_URL is not set (nor DATABASE_URL_FILE)")
    return database.url


# What MySQL and MariaDB report for a `now()` default (MariaDB says `current_timestamp()`).
_NOW = {"now()", "current_timestamp", "current_timestamp()"}


def _same_default(  # noqa: PLR0917 - Alembic passes these six, by position
    context: object,
    inspected_column: object,
    metadata_column: object,
    inspected_default: str | None,
    metadata_default: object,
    rendered_metadata_default: str | None,
) -> bool | None:
    """False (no difference) for now() as MySQL spells it; otherwise Alembic's own comparison."""
    spelled = {(inspected_default or "").lower(), (rendered_metadata_default or "").lower()}
    return False if spelled <= _NOW else None


def configure(**options: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=config.get_main_option("version_table", "alembic_version"),
        version_table_schema=config.get_main_option("version_table_schema"),
        # One transaction per revision: a failure leaves the database at the last good revision.
        transaction_per_migration=True,
        compare_type=True,
        compare_server_default=_same_default,
        **options,
    )


def run_migrations(connection: Connection) -> None:
    configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        run_migrations(connectable)
        return
    if not isinstance(connectable, Engine):
        connectable = create_engine(database_url(), poolclass=NullPool)
    with connectable.connect() as connection:
        run_migrations(connection)
        connection.commit()


if context.is_offline_mode():
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

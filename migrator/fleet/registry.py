"""The targets from a query on a catalog database (the tenant registry): MIGRATE_TARGETS_QUERY on
MIGRATE_TARGETS_URL, else DATABASE_URL.

The query runs with the job's usual wait (exit 3 if the catalog never answers), in a read-only
session under MIGRATE_STATEMENT_TIMEOUT, and its rows go through the very checks a targets file's
entries do (targets.check_targets): a column is a key, a NULL an absent key, so one query can
return `url` for some tenants and `schema` for others.
"""

from __future__ import annotations

import time
from typing import Any

from migrator import interrupts
from migrator.commands import Job, connected
from migrator.errors import ConfigError, Interrupted
from migrator.fleet.targets import Target, check_targets

NAME = "MIGRATE_TARGETS_QUERY"


def query_targets(job: Job) -> tuple[Target, ...]:
    """The targets the catalog lists, in the query's order; ConfigError for a bad query, a bad
    row or no rows at all."""
    settings = job.settings
    catalog, query = settings.catalog, settings.targets_query
    if catalog is None or query is None:  # settings pair them
        raise ConfigError(f"{NAME} is not set")
    if catalog.dialect != "postgresql":
        raise ConfigError(f"{NAME} runs on PostgreSQL only; {catalog.source} is {catalog.dialect}")
    started = time.monotonic()
    log = job.log.bind(catalog=catalog.redacted)
    own = job.for_database(settings._replace(database=catalog), log)
    with connected(own, read_only=True) as raw:
        columns, rows = _read(raw, query, settings.statement_timeout)
    if not rows:
        # A filter that matches nothing, or the wrong catalog, would otherwise look exactly like
        # a fleet at head: a green job that migrated nobody.
        raise ConfigError(
            f"{NAME} returned no rows: no targets to migrate (check the query's filter and "
            f"that {catalog.source} is the tenant registry)"
        )
    entries = [
        {column: value for column, value in zip(columns, row, strict=True) if value is not None}
        for row in rows
    ]
    targets = check_targets(entries, NAME, settings.database, item="row")
    log.info("targets_queried", rows=len(rows), duration_s=round(time.monotonic() - started, 3))
    return targets


def _read(raw: Any, query: str, timeout: float) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The query's column names and rows. The session is read-only, not only its first
    transaction: the query is run as written, and a `COMMIT; ...` inside it must not write."""
    import psycopg2

    cursor = raw.cursor()
    try:
        # Whole milliseconds from a validated float: nothing user-written in this SQL text.
        milliseconds = int(timeout * 1000)
        cursor.execute(
            f"SET default_transaction_read_only = on; SET statement_timeout = {milliseconds}"
        )
        raw.commit()
        try:
            cursor.execute(query)
        except psycopg2.Error as error:
            signum = interrupts.received()
            if signum is not None:  # the watcher cancelled it: we were asked to stop
                raise Interrupted(signum) from None
            if not getattr(error, "pgcode", None):
                raise  # not the query's fault (the connection went): the failure boundary's
            raise ConfigError(_query_failed(error)) from None
        if cursor.description is None:
            raise ConfigError(f"{NAME} returned no result set: it must be a SELECT")
        columns = [str(column.name) for column in cursor.description]
        rows = [tuple(row) for row in cursor.fetchall()]
        raw.rollback()
    finally:
        cursor.close()
    return columns, rows


def _query_failed(error: Any) -> str:
    """The server's own verdict on the query, in one line (the log masks the catalog's
    password, as in every line)."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) or " ".join(str(error).split())
    if error.pgcode == "57014":
        return f"{NAME} ran longer than MIGRATE_STATEMENT_TIMEOUT and was cancelled: {primary}"
    if error.pgcode == "25006":
        return f"{NAME} tried to write, and runs read-only: {primary}"
    return f"{NAME} failed on the catalog database (SQLSTATE {error.pgcode}): {primary}"

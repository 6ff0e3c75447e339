"""The schema targets' version tables, read in one pass on one connection.

Every release checks every tenant, and nearly all are at head. Schema targets share
DATABASE_URL's database, so one connection can read all their version tables, where each
target on its own would pay for a connection: a password exchange and a server process, most of
what an at-head target costs (bench/run.py, the fleet rows). Read without the lock, as
`upgrade`'s fast path reads: a target found at its head here finishes as that path would; every
other one (behind, no version table yet, or anything that went wrong here) takes its usual path,
which reads again on its own connection, so this pass can only save work, never decide it. One
answer is shared, though: a database that never answered the pass's wait (or refused the job's
credentials) fails every schema target at once, rather than once per target after a wait each
(1,000 targets, a 60 s wait, 4 at a time: over four hours to say one thing).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import NamedTuple

from migrator.backends import Raw
from migrator.commands import Job, connected
from migrator.errors import DatabaseRejected, DatabaseUnavailable
from migrator.fleet.targets import Target

# Version tables per query: one statement stays short for the server's parser and its log.
CHUNK = 500


class Pass(NamedTuple):
    """What the pass found: each schema target's revisions, by target name (those whose version
    table exists), or why their shared database cannot be reached at all."""

    versions: dict[str, list[str]]
    refused: DatabaseUnavailable | DatabaseRejected | None = None


def read_versions(job: Job, targets: Sequence[Target]) -> Pass:
    """The schema targets' revisions in one pass; none when they cannot be read that way (then
    each target reads its own), and the connection's failure when their database never answered
    or refused the job: every one of them would get that same answer, after a wait of its own."""
    by_schema = {target.schema: target.name for target in targets if target.schema is not None}
    if not by_schema:
        return Pass({})
    table = job.ini.versions.name
    with ExitStack() as stack:
        try:
            raw = stack.enter_context(connected(job, read_only=True))
        except (DatabaseUnavailable, DatabaseRejected) as error:
            return Pass({}, error)
        try:
            present = _with_table(raw, table, sorted(by_schema))
            found: dict[str, list[str]] = {}
            for start in range(0, len(present), CHUNK):
                for schema, version in _versions(job, raw, table, present[start : start + CHUNK]):
                    found.setdefault(by_schema[schema], []).append(version)
        except Exception as error:  # any failure here only costs speed: the targets read their own
            job.log.warning("schema_pass_skipped", reason=f"{error.__class__.__name__}: {error}")
            return Pass({})
    return Pass({by_schema[s]: sorted(found.get(by_schema[s], [])) for s in present})


def _with_table(raw: Raw, table: str, schemas: list[str]) -> list[str]:
    """The schemas, of those given, that hold a table named `table`."""
    cursor = raw.cursor()
    try:
        cursor.execute(
            "SELECT n.nspname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND c.relkind IN ('r', 'p') AND n.nspname = ANY(%s) "
            "ORDER BY 1",
            (table, schemas),
        )
        return [row[0] for row in cursor.fetchall()]
    finally:
        cursor.close()
        raw.rollback()


def _versions(job: Job, raw: Raw, table: str, schemas: Sequence[str]) -> list[tuple[str, str]]:
    quote = job.backend.quote
    sql = " UNION ALL ".join(
        f"SELECT %s, version_num FROM {quote(schema)}.{quote(table)}" for schema in schemas
    )
    cursor = raw.cursor()
    try:
        cursor.execute(sql, tuple(schemas))
        return [(row[0], row[1]) for row in cursor.fetchall()]
    finally:
        cursor.close()
        raw.rollback()  # no snapshot kept open

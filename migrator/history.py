"""The run history: one row per run that changed something or failed, one per applied step.

It lives in a schema of its own, `migrate_job`, in the database the user named: Alembic's
autogenerate compares the default schema only (unless env.py sets include_schemas, README), so it
never proposes to drop these tables. Created on the first run that needs it, on the locked
connection, before any change. A step's row is written by Alembic's on_version_apply callback,
inside the revision's own transaction: it commits or rolls back with the revision, so the history
never disagrees with alembic_version. A role that may not create or write the schema gets a
`history_unavailable` warning and a run without history: the deploy never fails for its
bookkeeping. Only PostgreSQL keeps one for now (`Backend.no_history` says why the others don't).

The SQL is PostgreSQL's, through the DB-API (psycopg2's pyformat parameters).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from migrator.backends import Backend, Raw
from migrator.digest import sha256
from migrator.errors import ExitCode, Interrupted, exit_code_for
from migrator.job import Outcome
from migrator.redaction import redact
from migrator.settings import Settings

SCHEMA = "migrate_job"
# Serialises the creation among runners of different version tables (different locks).
_CREATE_KEY = int.from_bytes(sha256(b"migrate_job:schema").digest()[:8], "big", signed=True)

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
COMMENT ON SCHEMA {SCHEMA} IS 'migrate-job: run history and lineage (README: Run history)';
CREATE TABLE IF NOT EXISTS {SCHEMA}.runs (
    id uuid PRIMARY KEY,
    started timestamptz NOT NULL,
    finished timestamptz,
    command text NOT NULL,
    version_table text NOT NULL,
    revisions_before text[],
    revisions_after text[],
    result text NOT NULL,
    exit_code integer,
    error text,
    message text,
    image_version text,
    image_revision text,
    host text
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.revisions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES {SCHEMA}.runs (id) ON DELETE CASCADE,
    revision text NOT NULL,
    down_revisions text[] NOT NULL,
    direction text NOT NULL,
    started timestamptz NOT NULL,
    duration_s double precision NOT NULL,
    sha256 text,
    heads_after text[] NOT NULL
);
CREATE INDEX IF NOT EXISTS revisions_by_revision ON {SCHEMA}.revisions (revision, id);
CREATE INDEX IF NOT EXISTS runs_by_started ON {SCHEMA}.runs (started);
"""

_PRESENT = f"""
SELECT
    (SELECT count(*) FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = '{SCHEMA}' AND c.relname IN ('runs', 'revisions')),
    CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = '{SCHEMA}')
        THEN has_schema_privilege('{SCHEMA}', 'CREATE')
        ELSE has_database_privilege(current_database(), 'CREATE') END
"""
# One privilege per call: has_table_privilege('t', 'SELECT, INSERT') is true if ANY is held.
_MAY_READ = f"""
SELECT has_schema_privilege('{SCHEMA}', 'USAGE')
    AND has_table_privilege('{SCHEMA}.runs', 'SELECT')
    AND has_table_privilege('{SCHEMA}.revisions', 'SELECT')
"""
_MAY_WRITE = f"""
SELECT has_schema_privilege('{SCHEMA}', 'USAGE')
    AND has_table_privilege('{SCHEMA}.runs', 'SELECT')
    AND has_table_privilege('{SCHEMA}.runs', 'INSERT')
    AND has_table_privilege('{SCHEMA}.runs', 'UPDATE')
    AND has_table_privilege('{SCHEMA}.revisions', 'SELECT')
    AND has_table_privilege('{SCHEMA}.revisions', 'INSERT')
"""
_RUN_COLUMNS = (
    "id, started, command, version_table, revisions_before, result, image_version, "
    "image_revision, host"
)
_RUN_VALUES = (
    "%(id)s, %(started)s, %(command)s, %(version_table)s, %(revisions_before)s, "
    "%(result)s, %(image_version)s, %(image_revision)s, %(host)s"
)
# In a savepoint of the revision's transaction: a failure here is undone alone (see `applied`).
_STEP = f"""
SAVEPOINT migrate_job_step;
INSERT INTO {SCHEMA}.runs ({_RUN_COLUMNS}) VALUES ({_RUN_VALUES}) ON CONFLICT (id) DO NOTHING;
INSERT INTO {SCHEMA}.revisions
    (run_id, revision, down_revisions, direction, started, duration_s, sha256, heads_after)
    SELECT %(id)s, revision, string_to_array(down, ' '), %(direction)s, %(step_started)s,
        %(duration_s)s, NULLIF(digest, ''), %(heads_after)s
    FROM unnest(%(revisions)s::text[], %(downs)s::text[], %(digests)s::text[])
        AS step (revision, down, digest);
RELEASE SAVEPOINT migrate_job_step
"""
_FINISH = f"""
UPDATE {SCHEMA}.runs SET finished = clock_timestamp(), revisions_after = %(revisions_after)s,
    result = %(result)s, exit_code = %(exit_code)s, error = %(error)s, message = %(message)s
    WHERE id = %(id)s
"""
_INSERT_FAILED = f"""
INSERT INTO {SCHEMA}.runs ({_RUN_COLUMNS}, finished, revisions_after, exit_code, error, message)
    VALUES ({_RUN_VALUES}, clock_timestamp(), %(revisions_after)s, %(exit_code)s, %(error)s,
        %(message)s)
"""
_LATEST = f"""
SELECT DISTINCT ON (revision) revision, down_revisions, direction, sha256
    FROM {SCHEMA}.revisions ORDER BY revision, id DESC
"""
_RUNS = f"""
SELECT id, started, finished, command, version_table, revisions_before, revisions_after,
    result, exit_code, error, message, image_version, image_revision, host
    FROM {SCHEMA}.runs ORDER BY started DESC, id LIMIT %(limit)s
"""
_STEPS = f"""
SELECT run_id, revision, down_revisions, direction, started, duration_s, sha256, heads_after
    FROM {SCHEMA}.revisions WHERE run_id = ANY(%(ids)s::uuid[]) ORDER BY id
"""


class Applied(NamedTuple):
    """A revision's latest step in the history."""

    down_revisions: tuple[str, ...]
    direction: str
    sha256: str | None


def file_digest(path: str) -> str:
    """SHA-256 of a revision file's bytes, as recorded and as compared."""
    with open(path, "rb") as file:
        return sha256(file.read()).hexdigest()


class Store:
    """The migrate_job tables, on the job's connection; reads end their transaction."""

    def __init__(self, raw: Raw, *, exists: bool) -> None:
        self.raw = raw
        self.exists = exists

    def _rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        if not self.exists:
            return []
        try:
            with self.raw.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            self.raw.rollback()  # no transaction (and snapshot) left open before Alembic's

    def latest(self) -> dict[str, Applied]:
        """Each revision's latest recorded step: its lineage, direction and file digest."""
        return {
            revision: Applied(tuple(downs), direction, digest)
            for revision, downs, direction, digest in self._rows(_LATEST)
        }

    def runs(self, limit: int) -> list[dict[str, Any]]:
        """The last `limit` runs, newest first, each with its steps in order."""
        names = [
            *("id", "started", "finished", "command", "version_table", "revisions_before"),
            *("revisions_after", "result", "exit_code", "error", "message", "image_version"),
            *("image_revision", "host"),
        ]
        runs = [dict(zip(names, row, strict=True)) for row in self._rows(_RUNS, limit=limit)]
        steps: dict[Any, list[dict[str, Any]]] = {run["id"]: [] for run in runs}
        if runs:
            for run_id, revision, downs, direction, started, duration, digest, after in self._rows(
                _STEPS, ids=list(steps)
            ):
                steps[run_id].append(
                    {
                        "revision": revision,
                        "down_revisions": list(downs),
                        "direction": direction,
                        "started": _iso(started),
                        "duration_s": duration,
                        "sha256": digest,
                        "heads_after": list(after),
                    }
                )
        for run in runs:
            run["steps"] = steps[run["id"]]
            run["id"] = str(run["id"])
            run["started"], run["finished"] = _iso(run["started"]), _iso(run["finished"])
        return runs

    def create(self) -> None:
        with self.raw.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": _CREATE_KEY})
            cursor.execute(DDL)
        self.raw.commit()
        self.exists = True


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def open_store(backend: Backend, raw: Raw, settings: Settings, *, write: bool) -> Store | str:
    """The history, ready for what the run needs, or why there is none (a sentence).

    `write`: the run may change the database, so the tables are created now, before any change,
    if they are missing; a read finds an empty history instead.
    """
    if settings.history == "off":
        return "MIGRATE_HISTORY=off"
    if backend.no_history is not None:
        return backend.no_history
    try:
        return _open(raw, write=write)
    except Exception as error:  # bookkeeping never fails the run (see above)
        raw.rollback()
        return f"{error.__class__.__name__}: {' '.join(str(error).split())}"


def _open(raw: Raw, *, write: bool) -> Store | str:
    """The tables and the role's privileges on them, from the catalog; created if `write`."""
    with raw.cursor() as cursor:
        cursor.execute(_PRESENT)
        tables, may_create = cursor.fetchone()
        if tables == 2:
            cursor.execute(_MAY_WRITE if write else _MAY_READ)
            allowed = cursor.fetchone()[0]
    raw.rollback()
    if tables == 2:
        needs = (
            "USAGE on the schema, SELECT, INSERT, UPDATE on runs and SELECT, INSERT on revisions"
            if write
            else "USAGE on the schema and SELECT on its tables"
        )
        if not allowed:
            return f"the role may not use the {SCHEMA} schema's tables (it needs {needs})"
        return Store(raw, exists=True)
    store = Store(raw, exists=False)
    if write and not may_create:
        return (
            f"the role may not create the {SCHEMA} schema (CREATE on the database), and it does "
            "not exist yet: grant CREATE, or have an owner create it (README: Run history)"
        )
    if write:
        store.create()
    return store


class Recorder:
    """Writes one run's rows: a row per step inside the step's transaction, the run's at the end.

    The run's row is inserted with its first step (in that step's transaction), so a run that
    changed nothing leaves none, and one killed mid-run (SIGKILL) leaves its committed steps
    under a run row whose `finished` is empty.
    """

    def __init__(
        self,
        store: Store,
        outcome: Outcome,
        version_table: str,
        secrets: tuple[str, ...],
        warn: Callable[[str], None],
    ) -> None:
        self.store = store
        self.outcome = outcome
        self.secrets = secrets
        import uuid  # only here: it imports `platform`

        self.stepped = False
        self.broken = False  # a step's rows could not be written: no more for this run
        self.warn = warn
        self._step_started: tuple[datetime.datetime, float] | None = None
        self.row: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "started": _now(),
            "command": outcome.command or "",
            "version_table": version_table,
            "result": "running",
            "image_version": os.environ.get("MIGRATE_IMAGE_VERSION") or None,
            "image_revision": os.environ.get("MIGRATE_IMAGE_REVISION") or None,
            "host": os.uname().nodename,
        }

    def starting(self, step: Any) -> None:
        """Just before Alembic runs a step (the step's start, for its duration)."""
        self._step_started = (_now(), time.monotonic())

    def applied(self, *, step: Any, heads: Any, **_: Any) -> None:
        """Alembic's on_version_apply: the step ran, its transaction is still open.

        Bookkeeping never fails a revision: if the rows cannot be written (a privilege revoked
        since the check, a full disk), the savepoint takes them back, `warn` says why, and the
        run goes on without history."""
        if self.broken:
            return
        started, clock = self._step_started or (_now(), time.monotonic())
        self._step_started = None
        direction = "stamp" if step.is_stamp else "upgrade" if step.is_upgrade else "downgrade"
        revisions, downs, digests = [], [], []
        for revision_id in step.up_revision_ids:
            script = step.revision_map.get_revision(revision_id)
            revisions.append(revision_id)
            downs.append(" ".join(_tuple(getattr(script, "down_revision", None))))
            path = getattr(script, "path", None)
            digests.append(file_digest(path) if path and direction != "stamp" else "")
        values = {
            **self.row,
            "revisions_before": self.outcome.revisions_before,
            "direction": direction,
            "step_started": started,
            "duration_s": round(time.monotonic() - clock, 6),
            "revisions": revisions,
            "downs": downs,
            "digests": digests,
            "heads_after": sorted(heads),
        }
        try:
            with self.store.raw.cursor() as cursor:
                cursor.execute(_STEP, values)
        except Exception as error:  # the revision's own work stays, in its transaction
            with self.store.raw.cursor() as cursor:
                cursor.execute("ROLLBACK TO SAVEPOINT migrate_job_step")
            self.broken = True
            self.warn(f"{error.__class__.__name__}: {' '.join(str(error).split())}")
            return
        self.stepped = True

    def finish(
        self, error: BaseException | None, fresh: Callable[[], Raw] | None = None
    ) -> str | None:
        """The run's row, final; None, or why it could not be written (never raises).

        `fresh`: a new connection, for when the job's is gone (SQLAlchemy closes it when a
        signal interrupts a statement). Writing the run's own row needs no lock."""
        if self.broken or (error is None and not self.stepped):
            return None  # a run that changed nothing leaves no row; a broken one was said
        code = ExitCode.OK if error is None else exit_code_for(error)
        result = "succeeded" if error is None else "failed"
        if isinstance(error, Interrupted):
            result = "interrupted"
        after = self.outcome.revisions_after
        values = {
            **self.row,
            "revisions_before": self.outcome.revisions_before,
            "revisions_after": after if isinstance(after, list) else None,
            "result": result,
            "exit_code": int(code),
            "error": None if error is None else error.__class__.__name__,
            "message": None if error is None else redact(str(error), self.secrets),
        }
        why = self._write(self.store, values)
        if why is None or fresh is None:
            return why
        try:
            raw = fresh()
        except Exception:  # the database is gone too: the first reason says it
            return why
        try:
            return self._write(Store(raw, exists=self.store.exists), values)
        finally:
            raw.close()

    @staticmethod
    def _write(store: Store, values: dict[str, Any]) -> str | None:
        raw = store.raw
        try:
            raw.rollback()  # a failed revision may have left the transaction aborted
            if not store.exists:
                store.create()
            with raw.cursor() as cursor:
                cursor.execute(_FINISH, values)
                if cursor.rowcount == 0:
                    cursor.execute(_INSERT_FAILED, values)
            raw.commit()
        except Exception as failure:  # bookkeeping never fails the run
            with contextlib.suppress(Exception):  # the connection may be gone: said below
                raw.rollback()
            return f"{failure.__class__.__name__}: {' '.join(str(failure).split())}"
        return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)

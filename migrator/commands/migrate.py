"""The commands that change the database: `upgrade`, `downgrade`, `stamp`.

`upgrade head` is nearly always a no-op: that is checked with the driver alone, before the lock
(a no-op needs none) and again once holding it (another runner may just have finished).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migrator import backoff, halfapplied, project
from migrator.backends import Limits, Raw
from migrator.commands import Job, connected
from migrator.commands.sql import write_sql
from migrator.errors import (
    ConfigError,
    DatabaseUnavailable,
    DDLTimeout,
    Interrupted,
    MigrationError,
    UsageError,
)
from migrator.failures import describe
from migrator.heads import why_unrecorded
from migrator.job import UNKNOWN
from migrator.locking import migration_lock

if TYPE_CHECKING:  # the run history is loaded only by a run with work (recording.py)
    from migrator.history import Recorder

# Seconds for the one connection attempt that reads the version table on the way out: the
# job is stopping (perhaps on SIGTERM, within the pod's grace period) and must not linger.
LAST_LOOK_TIMEOUT = 3.0


def upgrade(job: Job) -> None:
    _change(job, "upgrade")


def downgrade(job: Job) -> None:
    if job.request.sql and ":" not in (job.request.revision or ""):
        # Offline there is no database to read the starting point from.
        raise UsageError("downgrade --sql needs a range FROM:TO, for example 4d5e6f7a8b93:base")
    _change(job, "downgrade")


def stamp(job: Job) -> None:
    _change(job, "stamp")


def at_head(job: Job, current: list[str] | None = None) -> bool:
    """`upgrade`'s fast path alone: whether the database is already at the recorded head (one
    connection, one query, the driver alone; then `nothing_to_do` is logged, as upgrade does).
    False when that cannot be told so cheaply: then only `upgrade` itself can say. `current`:
    the revisions already read (a fleet reads its schema targets' in one pass), where a
    failed revision cannot be left half-applied (transactional DDL)."""
    if not job.targets_recorded_head(job.request.revision or "head"):
        return False
    if current is not None and job.backend.transactional_ddl:
        return _done(job, current)
    with connected(job) as raw:
        return _finish_if_done(job, raw)


def _change(job: Job, kind: str) -> None:
    target = job.request.revision or "head"
    if job.settings.fleet_source is not None:
        # Whoever set it meant the fleet: changing DATABASE_URL alone would be a guess.
        raise ConfigError(
            f"{job.settings.fleet_source} is set: {kind} changes one database (DATABASE_URL); "
            "run fleet-upgrade to migrate the targets, or unset it"
        )
    if job.request.sql:
        write_sql(job, kind, target)
        return
    database = job.settings.require_database()
    if database.in_memory:
        # It would "succeed" on a database that vanishes when the job exits.
        raise ConfigError(
            f"{database.source} is {database.url}, a private in-memory SQLite database: {kind} "
            "would change a database that vanishes when the job exits. Name a file "
            "(sqlite:///app.db, sqlite:////data/app.db); only --sql needs no database"
        )
    if kind == "upgrade" and job.known_heads is None:
        _say_why_slow(job)
    cheap = kind == "upgrade" and job.targets_recorded_head(target)
    if not cheap:
        project.validate(job.project, target, kind)
    with connected(job) as raw:
        if cheap and _finish_if_done(job, raw):
            return
        job.backend.prepare(raw)
        lock = migration_lock(
            job.backend.lock(raw, database, job.lock_name),
            name=job.lock_name,
            timeout=job.settings.lock_timeout,
            log=job.log,
            # A waiter whose work another runner finished stops waiting at once.
            unneeded=(lambda: _finish_if_done(job, raw)) if cheap else (lambda: False),
            waited=job.outcome.waited_for_lock,
        )
        try:
            with lock as waited:
                if waited is None:
                    return
                # First, before anything else runs: a revision left half-applied stops the job.
                record = halfapplied.read(job.backend, raw, job.ini.versions)
                if record is not None:
                    job.outcome.revisions_before = job.read_versions(raw)
                    raise halfapplied.refusal(record, kind)
                if cheap and _finish_if_done(job, raw):
                    return
                _run_recorded(job, raw, kind, target)
        finally:
            # Whatever ended the run (a signal, a timeout, a failed revision), say what is
            # committed now.
            if job.outcome.revisions_after is None:
                job.outcome.revisions_after = _revisions_now(job, raw)


def _run_recorded(job: Job, raw: Raw, kind: str, target: str) -> None:
    """The run inside the run history (recording.py): its checks before any change, the run's
    row at the end, once what is committed is known."""
    from migrator.commands.recording import recorded

    with recorded(job, raw, kind) as run:
        try:
            if run.done:
                return
            _run(job, raw, kind, target, run.recorder)
        except (MigrationError, Interrupted) as error:
            raise _recorded(job, raw, error) from None
        except DatabaseUnavailable as lost:
            raise _marked(job, lost) from None
        finally:  # before the run's row is written
            if job.outcome.revisions_after is None:
                job.outcome.revisions_after = _revisions_now(job, raw)


def _finish_if_done(job: Job, raw: Raw) -> bool:
    """Finish the run here if the database is at the scripts' single head (read with the
    driver alone): record that as the outcome, log `nothing_to_do`, and answer True."""
    current = job.read_versions(raw)
    if current != job.known_heads:
        return False
    if halfapplied.read(job.backend, raw, job.ini.versions) is not None:
        return False  # a failed downgrade may leave the version at head: the lock path refuses
    return _done(job, current)


def _done(job: Job, current: list[str]) -> bool:
    if current != job.known_heads:
        return False
    job.outcome.revisions_before = job.outcome.revisions_after = current
    job.log.info("nothing_to_do", current=current)
    return True


def _say_why_slow(job: Job) -> None:
    """A no-op without the heads record loads Alembic (~10x the time): say so, and the fix."""
    job.log.info(
        "fast_path_unavailable",
        reason=why_unrecorded(job.ini),
        fix=f"run `python -m migrator.heads {job.settings.alembic_config}` when the image is "
        "built, after the revision files are in place (README: Use it with your own Alembic "
        "project)",
    )


def _run(job: Job, raw: Raw, kind: str, target: str, recorder: Recorder | None) -> None:
    """The migrations, on the locked connection; a revision that hit lock_timeout is rolled
    back and retried a few times (backoff.DDL), so that the application transaction holding the
    table can finish instead of queueing our ALTER, and all traffic behind it, in front of it."""
    backend, settings = job.backend, job.settings
    database = settings.require_database()
    limits = Limits(settings.ddl_lock_timeout, settings.statement_timeout)
    pauses = itertools.islice(backoff.DDL.pauses(), settings.ddl_retries)
    with (
        project.session(backend, raw, database) as connection,
        backend.watch_blockers(raw, database, settings.ddl_lock_timeout) as watch,
    ):
        for attempt in itertools.count(1):
            watch.reset()  # this attempt's blockers only
            try:
                job.outcome.revisions_after = project.migrate(
                    job.project,
                    connection,
                    kind,
                    target,
                    backend=backend,
                    limits=limits,
                    log=job.log,
                    outcome=job.outcome,
                    secrets=settings.secrets,
                    purge=job.request.purge,
                    versions=job.ini.versions,
                    recorder=recorder,
                )
                return
            except DDLTimeout as timeout:
                error = _naming_blockers(timeout, watch.seen())
                # A retry runs the revision from its first statement: not once statements of
                # it are committed (MySQL), which it would run a second time.
                retriable = error.details["kind"] == "lock_timeout"
                retriable = retriable and not error.details.get("committed_statements")
                pause = next(pauses, None) if retriable else None
                if pause is None:
                    raise error from None
            job.log.warning(
                "ddl_lock_timeout",
                attempt=attempt,
                retries=settings.ddl_retries,
                revision=error.details.get("revision"),
                blocking=error.details.get("blocking"),
                retry_in_s=round(pause, 3),
            )
            time.sleep(pause)


def _recorded(job: Job, raw: Raw, error: MigrationError | Interrupted) -> Any:
    """A revision that stopped with statements committed (MySQL), recorded as half-applied.

    Written while the lock is still held, so that no runner starts between the failure and the
    record. A revision that failed at its first statement left nothing: no record, and the next
    run retries it."""
    details = error.details
    if not details.get("committed_statements"):
        _clear_marker(job, raw)
        return error
    cause = error.signal_name if isinstance(error, Interrupted) else type(error).__name__
    record = halfapplied.Record.of(details, cause)
    problem = _write_record(job, raw, record)
    if problem is None:
        said = (
            "; recorded as half-applied in the version table's comment: upgrade, downgrade "
            "and stamp refuse until it is repaired and `resolve` is run (README: MySQL)"
        )
    else:
        said = f"; it could NOT be recorded as half-applied ({problem}): check the schema"
    extra = {**details, "half_applied_recorded": problem is None}
    if isinstance(error, Interrupted):
        return Interrupted(error.signum, f"{error}{said}", **extra)
    return type(error)(f"{error}{said}", **extra)


def _marked(job: Job, lost: DatabaseUnavailable) -> DatabaseUnavailable:
    """The connection went mid-revision (MySQL): the in-flight marker stays, and says so."""
    if job.backend.transactional_ddl or "revision" not in lost.details:
        return lost
    return DatabaseUnavailable(
        f"{lost}; the revision stays marked in flight in the version table's comment: the next "
        "upgrade, downgrade or stamp refuses until the schema is checked and `resolve` is run",
        **lost.details,
    )


def _clear_marker(job: Job, raw: Raw) -> None:
    """The revision left nothing: its in-flight marker goes (the next run simply retries it).

    Cleared only when the failure is known (exit 5, 6, 130/143); if it cannot be, it stays and
    the next run refuses, which is the safe side."""
    if job.backend.transactional_ddl:
        return

    def clear(connection: Raw) -> None:
        record = halfapplied.read(job.backend, connection, job.ini.versions)
        if record is not None and record.is_in_flight:
            job.backend.write_note(connection, job.ini.versions, "")

    problem = _on_the_database(job, raw, clear)
    if problem is not None:
        job.log.warning("in_flight_marker_kept", reason=problem)


def _write_record(job: Job, raw: Raw, record: halfapplied.Record) -> str | None:
    """Write the record and read it back; what went wrong, or None."""

    def write(connection: Raw) -> None:
        job.backend.write_note(connection, job.ini.versions, record.note())
        if halfapplied.read(job.backend, connection, job.ini.versions) is None:
            raise RuntimeError("the comment did not hold it")

    return _on_the_database(job, raw, write)


def _on_the_database(job: Job, raw: Raw, work: Callable[[Raw], None]) -> str | None:
    """`work` on the locked connection, or a fresh one if it was dropped; what went wrong.

    A signal in PyMySQL's read drops the connection; the server keeps the session, and the
    lock, until the job ends it: another runner cannot start meanwhile."""
    fresh = None
    try:
        if job.backend.lost(raw):
            fresh = raw = job.backend.connect(job.settings.require_database(), LAST_LOOK_TIMEOUT)
        raw.rollback()  # what the failed revision left open is not ours to commit
        work(raw)
        return None
    except Exception as failed:  # the connection may be gone: say so, never claim the record
        return describe(failed)
    finally:
        if fresh is not None:
            fresh.close()


def _naming_blockers(error: DDLTimeout, sessions: list[dict[str, Any]]) -> DDLTimeout:
    """A lock timeout, with the sessions that held the table: whom the on-call should ask."""
    if error.details.get("kind") != "lock_timeout":
        return error
    from migrator.backends import holder_text

    named = f"; blocked by {'; '.join(map(holder_text, sessions))}" if sessions else ""
    return DDLTimeout(f"{error}{named}", **{**error.details, "blocking": sessions})


def _revisions_now(job: Job, raw: Raw) -> list[str] | str:
    """What is committed, for the final event; "unknown" when the database cannot tell us."""
    try:
        if not job.backend.lost(raw):
            raw.rollback()  # a failed revision may have left the transaction aborted
            return job.read_versions(raw)
    except Exception:  # noqa: S110 - the connection broke: one fresh look below
        pass
    # SQLAlchemy closes the connection when a signal interrupts a statement (it treats that as
    # an exit), though the server is fine: a fresh connection reads what committed.
    try:
        fresh = job.backend.connect(
            job.settings.require_database(), min(job.settings.connect_timeout, LAST_LOOK_TIMEOUT)
        )
    except Exception:
        return UNKNOWN
    try:
        return job.read_versions(fresh)
    except Exception:
        return UNKNOWN
    finally:
        fresh.close()

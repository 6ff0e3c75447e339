"""The commands that change the database: `upgrade`, `downgrade`, `stamp`.

`upgrade head` is nearly always a no-op: that is checked with the driver alone, before the lock
(a no-op needs none) and again once holding it (another runner may just have finished).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from migrator import backoff, project
from migrator.backends import Limits, Raw
from migrator.commands import Job, connected
from migrator.commands.sql import write_sql
from migrator.errors import ConfigError, DDLTimeout, UsageError
from migrator.heads import why_unrecorded
from migrator.job import UNKNOWN
from migrator.locking import migration_lock

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


def at_head(job: Job) -> bool:
    """`upgrade`'s fast path alone: whether the database is already at the recorded head (one
    connection, one query, the driver alone; then `nothing_to_do` is logged, as upgrade does).
    False when that cannot be told so cheaply: then only `upgrade` itself can say."""
    if not job.targets_recorded_head(job.request.revision or "head"):
        return False
    with connected(job) as raw:
        return _finish_if_done(job, raw)


def _change(job: Job, kind: str) -> None:
    target = job.request.revision or "head"
    if job.settings.targets is not None:
        # Whoever set it meant the fleet: changing DATABASE_URL alone would be a guess.
        raise ConfigError(
            f"MIGRATE_TARGETS_FILE is set: {kind} changes one database (DATABASE_URL); "
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
                if waited is None or (cheap and _finish_if_done(job, raw)):
                    return
                _run(job, raw, kind, target)
        finally:
            # Whatever ended the run (a signal, a timeout, a failed revision), say what is
            # committed now.
            if job.outcome.revisions_after is None:
                job.outcome.revisions_after = _revisions_now(job, raw)


def _finish_if_done(job: Job, raw: Raw) -> bool:
    """Finish the run here if the database is at the scripts' single head (read with the
    driver alone): record that as the outcome, log `nothing_to_do`, and answer True."""
    current = job.read_versions(raw)
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


def _run(job: Job, raw: Raw, kind: str, target: str) -> None:
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
                )
                return
            except DDLTimeout as timeout:
                error = _naming_blockers(timeout, watch.seen())
                pause = next(pauses, None) if error.details["kind"] == "lock_timeout" else None
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

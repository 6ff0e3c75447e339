"""One function per command, each a composition of the steps: wait -> lock -> run.

Waiting, locking and reading versions use the driver alone (see database.py); `running`, which
loads SQLAlchemy and Alembic, is imported inside the functions that have work for it, so a run
with nothing to do never pays for those imports.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from types import ModuleType

from migrator import interrupts, versions
from migrator.database import (
    cancel_function,
    connect,
    engine_on,
    lost,
    prepare_for_work,
    refused,
)
from migrator.errors import (
    ConfigError,
    DatabaseRejected,
    DatabaseUnavailable,
    DDLTimeout,
    MigrateError,
    NotUpToDate,
    UsageError,
)
from migrator.heads import recorded_heads, why_unrecorded
from migrator.logs import Log
from migrator.outcome import UNKNOWN, Outcome
from migrator.settings import Settings
from migrator.versions import AlembicIni
from migrator.waiting import describe, wait_for_database

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from typing import Any

    from sqlalchemy import Connection
    from tenacity import RetryCallState, Retrying

    from migrator.cli import Request
    from migrator.database import Raw
    from migrator.running import Project


AWAIT_PROGRESS_INTERVAL = 5.0  # seconds between `awaiting_head` lines while nothing changes


class Job:
    """One run of one command: what was asked, with what, reporting to where."""

    def __init__(self, request: Request, settings: Settings, log: Log, outcome: Outcome) -> None:
        self.request, self.settings, self.log, self.outcome = request, settings, log, outcome

    @cached_property
    def ini(self) -> AlembicIni:
        return AlembicIni.read(self.settings.alembic_config)

    @cached_property
    def known_heads(self) -> list[str] | None:
        """The scripts' heads as Alembic found them at build time, if the files are unchanged."""
        return recorded_heads(self.ini)

    @cached_property
    def project(self) -> Project:
        database = self.settings.database
        project: Project = _running(self).load_project(
            self.settings.alembic_config,
            self.log,
            database_url=database.url if database else None,
        )
        return project

    @property
    def heads(self) -> list[str]:
        return self.known_heads if self.known_heads is not None else sorted(self.project.heads)

    @property
    def lock_name(self) -> str:
        return self.settings.lock_name or self.ini.lock_name


@contextmanager
def connected(job: Job, timeout: float | None = None) -> Iterator[Raw]:
    """A connection once the database accepts one; closed on the way out, whatever happens."""
    database = job.settings.require_database()
    wait = job.settings.wait_timeout if timeout is None else timeout
    raw = wait_for_database(lambda: connect(database, job.settings.connect_timeout), wait, job.log)
    try:
        with interrupts.cancelling(cancel_function(raw)):
            yield raw
    except Exception as error:
        if isinstance(error, MigrateError):
            raise
        if getattr(error, "connection_invalidated", False) or lost(raw):
            raise DatabaseUnavailable(f"lost the database connection: {describe(error)}") from None
        if refused(error):
            raise DatabaseRejected(f"the database refused a query: {describe(error)}") from None
        raise
    finally:
        raw.close()


@contextmanager
def _sqlalchemy(job: Job, raw: Raw) -> Iterator[Connection]:
    """SQLAlchemy on the connection we already hold (and lock on)."""
    with engine_on(raw, job.settings.require_database()).connect() as connection:
        yield connection


def _at_head(job: Job, raw: Raw) -> bool:
    """Whether the database is at the scripts' single head, read with the driver alone."""
    current = versions.current(raw, job.ini)
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


def _mutate(job: Job, kind: str) -> None:
    target = job.request.revision or "head"
    if job.request.sql:
        _offline(job, kind, target)  # writes SQL only: sqlite:// names the dialect, enough
        return
    database = job.settings.require_database()
    if database.in_memory:
        # It would "succeed" on a database that vanishes when the job exits.
        raise ConfigError(
            f"{database.source} is {database.url}, a private in-memory SQLite database: {kind} "
            "would change a database that vanishes when the job exits. Name a file "
            "(sqlite:///app.db, sqlite:////data/app.db); only --sql needs no database"
        )
    # `upgrade head` is nearly always a no-op: check that with the driver alone, before the lock
    # (a no-op needs none) and again once holding it (another runner may just have finished).
    if kind == "upgrade" and job.known_heads is None:
        _say_why_slow(job)
    single = job.known_heads if job.known_heads and len(job.known_heads) == 1 else None
    cheap = kind == "upgrade" and single is not None and target in ("head", single[0])
    if not cheap:
        _validate(job, kind, target)
    with connected(job) as raw:
        if cheap and _at_head(job, raw):
            return
        from migrator.locking import migration_lock  # not needed by a run with nothing to do

        prepare_for_work(raw)
        lock = migration_lock(
            raw,
            database,
            name=job.lock_name,
            timeout=job.settings.lock_timeout,
            log=job.log,
            # A waiter whose work another runner finished stops waiting at once.
            unneeded=(lambda: _at_head(job, raw)) if cheap else (lambda: False),
            waited=job.outcome.waited_for_lock,
        )
        try:
            with lock as waited:
                if waited is None:
                    return
                if cheap and _at_head(job, raw):
                    return
                _run(job, raw, kind, target)
        finally:
            # Whatever ended the run (a signal, a timeout, a failed revision), say what is
            # committed now.
            if job.outcome.revisions_after is None:
                job.outcome.revisions_after = _revisions_now(job, raw)


def _running(job: Job) -> ModuleType:
    """Alembic and SQLAlchemy, loaded only now that there is work for them."""
    job.log.route_stdlib()  # their stdlib records go through our chain, until env.py says otherwise
    from migrator import running

    return running


def _validate(job: Job, kind: str, target: str) -> None:
    _running(job).validate_target(job.project, target, kind)


def _offline(job: Job, kind: str, target: str) -> None:
    _validate(job, kind, target)
    running = _running(job)
    job.settings.require_database()  # the URL names the SQL dialect to write
    start, _, destination = target.rpartition(":")
    running.migrate_offline(job.project, running.STEPS[kind](destination), start, sys.stdout)


def _run(job: Job, raw: Raw, kind: str, target: str) -> None:
    from migrator import blockers
    from migrator.timeouts import Limits

    running = _running(job)
    steps = running.STEPS[kind](target)
    limits = Limits(job.settings.ddl_lock_timeout, job.settings.statement_timeout)
    database = job.settings.require_database()
    with (
        _sqlalchemy(job, raw) as connection,
        blockers.watching(raw, database, job.settings.ddl_lock_timeout) as watch,
    ):
        for attempt in _ddl_retries(job):
            with attempt:
                watch.reset()  # this attempt's blockers only
                try:
                    job.outcome.revisions_after = running.migrate(
                        job.project,
                        connection,
                        steps,
                        limits=limits,
                        log=job.log,
                        outcome=job.outcome,
                        secrets=job.settings.secrets,
                        purge=job.request.purge,
                    )
                except DDLTimeout as error:
                    raise _naming_blockers(error, watch.seen()) from None


def _naming_blockers(error: DDLTimeout, sessions: list[dict[str, Any]]) -> DDLTimeout:
    """A lock timeout, with the sessions that held the table: whom the on-call should ask."""
    if error.details.get("kind") != "lock_timeout":
        return error
    from migrator.blockers import describe

    named = f"; blocked by {describe(sessions)}" if sessions else ""
    return DDLTimeout(f"{error}{named}", **{**error.details, "blocking": sessions})


# Seconds for the one connection attempt that reads the version table on the way out: the
# job is stopping (perhaps on SIGTERM, within the pod's grace period) and must not linger.
LAST_LOOK_TIMEOUT = 3.0


def _revisions_now(job: Job, raw: Raw) -> list[str] | str:
    """What is committed, for the final event; "unknown" when the database cannot tell us."""
    try:
        if not lost(raw):
            raw.rollback()  # a failed revision may have left the transaction aborted
            return versions.current(raw, job.ini)
    except Exception:  # noqa: S110 - the connection broke: one fresh look below
        pass
    # SQLAlchemy closes the connection when a signal interrupts a statement (it treats that as
    # an exit), though the server is fine: a fresh connection reads what committed.
    try:
        fresh = connect(
            job.settings.require_database(),
            min(job.settings.connect_timeout, LAST_LOOK_TIMEOUT),
        )
    except Exception:
        return UNKNOWN
    try:
        return versions.current(fresh, job.ini)
    except Exception:
        return UNKNOWN
    finally:
        fresh.close()


def _ddl_retries(job: Job) -> Retrying:
    """A revision that hit lock_timeout is rolled back; wait a little and re-plan, a few times.

    The application transaction that held the table is usually short; backing off with jitter
    lets it finish instead of queueing our ALTER (and all traffic behind it) in front of it.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    def report(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        job.log.warning(
            "ddl_lock_timeout",
            attempt=state.attempt_number,
            retries=job.settings.ddl_retries,
            revision=getattr(error, "details", {}).get("revision"),
            blocking=getattr(error, "details", {}).get("blocking"),
            retry_in_s=round(state.upcoming_sleep, 3),
        )

    return Retrying(
        retry=retry_if_exception(
            lambda error: isinstance(error, DDLTimeout) and error.details["kind"] == "lock_timeout"
        ),
        stop=stop_after_attempt(job.settings.ddl_retries + 1),
        wait=wait_random_exponential(multiplier=0.5, max=10),
        before_sleep=report,
        reraise=True,
    )


def upgrade(job: Job) -> None:
    _mutate(job, "upgrade")


def downgrade(job: Job) -> None:
    if job.request.sql and ":" not in (job.request.revision or ""):
        # Offline there is no database to read the starting point from.
        raise UsageError("downgrade --sql needs a range FROM:TO, for example 4d5e6f7a8b93:base")
    _mutate(job, "downgrade")


def stamp(job: Job) -> None:
    _mutate(job, "stamp")


def current(job: Job) -> None:
    with connected(job) as raw:
        revisions = versions.current(raw, job.ini)
    job.outcome.revisions_before = job.outcome.revisions_after = revisions
    # `current`, as in plan, nothing_to_do and awaiting_head; `revisions` is the old name, kept
    # as an alias for one release (README).
    job.log.info(
        "current",
        current=revisions,
        heads=job.heads,
        at_head=revisions == job.heads,
        revisions=revisions,
    )


def heads(job: Job) -> None:
    script = job.project.script
    job.log.info(
        "heads",
        heads=[
            {
                "revision": revision.revision,
                "message": revision.doc,
                "branch_labels": sorted(revision.branch_labels),
            }
            for revision in script.get_revisions("heads")
            if revision is not None
        ],
    )


def history(job: Job) -> None:
    script = job.project.script
    heads = set(script.get_heads())
    revisions = [
        {
            "revision": revision.revision,
            "down_revision": revision.down_revision,
            "message": revision.doc,
            "is_head": revision.revision in heads,
        }
        for revision in script.walk_revisions()
    ]
    job.log.info("history", revisions=revisions[::-1])


def check(job: Job) -> None:
    running = _running(job)
    with connected(job) as raw:
        current = versions.current(raw, job.ini)
        with _sqlalchemy(job, raw) as connection:
            running.compare_models(job.project, connection, current)
    job.log.info("check", differences=[], up_to_date=True)


def wait(job: Job) -> None:
    with connected(job):
        pass


def await_head(job: Job) -> None:
    """Poll until the database is at this image's head; never migrates, never locks.

    Exit 7 when the database answers but is not at head by the deadline; exit 3 when it never
    answered at all, because that is a different page for the on-call engineer.
    """
    started = time.monotonic()
    deadline = started + job.settings.await_timeout
    heads = job.heads
    seen: list[str] | None = None  # the last revisions read; None: the database never answered
    next_report = started
    while True:
        try:
            with connected(job, timeout=max(0.0, deadline - time.monotonic())) as raw:
                while (found := versions.current(raw, job.ini)) != heads:
                    now = time.monotonic()
                    # On every change, and at a steady pace meanwhile: never silent for long.
                    if found != seen or now >= next_report:
                        job.log.info(
                            "awaiting_head",
                            current=found,
                            heads=heads,
                            waited_s=round(now - started, 3),
                            timeout_s=job.settings.await_timeout,
                        )
                        next_report = now + AWAIT_PROGRESS_INTERVAL
                    seen = found
                    _pause_before_next_poll(deadline, seen, heads)
        except DatabaseUnavailable as error:
            if seen is None and time.monotonic() >= deadline:
                raise
            job.log.warning("database_unavailable", error=str(error))  # broke between polls
            _pause_before_next_poll(deadline, seen, heads)
            continue
        job.outcome.revisions_after = found
        job.log.info("up_to_date", current=found, revisions=found)  # revisions: old name
        return


def _pause_before_next_poll(deadline: float, current: list[str] | None, heads: list[str]) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise NotUpToDate(
            f"the database did not reach head {heads} within MIGRATE_AWAIT_TIMEOUT (--timeout)",
            current=current,
            heads=heads,
        )
    import random

    time.sleep(min(random.uniform(0.5, 1.0), remaining))  # noqa: S311 - jitter, not crypto


def lint(job: Job) -> None:
    """Offline: no database; exit 8 (LintFindings) when a revision would lock or break."""
    from migrator.lint import lint as lint_revisions

    options = job.request.lint or {}
    lint_revisions(
        job.settings.alembic_config,
        revisions=job.request.revision,
        since=options.get("since"),
        fmt=options.get("format", "json"),
        output_path=options.get("output"),
        pg_version=options.get("pg-version"),
        log=job.log,
    )


COMMANDS: dict[str, Callable[[Job], None]] = {
    "upgrade": upgrade,
    "downgrade": downgrade,
    "stamp": stamp,
    "current": current,
    "heads": heads,
    "history": history,
    "check": check,
    "wait": wait,
    "await-head": await_head,
    "lint": lint,
}

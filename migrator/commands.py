"""One function per command, each a composition of the steps: wait -> lock -> run."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import structlog
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from migrator import interrupts, running
from migrator.database import build_engine
from migrator.errors import DatabaseUnavailable, DDLTimeout, NotUpToDate, UsageError
from migrator.locking import migration_lock
from migrator.running import Outcome, Project, Steps
from migrator.settings import Settings
from migrator.timeouts import Limits
from migrator.waiting import describe, wait_for_database


@dataclass(frozen=True)
class Request:
    """What the command line asked for."""

    command: str
    revision: str | None = None
    sql: bool = False


@dataclass
class Job:
    request: Request
    settings: Settings
    log: structlog.stdlib.BoundLogger
    outcome: Outcome

    @cached_property
    def project(self) -> Project:
        database = self.settings.database
        return running.load_project(
            str(self.settings.alembic_config),
            self.log,
            database_url=database.url if database else None,
        )

    @property
    def lock_name(self) -> str:
        return self.settings.lock_name or self.project.lock_name()


@contextmanager
def connected(job: Job, timeout: float | None = None) -> Iterator[Connection]:
    """A connection once the database accepts one; closed on the way out, whatever happens."""
    engine = build_engine(job.settings)
    wait = job.settings.wait_timeout if timeout is None else timeout
    connection = wait_for_database(engine, wait, job.log)
    driver = connection.connection.dbapi_connection
    # psycopg2 cancels the running statement; sqlite3 interrupts it. Both are thread-safe.
    cancel = getattr(driver, "cancel", None) or driver.interrupt  # type: ignore[union-attr]
    try:
        with interrupts.cancelling(cancel):
            yield connection
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        raise DatabaseUnavailable(f"lost the database connection: {describe(error)}") from None
    finally:
        connection.close()
        engine.dispose()


def _mutate(job: Job, steps_to: Callable[[str], Steps]) -> None:
    target = job.request.revision or "head"
    running.validate_target(job.project, target)
    if job.request.sql:
        job.settings.require_database()  # the URL names the SQL dialect to write
        start, _, destination = target.rpartition(":")
        running.migrate_offline(job.project, steps_to(destination), start, sys.stdout)
        return
    limits = Limits(job.settings.ddl_lock_timeout, job.settings.statement_timeout)
    with (
        connected(job) as connection,
        migration_lock(connection, job.lock_name, job.settings.lock_timeout, job.log) as waited,
    ):
        job.outcome.lock_wait_s = waited
        for attempt in _ddl_retries(job):
            with attempt:
                running.migrate(
                    job.project,
                    connection,
                    steps_to(target),
                    limits=limits,
                    log=job.log,
                    outcome=job.outcome,
                )


def _ddl_retries(job: Job) -> Retrying:
    """A revision that hit lock_timeout is rolled back; wait a little and re-plan, a few times.

    The application transaction that held the table is usually short; backing off with jitter
    lets it finish instead of queueing our ALTER (and all traffic behind it) in front of it.
    """

    def report(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        job.log.warning(
            "ddl_lock_timeout",
            attempt=state.attempt_number,
            retries=job.settings.ddl_retries,
            revision=getattr(error, "details", {}).get("revision"),
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
    _mutate(job, running.upgrade_steps)


def downgrade(job: Job) -> None:
    if job.request.sql and ":" not in (job.request.revision or ""):
        # Offline there is no database to read the starting point from.
        raise UsageError("downgrade --sql needs a range FROM:TO, for example 4d5e6f7a8b93:base")
    _mutate(job, running.downgrade_steps)


def stamp(job: Job) -> None:
    _mutate(job, running.stamp_steps)


def current(job: Job) -> None:
    with connected(job) as connection:
        revisions = running.current_heads(job.project, connection)
    job.outcome.revisions_before = job.outcome.revisions_after = revisions
    heads = job.project.heads
    job.log.info(
        "current",
        revisions=revisions,
        heads=heads,
        at_head=sorted(revisions) == sorted(heads),
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
    with connected(job) as connection:
        running.compare_models(job.project, connection)
    job.log.info("check", differences=[], up_to_date=True)


def wait(job: Job) -> None:
    with connected(job):
        pass


def await_head(job: Job) -> None:
    """Poll until the database is at this image's head; never migrates, never locks.

    Exit 7 when the database answers but is not at head by the deadline; exit 3 when it never
    answered at all, because that is a different page for the on-call engineer.
    """
    deadline = time.monotonic() + job.settings.await_timeout
    heads = sorted(job.project.heads)
    current: list[str] | None = None
    while True:
        try:
            with connected(job, timeout=max(0.0, deadline - time.monotonic())) as connection:
                while (found := sorted(running.current_heads(job.project, connection))) != heads:
                    if found != current:
                        job.log.info("awaiting_head", current=found, heads=heads)
                    current = found
                    _pause_before_next_poll(deadline, current, heads)
        except DatabaseUnavailable as error:
            if time.monotonic() >= deadline:
                raise
            job.log.warning("database_unavailable", error=str(error))  # broke between polls
            _pause_before_next_poll(deadline, current, heads)
            continue
        job.outcome.revisions_after = found
        job.log.info("up_to_date", revisions=found)
        return


def _pause_before_next_poll(deadline: float, current: list[str] | None, heads: list[str]) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise NotUpToDate(
            f"the database did not reach head {heads} within MIGRATE_AWAIT_TIMEOUT (--timeout)",
            current=current,
            heads=heads,
        )
    time.sleep(min(random.uniform(0.5, 1.0), remaining))  # noqa: S311 - jitter, not crypto


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
}

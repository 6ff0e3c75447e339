"""Alembic's migrations on the connection the runner holds, one event per revision.

We call Alembic's own machinery (the project's env.py, run in our JobEnvironment, see
environment.py) with our own "work function", the way alembic.command does. That function plans
the steps after the lock is held, from the heads Alembic just read on the locked connection, and
hands Alembic a generator: Alembic asks it for the next step only after the previous step's
transaction committed, so `migration_finished` is logged after the commit, never before. After
env.py returns, the version table on the locked connection must show the heads Alembic reported,
or the run fails: the job never claims work it cannot see.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from alembic.runtime.migration import MigrationContext, MigrationStep
from sqlalchemy import Connection
from sqlalchemy.exc import InvalidRequestError

from migrator.account import Account, account_text
from migrator.backends import UNSET, Backend, Limits, VersionTable
from migrator.errors import Interrupted, ProjectError
from migrator.failures import Scene, translated
from migrator.halfapplied import Record
from migrator.job import Outcome
from migrator.logs import Log
from migrator.project.environment import JobEnvironment, hand_over, per_migration, refuse_multidb
from migrator.project.loading import Project
from migrator.project.steps import plan, refuse_unknown, step_info


class StepHook(Protocol):
    """The run history's hooks (history.Recorder): a step starts; it ran, uncommitted yet."""

    def starting(self, step: MigrationStep) -> None: ...

    def applied(self, **kw: Any) -> None: ...


def migrate(
    project: Project,
    connection: Connection,
    kind: str,
    target: str,
    *,
    backend: Backend,
    limits: Limits,
    log: Log,
    outcome: Outcome,
    secrets: tuple[str, ...] = (),
    purge: bool = False,
    versions: VersionTable | None = None,
    recorder: StepHook | None = None,
) -> list[str]:
    """Plan from the database's current heads, run each step, and return the verified heads.

    `purge` (stamp --purge): Alembic empties the version table first and plans from base, so
    revisions the scripts do not know are no obstacle (that is the repair for them)."""
    script = project.script
    each = per_migration(project.config)
    ran: list[dict[str, Any]] = []
    # Where DDL commits as it runs, the statements of the revision in flight are what a failure
    # leaves applied: counted on the locked connection, for the `failed` event (account.py).
    raw = connection.connection.dbapi_connection
    account = Account(secrets, pending=lambda: backend.uncommitted_rows(raw))
    if not backend.transactional_ddl:
        account.attach(connection)
    # Where DDL commits as it runs, a marker says which revision is in flight (halfapplied.py);
    # a stamp changes the version table alone, in its transaction, and needs none.
    marking = versions if not backend.transactional_ddl and kind != "stamp" else None

    def work(heads: tuple[str, ...], _: MigrationContext) -> Iterable[MigrationStep]:
        outcome.running = None  # a retry starts afresh: nothing is in flight while planning
        if outcome.revisions_before is None:  # a retry re-plans, but "before" stays the first
            outcome.revisions_before = list(heads)
        ran.clear()
        refuse_unknown(project, heads)
        planned = plan(script, kind, target, heads)

        def before_each(step: MigrationStep) -> None:
            module = getattr(getattr(step, "revision", None), "module", None)
            backend.apply_limits(connection, limits, getattr(module, "ddl_lock_timeout", UNSET))
            if marking and outcome.running is not None:
                # On the raw connection: not one of the revision's statements (the account).
                backend.write_note(raw, marking, Record.in_flight(outcome.running).note())
            account.reset()  # after our own statements: only the revision's count
            if recorder is not None:
                recorder.starting(step)

        def after_all() -> None:
            if marking:
                backend.write_note(raw, marking, "")  # every revision committed

        return _narrate(
            planned, heads, log, outcome, before_each, after_all=after_all, ran=ran, committed=each
        )

    refuse_multidb(project.config)
    environment = JobEnvironment(
        project.config, script, fn=work, connection=connection, per_migration=each, log=log,
        secrets=secrets, purge=purge, on_step=recorder.applied if recorder else None,
    )  # fmt: skip
    project.config.attributes["connection"] = connection
    scene = Scene(
        backend=backend,
        running=lambda: outcome.running,
        scripts=script.dir,
        account=account.failure,
    )
    try:
        with translated(scene), environment:
            _run_env(project, environment)
    except Interrupted as stop:
        # Where DDL commits as it runs, what the revision left matters after a signal too.
        running = outcome.running
        if backend.transactional_ddl or running is None or stop.details:
            raise
        failure = account.failure()
        raise Interrupted(
            stop.signum,
            f"{stop.signal_name} while running {running['revision']}: "
            f"{account_text(running['revision'], failure)}",
            revision=running["revision"],
            direction=running["direction"],
            down_revision=running["down_revision"],
            **failure.details,
        ) from None
    with translated(scene):
        heads = _verified(environment, outcome)
    if not each and ran:
        outcome.applied = len(ran)
        log.info("migrations_committed", steps=len(ran), revisions=ran)
    return heads


def _run_env(project: Project, environment: JobEnvironment) -> None:
    """env.py, run once; an asyncio env.py gets a second run with an async driver's URL."""
    try:
        project.script.run_env()
    except InvalidRequestError as error:
        # SQLAlchemy's words when an asyncio engine is built on psycopg2's URL; raised while
        # env.py builds its engine, so nothing has been configured, let alone run.
        if environment.configured or "requires an async driver" not in str(error):
            raise
        url = _async_url(project.config.attributes.get("database_url") or "")
        if url is None:
            raise ProjectError(
                "env.py builds an asyncio engine (create_async_engine or "
                "async_engine_from_config), and this image has no async PostgreSQL driver: "
                "install asyncpg in a derived image (pip install asyncpg), or let env.py run "
                "do_run_migrations(config.attributes['connection']) when the job hands one over"
            ) from None
        hand_over(project.config, url)
        environment.adapted.append(
            "env.py builds an asyncio engine: it was given the job's URL for asyncpg "
            "(postgresql+asyncpg://), and ran a second time"
        )
        project.script.run_env()


def _async_url(url: str) -> str | None:
    """The job's URL for asyncpg, when it is installed; libpq's sslmode is asyncpg's ssl."""
    try:
        import asyncpg  # noqa: F401
        import greenlet  # noqa: F401
    except ImportError:
        return None
    return url.replace("postgresql+psycopg2://", "postgresql+asyncpg://", 1).replace(
        "sslmode=", "ssl=", 1
    )


def _verified(environment: JobEnvironment, outcome: Outcome) -> list[str]:
    """The heads on the locked connection, once they are what Alembic said it made them."""
    if outcome.revisions_before is None:
        raise ProjectError(
            "env.py returned without running the migrations: it must call "
            "context.run_migrations() after context.configure(...)"
        )
    expected = environment.heads_after
    if expected is None:
        expected = sorted(outcome.revisions_before)
    found = environment.current_heads()
    if found != expected:
        raise ProjectError(
            f"the migrations did not reach the locked database: Alembic reported {expected}, "
            f"but the version table on the job's connection holds {found}. Check env.py: it "
            "must pass the connection it is given to context.configure() and run the "
            "migrations inside context.begin_transaction()",
            expected=expected,
            found=found,
        )
    return found


def _narrate(
    planned: list[MigrationStep],
    heads: tuple[str, ...],
    log: Log,
    outcome: Outcome,
    before_each: Callable[[MigrationStep], None],
    *,
    after_all: Callable[[], None],
    ran: list[dict[str, Any]],
    committed: bool,
) -> Iterator[MigrationStep]:
    """One event before and after each step; `migration_finished` only once it is committed."""
    infos = [step_info(step) for step in planned]
    if not infos:
        log.info("nothing_to_do", current=list(heads))
        return
    log.info("plan", current=list(heads), steps=len(infos), revisions=infos)
    for number, (step, info) in enumerate(zip(planned, infos, strict=True), start=1):
        log.info("migration_started", step=number, steps=len(infos), **info)
        outcome.running = info
        before_each(step)
        started = time.monotonic()
        yield step  # Alembic runs it, and commits if per revision, before asking for the next
        outcome.running = None
        ran.append(info)
        if committed:
            outcome.applied += 1
        log.info(
            "migration_finished" if committed else "migration_ran",
            step=number,
            steps=len(infos),
            duration_s=round(time.monotonic() - started, 3),
            **info,
        )
    after_all()

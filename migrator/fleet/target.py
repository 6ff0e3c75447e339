"""One target of a fleet, migrated the way a single-database run of the job migrates it.

At head (nearly always), the thread itself asks, on one connection with one query: that is
`upgrade`'s own fast path (commands.migrate.at_head), on a Job for this target whose log adds
`target` to every event. When there is work, the target's `upgrade` runs in a child process of
the job, `upgrade REVISION` with the target's URL: Alembic is not thread-safe (its `context`
and `op` are module-level proxies that EnvironmentContext and Operations install for the one
migration in flight, alembic/runtime/environment.py `_install_proxy`), so two targets migrated
on threads of one process would run each other's revisions. A child has its own lock on its own
connection, rolls back on SIGTERM as every run does, and ends in the final event that becomes
this target's `target_finished` or `target_failed`; its other events are relayed with `target`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from migrator.backends import VersionTable
from migrator.commands import Job, connected
from migrator.commands.migrate import at_head
from migrator.errors import ConfigError, Interrupted, MigrateError, exit_code_for
from migrator.fleet.schedule import AT_HEAD, FAILED, MIGRATED, SKIPPED, Children, Result
from migrator.fleet.schemas import Pass
from migrator.fleet.targets import Target
from migrator.logs import Log
from migrator.settings import FLEET_OPTIONS, Settings

# What a child must not inherit: the fleet's own settings (a child migrates one database) and
# the other ways of naming a database.
_NOT_INHERITED = (
    *FLEET_OPTIONS,
    "JOB_COMPLETION_INDEX",
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "DATABASE_PASSWORD_FILE",
)
_RUN_JOB = "from migrator.cli import run; run()"
_FINAL = ("finished", "failed")


def migrate_target(job: Job, target: Target, log: Log, children: Children, known: Pass) -> Result:
    """Migrate `target` as `job` (the fleet's) asks; every outcome is a Result, never a raise.
    `known`: what the fleet read for its schema targets already (schemas.py)."""
    started = time.monotonic()
    log.info("target_started", database=target.database.redacted)
    settings = job.settings._replace(
        database=target.database, targets=None, shard=None, lock_name=lock_name(job, target)
    )
    own = job.for_database(settings, log)
    try:
        if target.schema is not None and known.refused is not None:
            raise known.refused  # their shared database's answer: no second wait for it
        if at_head(own, known.versions.get(target.name)):
            return _finished(log, target.name, started, {"applied": 0, **_revisions(own)})
        if target.schema is not None:
            _require_schema(own, target.schema)
    except BaseException as error:  # each target's failure is its own report
        return _failed(log, target.name, started, _failure(error))
    try:
        return _in_child(own, target, log, children, started)
    except Exception as error:  # the OS refused a process or a pipe: this target's failure
        return _failed(log, target.name, started, _failure(error))


def _in_child(own: Job, target: Target, log: Log, children: Children, started: float) -> Result:
    """`upgrade` for this target in a process of its own; its final event becomes ours."""
    revision = own.request.revision or "head"
    child = children.start(target.name, lambda: _spawn(revision, own.settings))
    if child is None:
        log.info("target_skipped", reason="the fleet is stopping")
        return Result(target.name, SKIPPED)
    try:
        final = _relay(child.stdout or (), log)
        code = child.wait()
    finally:
        children.ended(target.name)
    if final is None or final.get("exit_code") != code:
        # Killed, or crashed before its final event: its exit status is all there is.
        final = {
            "exit_code": code,
            "error": "TargetJobDied",
            "message": f"the job for this target ended without its final event ({_status(code)})",
        }
    final["exit_code"] = 128 - code if code < 0 else code
    if final["exit_code"] == 0:
        return _finished(log, target.name, started, final)
    return _failed(log, target.name, started, final)


def lock_name(job: Job, target: Target) -> str | None:
    """The target's migration lock: the one a single run on its database takes. Advisory locks
    belong to one database, so a database target needs no more; schema targets share one
    database, so theirs names the schema, as `version_table_schema` would."""
    if target.schema is None:
        return job.settings.lock_name
    if job.settings.lock_name:
        return f"{job.settings.lock_name}:{target.schema}"
    return VersionTable(job.ini.versions.name, target.schema).lock_name


def _require_schema(job: Job, schema: str) -> None:
    """A schema target's schema must be there: the job never creates what it was not asked to
    (and without it PostgreSQL has no schema to create the version table in)."""
    with connected(job) as raw:
        cursor = raw.cursor()
        try:
            cursor.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,))
            exists = bool(cursor.fetchone()[0])
        finally:
            cursor.close()
    if not exists:
        raise ConfigError(
            f"schema {schema!r} does not exist in the database: create it (and grant it to the "
            "job's role) before migrating it"
        )


def _revisions(job: Job) -> dict[str, Any]:
    outcome = job.outcome
    return {
        "revisions_before": outcome.revisions_before,
        "revisions_after": outcome.revisions_after,
    }


def _spawn(revision: str, settings: Settings) -> subprocess.Popen[str]:
    """`upgrade REVISION` on this target alone, with the fleet's settings, logging JSON."""
    return subprocess.Popen(  # our own interpreter and module, no shell
        [sys.executable, "-c", _RUN_JOB, "upgrade", revision],
        env=_child_environment(os.environ, settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # anything it prints becomes an event here, never stray text
        text=True,
        encoding="utf-8",
        errors="replace",
    )


def _child_environment(environ: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """The fleet's environment, as the fleet's settings read (flags included), for one target."""
    env = {key: value for key, value in environ.items() if key not in _NOT_INHERITED}
    database = settings.require_database()
    env.update(
        DATABASE_URL=database.url,
        ALEMBIC_CONFIG=settings.alembic_config,
        MIGRATE_WAIT_TIMEOUT=repr(settings.wait_timeout),
        MIGRATE_CONNECT_TIMEOUT=repr(settings.connect_timeout),
        MIGRATE_LOCK_TIMEOUT=repr(settings.lock_timeout),
        MIGRATE_DDL_LOCK_TIMEOUT=repr(settings.ddl_lock_timeout),
        MIGRATE_STATEMENT_TIMEOUT=repr(settings.statement_timeout),
        MIGRATE_DDL_RETRIES=str(settings.ddl_retries),
        MIGRATE_TERMINATION_LOG="off",  # the fleet's own summary is the pod's
        MIGRATE_LOG_FORMAT="json",  # read back here, line by line
        MIGRATE_LOG_LEVEL=settings.log_level,
        MIGRATE_LOCK_NAME=settings.lock_name or "",
    )
    return env


def _relay(lines: Iterable[str], log: Log) -> dict[str, Any] | None:
    """The child's events, relayed with `target`; its final event is returned instead."""
    final = None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            if line.strip():
                log.warning("target_output", text=line.rstrip("\n"))
            continue
        name, level = event.pop("event"), event.pop("level", "info")
        for key in ("timestamp", "logger"):
            event.pop(key, None)
        if name in _FINAL:
            final = event
            continue
        if name == "starting":  # one `starting` per run: the fleet's
            name, event = "target_job_started", {"pid": event.get("pid")}
        getattr(log, level if level in ("debug", "info", "warning", "error") else "info")(
            name, **event
        )
    return final


def _failure(error: BaseException) -> dict[str, Any]:
    """A failure in this process, as a child's `failed` event would give it."""
    fields: dict[str, Any] = {
        "exit_code": int(exit_code_for(error)),
        "error": error.__class__.__name__,
        "message": str(error),
    }
    if isinstance(error, MigrateError):
        fields.update({key: value for key, value in error.details.items() if key not in fields})
    elif not isinstance(error, Interrupted):
        import traceback

        fields["traceback"] = traceback.format_exception(error)
    return fields


def _finished(log: Log, name: str, started: float, final: dict[str, Any]) -> Result:
    applied = int(final.get("applied") or 0)
    duration = round(time.monotonic() - started, 3)
    state = MIGRATED if applied else AT_HEAD
    log.info(
        "target_finished",
        exit_code=0,
        state=state,
        applied=applied,
        revisions_before=final.get("revisions_before"),
        revisions_after=final.get("revisions_after"),
        duration_s=duration,
    )
    return Result(name, state, 0, applied, duration)


def _failed(log: Log, name: str, started: float, final: dict[str, Any]) -> Result:
    duration = round(time.monotonic() - started, 3)
    code = int(final.pop("exit_code"))
    applied = int(final.pop("applied", 0) or 0)
    for key in ("command", "duration_s", "lock_wait_s"):
        final.pop(key, None)
    log.error("target_failed", exit_code=code, applied=applied, duration_s=duration, **final)
    return Result(name, FAILED, code, applied, duration)


def _status(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"

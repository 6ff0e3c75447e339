"""`fleet-upgrade`: upgrade every target of MIGRATE_TARGETS_FILE (or of MIGRATE_TARGETS_QUERY's
rows) that is this shard's.

A command of its own rather than `upgrade` with a targets file: its report is another contract
(one `target_finished`/`target_failed` per target, `fleet_finished` with the counts, exit 9
when some targets failed), and `upgrade` keeps meaning one database, DATABASE_URL, whatever
else the environment holds (with MIGRATE_TARGETS_FILE set it refuses rather than guess).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO, cast

from migrator import project
from migrator.commands import Job
from migrator.errors import ConfigError, TargetsFailed
from migrator.fleet.schedule import (
    AT_HEAD,
    FAILED,
    MIGRATED,
    SKIPPED,
    STATES,
    Children,
    Plan,
    Result,
    run_targets,
)
from migrator.fleet.schemas import Pass, read_versions
from migrator.fleet.sharding import Shard, select
from migrator.fleet.target import migrate_target
from migrator.fleet.targets import Target
from migrator.logs import Log

# How many failed targets the final message names; all of them are in `fleet_finished`.
NAMED_IN_MESSAGE = 10


class Gate:
    """The log stream the targets' threads share: one line at a time, and nothing once the
    fleet has reported (a thread still waiting for a database must not write past the final
    event, which is the last line by contract)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream, self._lock, self._open = stream, threading.Lock(), True

    def write(self, text: str) -> int:
        with self._lock:
            if self._open:
                self._stream.write(text)
                self._stream.flush()
        return len(text)

    def flush(self) -> None:
        """Each write flushes."""

    def isatty(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    def close(self) -> None:
        with self._lock:
            self._open = False


def fleet_upgrade(job: Job) -> None:
    settings = job.settings
    if settings.fleet_source is None:
        raise ConfigError(
            "fleet-upgrade needs MIGRATE_TARGETS_FILE (--targets-file): a JSON or YAML list of "
            '{"name": ..., "url": ...}, {"name": ..., "url_file": ...} or '
            '{"name": ..., "schema": ...}; or MIGRATE_TARGETS_QUERY (--targets-query), a query '
            "returning those columns"
        )
    if settings.targets is None:
        from migrator.fleet.registry import query_targets

        targets = query_targets(job)
        job.outcome.secrets = tuple(s for target in targets for s in target.database.secrets)
    else:
        targets = settings.targets
    if job.ini.version_table_schema and any(t.schema for t in targets):
        # Every schema target's version table would be that one table.
        raise ConfigError(
            f"alembic.ini sets version_table_schema = {job.ini.version_table_schema}, and the "
            "targets have schema targets: each needs its version table in its own schema; "
            "remove the setting (the job sets each target's search_path)"
        )
    started = time.monotonic()
    revision = job.request.revision or "head"
    shard = settings.shard or Shard()
    mine, canary = canary_first(select(targets, shard), settings.canary, targets)
    if not job.targets_recorded_head(revision):
        project.validate(job.project, revision, "upgrade")  # once here, not once per target
    gate = Gate(job.log.stream)  # job.known_heads is read: the threads share it
    # It writes, flushes, says isatty; and masks the queried targets' passwords too.
    log = job.log.bind(stream=cast(TextIO, gate), secrets=(*settings.secrets, *job.outcome.secrets))
    plan = Plan(settings.parallel, canary, settings.on_error == "stop")
    group = settings.canary if isinstance(settings.canary, str) else None
    log.info(
        "fleet_started",
        revision=revision,
        targets=len(targets),
        shard=shard.number,
        shards=shard.total,
        selected=len(mine),
        parallel=plan.parallel,
        canary=plan.canary,
        canary_group=group,
        on_error=settings.on_error,
    )
    # Only where the fast path could answer: the head recorded at build time.
    read = read_versions(job, mine) if job.targets_recorded_head(revision) else Pass({})
    children = Children()
    try:
        results, stopped = run_targets(
            mine,
            lambda target: migrate_target(
                job, target, _target_log(log, job, target), children, read
            ),
            plan,
            children,
        )
        job.outcome.applied = sum(result.applied for result in results)
        summary = _summary(results, stopped is not None, time.monotonic() - started)
        (log.info if not summary["failed"] and stopped is None else log.error)(
            "fleet_finished", **summary
        )
    finally:
        gate.close()
    if stopped is not None:
        raise stopped
    failed = summary["failed_targets"]
    if failed:
        raise TargetsFailed(_message(failed, len(results)), failed_targets=failed)


def canary_first(
    mine: list[Target], canary: int | str, targets: Sequence[Target]
) -> tuple[list[Target], int]:
    """This shard's targets in the order they run, and how many of the first are the canary:
    the first `canary` ones, or the group of that name moved to the front (in list order)."""
    if isinstance(canary, int):
        return mine, canary
    if not any(target.group == canary for target in targets):
        groups = sorted({target.group for target in targets if target.group})
        known = ", ".join(groups[:NAMED_IN_MESSAGE]) or "none"
        raise ConfigError(
            f"MIGRATE_CANARY={canary!r} names a group that no target carries (groups: {known})"
        )
    # A shard without a target of the group has no canary: its pod cannot see another's.
    first = [target for target in mine if target.group == canary]
    return first + [target for target in mine if target.group != canary], len(first)


def _target_log(log: Log, job: Job, target: Target) -> Log:
    """A target's log: its events carry its name, and mask its own password (and
    DATABASE_URL's). Only its own: its events come from its own connection and its own child,
    which know no other, and checking every line against every target's password would make
    each line cost more the larger the fleet."""
    database = job.settings.database
    own = (*(database.secrets if database else ()), *target.database.secrets)
    return log.bind(target=target.name, secrets=own)


def _summary(results: list[Result], interrupted: bool, seconds: float) -> dict[str, Any]:
    counts = {state: sum(result.state == state for result in results) for state in STATES}
    summary: dict[str, Any] = {
        "selected": len(results),
        MIGRATED: counts[MIGRATED],
        AT_HEAD: counts[AT_HEAD],
        FAILED: counts[FAILED],
        SKIPPED: counts[SKIPPED],
        "failed_targets": [
            {"name": result.name, "exit_code": result.exit_code}
            for result in results
            if result.state == FAILED
        ],
        "applied": sum(result.applied for result in results),
        "duration_s": round(seconds, 3),
    }
    if interrupted:
        summary["interrupted"] = True
        summary["finished_targets"] = [
            result.name for result in results if result.state in (MIGRATED, AT_HEAD)
        ]
    return summary


def _message(failed: list[dict[str, Any]], total: int) -> str:
    named = ", ".join(f"{item['name']} (exit {item['exit_code']})" for item in failed[:10])
    more = f" and {len(failed) - NAMED_IN_MESSAGE} more" if len(failed) > NAMED_IN_MESSAGE else ""
    return f"{len(failed)} of {total} targets failed: {named}{more}; rerun to retry them"

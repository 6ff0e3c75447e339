"""The fleet's scenarios (issue 17): `fleet-upgrade` against one run of the job per target.

Called by bench/run.py with its Bench (the runtime, the cluster, the spawner, the samples); kept
here so that run.py stays the harness and the single-database scenarios. Every target is a
schema in one database (the cheapest fleet to set up, and the one the one-pass read serves).

- At head: each schema holds the version table at the 5-revision chain's head, written directly
  (the check reads only that table; the revisions' own tables would change nothing it does).
  The reference is one `upgrade head` per target, run one after the other as a loop in a shell
  script would: `separate` runs are measured and their mean scaled to the fleet's size, since
  1,000 real runs would take the benchmark ~90 s per iteration.
- With work: each schema is empty and the 1-revision chain is applied to every target, so each
  target does one revision's work in a child process, at MIGRATE_PARALLEL 1, 2, 4, 8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

AT_HEAD = "fleet: {} schema targets at head"
SEPARATE = "fleet: one no-op run per target, {} targets (mean of {} runs, scaled)"
WORK = "fleet: {} targets with work, MIGRATE_PARALLEL={}"
RSS = "peak RSS, fleet at head, {} targets"


def at_head(bench: Any, count: int, separate: int) -> None:
    """`fleet-upgrade` over `count` schema targets at head; then, if `separate`, the reference."""
    scenario = AT_HEAD.format(count)
    with bench.database() as name:
        schemas = _schemas(bench, name, count, head=bench.head(5))
        env = _fleet_env(bench, name, 5, schemas, "4")
        argv, one = _job(bench, "fleet-upgrade"), _job(bench, "upgrade", "head")
        singles = [_schema_env(bench, name, 5, schemas[k % count]) for k in range(separate)]
        bench.finish(bench.spawner.start(f"{scenario} warm-up", argv, env))
        for iteration in range(bench.iterations):
            run = bench.finish(bench.spawner.start(scenario, argv, env))
            _check(bench, run, at_head=count, migrated=0)
            bench.sample(scenario, "runner").add(run.wall)
            bench.sample(RSS.format(count), "runner").add(run.rss_mib)
            if singles:
                label = f"{scenario}: one run"
                walls = [bench.finish(bench.spawner.start(label, one, e)).wall for e in singles]
                bench.sample(SEPARATE.format(count, separate), "separate").add(
                    sum(walls) / len(walls) * count
                )
            bench.log(f"{scenario}: iteration {iteration + 1}/{bench.iterations} done")


def with_work(bench: Any, count: int, parallels: tuple[int, ...]) -> None:
    """`fleet-upgrade` over `count` empty schemas, one revision each, at each parallelism."""
    for parallel in parallels:
        scenario = WORK.format(count, parallel)
        for iteration in range(bench.work_iterations):
            with bench.database() as name:
                schemas = _schemas(bench, name, count, head=None)
                env = _fleet_env(bench, name, 1, schemas, str(parallel))
                run = bench.finish(bench.spawner.start(scenario, _job(bench, "fleet-upgrade"), env))
            _check(bench, run, at_head=0, migrated=count)
            bench.sample(scenario, "runner").add(run.wall)
            bench.log(f"{scenario}: iteration {iteration + 1}/{bench.work_iterations} done")
    bench.checks.append(
        "Fleet: every fleet-upgrade exited 0 with fleet_finished counting each of its targets "
        "(at head, or migrated once)."
    )


def _schemas(bench: Any, database: str, count: int, head: str | None) -> list[str]:
    schemas = [f"tenant_{k:04d}" for k in range(count)]
    connection = bench.cluster.connect(database)
    try:
        with connection.cursor() as cursor:
            for schema in schemas:
                cursor.execute(f"CREATE SCHEMA {schema}")
                if head is not None:
                    cursor.execute(
                        f"CREATE TABLE {schema}.alembic_version "
                        "(version_num varchar(32) NOT NULL PRIMARY KEY)"
                    )
                    cursor.execute(f"INSERT INTO {schema}.alembic_version VALUES (%s)", (head,))
    finally:
        connection.close()
    return schemas


def _fleet_env(
    bench: Any, database: str, revisions: int, schemas: list[str], parallel: str
) -> dict[str, str]:
    path = Path(bench.scripts[revisions]).parent / f"targets-{database}.json"
    path.write_text(json.dumps([{"name": schema, "schema": schema} for schema in schemas]))
    env = bench.env(database, revisions)
    env.update(
        MIGRATE_TARGETS_FILE=str(path), MIGRATE_PARALLEL=parallel, MIGRATE_TERMINATION_LOG="off"
    )
    return env


def _schema_env(bench: Any, database: str, revisions: int, schema: str) -> dict[str, str]:
    """One single-database run on one schema target, as the fleet's target URL names it."""
    env = bench.env(database, revisions)
    env["DATABASE_URL"] += "?options=" + quote(f"-csearch_path={schema}", safe="")
    return env


def _job(bench: Any, *args: str) -> list[str]:
    return [str(bench.runtime.python), str(bench.runtime.app / "entrypoint.py"), *args]


def _check(bench: Any, run: Any, *, at_head: int, migrated: int) -> None:
    summary = run.event("fleet_finished") or {}
    found = (summary.get("at_head"), summary.get("migrated"), summary.get("failed"))
    if found != (at_head, migrated, 0):
        bench.void(f"{run.label}: fleet_finished says {summary}:\n{run.tail()}")

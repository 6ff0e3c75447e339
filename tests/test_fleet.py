"""fleet-upgrade end to end: many real databases on a private PostgreSQL, the job as real processes.

Each test builds its own fleet of fresh databases. A "broken" tenant is one whose schema drifted
(a stray `accounts` table makes the first revision fail, exit 5); an "unreachable" one points at
a port nobody listens on (exit 3 after a short MIGRATE_WAIT_TIMEOUT).
"""

from __future__ import annotations

import json
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.errors import ConfigError
from migrator.fleet.sharding import Shard, select, shard_of
from migrator.fleet.targets import Target
from migrator.heads import write as write_heads
from migrator.settings import load_settings
from migrator.urls import parse_database_url
from tests.conftest import (
    HEAD,
    REVISIONS,
    Database,
    Result,
    Running,
    add_revision,
    job_env,
    parse_events,
    run_job,
    start_job,
)
from tests.pgcluster import Cluster, free_port

UNREACHABLE_PASSWORD = "n0t-Pr1nted-3ver"


def fleet(cluster: Cluster, count: int) -> list[Database]:
    return [Database(cluster, cluster.create_database()) for _ in range(count)]


def targets_file(path: Path, entries: list[dict[str, str]]) -> Path:
    path.write_text(json.dumps(entries))
    return path


def named(databases: list[Database]) -> list[dict[str, str]]:
    return [{"name": f"tenant-{i:02}", "url": db.url} for i, db in enumerate(databases)]


def break_schema(db: Database) -> None:
    """Drift: the first revision creates `accounts`, which is already there."""
    db.query("CREATE TABLE accounts (id integer)")


def fleet_env(targets: Path, **extra: str) -> dict[str, str]:
    return job_env(None, MIGRATE_TARGETS_FILE=str(targets), MIGRATE_TERMINATION_LOG="off", **extra)


def by_target(result: Result, event: str) -> dict[str, dict[str, Any]]:
    found = {e["target"]: e for e in result.named(event)}
    assert len(found) == len(result.named(event)), f"{event} twice for one target"
    return found


def assert_secret_kept(result: Result, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.stdout
        assert secret not in result.stderr


def schema_version(db: Database, schema: str) -> list[str]:
    if not db.query("SELECT to_regclass(%s) IS NOT NULL", f"{schema}.alembic_version")[0][0]:
        return []
    return [row[0] for row in db.query(f"SELECT version_num FROM {schema}.alembic_version")]


# The fleet: 50 targets, databases and schemas both. Measured on the 2-core machine with
# another suite running: the first run ~50 s (48 targets with work, each a child job of ~1 s of
# CPU), the rerun ~1.3 s (48 at head on the fast path); 50-75 s for the whole test.
DATABASE_TARGETS, SCHEMA_TARGETS = 25, 25


def test_a_fleet_is_migrated_failures_are_reported_and_a_rerun_finishes_the_rest(
    cluster, tmp_path
) -> None:
    databases = fleet(cluster, DATABASE_TARGETS)
    entries: list[dict[str, str]] = named(databases)
    shared = Database(cluster, cluster.create_database())  # the schema targets' DATABASE_URL
    schemas = [f"tenant_s{i:02}" for i in range(SCHEMA_TARGETS)]
    shared.query("".join(f"CREATE SCHEMA {schema};" for schema in schemas))
    entries += [{"name": schema.replace("_", "-"), "schema": schema} for schema in schemas]
    broken, unreachable = entries[3], entries[7]
    break_schema(databases[3])
    unreachable["url"] = (
        f"postgresql://app:{UNREACHABLE_PASSWORD}@127.0.0.1:{free_port()}/gone?connect_timeout=1"
    )
    # One target names its URL in a file, as a mounted Secret would.
    url_file = tmp_path / "tenant-00.url"
    url_file.write_text(entries[0].pop("url"))
    entries[0]["url_file"] = str(url_file)
    path = targets_file(tmp_path / "targets.json", entries)
    env = {**fleet_env(path, MIGRATE_WAIT_TIMEOUT="1"), "DATABASE_URL": shared.url}
    assert len(entries) == 50

    result = run_job("fleet-upgrade", env=env, timeout=180)

    assert result.code == 9, result.stdout[-3000:]
    final = result.final
    assert final["event"] == "failed" and final["error"] == "TargetsFailed"
    assert final["message"].startswith("2 of 50 targets failed")
    failed = by_target(result, "target_failed")
    assert set(failed) == {broken["name"], unreachable["name"]}
    assert failed[broken["name"]]["exit_code"] == 5
    assert failed[broken["name"]]["error"] == "MigrationFailed"
    assert failed[unreachable["name"]]["exit_code"] == 3
    finished = by_target(result, "target_finished")
    assert len(finished) == 48
    assert all(e["state"] == "migrated" and e["applied"] == 5 for e in finished.values())
    summary = result.one("fleet_finished")
    assert (summary["migrated"], summary["at_head"], summary["failed"], summary["skipped"]) == (
        48,
        0,
        2,
        0,
    )
    assert sorted(summary["failed_targets"], key=lambda item: item["name"]) == [
        {"name": broken["name"], "exit_code": 5},
        {"name": unreachable["name"], "exit_code": 3},
    ]
    assert final["applied"] == summary["applied"] == 48 * 5
    # Every event of a target says which, and the targets' own events are relayed.
    for e in result.events:
        if e["event"] in ("migration_started", "lock_acquired", "nothing_to_do"):
            assert "target" in e, e
    for i, db in enumerate(databases):
        if i in (3, 7):
            continue
        assert db.version() == [HEAD]
        assert db.advisory_locks() == 0
    assert databases[3].version() == []  # the failed revision rolled back
    assert all(schema_version(shared, schema) == [HEAD] for schema in schemas)
    assert shared.version() == [] and shared.advisory_locks() == 0
    assert_secret_kept(result, cluster.password, UNREACHABLE_PASSWORD)

    # The fix, and a rerun: only the two that were left do any work.
    databases[3].query("DROP TABLE accounts")
    unreachable["url"] = databases[7].url
    targets_file(path, entries)
    rerun = run_job("fleet-upgrade", env={**env, "MIGRATE_WAIT_TIMEOUT": "60"}, timeout=180)

    assert rerun.code == 0, rerun.stdout[-3000:]
    assert rerun.final["event"] == "finished" and rerun.final["applied"] == 10
    summary = rerun.one("fleet_finished")
    assert (summary["migrated"], summary["at_head"], summary["failed"]) == (2, 48, 0)
    finished = by_target(rerun, "target_finished")
    migrated = {name for name, e in finished.items() if e["state"] == "migrated"}
    assert migrated == {broken["name"], unreachable["name"]}
    # A database target at head costs one connection and one query, the schema targets one
    # connection together (fleet/schemas.py): no child job, no lock.
    ready = Counter(e.get("target") for e in rerun.named("database_ready"))
    schema_names = {entry["name"] for entry in entries if "schema" in entry}
    for name, e in finished.items():
        if e["state"] == "at_head":
            assert ready[name] == (0 if name in schema_names else 1), name
    assert ready[None] == 1  # the schema targets' one pass
    at_head = {name for name, e in finished.items() if e["state"] == "at_head"}
    assert len(at_head) == 48
    assert not at_head & {e["target"] for e in rerun.named("lock_acquired")}
    assert {e["target"] for e in rerun.named("target_job_started")} == migrated
    assert all(db.version() == [HEAD] for db in databases)
    assert_secret_kept(rerun, cluster.password)


def test_four_shards_and_a_single_tenant_job_at_once_apply_each_revision_once(
    cluster, project, tmp_path
) -> None:
    # A last revision slow enough that the single-tenant job still holds the lock when the
    # fleet reaches that target: with two different locks both would run it.
    add_revision(project, "feedc0ffee02", HEAD, 'op.execute("SELECT pg_sleep(3)")')
    write_heads(project / "alembic.ini")
    config = str(project / "alembic.ini")
    databases = fleet(cluster, 10)
    entries = named(databases)
    path = targets_file(tmp_path / "targets.json", entries)
    single = start_job("upgrade", "head", env=job_env(databases[0].url, ALEMBIC_CONFIG=config))
    shards = [
        start_job(
            "fleet-upgrade",
            env=fleet_env(
                path,
                JOB_COMPLETION_INDEX=str(index),
                MIGRATE_SHARD_COUNT="4",
                ALEMBIC_CONFIG=config,
            ),
        )
        for index in range(4)
    ]
    results = [_finish(process) for process in shards]
    alone = _finish(single)

    assert all(result.code == 0 for result in results), [r.stdout[-2000:] for r in results]
    assert alone.code == 0, alone.stdout[-2000:]
    seen: Counter[str] = Counter()
    applied: Counter[str] = Counter()
    for index, result in enumerate(results):
        started = result.one("fleet_started")
        assert (started["shard"], started["shards"]) == (index, 4)
        for name, e in by_target(result, "target_finished").items():
            seen[name] += 1
            applied[name] += e["applied"]
    assert set(seen) == {entry["name"] for entry in entries}
    assert set(seen.values()) == {1}, "a target in two shards"
    applied[entries[0]["name"]] += alone.final["applied"]
    assert set(applied.values()) == {len(REVISIONS) + 1}, applied
    assert all(db.version() == ["feedc0ffee02"] for db in databases)
    assert all(db.advisory_locks() == 0 for db in databases)


def _finish(process: Any, timeout: float = 180) -> Result:
    stdout, stderr = process.communicate(timeout=timeout)
    return Result(process.returncode, stdout, stderr, parse_events(stdout))


@pytest.mark.parametrize(
    ("settings", "broken_at", "done"),
    [
        ({"MIGRATE_CANARY": "2"}, 1, 1),  # the canary group fails: nothing after it starts
        ({"MIGRATE_ON_ERROR": "stop", "MIGRATE_PARALLEL": "1"}, 2, 2),
    ],
    ids=["canary", "on-error-stop"],
)
def test_a_failure_stops_the_rest_when_asked(cluster, tmp_path, settings, broken_at, done) -> None:
    databases = fleet(cluster, 6)
    break_schema(databases[broken_at])
    path = targets_file(tmp_path / "targets.json", named(databases))

    result = run_job("fleet-upgrade", env=fleet_env(path, **settings), timeout=180)

    assert result.code == 9, result.stdout[-3000:]
    summary = result.one("fleet_finished")
    assert (summary["migrated"], summary["failed"], summary["skipped"]) == (done, 1, 5 - done)
    for i, db in enumerate(databases):
        if i == broken_at:
            continue
        assert db.version() == ([HEAD] if i < broken_at else []), i


def test_the_same_list_reordered_splits_the_same_way() -> None:
    url = parse_database_url("postgresql://u@h/d")
    targets = [Target(f"tenant-{i}", "postgresql://u@h/d", url) for i in range(200)]
    shuffled = random.Random(7).sample(targets, len(targets))
    parts = [select(targets, Shard(i, 4)) for i in range(4)]
    assert [{t.name for t in part} for part in parts] == [
        {t.name for t in select(shuffled, Shard(i, 4))} for i in range(4)
    ]
    assert sorted(t.name for part in parts for t in part) == sorted(t.name for t in targets)
    assert all(len(part) > 20 for part in parts), [len(part) for part in parts]
    assert shard_of("tenant-1", 4) == shard_of("tenant-1", 4)


SECRET = "Pa55-in-the-file"


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ([{"name": "a", "url": f"postgresql://u:{SECRET}@h/a"}] * 2, "target 2: the name 'a'"),
        (
            [{"name": "a", "url": f"postgresql://u:{SECRET}@h/a", "url_file": "/x"}],
            "target 1 (a): needs exactly one of url, url_file, schema",
        ),
        (
            [{"name": "a", "url": f"postgresql://u:{SECRET}@h/a", "password": SECRET}],
            "target 1 (a): unknown key(s) 'password'",
        ),
        ([{"name": "b c", "url": f"postgresql://u:{SECRET}@h/a"}], "target 1: name must be"),
        ([{"name": "a", "url": f"oracle://u:{SECRET}@h/a"}], "target 1 (a)"),
        ({"name": "a"}, "non-empty JSON list"),
        ([{"name": "a", "schema": "tenant_a"}], "target 1 (a): a schema target needs DATABASE_URL"),
        ([{"name": "a", "schema": "Tenant-A"}], "target 1 (a): schema must be a plain lowercase"),
    ],
    ids=[
        "duplicate",
        "url-and-file",
        "unknown-key",
        "bad-name",
        "bad-scheme",
        "not-a-list",
        "schema-without-database",
        "bad-schema",
    ],
)
def test_a_bad_targets_file_exits_2_naming_the_entry_not_the_password(
    tmp_path, entries, says
) -> None:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps(entries))
    result = run_job("fleet-upgrade", env=fleet_env(path))
    assert result.code == 2, result.stdout
    assert result.final["event"] == "failed" and says in result.final["message"]
    assert_secret_kept(result, SECRET)


def test_upgrade_refuses_a_targets_file_rather_than_guess(db, tmp_path) -> None:
    path = targets_file(tmp_path / "targets.json", [{"name": "a", "url": db.url}])
    result = run_job("upgrade", "head", env={**fleet_env(path), "DATABASE_URL": db.url})
    assert result.code == 2 and "fleet-upgrade" in result.final["message"]
    assert db.version() == []


def test_sigterm_rolls_back_the_targets_in_flight_and_says_which_finished(
    cluster, project, tmp_path
) -> None:
    add_revision(project, "feedc0ffee01", HEAD, 'op.execute("SELECT pg_sleep(60)")')
    write_heads(project / "alembic.ini")
    databases = fleet(cluster, 4)
    entries = named(databases)
    path = targets_file(tmp_path / "targets.json", entries)
    env = fleet_env(path, ALEMBIC_CONFIG=str(project / "alembic.ini"), MIGRATE_PARALLEL="2")
    running = Running("fleet-upgrade", env=env)
    for _ in range(2):  # both of the first two are in the slow revision
        while running.wait_for("migration_started", timeout=60)["revision"] != "feedc0ffee01":
            pass
    running.process.send_signal(signal.SIGTERM)
    result = running.finish(timeout=60)

    assert result.code == 143, result.stdout[-3000:]
    assert result.final["event"] == "failed" and result.final["error"] == "Interrupted"
    summary = result.one("fleet_finished")
    assert summary["interrupted"] is True
    failed = by_target(result, "target_failed")
    assert {e["exit_code"] for e in failed.values()} == {143}
    assert len(failed) == 2 and summary["skipped"] == 2
    assert summary["finished_targets"] == []
    for name in failed:
        db = databases[int(name.split("-")[1])]
        assert db.version() == [HEAD]  # the slow revision rolled back, the others committed
        assert db.advisory_locks() == 0
    for db in databases:
        if f"tenant-{databases.index(db):02}" not in failed:
            assert db.version() == []  # never started


ALEMBIC_INI = str(Path(__file__).resolve().parent.parent / "alembic.ini")


def test_every_targets_password_is_a_secret_of_the_run(tmp_path) -> None:
    url_file = tmp_path / "b.url"
    url_file.write_text("postgresql://u:second-Secret@h/b")
    path = targets_file(
        tmp_path / "targets.json",
        [
            {"name": "a", "url": "postgresql://u:first-Secret@h/a"},
            {"name": "b", "url_file": str(url_file)},
        ],
    )
    settings = load_settings({"ALEMBIC_CONFIG": ALEMBIC_INI, "MIGRATE_TARGETS_FILE": str(path)})
    assert {"first-Secret", "second-Secret"} <= set(settings.secrets)
    assert [target.name for target in settings.targets or ()] == ["a", "b"]


@pytest.mark.parametrize(
    ("values", "shard", "says"),
    [
        ({}, Shard(0, 1), None),
        ({"JOB_COMPLETION_INDEX": "2", "MIGRATE_SHARD_COUNT": "4"}, Shard(2, 4), None),
        ({"MIGRATE_SHARD_INDEX": "1", "MIGRATE_SHARD_COUNT": "2"}, Shard(1, 2), None),
        ({"JOB_COMPLETION_INDEX": "2"}, None, "JOB_COMPLETION_INDEX='2' is set but"),
        ({"MIGRATE_SHARD_COUNT": "4"}, None, "no shard index"),
        ({"JOB_COMPLETION_INDEX": "4", "MIGRATE_SHARD_COUNT": "4"}, None, "below the shard"),
    ],
)
def test_the_shard_comes_from_both_an_index_and_a_count_or_neither(
    tmp_path, values, shard, says
) -> None:
    path = targets_file(tmp_path / "targets.json", [{"name": "a", "url": "postgresql://u@h/a"}])
    given = {"ALEMBIC_CONFIG": ALEMBIC_INI, "MIGRATE_TARGETS_FILE": str(path), **values}
    if says is None:
        assert load_settings(given).shard == shard
    else:
        with pytest.raises(ConfigError, match=re.escape(says)):
            load_settings(given)
    # Without a targets file an Indexed Job's index is none of the job's business.
    assert load_settings({"ALEMBIC_CONFIG": ALEMBIC_INI, **values}).shard is None


def test_fleet_upgrade_needs_a_targets_file_and_its_flags_are_its_own(db, tmp_path) -> None:
    alone = run_job("fleet-upgrade", env=job_env(db.url))
    assert alone.code == 2 and "needs MIGRATE_TARGETS_FILE" in alone.final["message"]
    path = targets_file(tmp_path / "targets.json", [{"name": "a", "url": db.url}])
    flag = run_job("upgrade", "--targets-file", str(path), env=job_env(db.url))
    assert flag.code == 2 and "applies to fleet-upgrade only" in flag.final["message"]
    by_flag = run_job(
        "fleet-upgrade", "--targets-file", str(path), "--parallel", "1", env=job_env()
    )
    assert by_flag.code == 0, by_flag.stdout
    assert by_flag.one("fleet_started")["parallel"] == 1
    assert db.version() == [HEAD]


def schema_tables(db: Database, schema: str) -> set[str]:
    rows = db.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", schema)
    return {row[0] for row in rows}


def test_schema_targets_each_get_their_own_version_table_and_lock(cluster, tmp_path) -> None:
    db = Database(cluster, cluster.create_database())
    schemas = [f"tenant_{i}" for i in range(6)]
    for schema in schemas[:-1]:  # the last one is not there yet
        db.query(f"CREATE SCHEMA {schema}")
    db.query("CREATE TABLE tenant_2.accounts (id integer)")  # drift in one tenant
    other = Database(cluster, cluster.create_database())
    entries = [{"name": schema, "schema": schema} for schema in schemas]
    entries.append({"name": "own-database", "url": other.url})
    path = targets_file(tmp_path / "targets.json", entries)
    env = {**fleet_env(path, MIGRATE_PARALLEL="7"), "DATABASE_URL": db.url}

    result = run_job("fleet-upgrade", env=env, timeout=180)

    assert result.code == 9, result.stdout[-3000:]
    failed = by_target(result, "target_failed")
    assert {name: e["exit_code"] for name, e in failed.items()} == {"tenant_2": 5, "tenant_5": 2}
    assert "does not exist" in failed["tenant_5"]["message"]
    for schema in ("tenant_0", "tenant_1", "tenant_3", "tenant_4"):
        assert {"alembic_version", "accounts", "tasks"} <= schema_tables(db, schema), schema
        rows = db.query(f"SELECT version_num FROM {schema}.alembic_version")
        assert rows == [(HEAD,)]
    assert schema_tables(db, "public") == set()  # nothing landed beside the tenants
    assert other.version() == [HEAD]
    # One lock per schema: the tenants of one database never waited for each other.
    locks = {e["target"]: e["lock"] for e in result.named("lock_acquired")}
    assert locks["tenant_0"] == "alembic:tenant_0.alembic_version"
    assert len(set(locks.values())) == len(locks) == 6
    assert not result.named("lock_waiting")
    assert db.advisory_locks() == 0

    db.query("DROP TABLE tenant_2.accounts")
    db.query("CREATE SCHEMA tenant_5")
    rerun = run_job("fleet-upgrade", env=env, timeout=180)
    assert rerun.code == 0, rerun.stdout[-3000:]
    summary = rerun.one("fleet_finished")
    assert (summary["migrated"], summary["at_head"]) == (2, 5)
    assert {e["target"] for e in rerun.named("target_job_started")} == {"tenant_2", "tenant_5"}
    assert_secret_kept(rerun, cluster.password)


# ---------------------------------------------------------------- YAML targets files


def yaml_targets(path: Path, entries: list[dict[str, str]]) -> Path:
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def test_a_yaml_targets_file_with_a_named_canary_group_runs_the_group_first(
    cluster, tmp_path
) -> None:
    databases = fleet(cluster, 5)
    entries = named(databases)
    for entry in (entries[2], entries[4]):  # not the first in the list: the group moves up
        entry["group"] = "early"
    break_schema(databases[4])
    path = yaml_targets(tmp_path / "targets.yaml", entries)
    env = fleet_env(path, MIGRATE_CANARY="early", MIGRATE_PARALLEL="3")

    result = run_job("fleet-upgrade", env=env, timeout=180)

    assert result.code == 9, result.stdout[-3000:]
    started = result.one("fleet_started")
    assert (started["canary"], started["canary_group"]) == (2, "early")
    assert set(by_target(result, "target_finished")) == {"tenant-02"}
    assert set(by_target(result, "target_failed")) == {"tenant-04"}
    summary = result.one("fleet_finished")
    assert (summary["migrated"], summary["failed"], summary["skipped"]) == (1, 1, 3)
    assert {e["target"] for e in result.named("target_started")} == {"tenant-02", "tenant-04"}
    assert [db.version() for db in databases] == [[], [], [HEAD], [], []]

    databases[4].query("DROP TABLE accounts")
    rerun = run_job("fleet-upgrade", env=env, timeout=180)

    assert rerun.code == 0, rerun.stdout[-3000:]
    order = [e["event"] + ":" + e["target"] for e in rerun.events if "target" in e]
    group_done = max(order.index(f"target_finished:tenant-0{i}") for i in (2, 4))
    rest_started = min(order.index(f"target_started:tenant-0{i}") for i in (0, 1, 3))
    assert group_done < rest_started, "a target outside the group started before it finished"
    assert all(db.version() == [HEAD] for db in databases)
    assert_secret_kept(rerun, cluster.password)


def test_a_canary_group_no_target_carries_exits_2_before_anything_runs(cluster, tmp_path) -> None:
    databases = fleet(cluster, 2)
    entries = named(databases)
    entries[0]["group"] = "early"
    path = yaml_targets(tmp_path / "targets.yml", entries)

    result = run_job("fleet-upgrade", env=fleet_env(path, MIGRATE_CANARY="erly"))

    assert result.code == 2, result.stdout[-3000:]
    assert (
        "MIGRATE_CANARY='erly' names a group that no target carries (groups: early)"
        in (result.final["message"])
    )
    assert not result.named("fleet_started") and not result.named("target_started")
    assert all(db.version() == [] for db in databases)


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        (
            "targets.yaml",
            f"- name: a\n  url: postgresql://u:{SECRET}@h/a\n - name: [b\n",
            "is not valid YAML (at line 3)",
        ),
        ("targets.yml", "name: a\n", "must hold a non-empty YAML list of targets"),
        ("targets.yaml", "", "must hold a non-empty YAML list of targets"),
        (
            "targets.yaml",
            f"- name: a\n  url: postgresql://u:{SECRET}@h/a\n  group: 7\n",
            "target 1 (a): group must be 1-128 letters",
        ),
        (
            "targets.yaml",
            f"- name: a\n  url: postgresql://u:{SECRET}@h/a\n  pasword: {SECRET}\n",
            "target 1 (a): unknown key(s) 'pasword'",
        ),
        # Not named .yaml: JSON, as it always was, and the message says how to get YAML.
        ("targets", f"- name: a\n  url: postgresql://u:{SECRET}@h/a\n", "a YAML file must end"),
    ],
    ids=["syntax", "not-a-list", "empty", "bad-group", "unknown-key", "yaml-without-suffix"],
)
def test_a_bad_yaml_targets_file_exits_2_with_a_line_never_the_text(
    tmp_path, name, text, says
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = run_job("fleet-upgrade", env=fleet_env(path))
    assert result.code == 2, result.stdout
    assert result.final["event"] == "failed" and says in result.final["message"]
    assert_secret_kept(result, SECRET)


def test_yaml_and_json_files_give_the_same_targets(tmp_path) -> None:
    entries = [
        {"name": "a", "url": "postgresql://u:first-Secret@h/a", "group": "early"},
        {"name": "b", "schema": "tenant_b"},
    ]
    base = {"ALEMBIC_CONFIG": ALEMBIC_INI, "DATABASE_URL": "postgresql://u@h/shared"}
    from_json = load_settings(
        {**base, "MIGRATE_TARGETS_FILE": str(targets_file(tmp_path / "t.json", entries))}
    )
    from_yaml = load_settings(
        {**base, "MIGRATE_TARGETS_FILE": str(yaml_targets(tmp_path / "t.YAML", entries))}
    )
    assert from_yaml.targets == from_json.targets
    assert [t.group for t in from_yaml.targets or ()] == ["early", None]


@pytest.mark.parametrize(
    ("raw", "canary"),
    [("0", 0), ("3", 3), ("early", "early"), (" canary-1 ", "canary-1")],
)
def test_the_canary_is_a_count_or_a_group_name(tmp_path, raw, canary) -> None:
    path = targets_file(tmp_path / "targets.json", [{"name": "a", "url": "postgresql://u@h/a"}])
    values = {"ALEMBIC_CONFIG": ALEMBIC_INI, "MIGRATE_TARGETS_FILE": str(path)}
    assert load_settings({**values, "MIGRATE_CANARY": raw}).canary == canary
    with pytest.raises(ConfigError, match="or the name of a group"):
        load_settings({**values, "MIGRATE_CANARY": "two words"})


# ---------------------------------------------------------------- targets from a query


def registry(db: Database, rows: list[tuple[Any, ...]]) -> None:
    """A tenant registry as an application keeps one: more columns than the job needs."""
    db.query(
        "CREATE TABLE tenants (slug text PRIMARY KEY, db_url text, db_schema text, wave text,"
        " active boolean NOT NULL DEFAULT true)"
    )
    for row in rows:
        db.query("INSERT INTO tenants VALUES (%s, %s, %s, %s, %s)", *row)


QUERY = (
    'SELECT slug AS name, db_url AS url, db_schema AS schema, wave AS "group" FROM tenants'
    " WHERE active ORDER BY slug"
)


def test_targets_from_a_query_on_the_catalog_database(cluster, tmp_path) -> None:
    catalog = Database(cluster, cluster.create_database())
    shared = Database(cluster, cluster.create_database())
    shared.query("CREATE SCHEMA tenant_c; CREATE SCHEMA tenant_d")
    own = fleet(cluster, 3)
    registry(
        catalog,
        [
            ("a", own[0].url, None, "early", True),
            ("b", own[1].url, None, None, True),
            ("c", None, "tenant_c", None, True),
            ("d", None, "tenant_d", "early", True),
            ("gone", own[2].url, None, None, False),  # filtered out by the query
        ],
    )
    catalog_file = tmp_path / "catalog.url"
    catalog_file.write_text(catalog.url)
    env = job_env(
        shared.url,
        MIGRATE_TARGETS_QUERY=QUERY,
        MIGRATE_TARGETS_URL_FILE=str(catalog_file),
        MIGRATE_CANARY="early",
        MIGRATE_TERMINATION_LOG="off",
    )

    result = run_job("fleet-upgrade", env=env, timeout=180)

    assert result.code == 0, result.stdout[-3000:]
    queried = result.one("targets_queried")
    assert queried["rows"] == 4 and cluster.password not in queried["catalog"]
    started = result.one("fleet_started")
    assert (started["targets"], started["canary"], started["canary_group"]) == (4, 2, "early")
    assert set(by_target(result, "target_finished")) == {"a", "b", "c", "d"}
    assert own[0].version() == own[1].version() == [HEAD]
    assert own[2].version() == []
    assert schema_version(shared, "tenant_c") == schema_version(shared, "tenant_d") == [HEAD]
    assert catalog.version() == [] and catalog.tables() == {"tenants"}
    assert_secret_kept(result, cluster.password)

    # The rows are entries like a file's: the same checks, each named by its row.
    catalog.query("UPDATE tenants SET db_schema = 'tenant_x' WHERE slug = 'b'")
    bad = run_job("fleet-upgrade", env=env)
    assert bad.code == 2, bad.stdout[-3000:]
    assert (
        "MIGRATE_TARGETS_QUERY: row 2 (b): needs exactly one of url, url_file, schema"
        in bad.final["message"]
    )
    assert_secret_kept(bad, cluster.password)


def test_a_queried_targets_password_is_masked_in_every_line(cluster) -> None:
    """Passwords from the registry's rows are secrets of the whole run, although they are read
    after the settings: here one is also the tenant's name, which the fleet's own report and
    the final event repeat."""
    catalog = Database(cluster, cluster.create_database())
    secret = "acme-Pr1vate"
    gone = f"postgresql://app:{secret}@127.0.0.1:{free_port()}/acme?connect_timeout=1"
    registry(catalog, [(secret, gone, None, None, True)])
    env = job_env(
        catalog.url,
        MIGRATE_TARGETS_QUERY=QUERY,
        MIGRATE_WAIT_TIMEOUT="1",
        MIGRATE_TERMINATION_LOG="off",
    )
    result = run_job("fleet-upgrade", env=env, timeout=60)
    assert result.code == 9, result.stdout[-3000:]
    assert result.one("fleet_finished")["failed"] == 1
    assert result.final["failed_targets"][0]["exit_code"] == 3
    assert_secret_kept(result, secret, cluster.password)


@pytest.mark.parametrize(
    ("query", "timeout", "says"),
    [
        ("SELEC name FROM tenants", "0", "failed on the catalog database (SQLSTATE 42601)"),
        ("SELECT slug AS name FROM no_such_table", "0", "(SQLSTATE 42P01)"),
        ("SELECT slug AS name, db_url AS url FROM tenants WHERE false", "0", "returned no rows"),
        (
            "SELECT slug AS name, db_url AS url, pg_sleep(30) FROM tenants",
            "0.5",
            "ran longer than MIGRATE_STATEMENT_TIMEOUT",
        ),
        # The session is read-only, not only the first transaction.
        (
            "SELECT slug AS name, db_url AS url FROM tenants; COMMIT; DELETE FROM tenants",
            "0",
            "tried to write, and runs read-only",
        ),
        ("SELECT slug AS name, db_url AS uri FROM tenants", "0", "unknown key(s) 'uri'"),
    ],
    ids=["syntax", "no-table", "no-rows", "statement-timeout", "read-only", "bad-column"],
)
def test_a_bad_targets_query_exits_2_and_writes_nothing(cluster, query, timeout, says) -> None:
    catalog = Database(cluster, cluster.create_database())
    target = Database(cluster, cluster.create_database())
    registry(catalog, [("a", target.url, None, None, True)])
    env = job_env(catalog.url, MIGRATE_TARGETS_QUERY=query, MIGRATE_STATEMENT_TIMEOUT=timeout)

    result = run_job("fleet-upgrade", env=env)

    assert result.code == 2, result.stdout[-3000:]
    assert result.final["event"] == "failed" and says in result.final["message"]
    assert catalog.query("SELECT count(*) FROM tenants") == [(1,)]
    assert target.version() == [] and catalog.version() == []
    assert not result.named("fleet_started")
    assert_secret_kept(result, cluster.password)


def test_an_unreachable_catalog_is_exit_3_after_the_wait(tmp_path) -> None:
    catalog = f"postgresql://app:{UNREACHABLE_PASSWORD}@127.0.0.1:{free_port()}/registry"
    env = job_env(
        MIGRATE_TARGETS_QUERY=QUERY,
        MIGRATE_TARGETS_URL=catalog,
        MIGRATE_WAIT_TIMEOUT="1",
        MIGRATE_CONNECT_TIMEOUT="1",
    )
    result = run_job("fleet-upgrade", env=env)
    assert result.code == 3, result.stdout[-3000:]
    assert result.final["error"] == "DatabaseUnavailable"
    assert all(
        e.get("catalog", "").endswith("/registry") for e in result.named("database_unavailable")
    )
    assert_secret_kept(result, UNREACHABLE_PASSWORD)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            {"MIGRATE_TARGETS_FILE": "FILE"},
            "MIGRATE_TARGETS_FILE and MIGRATE_TARGETS_QUERY are both",
        ),
        ({"DATABASE_URL": ""}, "needs the database it runs on"),
        (
            {"MIGRATE_TARGETS_QUERY": "", "MIGRATE_TARGETS_URL": "postgresql://u@h/c"},
            "MIGRATE_TARGETS_QUERY is not set, and MIGRATE_TARGETS_URL names",
        ),
        (
            {"MIGRATE_TARGETS_URL": "postgresql://u@h/c", "MIGRATE_TARGETS_URL_FILE": "/x"},
            "MIGRATE_TARGETS_URL and MIGRATE_TARGETS_URL_FILE are both set",
        ),
    ],
    ids=["file-and-query", "no-catalog", "catalog-without-query", "url-and-file"],
)
def test_the_targets_query_settings_are_checked_at_the_start(tmp_path, values, says) -> None:
    path = targets_file(tmp_path / "targets.json", [{"name": "a", "url": "postgresql://u@h/a"}])
    given = {
        "ALEMBIC_CONFIG": ALEMBIC_INI,
        "DATABASE_URL": "postgresql://u:catalog-Secret@h/registry",
        "MIGRATE_TARGETS_QUERY": QUERY,
        **{key: str(path) if value == "FILE" else value for key, value in values.items()},
    }
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_settings(given)


def test_the_catalog_defaults_to_database_url_and_its_password_is_a_secret() -> None:
    base = {"ALEMBIC_CONFIG": ALEMBIC_INI, "MIGRATE_TARGETS_QUERY": QUERY}
    settings = load_settings({**base, "DATABASE_URL": "postgresql://u:db-Secret@h/registry"})
    assert (
        settings.catalog == settings.database and settings.fleet_source == "MIGRATE_TARGETS_QUERY"
    )
    own = load_settings(
        {
            **base,
            "DATABASE_URL": "postgresql://u:db-Secret@h/shared",
            "MIGRATE_TARGETS_URL": "postgresql://u:catalog-Secret@h/registry",
            "JOB_COMPLETION_INDEX": "1",
            "MIGRATE_SHARD_COUNT": "2",
        }
    )
    assert own.catalog is not None and own.catalog.source == "MIGRATE_TARGETS_URL"
    assert {"db-Secret", "catalog-Secret"} <= set(own.secrets)
    assert own.shard == Shard(1, 2)  # a query's fleet is split as a file's is


def test_upgrade_refuses_a_targets_query_too(db) -> None:
    result = run_job("upgrade", "head", env=job_env(db.url, MIGRATE_TARGETS_QUERY=QUERY))
    assert result.code == 2 and "MIGRATE_TARGETS_QUERY is set" in result.final["message"]
    assert db.version() == []


def test_sigterm_during_the_targets_query_cancels_it(cluster) -> None:
    catalog = Database(cluster, cluster.create_database())
    query = "SELECT 'a' AS name, pg_sleep(60)::text AS url"
    running = Running("fleet-upgrade", env=job_env(catalog.url, MIGRATE_TARGETS_QUERY=query))
    running.wait_for("database_ready", timeout=60)
    active = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = %s"
    deadline = time.monotonic() + 30
    while catalog.query(active, query) != [(1,)]:  # the query is on the server
        assert time.monotonic() < deadline, "the targets query never started"
        time.sleep(0.05)
    running.process.send_signal(signal.SIGTERM)
    result = running.finish(timeout=30)

    assert result.code == 143, result.stdout[-3000:]
    assert result.final["event"] == "failed" and result.final["error"] == "Interrupted"
    assert catalog.query(active, query) == [(0,)]  # cancelled, not left running
    assert not result.named("fleet_started")


def test_schema_targets_at_head_are_read_in_one_pass_on_one_connection(cluster, tmp_path) -> None:
    """Every release checks every tenant: schema targets at head cost the fleet one connection
    together, not one each; a target behind, or without a version table, still does its work."""
    db = Database(cluster, cluster.create_database())
    schemas = [f"tenant_{i}" for i in range(7)]
    for schema in schemas:
        db.query(f"CREATE SCHEMA {schema}")
    entries = [{"name": schema, "schema": schema} for schema in schemas]
    env = {"DATABASE_URL": db.url, "MIGRATE_PARALLEL": "6"}
    behind = fleet_env(targets_file(tmp_path / "six.json", entries[:6]), **env)
    assert run_job("fleet-upgrade", REVISIONS[-2], env=behind, timeout=180).code == 0
    at_head = fleet_env(targets_file(tmp_path / "five.json", entries[:5]), **env)
    assert run_job("fleet-upgrade", env=at_head, timeout=180).code == 0

    db.query(f"ALTER DATABASE \"{db.name}\" SET log_statement = 'all'")
    log = db.cluster.root / "log"
    start = log.stat().st_size
    result = run_job("fleet-upgrade", env=at_head, timeout=60)
    assert result.code == 0, result.stdout[-3000:]
    assert result.one("fleet_finished")["at_head"] == 5
    assert len(result.named("nothing_to_do")) == 5
    with log.open("rb") as file:
        file.seek(start)
        statements = [line for line in file.read().decode().splitlines() if "statement:" in line]
    # The server's default log_line_prefix names each session's process: one session read all.
    sessions = {line.split("[", 1)[1].split("]", 1)[0] for line in statements}
    assert len(sessions) == 1, statements
    assert any("UNION ALL" in line and "tenant_4" in line for line in statements), statements

    everyone = fleet_env(targets_file(tmp_path / "seven.json", entries), **env)
    result = run_job("fleet-upgrade", env=everyone, timeout=180)
    assert result.code == 0, result.stdout[-3000:]
    summary = result.one("fleet_finished")
    assert (summary["at_head"], summary["migrated"]) == (5, 2)
    assert {e["target"] for e in result.named("target_job_started")} == {"tenant_5", "tenant_6"}
    for schema in schemas:
        assert db.query(f"SELECT version_num FROM {schema}.alembic_version") == [(HEAD,)]

    # A pass that fails costs speed only: every target then reads its own version table.
    db.query("CREATE SCHEMA tenant_7")
    db.query("CREATE TABLE tenant_7.alembic_version (id integer)")  # not Alembic's
    entries.append({"name": "tenant_7", "schema": "tenant_7"})
    odd = fleet_env(targets_file(tmp_path / "eight.json", entries), **env)
    result = run_job("fleet-upgrade", env=odd, timeout=180)
    assert "version_num" in result.one("schema_pass_skipped")["reason"]
    summary = result.one("fleet_finished")
    assert (summary["at_head"], summary["failed"]) == (7, 1), result.stdout[-3000:]
    assert result.code == 9
    failed = result.one("target_failed")
    assert (failed["target"], failed["exit_code"], failed["error"]) == (
        "tenant_7",
        2,
        "DatabaseRejected",
    )


def test_schema_targets_on_a_database_that_never_answers_fail_after_one_wait(tmp_path) -> None:
    """Their shared database's answer is every schema target's: one wait, not one per target
    (1,000 targets and a 60 s wait would take hours to say one thing)."""
    nobody = f"postgresql://app:{UNREACHABLE_PASSWORD}@127.0.0.1:{free_port()}/app"
    entries = [{"name": f"tenant_{i}", "schema": f"tenant_{i}"} for i in range(10)]
    env = fleet_env(
        targets_file(tmp_path / "targets.json", entries),
        DATABASE_URL=nobody,
        MIGRATE_WAIT_TIMEOUT="1",
        MIGRATE_PARALLEL="1",
    )
    result = run_job("fleet-upgrade", env=env, timeout=120)
    assert result.code == 9, result.stdout[-3000:]
    failed = by_target(result, "target_failed")
    assert {name: e["exit_code"] for name, e in failed.items()} == {e["name"]: 3 for e in entries}
    waits = result.named("database_unavailable")
    assert waits and not [e for e in waits if "target" in e]  # the fleet waited, no target did
    assert_secret_kept(result, UNREACHABLE_PASSWORD)

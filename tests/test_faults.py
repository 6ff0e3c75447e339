"""Faults while migrating: a failing revision, a killed runner, termination signals."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from migrator.locking import lock_key
from tests.conftest import (
    HEAD,
    REVISIONS,
    Database,
    Running,
    add_revision,
    finish,
    job_env,
    run_job,
    start_job,
)

SLOW = "bbbb00000001"


def test_failing_revision_exits_5_and_leaves_the_previous_revision(
    db: Database, project: Path
) -> None:
    add_revision(
        project,
        SLOW,
        HEAD,
        'op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("SELECT 1/0")',
    )
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    result = run_job("upgrade", env=env)
    assert result.code == 5
    failed = result.final
    assert failed["error"] == "MigrationFailed"
    assert failed["revision"] == SLOW and failed["direction"] == "upgrade"
    assert "division by zero" in failed["message"]
    assert failed["revisions_after"] == [HEAD]
    assert failed["applied"] == len(REVISIONS), "the good revisions stay committed"
    assert result.named("lock_released")
    assert db.version() == [HEAD]
    assert "half_done" not in db.tables(), "the failing revision's DDL was rolled back"
    assert db.advisory_locks() == 0


def test_killed_runner_frees_the_lock_and_a_rerun_completes(db: Database, project: Path) -> None:
    marker = project / "slow"
    marker.touch()
    add_revision(
        project,
        SLOW,
        HEAD,
        'op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))\n'
        f"if __import__('os').path.exists({str(marker)!r}):\n"
        '    op.execute("SELECT pg_sleep(60)")',
    )
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    runner = start_job("upgrade", env=env)
    _wait_until(lambda: db.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND query LIKE %s"
        " AND pid <> pg_backend_pid()",
        db.name, "%pg_sleep(60)%",
    ))  # fmt: skip
    assert db.advisory_locks() == 1
    runner.kill()
    runner.wait()

    # The server notices the dead client (client_connection_check_interval), rolls back, unlocks.
    _wait_until(lambda: db.advisory_locks() == 0, timeout=15)
    assert db.version() == [HEAD]
    assert "half_done" not in db.tables()

    marker.unlink()
    rerun = run_job("upgrade", env=env)
    assert rerun.code == 0
    assert [e["revision"] for e in rerun.named("migration_finished")] == [SLOW]
    assert db.version() == [SLOW]


def test_sigterm_while_waiting_for_the_database_exits_143() -> None:
    runner = start_job(
        "upgrade",
        env=job_env("postgresql://u:pw-for-nothing@127.0.0.1:1/db", MIGRATE_WAIT_TIMEOUT="60"),
    )
    time.sleep(1.5)
    sent = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    result = finish(runner, timeout=10)
    assert time.monotonic() - sent < 5
    assert result.code == 143
    assert result.final["event"] == "failed" and result.final["error"] == "Interrupted"


def test_sigint_while_waiting_for_the_lock_exits_130_and_runs_nothing(db: Database) -> None:
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key("alembic:alembic_version"),))
    try:
        runner = Running("upgrade", env=job_env(db.url))
        runner.wait_for("lock_waiting")
        runner.process.send_signal(signal.SIGINT)
        result = runner.finish(timeout=10)
    finally:
        holder.close()
    assert result.code == 130
    assert result.final["error"] == "Interrupted"
    assert db.version() == []


def _wait_until(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")

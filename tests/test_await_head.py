"""await-head: the application pod's gate. Polls, never migrates, never takes the lock."""

from __future__ import annotations

import time
from collections.abc import Callable

from migrator.backends.postgresql import lock_key
from tests.conftest import HEAD, Database, Running, job_env, run_job
from tests.pgcluster import free_port


def test_at_head_exits_0_even_while_a_migration_holds_the_lock(db: Database) -> None:
    assert run_job("upgrade", env=job_env(db.url)).code == 0
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key("alembic:alembic_version"),))
    try:
        result = run_job("await-head", env=job_env(db.url), timeout=20)
    finally:
        holder.close()
    assert result.code == 0
    assert result.one("up_to_date")["current"] == [HEAD]
    assert not [e for e in result.events if e["event"].startswith("lock_")]


def test_waits_for_a_migration_to_finish(db: Database) -> None:
    gate = Running("await-head", "--timeout", "30", env=job_env(db.url))
    assert gate.wait_for("awaiting_head")["current"] == []
    (reported,) = db.query("SELECT clock_timestamp()")[0]
    # It reads the version again after saying it waits (or, wrongly, ends).
    _until(lambda: gate.process.poll() is not None or _polled_since(db, reported))
    assert gate.process.poll() is None, "must keep waiting while the database is empty"
    assert run_job("upgrade", env=job_env(db.url)).code == 0
    result = gate.finish()
    assert result.code == 0
    assert result.named("awaiting_head")[0]["current"] == []
    assert result.one("up_to_date")["current"] == [HEAD]
    assert db.version() == [HEAD]


def test_not_at_head_by_the_timeout_exits_7_and_migrates_nothing(db: Database) -> None:
    started = time.monotonic()
    result = run_job("await-head", env=job_env(db.url, MIGRATE_AWAIT_TIMEOUT="2"))
    assert result.code == 7
    assert 2 <= time.monotonic() - started < 6
    assert result.final["error"] == "NotUpToDate"
    assert result.final["heads"] == [HEAD]
    assert db.tables() == set()


def test_database_never_reachable_exits_3() -> None:
    url = f"postgresql://u:pw@127.0.0.1:{free_port()}/db"
    result = run_job("await-head", "--timeout", "2", env=job_env(url))
    assert result.code == 3
    assert result.final["error"] == "DatabaseUnavailable"


def test_database_gone_after_answering_exits_7_not_3(own_cluster) -> None:
    own_cluster.start()
    gate = Running("await-head", "--timeout", "4", env=job_env(own_cluster.url("postgres")))
    assert gate.wait_for("awaiting_head")["current"] == []
    own_cluster.stop()
    result = gate.finish(timeout=30)
    assert result.code == 7, "it did answer: the database is not at head, not unreachable"
    assert result.final["error"] == "NotUpToDate"
    assert result.final["current"] == []


def test_progress_is_logged_at_a_steady_interval_while_nothing_changes(db: Database) -> None:
    result = run_job("await-head", "--timeout", "6", env=job_env(db.url), timeout=30)
    assert result.code == 7
    progress = result.named("awaiting_head")
    assert len(progress) >= 2, "a long wait must not show a single line"
    assert all(event["current"] == [] and event["heads"] == [HEAD] for event in progress)
    waited = [event["waited_s"] for event in progress]
    assert waited == sorted(waited) and waited[-1] - waited[0] >= 3, "spread over the wait"


def _polled_since(db: Database, moment: object) -> bool:
    """Whether a runner's session sent a query (its polls: a read, a rollback) after `moment`."""
    return bool(
        db.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s"
            " AND query_start > %s",
            db.name,
            "migrate-job@%",
            moment,
        )
    )


def _until(predicate: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)

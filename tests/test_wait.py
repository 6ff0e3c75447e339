"""Waiting for the database: what heals is retried, what never will fails fast."""

from __future__ import annotations

import time

from tests.conftest import HEAD, Database, Running, job_env, run_job
from tests.pgcluster import Cluster, free_port


def test_database_down_at_start_then_up(own_cluster: Cluster) -> None:
    url = own_cluster.url("postgres")
    runner = Running("upgrade", env=job_env(url, MIGRATE_WAIT_TIMEOUT="30"))
    runner.wait_for("database_unavailable")
    runner.wait_for("database_unavailable")
    own_cluster.start()
    result = runner.finish()
    assert result.code == 0, result.stdout
    unavailable = result.named("database_unavailable")
    assert len(unavailable) >= 2
    assert [e["attempt"] for e in unavailable] == list(range(1, len(unavailable) + 1))
    # Before the start; attempts while the server starts up may meet it half-way ("the
    # database system is starting up"), which heals too.
    errors = [e["error"] for e in unavailable]
    assert all("Connection refused" in error for error in errors[:2]), errors
    assert all(e["retry_in_s"] <= 1.0 for e in unavailable)
    ready = result.one("database_ready")
    assert ready["attempts"] == len(unavailable) + 1
    assert Database(own_cluster, "postgres").version() == [HEAD]


def test_database_never_up_exits_3_within_the_timeout() -> None:
    url = f"postgresql://u:pw@127.0.0.1:{free_port()}/db"
    started = time.monotonic()
    result = run_job("upgrade", env=job_env(url, MIGRATE_WAIT_TIMEOUT="3"))
    elapsed = time.monotonic() - started
    assert result.code == 3
    assert result.final["error"] == "DatabaseUnavailable"
    assert "MIGRATE_WAIT_TIMEOUT=3" in result.final["message"]
    # Inside the job: keeps trying for the whole timeout, and stops right after it.
    assert 3 <= result.final["duration_s"] < 3 + 1.5, result.final
    assert elapsed < 3 + 10, "process start-up under a loaded machine is the only slack"
    assert len(result.named("database_unavailable")) >= 3


def test_database_restarting_is_retried(own_cluster: Cluster) -> None:
    own_cluster.start()
    own_cluster.stop()
    runner = Running("wait", env=job_env(own_cluster.url("postgres"), MIGRATE_WAIT_TIMEOUT="20"))
    runner.wait_for("database_unavailable")
    own_cluster.start()
    result = runner.finish()
    assert result.code == 0, result.stdout
    assert result.one("database_ready")["attempts"] >= 2


def test_wrong_password_fails_at_once_and_never_prints_it(db: Database) -> None:
    wrong = "Wr0ng-P@ss:word/%"
    url = db.cluster.url(db.name, password=wrong)
    started = time.monotonic()
    result = run_job("upgrade", env=job_env(url, MIGRATE_WAIT_TIMEOUT="30"))
    assert result.code == 2
    assert time.monotonic() - started < 5, "authentication failure must not be retried"
    assert result.named("database_unavailable") == []
    assert result.final["error"] == "DatabaseRejected"
    assert "password authentication failed" in result.final["message"]
    for text in (result.stdout, result.stderr):
        assert wrong not in text
        assert "Wr0ng" not in text
        assert db.cluster.password not in text


def test_missing_database_fails_at_once(cluster) -> None:
    result = run_job("upgrade", env=job_env(cluster.url("no_such_db"), MIGRATE_WAIT_TIMEOUT="30"))
    assert result.code == 2
    assert 'database "no_such_db" does not exist' in result.final["message"]
    assert result.final["duration_s"] < 5


def test_the_real_password_never_appears_in_any_output(db: Database) -> None:
    env = job_env(db.url, MIGRATE_LOG_LEVEL="debug")
    outputs = [run_job(command, env=env) for command in ("upgrade", "current", "check")]
    assert all(r.code == 0 for r in outputs)
    for result in outputs:
        assert db.cluster.password not in result.stdout + result.stderr
        assert "s3cr3t" not in result.stdout
        assert "admin:***@" in result.one("starting")["database"]

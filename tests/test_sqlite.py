"""SQLite: the migration lock is an exclusive flock on `<database file>.lock`, between real
processes; an in-memory database is refused before any lock."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import (
    HEAD,
    REVISIONS,
    Running,
    add_revision,
    finish,
    job_env,
    run_job,
    start_job,
)


@contextmanager
def holding(lock_file: Path) -> Iterator[None]:
    """The test process holds the file lock, as another runner would (its record inside)."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename}).encode())
        yield
    finally:
        os.close(fd)  # drops the flock


def tables(database: Path) -> set[str]:
    if not database.exists():
        return set()
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}


def version(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]


def test_a_runner_waits_while_another_process_holds_the_file_lock(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    with holding(tmp_path / "app.db.lock"):
        runner = Running("upgrade", env=job_env(f"sqlite:///{database}"))
        waiting = runner.wait_for("lock_waiting")
        assert waiting["holder"]["pid"] == os.getpid()
        assert tables(database) == set(), "nothing ran without the lock"
    result = runner.finish()
    assert result.code == 0, result.stdout
    assert result.final["applied"] == len(REVISIONS)
    assert result.final["lock_wait_s"] > 0
    assert version(database) == [HEAD]


def test_a_file_lock_held_past_the_timeout_exits_4(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    with holding(tmp_path / "app.db.lock"):
        result = run_job("upgrade", env=job_env(f"sqlite:///{database}", MIGRATE_LOCK_TIMEOUT="1"))
    assert result.code == 4, result.stdout
    assert result.named("lock_waiting")
    assert (result.final["error"], result.final["exit_code"]) == ("LockTimeout", 4)
    assert f"pid {os.getpid()}" in result.final["message"], "the holder, named"
    assert tables(database) == set()


def test_four_runners_at_once_migrate_one_file_exactly_once(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    runners = [start_job("upgrade", env=job_env(f"sqlite:///{database}")) for _ in range(4)]
    results = [finish(runner, timeout=120) for runner in runners]
    assert [r.code for r in results] == [0] * 4, [r.stdout for r in results if r.code]
    assert sorted(r.final["applied"] for r in results) == [0, 0, 0, len(REVISIONS)]
    started = [e["revision"] for r in results for e in r.named("migration_started")]
    assert sorted(started) == sorted(REVISIONS), "each revision applied exactly once"
    assert version(database) == [HEAD]


def test_a_database_ahead_without_history_refuses_at_once_unless_assumed(
    tmp_path: Path, project: Path
) -> None:
    """SQLite keeps no run history (as MySQL): an older image cannot prove the database ahead,
    so await-head says so at once (exit 2) instead of waiting out its timeout."""
    database = tmp_path / "app.db"
    add_revision(project, "a1b2c3d4e5f6", HEAD, "pass")
    newer = job_env(f"sqlite:///{database}", ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_job("upgrade", "head", env=newer).code == 0
    older = job_env(f"sqlite:///{database}", MIGRATE_AWAIT_TIMEOUT="600")
    waited = run_job("await-head", env=older, timeout=30)
    assert waited.code == 2, waited.stdout
    assert "may be ahead" in waited.final["message"]
    assert "there is no run history" in waited.final["reason"]
    assumed = run_job("await-head", env={**older, "MIGRATE_DATABASE_AHEAD": "assume"}, timeout=30)
    assert assumed.code == 0, assumed.stdout
    assert assumed.one("database_ahead")["proven"] is False
    assert version(database) == ["a1b2c3d4e5f6"]

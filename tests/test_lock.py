"""The migration lock, with real concurrent OS processes and a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.backends.postgresql import lock_key
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
from tests.pgcluster import ADMIN


@pytest.mark.parametrize("attempt", range(3))
def test_eight_runners_at_once_migrate_exactly_once(cluster, attempt: int) -> None:
    db = Database(cluster, cluster.create_database())
    runners = [start_job("upgrade", "head", env=job_env(db.url)) for _ in range(8)]
    results = [finish(runner) for runner in runners]

    assert [r.code for r in results] == [0] * 8, [r.stdout for r in results if r.code]
    applied = [r.final["applied"] for r in results]
    assert sorted(applied) == [0] * 7 + [len(REVISIONS)]
    started = [e["revision"] for r in results for e in r.named("migration_started")]
    assert sorted(started) == sorted(REVISIONS), "each revision applied exactly once"
    for result in results:
        if result.final["applied"] == 0:
            assert result.one("nothing_to_do")["current"] == [HEAD]
            assert result.named("plan") == []
    waited = [r for r in results if r.named("lock_waiting")]
    assert waited, "with eight runners at once, some must have waited for the lock"
    for result in waited:
        names = [e["event"] for e in result.events]
        # A waiter stops as soon as the work is done, whether or not it got the lock meanwhile.
        assert names.index("lock_waiting") < names.index("nothing_to_do")
    assert db.version() == [HEAD]
    assert db.advisory_locks() == 0


def test_lock_held_past_the_timeout_exits_4_and_names_the_holder(db: Database) -> None:
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SET application_name = 'someone-else'")
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key("alembic:alembic_version"),))
    try:
        result = run_job("upgrade", env=job_env(db.url, MIGRATE_LOCK_TIMEOUT="1.5"))
    finally:
        holder.close()
    assert result.code == 4
    waiting = result.named("lock_waiting")[0]
    assert waiting["holder"]["application_name"] == "someone-else"
    assert waiting["holder"]["pid"] > 0
    failed = result.final
    assert failed["event"] == "failed" and failed["error"] == "LockTimeout"
    assert "someone-else" in failed["message"]
    assert "{" not in failed["message"], "a sentence, not a Python dict"
    assert f"pid {failed['holder']['pid']}" in failed["message"]
    assert failed["holder"]["application_name"] == "someone-else"
    assert 1.5 <= failed["duration_s"] < 1.5 + 2
    assert 1.5 <= failed["lock_wait_s"] <= failed["duration_s"], "the seconds it waited"
    assert db.version() == [], "nothing ran without the lock"


def test_waiter_proceeds_when_the_holder_lets_go(db: Database) -> None:
    holder = db.cluster.connect(db.name)
    key = lock_key("alembic:alembic_version")
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (key,))
    runner = Running("upgrade", env=job_env(db.url))
    try:
        runner.wait_for("lock_waiting")
    finally:
        holder.cursor().execute("SELECT pg_advisory_unlock(%s)", (key,))
        holder.close()
    result = runner.finish()
    assert result.code == 0
    assert result.named("lock_waiting")
    assert result.final["lock_wait_s"] > 0
    assert db.version() == [HEAD]


def test_lock_name_setting_changes_the_key(db: Database) -> None:
    other = lock_key("alembic:alembic_version")
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (other,))
    try:
        result = run_job("upgrade", env=job_env(db.url, MIGRATE_LOCK_NAME="tenant-7"))
    finally:
        holder.close()
    assert result.code == 0
    assert result.one("lock_acquired")["lock"] == "tenant-7"


def channel(key: int) -> str:
    """The channel waiters LISTEN on (README: How the lock works): `migrate_job_<lock key>`."""
    return f"migrate_job_{key & 0xFFFFFFFFFFFFFFFF:016x}"


DEFAULT_CHANNEL = channel(lock_key("alembic:alembic_version"))


def test_lock_key_is_a_stable_signed_64_bit_hash() -> None:
    digest = hashlib.sha256(b"alembic:alembic_version").digest()[:8]
    assert lock_key("alembic:alembic_version") == int.from_bytes(digest, "big", signed=True)
    assert -(2**63) <= lock_key("x") < 2**63
    assert lock_key("a") != lock_key("b")


def test_runner_identifies_itself_to_the_server(db: Database) -> None:
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key("alembic:alembic_version"),))
    runner = Running("upgrade", env=job_env(db.url, MIGRATE_LOCK_TIMEOUT="20"))
    try:
        runner.wait_for("lock_waiting")
        # Every session in the database but the test's own two: the waiting runner's.
        names = db.query(
            "SELECT application_name FROM pg_stat_activity WHERE datname = %s"
            " AND backend_type = 'client backend' AND pid NOT IN (pg_backend_pid(), %s)",
            db.name,
            holder.get_backend_pid(),
        )
    finally:
        holder.close()
    assert runner.finish().code == 0
    assert names == [(f"migrate-job@{os.uname().nodename}",)]


def test_a_waiter_whose_work_gets_done_stops_without_the_lock(db: Database) -> None:
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key("alembic:alembic_version"),))
    try:
        waiter = Running("upgrade", env=job_env(db.url))
        waiter.wait_for("lock_waiting")
        # The holder's work, done meanwhile (here by a runner on another lock name).
        assert run_job("upgrade", env=job_env(db.url, MIGRATE_LOCK_NAME="elsewhere")).code == 0
        result = waiter.finish(timeout=20)
        assert db.advisory_locks() == 1, "the holder still holds it"
    finally:
        holder.close()
    assert result.code == 0
    assert result.one("nothing_to_do")["current"] == [HEAD]
    assert result.named("lock_acquired") == []
    assert result.final["applied"] == 0
    waited_since = result.one("lock_waiting")["waited_s"]
    assert waited_since <= result.final["lock_wait_s"] <= result.final["duration_s"]
    assert result.final["lock_wait_s"] > 0


def test_the_holder_announces_the_release_to_waiters(db: Database) -> None:
    listener = db.cluster.connect(db.name)
    announced = channel(lock_key("alembic:alembic_version"))
    try:
        listener.cursor().execute(f"LISTEN {announced}")
        result = run_job("upgrade", env=job_env(db.url))
        listener.poll()
        notified = [notify.channel for notify in listener.notifies]
    finally:
        listener.close()
    assert result.code == 0
    assert result.one("lock_released")
    assert notified == [announced]


def counting_polls(db: Database, notifier: str | None = None) -> Callable[[], int]:
    """Make the version table an empty view that counts the reads of a waiter (a session that
    LISTENs); with `notifier` (a conninfo), each such read also has that other session NOTIFY
    `notifier_channel`, so the notification reaches the waiter within its query.

    Returns the count so far. Drop the view (`DROP VIEW alembic_version`) before a migration.
    """
    db.query("CREATE SEQUENCE polls")
    notify = ""
    if notifier is not None:
        db.query("CREATE EXTENSION dblink")
        notify = (
            "IF NOT 'notifier' = ANY(coalesce(dblink_get_connections(), '{}')) THEN"
            f" PERFORM dblink_connect('notifier', {quote_literal(notifier)}); END IF;"
            f" PERFORM dblink_exec('notifier', {quote_literal(f'NOTIFY {DEFAULT_CHANNEL}')});"
        )
    db.query(
        "CREATE FUNCTION read_versions() RETURNS TABLE (version_num varchar(32))"
        " LANGUAGE plpgsql AS $$ BEGIN"
        f"  IF EXISTS (SELECT FROM pg_listening_channels()) THEN PERFORM nextval('polls'); {notify}"
        "  END IF;"
        " END $$"
    )
    db.query("CREATE VIEW alembic_version AS SELECT * FROM read_versions()")
    return lambda: int(db.query("SELECT last_value - 1 + is_called::int FROM polls")[0][0])


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_a_notification_while_the_lock_is_still_held_does_not_end_the_wait(db: Database) -> None:
    polls = counting_polls(db)
    key = lock_key("alembic:alembic_version")
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (key,))
    runner = Running("upgrade", env=job_env(db.url))
    try:
        runner.wait_for("lock_waiting")
        for _ in range(3):
            before = polls()
            holder.cursor().execute(f"NOTIFY {channel(key)}")
            # It woke and looked again (or, wrongly, stopped waiting).
            until(lambda before=before: polls() > before + 1 or runner.process.poll() is not None)
        assert runner.process.poll() is None, "still waiting for the lock"
        assert db.tables() == set(), "nothing ran without the lock"
        db.query("DROP VIEW alembic_version")
    finally:
        holder.cursor().execute("SELECT pg_advisory_unlock(%s)", (key,))
        holder.close()
    result = runner.finish()
    assert result.code == 0, result.stdout
    assert result.final["applied"] == len(REVISIONS)
    assert len(result.named("lock_waiting")) == 1


def until(predicate: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_the_waiter_that_wins_stops_listening(db: Database, project: Path) -> None:
    """A listening session inside a long migration would hold back every NOTIFY on the server."""
    add_revision(
        project,
        "eeee00000001",
        HEAD,
        'op.execute("CREATE TABLE listening AS SELECT pg_listening_channels() AS channel")',
    )
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key("alembic:alembic_version"),))
    runner = Running("upgrade", env=job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini")))
    try:
        runner.wait_for("lock_waiting")  # it listens from now on
    finally:
        holder.close()
    result = runner.finish()
    assert result.code == 0, result.stdout
    assert result.one("lock_acquired")
    # Read on the job's own connection, by its last revision, while it held the lock.
    assert db.query("SELECT channel FROM listening") == []


def test_a_waiter_woken_with_the_work_done_leaves_without_taking_the_free_lock(
    db: Database,
) -> None:
    """Taking it would only wake every other waiter once more, as it let go again."""
    key = lock_key("alembic:alembic_version")
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (key,))
    runner = Running("upgrade", env=job_env(db.url))
    try:
        runner.wait_for("lock_waiting")
        # The holder's work, committed, then the release that wakes the waiter, as a runner
        # does it: from then on the lock is free and the work done.
        holder.cursor().execute(
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
            f" INSERT INTO alembic_version VALUES ('{HEAD}')"
        )
        holder.cursor().execute(
            f"SELECT pg_advisory_unlock(%s), pg_notify('{channel(key)}', '')", (key,)
        )
        result = runner.finish()
    finally:
        holder.close()
    assert result.code == 0, result.stdout
    assert result.one("nothing_to_do")["current"] == [HEAD]
    assert result.named("lock_acquired") == [] and result.named("lock_released") == []
    assert db.advisory_locks() == 0


def test_a_notification_read_during_a_query_is_not_slept_through(db: Database) -> None:
    """A waiter wakes on the NOTIFY even when the driver read it along with a query's answer.

    Every read of the version table by the waiter has another session NOTIFY the lock's channel
    (counting_polls), so each notification reaches the waiter inside a query, never while it
    sleeps on its socket. A waiter that acts on the notification in hand polls again at once
    (about a thousand times in 2 s here); one that sleeps through it backs off from 10 ms to 1 s
    between polls and manages about ten.
    """
    options = {
        "host": "127.0.0.1",
        "port": db.cluster.port,
        "user": ADMIN,
        "password": db.cluster.password,
        "dbname": db.name,
    }
    escaped = {
        key: str(value).replace("\\", "\\\\").replace("'", "\\'") for key, value in options.items()
    }
    polls = counting_polls(db, notifier=" ".join(f"{k}='{v}'" for k, v in escaped.items()))
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key("alembic:alembic_version"),))
    try:
        result = run_job("upgrade", env=job_env(db.url, MIGRATE_LOCK_TIMEOUT="2"))
    finally:
        holder.close()
    assert result.code == 4, result.stdout
    assert result.final["error"] == "LockTimeout"
    assert polls() >= 100, f"{polls()} polls in 2 s: the waiter slept through notifications"


def test_a_lock_found_lost_at_release_fails_the_job(db: Database, project: Path) -> None:
    """Something let go of the session's lock under the job (here its own last revision, as a
    transaction-mode pooler would by handing the session to someone else): say so, exit 2."""
    add_revision(project, "eeee00000002", HEAD, 'op.execute("SELECT pg_advisory_unlock_all()")')
    result = run_job("upgrade", env=job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini")))
    assert result.code == 2, result.stdout
    lost = result.one("lock_lost")
    assert (lost["level"], lost["lock"]) == ("error", "alembic:alembic_version")
    assert lost["reason"] == "the lock was not held at release"
    assert result.named("lock_released") == []
    failed = result.final
    assert (failed["event"], failed["error"]) == ("failed", "LockNotHeld")
    assert "was no longer held by this session" in failed["message"]
    assert "check the schema" in failed["message"]
    assert db.version() == ["eeee00000002"], "the revisions committed before the release"
    assert failed["revisions_after"] == ["eeee00000002"]
    assert db.advisory_locks() == 0

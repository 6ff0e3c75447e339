"""The migration lock, with real concurrent OS processes and a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import io
import threading
import time

import psycopg2
import pytest

from migrator.backends.postgresql import AdvisoryLock, lock_key
from migrator.locking import _Waiting
from migrator.logs import Log
from tests.conftest import (
    HEAD,
    REVISIONS,
    Database,
    Running,
    finish,
    job_env,
    run_job,
    start_job,
)


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


def test_lock_key_is_a_stable_signed_64_bit_hash() -> None:
    digest = hashlib.sha256(b"alembic:alembic_version").digest()[:8]
    assert lock_key("alembic:alembic_version") == int.from_bytes(digest, "big", signed=True)
    assert -(2**63) <= lock_key("x") < 2**63
    assert lock_key("a") != lock_key("b")


def test_runner_identifies_itself_to_the_server(db: Database) -> None:
    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key("alembic:alembic_version"),))
    runner = start_job("upgrade", env=job_env(db.url, MIGRATE_LOCK_TIMEOUT="20"))
    try:
        names = _wait_for_backend(db, "migrate-job@")
        assert names and all(name.startswith("migrate-job@") for name in names)
    finally:
        holder.close()
    assert finish(runner).code == 0


def _wait_for_backend(db: Database, prefix: str) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            rows = db.query(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = %s AND application_name LIKE %s",
                db.name,
                prefix + "%",
            )
        except psycopg2.Error:
            rows = []
        if rows:
            return [row[0] for row in rows]
        time.sleep(0.05)
    raise AssertionError(f"no backend named {prefix}* appeared")


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
    channel = AdvisoryLock(listener, "alembic:alembic_version").channel
    try:
        listener.cursor().execute(f"LISTEN {channel}")
        result = run_job("upgrade", env=job_env(db.url))
        listener.poll()
        notified = [notify.channel for notify in listener.notifies]
    finally:
        listener.close()
    assert result.code == 0
    assert result.one("lock_released")
    assert notified == [channel]


def test_a_notification_while_the_lock_is_still_held_does_not_end_the_wait(db: Database) -> None:
    holder = db.cluster.connect(db.name)
    lock = AdvisoryLock(holder, "alembic:alembic_version")
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock.key,))
    runner = Running("upgrade", env=job_env(db.url))
    try:
        runner.wait_for("lock_waiting")
        for _ in range(5):
            holder.cursor().execute(f"NOTIFY {lock.channel}")
            time.sleep(0.05)
        assert runner.process.poll() is None, "still waiting for the lock"
    finally:
        holder.cursor().execute("SELECT pg_advisory_unlock(%s)", (lock.key,))
        holder.close()
    result = runner.finish()
    assert result.code == 0
    assert result.final["applied"] == len(REVISIONS)
    assert len(result.named("lock_waiting")) == 1


def test_the_waiter_that_wins_stops_listening(db: Database) -> None:
    """A listening session inside a long migration would hold back every NOTIFY on the server."""
    holder = db.cluster.connect(db.name)
    waiter = db.cluster.connect(db.name)
    waiter.autocommit = False
    lock = AdvisoryLock(waiter, "alembic:alembic_version")
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock.key,))
    releaser = threading.Timer(
        0.3, lambda: holder.cursor().execute("SELECT pg_advisory_unlock_all()")
    )
    releaser.start()
    try:
        waiting = _Waiting(
            lock, name="test", timeout=20, log=Log(stream=io.StringIO()), started=time.monotonic()
        )
        assert waiting.until_acquired(lambda: False) is True
        with waiter.cursor() as cursor:
            cursor.execute("SELECT pg_listening_channels()")
            assert cursor.fetchall() == []
        assert lock.release() is True
    finally:
        releaser.join()
        holder.close()
        waiter.close()


def test_a_waiter_woken_with_the_work_done_leaves_without_taking_the_free_lock(
    db: Database,
) -> None:
    """Taking it would only wake every other waiter once more, as it let go again."""
    holder = db.cluster.connect(db.name)
    waiter = db.cluster.connect(db.name)
    waiter.autocommit = False
    lock = AdvisoryLock(waiter, "alembic:alembic_version")
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock.key,))
    done = threading.Event()

    def finish_and_release() -> None:
        done.set()
        holder.cursor().execute(
            f"SELECT pg_advisory_unlock(%s), pg_notify('{lock.channel}', '')", (lock.key,)
        )

    releaser = threading.Timer(0.3, finish_and_release)
    releaser.start()
    try:
        waiting = _Waiting(
            lock, name="test", timeout=20, log=Log(stream=io.StringIO()), started=time.monotonic()
        )
        assert waiting.until_acquired(done.is_set) is False
        assert db.advisory_locks() == 0, "the lock was free, and the waiter left it so"
    finally:
        releaser.join()
        holder.close()
        waiter.close()


def test_a_notification_read_during_a_query_is_not_slept_through(db: Database) -> None:
    waiter = db.cluster.connect(db.name)
    other = db.cluster.connect(db.name)
    try:
        lock = AdvisoryLock(waiter, "alembic:alembic_version")
        lock.listen()
        other.cursor().execute(f"NOTIFY {lock.channel}")
        assert lock.try_acquire() is True  # psycopg2 reads the notification with this answer
        assert waiter.notifies, "the notification is already in psycopg2's hands"
        lock.pause(0)
        assert waiter.notifies == [], "the pause consumed it instead of waiting on the socket"
        assert lock.release() is True
    finally:
        waiter.close()
        other.close()

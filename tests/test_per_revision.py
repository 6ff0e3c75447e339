"""Per revision: its own transaction (`migration_finished` means committed) and its own limit on
how long its DDL may queue for a table (`ddl_lock_timeout`, a module attribute)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.conftest import HEAD, REVISIONS, Database, Running, add_revision, job_env, run_job

EXTRA = "ffff00000001"


def test_migration_finished_is_logged_only_once_the_revision_is_committed(db: Database) -> None:
    """Read from outside at the moment the event is seen: the version table shows the revision.

    The commit of the second revision is made slow (a deferred trigger sleeps 2 s in it), so an
    event logged before the commit would be seen with the commit still under way; the third
    revision, which indexes `tasks`, is held up by the test's lock on that table, so nothing
    else commits before the version is read.
    """
    first, second = REVISIONS[0], REVISIONS[1]
    assert run_job("upgrade", first, env=job_env(db.url)).code == 0
    db.query(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$"
    )
    db.query(
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON alembic_version"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
        f" WHEN (NEW.version_num = '{second}') EXECUTE FUNCTION slow_commit()"
    )
    blocker = db.cluster.connect(db.name)
    blocker.autocommit = False
    blocker.cursor().execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
    try:
        runner = Running("upgrade", env=job_env(db.url, MIGRATE_DDL_LOCK_TIMEOUT="0"))
        finished = runner.wait_for("migration_finished")
        seen_outside = db.version()
        assert runner.wait_for("migration_started")["revision"] == REVISIONS[2]
    finally:
        blocker.close()
    result = runner.finish()
    assert result.code == 0, result.stdout
    assert finished["revision"] == second
    assert seen_outside == [second], "migration_finished was logged before the commit"
    assert db.version() == [HEAD]


def test_a_revision_s_own_ddl_lock_timeout_bounds_its_wait_for_a_table(
    db: Database, project: Path
) -> None:
    """`ddl_lock_timeout = 1` in the revision, no limit for the others: its ALTER, queued behind
    an application transaction, gives up after 1 s, is rolled back and retried, then exit 6."""
    add_revision(
        project,
        EXTRA,
        HEAD,
        'op.add_column("accounts", sa.Column("nickname", sa.String(50)))',
        'op.drop_column("accounts", "nickname")',
    )
    revision_file = project / "migrations" / "versions" / f"{EXTRA}_test.py"
    revision_file.write_text(revision_file.read_text() + "\nddl_lock_timeout = 1\n")
    env = job_env(
        db.url,
        ALEMBIC_CONFIG=str(project / "alembic.ini"),
        MIGRATE_DDL_LOCK_TIMEOUT="0",  # no limit, but for this revision
        MIGRATE_DDL_RETRIES="1",
    )
    assert run_job("upgrade", HEAD, env=env).code == 0
    reader = db.cluster.connect(db.name)
    reader.cursor().execute("SET application_name = 'app-reader'")
    reader.autocommit = False
    reader.cursor().execute("SELECT count(*) FROM accounts")  # holds ACCESS SHARE until it ends
    try:
        result = run_job("upgrade", env=env, timeout=60)
    finally:
        reader.close()
    assert result.code == 6, result.stdout
    assert (result.final["error"], result.final["kind"]) == ("DDLTimeout", "lock_timeout")
    assert result.final["revision"] == EXTRA
    (retry,) = result.named("ddl_lock_timeout")
    assert (retry["revision"], retry["attempt"], retry["retries"]) == (EXTRA, 1, 1)
    # Each attempt queued for the table for its 1 s, by the job's own clock (not 1 ms, not 0).
    starts = [e for e in result.named("migration_started") if e["revision"] == EXTRA]
    assert len(starts) == 2
    for started, ended in zip(starts, [retry, result.final], strict=True):
        waited = _at(ended) - _at(started)
        assert waited >= 1.0, f"gave up after {waited:.3f} s"
    assert db.version() == [HEAD]


def _at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()

"""MySQL and MariaDB under faults: a metadata lock, a killed runner, a server that starts late,
many runners at once. Real processes against a private MariaDB server."""

from __future__ import annotations

import signal
from pathlib import Path

from migrator.backends.mysql import lock_key
from tests.conftest import (
    HEAD,
    REVISIONS,
    MySQLDatabase,
    Running,
    add_revision,
    job_env,
    run_job,
)
from tests.mariadb import MariaDB

LOCK = "alembic:alembic_version"  # the default lock name


def test_a_table_held_by_a_transaction_ends_in_exit_6_after_the_retries(
    mdb: MySQLDatabase, project: Path
) -> None:
    # MySQL's lock_wait_timeout defaults to a year: without the job's own, this ALTER would
    # queue behind the open transaction's metadata lock for that long, silently.
    assert run_job("upgrade", "head", env=job_env(mdb.url)).code == 0
    add_revision(
        project, "aaaa00000001", HEAD, 'op.add_column("tasks", sa.Column("note", sa.Text))'
    )
    env = job_env(
        mdb.url,
        ALEMBIC_CONFIG=str(project / "alembic.ini"),
        MIGRATE_DDL_LOCK_TIMEOUT="1",
        MIGRATE_DDL_RETRIES="1",
    )
    holder = mdb.server.connect(mdb.name)
    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT COUNT(*) FROM tasks")  # holds the table's metadata lock
        result = run_job("upgrade", "head", env=env, timeout=60)
    finally:
        holder.close()
    assert result.code == 6, result.stdout
    assert len(result.named("ddl_lock_timeout")) == 1  # one retry, then the verdict
    assert result.final["event"] == "failed"
    assert "aaaa00000001" in result.final["message"]
    columns = mdb.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tasks'"
    )
    assert ("note",) not in columns
    assert mdb.version() == [HEAD]
    assert mdb.query("SELECT IS_USED_LOCK(%s)", lock_key(LOCK)) == [(None,)]


def test_a_runner_killed_mid_statement_leaves_a_lock_the_next_run_waits_out(
    mdb: MySQLDatabase, project: Path
) -> None:
    # SIGKILL leaves no time to clean up: the server keeps the dead runner's session (and its
    # GET_LOCK) until the running statement ends. The next runner must wait for it, name it,
    # and then apply the revision exactly once. The statement is CPU work, which the server
    # does not interrupt when the client goes (SLEEP and lock waits check the connection every
    # few seconds and end there, which made any sleep a race): the test ends it with KILL once
    # the next run waits, as an operator would.
    add_revision(
        project,
        "aaaa00000001",
        HEAD,
        "op.execute(\"SELECT BENCHMARK(1000000000000, MD5('x'))\")\n"
        'op.execute("CREATE TABLE marker (id INT)")',
    )
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    first = Running("upgrade", "head", env=env)
    started = first.wait_for("migration_started")
    while started["revision"] != "aaaa00000001":
        started = first.wait_for("migration_started")
    mdb.running("SELECT BENCHMARK", timeout=10)
    (dead_session,) = mdb.query("SELECT IS_USED_LOCK(%s)", lock_key(LOCK))[0]
    first.process.send_signal(signal.SIGKILL)
    assert first.finish(timeout=10).code == -signal.SIGKILL

    # The next run waits for the dead session, naming it; once that session ends (here: the
    # test ends it, as an operator would), the run refuses: which statements of the revision
    # ran is not known (the in-flight marker); nothing did here, so `resolve` and rerun.
    refusing = Running("upgrade", "head", env=env)
    waiting = refusing.wait_for("lock_waiting", timeout=60)
    assert waiting["holder"]["pid"] == dead_session
    mdb.query(f"KILL {int(dead_session)}")
    refused = refusing.finish(timeout=60)
    assert refused.code == 2 and refused.final["error"] == "HalfApplied", refused.stdout
    assert run_job("resolve", env=env).code == 0
    revision = project / "migrations" / "versions" / "aaaa00000001_test.py"
    revision.write_text(revision.read_text().replace("1000000000000", "1"))  # the rerun: no wait
    second = run_job("upgrade", "head", env=env)
    assert second.code == 0, second.stdout
    assert second.final["applied"] == 1
    assert "marker" in mdb.tables()
    assert mdb.version() == ["aaaa00000001"]


def test_a_server_that_starts_late_is_waited_for(own_mariadb: MariaDB) -> None:
    own_mariadb.start()
    with own_mariadb.admin() as cursor:
        cursor.execute("CREATE DATABASE app_db")
    own_mariadb.stop()
    env = job_env(own_mariadb.url("app_db"), MIGRATE_WAIT_TIMEOUT="120")
    runner = Running("upgrade", "head", env=env)
    runner.wait_for("database_unavailable")
    own_mariadb.start()
    result = runner.finish(timeout=150)
    assert result.code == 0, result.stdout
    assert result.one("database_ready")["attempts"] >= 2
    assert result.final["applied"] == len(REVISIONS)


def test_a_server_restarted_mid_revision_is_accounted_and_refused_until_repaired(
    own_mariadb: MariaDB, project: Path
) -> None:
    """The server restarts while a revision runs (a failover, an upgrade of the server): the run
    exits 3 naming what had committed, and the next run, once the server is back, refuses
    instead of rerunning into "Table already exists"; the repair and `resolve` then succeed."""
    own_mariadb.start()
    with own_mariadb.admin() as cursor:
        cursor.execute("CREATE DATABASE app_db")
    mdb = MySQLDatabase(own_mariadb, "app_db")
    add_revision(
        project,
        "aaaa00000001",
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("SELECT SLEEP(30)")',
    )
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"), MIGRATE_WAIT_TIMEOUT="5")
    runner = Running("upgrade", "head", env=env)
    mdb.running("SELECT SLEEP", timeout=60)  # statement 1 has committed
    own_mariadb.stop()
    own_mariadb.start()
    result = runner.finish(timeout=60)
    assert result.code == 3, result.stdout
    message = result.final["message"]
    assert "CREATE TABLE first" in message and "rolled back" not in message, message

    refused = run_job("upgrade", "head", env=env)
    assert refused.code == 2 and refused.final["error"] == "HalfApplied", refused.stdout
    assert "first" in mdb.tables() and mdb.version() == [HEAD]
    mdb.query("DROP TABLE first")  # the repair: undo what committed
    assert run_job("resolve", env=env).code == 0
    project.joinpath("migrations", "versions", "aaaa00000001_test.py").write_text(
        project.joinpath("migrations", "versions", "aaaa00000001_test.py")
        .read_text()
        .replace("SLEEP(30)", "SLEEP(0)")
    )
    rerun = run_job("upgrade", "head", env=env)
    assert rerun.code == 0 and rerun.final["applied"] == 1, rerun.stdout
    assert mdb.version() == ["aaaa00000001"]


def test_twenty_runners_migrate_once(mdb: MySQLDatabase) -> None:
    runners = [Running("upgrade", "head", env=job_env(mdb.url)) for _ in range(20)]
    results = [runner.finish(timeout=240) for runner in runners]
    assert [result.code for result in results] == [0] * 20, [r.stdout[-500:] for r in results]
    assert sorted(result.final["applied"] for result in results) == [0] * 19 + [len(REVISIONS)]
    assert mdb.version() == [HEAD]
    assert mdb.query("SELECT IS_USED_LOCK(%s)", lock_key(LOCK)) == [(None,)]


def test_await_head_check_and_heads_on_mysql(mdb: MySQLDatabase) -> None:
    env = job_env(mdb.url, MIGRATE_AWAIT_TIMEOUT="2")
    behind = run_job("await-head", env=env, timeout=30)
    assert behind.code == 7, behind.stdout
    assert run_job("upgrade", "head", env=env).code == 0
    at_head = run_job("await-head", env=env)
    assert at_head.code == 0, at_head.stdout
    check = run_job("check", env=env)
    assert check.code == 0, check.stdout  # the models and MariaDB's schema agree
    heads = run_job("heads", env=env)
    assert [head["revision"] for head in heads.one("heads")["heads"]] == [HEAD]

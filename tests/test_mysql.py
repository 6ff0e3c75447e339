"""MySQL and MariaDB: the runner against a private MariaDB server, as real processes."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from migrator.backends.mysql import lock_key
from tests.conftest import (
    HEAD,
    REVISIONS,
    MySQLDatabase,
    Running,
    add_revision,
    job_env,
    run_job,
    run_raw,
)
from tests.pgcluster import free_port
from tests.test_own_project import REVISIONS as OWN_REVISIONS
from tests.test_own_project import make_project

LOCK = "alembic:alembic_version"  # the default lock name
# What each revision of the generated projects records: its session, and whether it held the lock.
RECORD = (
    "op.execute(\"INSERT INTO ddl_runs VALUES ('{rev}', CONNECTION_ID(), "
    f"IS_USED_LOCK('{lock_key(LOCK)}') = CONNECTION_ID())\")"
)


def test_upgrade_then_noop_then_downgrade_base(mdb: MySQLDatabase) -> None:
    env = job_env(mdb.url)
    first = run_job("upgrade", "head", env=env)
    assert first.code == 0, first.stdout
    assert first.final["applied"] == len(REVISIONS)
    assert mdb.version() == [HEAD]
    assert {"accounts", "projects", "tasks", "comments"} <= mdb.tables()

    again = run_job("upgrade", "head", env=env)
    assert again.code == 0, again.stdout
    assert again.final["applied"] == 0
    assert again.final["revisions_before"] == [HEAD]

    current = run_job("current", env=env)
    assert current.code == 0, current.stdout
    assert current.one("current")["current"] == [HEAD]

    down = run_job("downgrade", "base", env=env)
    assert down.code == 0, down.stdout
    assert mdb.version() == []
    assert "tasks" not in mdb.tables()


def test_every_url_spelling_reaches_the_server(mdb: MySQLDatabase) -> None:
    for scheme in ("mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql"):
        result = run_job("current", env=job_env(mdb.server.url(mdb.name, scheme=scheme)))
        assert result.code == 0, (scheme, result.stdout)


def test_a_wrong_password_is_refused_at_once_and_never_printed(mdb: MySQLDatabase) -> None:
    wrong = "Wr0ng-Pa55:w@rd/y"
    result = run_job(
        "upgrade", "head", env=job_env(mdb.server.url(mdb.name, password=wrong)), timeout=30
    )
    assert result.code == 2, result.stdout
    assert result.final["event"] == "failed"
    assert result.final["duration_s"] < 10  # refused, not waited on
    for secret in (wrong, quote(wrong, safe=""), mdb.server.password):
        assert secret not in result.stdout + result.stderr


def test_an_unknown_database_is_refused(mdb: MySQLDatabase) -> None:
    result = run_job("upgrade", "head", env=job_env(mdb.server.url("no_such_db")), timeout=30)
    assert result.code == 2, result.stdout
    assert "no_such_db" in result.final["message"]


def test_no_server_waits_then_exits_3() -> None:
    url = f"mysql://app:pw@127.0.0.1:{free_port()}/app"
    env = job_env(url, MIGRATE_WAIT_TIMEOUT="2")
    result = run_job("upgrade", "head", env=env, timeout=30)
    assert result.code == 3, result.stdout
    assert len(result.named("database_unavailable")) >= 2


def test_concurrent_runners_apply_each_revision_once(mdb: MySQLDatabase) -> None:
    runners = [Running("upgrade", "head", env=job_env(mdb.url)) for _ in range(8)]
    results = [runner.finish(timeout=120) for runner in runners]
    assert [result.code for result in results] == [0] * 8, [r.stdout[-500:] for r in results]
    assert sorted(result.final["applied"] for result in results) == [0] * 7 + [len(REVISIONS)]
    assert mdb.version() == [HEAD]


def test_the_server_side_lock_name_fits_in_64_characters(mdb: MySQLDatabase) -> None:
    long_name = "tenant-" + "x" * 200
    result = run_job("upgrade", "head", env=job_env(mdb.url, MIGRATE_LOCK_NAME=long_name))
    assert result.code == 0, result.stdout
    acquired = result.one("lock_acquired")
    assert acquired["lock"] == long_name
    assert 0 < len(acquired["key"]) <= 64
    # The lock is released: another session can take it at once.
    assert mdb.query("SELECT GET_LOCK(%s, 0)", acquired["key"]) == [(1,)]


def test_a_revision_failing_halfway_is_not_called_rolled_back(
    mdb: MySQLDatabase, project: Path
) -> None:
    # MySQL commits each DDL statement as it runs: the first table stays, and the job says so.
    add_revision(
        project,
        "aaaa00000001",
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("SELECT * FROM no_such_table")',
    )
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    result = run_job("upgrade", "head", env=env)
    assert result.code == 5, result.stdout
    message = result.final["message"]
    assert "rolled back" not in message
    assert "may remain applied" in message and "aaaa00000001" in message
    assert "first" in mdb.tables()
    assert mdb.version() == [HEAD]


def test_a_held_lock_names_its_holder_then_times_out(mdb: MySQLDatabase) -> None:
    holder = mdb.server.connect(mdb.name)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID(), GET_LOCK(%s, 0)", (lock_key(LOCK),))
            (session, taken) = cursor.fetchone()
        assert taken == 1
        result = run_job("upgrade", "head", env=job_env(mdb.url, MIGRATE_LOCK_TIMEOUT="2"))
    finally:
        holder.close()
    assert result.code == 4, result.stdout
    waiting = result.named("lock_waiting")
    assert waiting and waiting[0]["holder"]["pid"] == session
    assert mdb.version() == []


def test_sigterm_mid_statement_kills_the_query_and_frees_the_lock(
    mdb: MySQLDatabase, project: Path
) -> None:
    add_revision(project, "aaaa00000001", HEAD, 'op.execute("SELECT SLEEP(30)")')
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    runner = Running("upgrade", "head", env=env)
    started = runner.wait_for("migration_started")
    while started["revision"] != "aaaa00000001":
        started = runner.wait_for("migration_started")
    # Only once the server runs it: the signal must meet the statement, not the Python before it.
    deadline = time.monotonic() + 10
    while not mdb.query(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%%'"
    ):
        assert time.monotonic() < deadline, "SLEEP never started"
    signalled = time.monotonic()
    runner.process.send_signal(signal.SIGTERM)
    result = runner.finish(timeout=20)
    assert result.code == 143, result.stdout
    assert time.monotonic() - signalled < 10  # not the 30 s of SLEEP
    assert result.final["event"] == "failed"
    assert mdb.version() == [HEAD]
    assert mdb.query("SELECT IS_USED_LOCK(%s)", lock_key(LOCK)) == [(None,)], result.stdout[-1500:]


@pytest.mark.parametrize("style", ["generic", "pyproject", "env_var", "attributes"])
def test_a_project_we_did_not_write_runs_on_the_locked_connection(
    tmp_path: Path, mdb: MySQLDatabase, style: str
) -> None:
    ini = make_project(tmp_path, style, record=RECORD)
    # The project's own env.py reads DATABASE_URL too (env_var): it names PyMySQL, as a MySQL
    # project's URL must for SQLAlchemy to load it.
    env = job_env(mdb.server.url(mdb.name, scheme="mysql+pymysql"), ALEMBIC_CONFIG=str(ini))
    up = run_job("upgrade", "head", env=env)
    assert up.code == 0, up.stdout + up.stderr
    runs = mdb.query("SELECT revision, pid, held_lock FROM ddl_runs")
    assert [run[0] for run in runs] == OWN_REVISIONS
    assert all(held for _, _, held in runs), runs  # the session running the DDL held the lock
    assert len({pid for _, pid, _ in runs}) == 1
    down = run_job("downgrade", "base", env=env)
    assert down.code == 0, down.stdout
    assert mdb.tables() == {"alembic_version"}


def test_status_pending_sql_and_history_marks(mdb: MySQLDatabase) -> None:
    env = job_env(mdb.url)
    mid = REVISIONS[2]
    assert run_job("upgrade", mid, env=env).code == 0

    behind = run_job("status", env=env)
    assert behind.code == 7, behind.stdout
    status = behind.one("status")
    assert (status["current"], status["verdict"]) == ([mid], "pending")
    assert [step["revision"] for step in status["pending"]] == REVISIONS[3:]

    done = run_raw("upgrade", "--sql", env=env)
    assert done.returncode == 0, done.stderr
    assert "ALTER TABLE comments CHANGE text body" in done.stdout  # 4d5e6f7a8b93's
    assert "CREATE INDEX ix_tasks_project_id_status" not in done.stdout  # 3c4d5e6f7a82's
    assert "CREATE TABLE" not in done.stdout

    history = run_job("history", env=env).one("history")
    assert [entry["applied"] for entry in history["revisions"]] == [True] * 3 + [False] * 2
    assert mdb.version() == [mid], "none of them changed anything"

    assert run_job("upgrade", env=env).code == 0
    at_head = run_job("status", env=env)
    assert at_head.code == 0 and at_head.one("status")["verdict"] == "at_head"
    mdb.query("UPDATE alembic_version SET version_num = 'abcdefabcdef'")
    unknown = run_job("status", env=env)
    assert unknown.code == 2 and unknown.final["unknown"] == ["abcdefabcdef"]

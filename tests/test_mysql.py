"""MySQL and MariaDB: the runner against a private MariaDB server, as real processes."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from migrator.backends.mysql import lock_key
from migrator.halfapplied import NOTE_LIMIT, PREFIX, Record
from tests.conftest import (
    HEAD,
    REVISIONS,
    MySQLDatabase,
    Result,
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
    assert "was rolled back" not in message
    assert message.startswith(
        "revision aaaa00000001 failed at statement 2; statement 1 was committed by MySQL and is "
        "not rolled back: [1] CREATE TABLE first"
    ), message
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
    mdb.running("SELECT SLEEP", timeout=10)
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


# A revision of three statements whose third fails. The second carries the test user's password
# in its text (a table comment), so the account and the record must mask it.
HALFWAY = "aaaa00000001"


def _three_statements(password: str, third: str = "SELECT * FROM no_such_table") -> str:
    return (
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.create_table("second", sa.Column("id", sa.Integer, primary_key=True),'
        f" comment={password!r})\n"
        f"op.execute({third!r})"
    )


def _note(mdb: MySQLDatabase) -> str:
    """The version table's comment: where the half-applied record lives."""
    rows = mdb.query(
        "SELECT TABLE_COMMENT FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'alembic_version'"
    )
    return str(rows[0][0]) if rows else ""


def test_a_revision_failing_at_its_third_statement_is_accounted_recorded_and_refused(
    mdb: MySQLDatabase, project: Path
) -> None:
    password = mdb.server.password
    add_revision(project, HALFWAY, HEAD, _three_statements(password))
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))

    failed = run_job("upgrade", "head", env=env)
    assert failed.code == 5, failed.stdout
    final = failed.final
    assert final["event"] == "failed"
    message = final["message"]
    assert message.startswith(
        f"revision {HALFWAY} failed at statement 3; statements 1-2 were committed by MySQL and "
        "are not rolled back: "
    ), message
    assert "rolled back:" not in message.replace("not rolled back:", "")
    assert final["revision"] == HALFWAY and final["failed_statement"] == 3
    committed = final["committed_statements"]
    assert len(committed) == 2, committed
    assert committed[0].startswith("CREATE TABLE first") and "CREATE TABLE second" in committed[1]
    assert "COMMENT='***'" in committed[1], committed[1]
    assert {"first", "second"} <= mdb.tables()
    assert mdb.version() == [HEAD]
    # The record, durable in the database, and without the password either.
    note = _note(mdb)
    assert HALFWAY in note and "CREATE TABLE second" in note and password not in note, note
    assert len(note) <= 2048

    # The next run refuses, after the lock and before anything else: nothing is planned or run.
    tables = mdb.tables()
    refused = run_job("upgrade", "head", env=env)
    assert refused.code == 2, refused.stdout
    assert refused.final["event"] == "failed"
    assert refused.final["error"] == "HalfApplied"
    assert refused.final["half_applied"]["revision"] == HALFWAY
    assert refused.final["half_applied"]["failed_statement"] == 3
    assert f"revision {HALFWAY} failed at statement 3" in refused.final["message"]
    assert "resolve" in refused.final["message"]
    assert refused.named("lock_acquired") and refused.named("lock_released")
    assert not refused.named("plan") and not refused.named("migration_started")
    assert mdb.tables() == tables and mdb.version() == [HEAD]
    for command in (("downgrade", "-1"), ("stamp", "head")):
        other = run_job(*command, env=env)
        assert other.code == 2 and other.final["error"] == "HalfApplied", other.stdout
    assert mdb.version() == [HEAD]

    # `current` reports it, and does not fail.
    current = run_job("current", env=env)
    assert current.code == 0, current.stdout
    assert current.one("current")["half_applied"]["revision"] == HALFWAY

    # The documented repair: undo statements 1-2 by hand, fix the revision, resolve, upgrade.
    mdb.query("DROP TABLE first")
    mdb.query("DROP TABLE second")
    add_revision(project, HALFWAY, HEAD, _three_statements(password, third="SELECT 1"))
    resolved = run_job("resolve", env=env)
    assert resolved.code == 0, resolved.stdout
    assert resolved.one("resolved")["half_applied"]["revision"] == HALFWAY
    assert _note(mdb) == ""
    again = run_job("resolve", env=env)
    assert again.code == 0, again.stdout
    assert again.named("nothing_to_resolve")
    up = run_job("upgrade", "head", env=env)
    assert up.code == 0, up.stdout
    assert mdb.version() == [HALFWAY] and {"first", "second"} <= mdb.tables()
    assert current_field(run_job("current", env=env)) is None

    for result in (failed, refused, current, resolved, up):
        for secret in (password, quote(password, safe="")):
            assert secret not in result.stdout + result.stderr


def current_field(result: Result) -> Any:
    """The `current` event's half_applied field."""
    assert result.code == 0, result.stdout
    return result.one("current")["half_applied"]


def test_a_revision_failing_at_its_first_statement_leaves_no_record_and_is_retried(
    mdb: MySQLDatabase, project: Path
) -> None:
    add_revision(
        project,
        HALFWAY,
        HEAD,
        'op.execute("SELECT * FROM no_such_table")\n'
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))',
    )
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    failed = run_job("upgrade", "head", env=env)
    assert failed.code == 5, failed.stdout
    assert failed.final["failed_statement"] == 1
    assert failed.final["committed_statements"] == []
    assert "nothing of it was committed" in failed.final["message"], failed.final["message"]
    assert _note(mdb) == ""
    assert current_field(run_job("current", env=env)) is None

    retried = run_job("upgrade", "head", env=env)  # not refused: run again, fails again
    assert retried.code == 5, retried.stdout
    assert [e["revision"] for e in retried.named("migration_started")] == [HALFWAY]

    add_revision(
        project,
        HALFWAY,
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))',
    )
    fixed = run_job("upgrade", "head", env=env)
    assert fixed.code == 0, fixed.stdout
    assert mdb.version() == [HALFWAY] and "first" in mdb.tables()


def test_resolve_on_sqlite_says_nothing_is_ever_half_applied(tmp_path: Path) -> None:
    result = run_job("resolve", env=job_env(f"sqlite:///{tmp_path}/app.db"))
    assert result.code == 0, result.stdout
    assert "never half-applied" in result.one("nothing_to_resolve")["reason"]


def test_a_lock_timeout_after_committed_statements_is_recorded_not_retried(
    mdb: MySQLDatabase, project: Path
) -> None:
    env = job_env(
        mdb.url,
        ALEMBIC_CONFIG=str(project / "alembic.ini"),
        MIGRATE_DDL_LOCK_TIMEOUT="1",
        MIGRATE_DDL_RETRIES="3",
    )
    assert run_job("upgrade", "head", env=env).code == 0
    add_revision(
        project,
        HALFWAY,
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.add_column("accounts", sa.Column("extra", sa.Integer))',
    )
    holder = mdb.server.connect(mdb.name)
    try:
        with holder.cursor() as cursor:  # an open transaction's metadata lock on accounts
            cursor.execute("BEGIN")
            cursor.execute("SELECT * FROM accounts")
        result = run_job("upgrade", "head", env=env)
    finally:
        holder.close()
    assert result.code == 6, result.stdout
    # A retry would run CREATE TABLE first again: statement 1 is committed, so no retry.
    assert not result.named("ddl_lock_timeout")
    assert result.final["message"].startswith(
        f"revision {HALFWAY} failed at statement 2; statement 1 was committed by MySQL"
    ), result.final["message"]
    assert "hit lock_timeout" in result.final["message"]
    assert HALFWAY in _note(mdb)
    assert run_job("upgrade", "head", env=env).code == 2


def test_a_lost_connection_mid_revision_names_what_committed(
    mdb: MySQLDatabase, project: Path
) -> None:
    add_revision(
        project,
        HALFWAY,
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("SELECT SLEEP(30)")',
    )
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    runner = Running("upgrade", "head", env=env)
    sessions = mdb.running("SELECT SLEEP", timeout=30)
    mdb.query(f"KILL {sessions[0]}")  # the server ends the job's session
    result = runner.finish(timeout=30)
    assert result.code == 3, result.stdout
    message = result.final["message"]
    assert "rolled back" not in message, message
    assert "statement 1 of it had completed, committed by MySQL: [1] CREATE TABLE first" in message
    assert "statement 2 was running and may or may not have completed" in message
    assert "stays marked in flight" in message
    assert result.final["committed_statements"][0].startswith("CREATE TABLE first")
    refused = run_job("upgrade", "head", env=env)  # not rerun into "Table already exists"
    assert refused.code == 2 and refused.final["error"] == "HalfApplied", refused.stdout


@pytest.mark.parametrize(
    ("third", "rows", "message"),
    [
        # A SELECT commits nothing: the INSERT before it is rolled back with the transaction.
        (
            'op.execute("SELECT * FROM no_such_table")',
            0,
            "statement 1 was committed by MySQL and is not rolled back: [1] CREATE TABLE first"
            " ( id INTEGER NOT NULL AUTO_INCREMENT, CONSTRAINT pk_first PRIMARY KEY (id) ); "
            "statement 2 was in the open transaction, rolled back with it: [2] INSERT INTO first",
        ),
        # A DDL statement commits before it runs, even one that then fails (table exists).
        (
            'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))',
            1,
            "statements 1-2 were committed by MySQL and are not rolled back: [1] CREATE TABLE "
            "first ( id INTEGER NOT NULL AUTO_INCREMENT, CONSTRAINT pk_first PRIMARY KEY (id) );"
            " [2] INSERT INTO first",
        ),
    ],
)
def test_data_changed_after_the_last_ddl_is_told_apart_by_the_server(
    mdb: MySQLDatabase, project: Path, third: str, rows: int, message: str
) -> None:
    add_revision(
        project,
        HALFWAY,
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("INSERT INTO first VALUES (1)")\n' + third,
    )
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    result = run_job("upgrade", "head", env=env)
    assert result.code == 5, result.stdout
    assert message in result.final["message"], result.final["message"]
    assert mdb.query("SELECT COUNT(*) FROM first") == [(rows,)]
    assert result.final["committed_count"] == 2 - (rows == 0)
    record = run_job("current", env=env).one("current")["half_applied"]
    assert len(record["committed"]) == result.final["committed_count"]


def test_sigterm_after_committed_statements_gives_the_account_and_records_it(
    mdb: MySQLDatabase, project: Path
) -> None:
    add_revision(
        project,
        HALFWAY,
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("SELECT SLEEP(30)")',
    )
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    runner = Running("upgrade", "head", env=env)
    mdb.running("SELECT SLEEP", timeout=30)
    runner.process.send_signal(signal.SIGTERM)
    result = runner.finish(timeout=20)
    assert result.code == 143, result.stdout
    message = result.final["message"]
    assert message.startswith(
        f"SIGTERM while running {HALFWAY}: revision {HALFWAY} failed at statement 2; statement 1 "
        "was committed by MySQL and is not rolled back: [1] CREATE TABLE first"
    ), message
    assert result.final["half_applied_recorded"] is True, message
    assert HALFWAY in _note(mdb)
    assert mdb.query("SELECT IS_USED_LOCK(%s)", lock_key(LOCK)) == [(None,)]
    assert run_job("upgrade", "head", env=env).code == 2  # not retried into "already exists"


def test_the_record_fits_a_table_comment_and_a_cut_one_is_never_ignored() -> None:
    details = {
        "revision": HALFWAY,
        "direction": "upgrade",
        "down_revision": HEAD,
        "failed_statement": 41,
        "committed_statements": [f"ALTER TABLE t{n} ADD COLUMN {'x' * 600} INT" for n in range(40)],
        "committed_count": 40,
    }
    record = Record.of(details, "OperationalError")
    note = record.note()
    assert len(note) <= NOTE_LIMIT
    parsed = Record.parse(note)
    assert parsed is not None and parsed.revision == HALFWAY and parsed.committed_count == 40
    assert 0 < len(parsed.committed) < 40 and all(len(text) <= 200 for text in parsed.committed)
    assert "and " in parsed.account() and "more" in parsed.account()
    cut = Record.parse(note[:100])  # edited by hand, or cut: still half-applied
    assert cut is not None and cut.revision == "unknown"
    assert Record.parse("a comment of the user's own") is None
    assert Record.parse("") is None and note.startswith(PREFIX)


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


def test_status_reports_a_half_applied_revision(mdb: MySQLDatabase, project: Path) -> None:
    add_revision(project, HALFWAY, HEAD, _three_statements(mdb.server.password))
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_job("upgrade", "head", env=env).code == 5
    result = run_job("status", env=env)
    assert result.code == 7, result.stdout  # pending, as ever: reported, not failed on
    status = result.one("status")
    assert status["half_applied"]["revision"] == HALFWAY
    assert status["half_applied"]["failed_statement"] == 3


def test_sigkill_mid_revision_leaves_the_in_flight_marker_and_the_next_run_refuses(
    mdb: MySQLDatabase, project: Path
) -> None:
    add_revision(
        project,
        HALFWAY,
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("SELECT SLEEP(30)")',
    )
    env = job_env(mdb.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    runner = Running("upgrade", "head", env=env)
    sessions = mdb.running("SELECT SLEEP", timeout=30)
    runner.process.kill()  # nothing of the job runs after this
    runner.process.wait(timeout=10)
    mdb.query(f"KILL {sessions[0]}")  # its lingering session, and lock, end
    assert "first" in mdb.tables() and mdb.version() == [HEAD]

    refused = run_job("upgrade", "head", env=env)
    assert refused.code == 2, refused.stdout
    assert refused.final["error"] == "HalfApplied"
    assert refused.final["half_applied"]["revision"] == HALFWAY
    assert "was running when an earlier run ended without saying" in refused.final["message"]
    assert not refused.named("migration_started")

    # Repair: undo it, resolve, and the fixed revision runs from its first statement.
    mdb.query("DROP TABLE first")
    add_revision(
        project,
        HALFWAY,
        HEAD,
        'op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))',
    )
    assert run_job("resolve", env=env).code == 0
    assert run_job("upgrade", "head", env=env).code == 0
    assert mdb.version() == [HALFWAY] and _note(mdb) == ""

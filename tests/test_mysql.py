"""MySQL and MariaDB: the runner against a private MariaDB server, as real processes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from tests.conftest import (
    HEAD,
    REVISIONS,
    MySQLDatabase,
    Running,
    add_revision,
    job_env,
    run_job,
)
from tests.pgcluster import free_port


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

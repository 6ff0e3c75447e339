"""`status`, `upgrade --sql` from the database's revision, and `history`'s applied marks, end
to end as real processes against a private PostgreSQL server and SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from migrator.verdict import AT_HEAD, PENDING, UNKNOWN_REVISION, VERDICTS, verdict
from tests.conftest import (
    HEAD,
    REVISIONS,
    Database,
    add_revision,
    job_env,
    parse_events,
    run_job,
    run_raw,
)
from tests.pgcluster import free_port
from tests.test_fast_path import HEAVY, run_traced

MID = REVISIONS[2]  # 3c4d5e6f7a82: two revisions after it
MESSAGES = {
    REVISIONS[3]: "rename comments.text to comments.body",
    REVISIONS[4]: "index comments by task, built without blocking writes",
}
# Each revision's DDL as PostgreSQL's offline script writes it.
DDL = {
    REVISIONS[0]: "CREATE TABLE accounts",
    REVISIONS[1]: "ALTER TABLE accounts ADD COLUMN display_name",
    REVISIONS[2]: "CREATE INDEX ix_tasks_project_id_status",
    REVISIONS[3]: "ALTER TABLE comments RENAME text TO body",
    REVISIONS[4]: "CREATE INDEX CONCURRENTLY ix_comments_task_id",
}
UNKNOWN = "abcdefabcdef"


def unreachable() -> str:
    return f"postgresql://u:pw@127.0.0.1:{free_port()}/db"


# -- the verdict, a pure function -----------------------------------------------------------


@pytest.mark.parametrize(
    ("unknown", "pending", "expected"),
    [
        ([], [], AT_HEAD),
        ([], [{"revision": "a"}], PENDING),
        ([UNKNOWN], None, UNKNOWN_REVISION),
        ([UNKNOWN], [{"revision": "a"}], UNKNOWN_REVISION),  # unknown wins
    ],
)
def test_the_verdict(unknown: list[str], pending: list[dict] | None, expected: str) -> None:
    assert verdict(unknown=unknown, pending=pending) == expected
    assert expected in VERDICTS


# -- status on PostgreSQL -------------------------------------------------------------------


def test_status_at_head_exits_0_without_loading_alembic(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", env=env).code == 0
    code, events, modules = run_traced("status", env=env)
    assert code == 0, events
    status = next(e for e in events if e["event"] == "status")
    assert status["current"] == [HEAD] and status["heads"] == [HEAD]
    assert (status["pending"], status["unknown"], status["verdict"]) == ([], [], "at_head")
    assert events[-1]["event"] == "finished" and events[-1]["exit_code"] == 0
    assert not modules & HEAVY, "at head, the heads record answers"


def test_status_with_two_pending_exits_7_listing_them_in_order(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", MID, env=env).code == 0
    result = run_job("status", env=env)
    assert result.code == 7, result.stdout
    status = result.one("status")
    assert status["current"] == [MID] and status["heads"] == [HEAD]
    assert status["pending"] == [
        {"revision": revision, "message": message} for revision, message in MESSAGES.items()
    ]
    assert (status["unknown"], status["verdict"]) == ([], "pending")
    final = result.final
    assert (final["event"], final["error"], final["exit_code"]) == ("failed", "NotUpToDate", 7)
    assert final["pending"] == list(MESSAGES)
    assert f"pending: {REVISIONS[3]}, {REVISIONS[4]}" in final["message"]
    assert db.version() == [MID], "status changes nothing"
    assert result.named("lock_acquired") == [] and db.advisory_locks() == 0


def test_status_on_an_empty_database_lists_every_revision_and_creates_nothing(
    db: Database,
) -> None:
    result = run_job("status", env=job_env(db.url))
    assert result.code == 7, result.stdout
    assert [step["revision"] for step in result.one("status")["pending"]] == REVISIONS
    assert result.one("status")["current"] == []
    assert db.tables() == set(), "not even the version table"


def test_status_with_an_unknown_revision_exits_2_naming_it(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", env=env).code == 0
    db.query("UPDATE alembic_version SET version_num = %s", UNKNOWN)
    result = run_job("status", env=env)
    assert result.code == 2, result.stdout
    status = result.one("status")
    assert (status["current"], status["unknown"]) == ([UNKNOWN], [UNKNOWN])
    assert (status["verdict"], status["pending"]) == ("unknown_revision", None)
    final = result.final
    assert (final["event"], final["error"]) == ("failed", "RevisionError")
    assert final["unknown"] == [UNKNOWN]
    assert UNKNOWN in final["message"] and "stamp --purge" in final["message"]
    assert db.version() == [UNKNOWN]


def test_status_with_two_heads_lists_what_upgrade_heads_applies(
    db: Database, project: Path
) -> None:
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_job("upgrade", env=env).code == 0
    add_revision(project, "bbbb00000001", MID, "pass")  # a branch off MID: a second head
    result = run_job("status", env=env)
    assert result.code == 7, result.stdout
    status = result.one("status")
    assert status["heads"] == sorted([HEAD, "bbbb00000001"])
    assert [step["revision"] for step in status["pending"]] == ["bbbb00000001"]
    assert "`upgrade heads`" in result.final["message"]


def test_status_waits_then_exits_3_when_the_database_never_answers() -> None:
    result = run_job("status", env=job_env(unreachable(), MIGRATE_WAIT_TIMEOUT="1"))
    assert result.code == 3, result.stdout
    assert result.final["error"] == "DatabaseUnavailable"
    assert result.named("status") == []


# -- upgrade --sql from the database's revision ---------------------------------------------


def sql_run(*args: str, url: str, **extra: str) -> tuple[int, str, list[dict]]:
    done = run_raw(*args, env=job_env(url, **extra))
    return done.returncode, done.stdout, parse_events(done.stderr)


def test_upgrade_sql_from_a_mid_revision_writes_only_the_pending_revisions(db: Database) -> None:
    assert run_job("upgrade", MID, env=job_env(db.url)).code == 0
    code, sql, events = sql_run("upgrade", "--sql", url=db.url)
    assert code == 0, events
    for revision in REVISIONS[3:]:
        assert DDL[revision] in sql, revision
    for revision in REVISIONS[:3]:
        assert DDL[revision] not in sql, f"{revision} is applied already"
    assert "CREATE TABLE alembic_version" not in sql
    assert f"version_num = '{MID}'" in sql, "it starts from the database's revision"
    assert not any(line.lstrip().startswith("{") for line in sql.splitlines()), "SQL only"
    plan = next(e for e in events if e["event"] == "plan")
    assert [step["revision"] for step in plan["revisions"]] == REVISIONS[3:]
    assert events[-1]["event"] == "finished"
    assert db.version() == [MID] and db.advisory_locks() == 0


def test_upgrade_sql_at_head_writes_no_sql(db: Database) -> None:
    assert run_job("upgrade", env=job_env(db.url)).code == 0
    code, sql, events = sql_run("upgrade", "--sql", url=db.url)
    assert code == 0, events
    assert sql == ""
    assert [e["event"] for e in events][-2:] == ["nothing_to_do", "finished"]


def test_upgrade_sql_with_a_range_stays_offline() -> None:
    code, sql, events = sql_run(
        "upgrade", f"{REVISIONS[0]}:{MID}", "--sql", url=unreachable(), MIGRATE_WAIT_TIMEOUT="1"
    )
    assert code == 0, events
    assert [e["event"] for e in events] == ["starting", "finished"], "no database"
    assert DDL[REVISIONS[1]] in sql and DDL[REVISIONS[2]] in sql
    assert DDL[REVISIONS[0]] not in sql and DDL[REVISIONS[3]] not in sql


def test_upgrade_sql_without_a_database_exits_3_naming_the_offline_way() -> None:
    code, sql, events = sql_run("upgrade", "--sql", url=unreachable(), MIGRATE_WAIT_TIMEOUT="1")
    assert code == 3
    assert sql == ""
    assert events[-1]["error"] == "DatabaseUnavailable"
    assert "FROM:TO" in events[-1]["message"]


def test_upgrade_sql_with_an_unknown_revision_in_the_database_exits_2(db: Database) -> None:
    assert run_job("upgrade", env=job_env(db.url)).code == 0
    db.query("UPDATE alembic_version SET version_num = %s", UNKNOWN)
    code, sql, events = sql_run("upgrade", "--sql", url=db.url)
    assert code == 2 and sql == ""
    assert events[-1]["unknown"] == [UNKNOWN]


def test_upgrade_sql_on_in_memory_sqlite_writes_from_base() -> None:
    code, sql, events = sql_run("upgrade", REVISIONS[0], "--sql", url="sqlite://")
    assert code == 0, events
    assert "CREATE TABLE alembic_version" in sql and "CREATE TABLE accounts" in sql


# -- history's applied marks ----------------------------------------------------------------


def test_history_marks_applied_revisions_after_a_partial_upgrade(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", REVISIONS[1], env=env).code == 0
    result = run_job("history", env=env)
    assert result.code == 0, result.stdout
    history = result.one("history")
    assert history["current"] == [REVISIONS[1]] and history["unknown"] == []
    marks = {entry["revision"]: entry["applied"] for entry in history["revisions"]}
    assert marks == dict(zip(REVISIONS, [True, True, False, False, False], strict=True))

    offline = run_job("history", env=job_env(None)).one("history")
    assert "current" not in offline
    assert all("applied" not in entry for entry in offline["revisions"]), "no database, no marks"


def test_history_with_an_unreachable_database_exits_3() -> None:
    result = run_job("history", env=job_env(unreachable(), MIGRATE_WAIT_TIMEOUT="1"))
    assert result.code == 3, result.stdout
    assert result.named("history") == [], "no marks guessed"


def test_history_with_an_unknown_revision_marks_nothing_and_exits_2(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", env=env).code == 0
    db.query("UPDATE alembic_version SET version_num = %s", UNKNOWN)
    result = run_job("history", env=env)
    assert result.code == 2, result.stdout
    history = result.one("history")
    assert history["unknown"] == [UNKNOWN]
    assert [entry["applied"] for entry in history["revisions"]] == [None] * len(REVISIONS)
    assert result.final["unknown"] == [UNKNOWN]


# -- SQLite ---------------------------------------------------------------------------------


def test_sqlite_status_sql_and_history(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    env = job_env(f"sqlite:///{database}")
    assert run_job("upgrade", REVISIONS[3], env=env).code == 0

    behind = run_job("status", env=env)
    assert behind.code == 7, behind.stdout
    assert [step["revision"] for step in behind.one("status")["pending"]] == [REVISIONS[4]]

    code, sql, events = sql_run("upgrade", "--sql", url=f"sqlite:///{database}")
    assert code == 0, events
    assert "CREATE INDEX ix_comments_task_id" in sql
    assert "ALTER TABLE comments RENAME" not in sql and "CREATE TABLE" not in sql

    marks = [e["applied"] for e in run_job("history", env=env).one("history")["revisions"]]
    assert marks == [True, True, True, True, False]

    assert run_job("upgrade", env=env).code == 0
    at_head = run_job("status", env=env)
    assert at_head.code == 0 and at_head.one("status")["verdict"] == "at_head"

    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (UNKNOWN,))
    unknown = run_job("status", env=env)
    assert unknown.code == 2, unknown.stdout
    assert unknown.one("status")["unknown"] == [UNKNOWN]


def test_reading_a_sqlite_file_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    url = f"sqlite:///{database}"
    status = run_job("status", env=job_env(url))
    assert status.code == 7, status.stdout
    assert [step["revision"] for step in status.one("status")["pending"]] == REVISIONS
    assert run_job("current", env=job_env(url)).one("current")["current"] == []
    marks = [e["applied"] for e in run_job("history", env=job_env(url)).one("history")["revisions"]]
    assert marks == [False] * len(REVISIONS)
    code, sql, events = sql_run("upgrade", REVISIONS[0], "--sql", url=url)
    assert code == 0, events
    assert "CREATE TABLE accounts" in sql
    assert not database.exists(), "a command that only reads created the database"

    missing_dir = run_job("status", env=job_env(f"sqlite:///{tmp_path}/no/such/dir/app.db"))
    assert missing_dir.code == 2 and missing_dir.final["error"] == "DatabaseRejected"

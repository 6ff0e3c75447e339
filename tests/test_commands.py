"""Each command end to end against a real PostgreSQL server, and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import HEAD, REVISIONS, Database, job_env, parse_events, run_job, run_raw
from tests.pgcluster import free_port

TABLES = {"accounts", "projects", "tasks", "comments", "alembic_version"}


def test_upgrade_from_empty_to_head_reports_every_step(db: Database) -> None:
    result = run_job("upgrade", "head", env=job_env(db.url))
    assert result.code == 0, result.stdout
    names = [event["event"] for event in result.events]
    assert names[:3] == ["starting", "database_ready", "lock_acquired"]
    assert names[-2:] == ["lock_released", "finished"]
    plan = result.one("plan")
    assert [step["revision"] for step in plan["revisions"]] == REVISIONS
    assert names.index("plan") < names.index("migration_started")
    finished = result.named("migration_finished")
    assert [event["revision"] for event in finished] == REVISIONS
    assert all(event["duration_s"] >= 0 and event["direction"] == "upgrade" for event in finished)
    assert [event["step"] for event in finished] == [1, 2, 3, 4, 5]
    final = result.final
    assert final["event"] == "finished"
    assert (final["revisions_before"], final["revisions_after"]) == ([], [HEAD])
    assert final["applied"] == len(REVISIONS) and final["exit_code"] == 0
    assert db.version() == [HEAD]
    assert db.tables() == TABLES
    assert db.advisory_locks() == 0


def test_second_run_finds_nothing_to_do(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", env=env).code == 0
    again = run_job("upgrade", env=env)
    assert again.code == 0
    assert again.one("nothing_to_do")["current"] == [HEAD]
    assert again.named("plan") == [] and again.named("migration_started") == []
    assert again.final["applied"] == 0


def test_backfill_keeps_existing_rows(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", "1a2b3c4d5e60", env=env).code == 0
    db.query("INSERT INTO accounts (email) VALUES ('ada@example.com')")
    assert run_job("upgrade", "head", env=env).code == 0
    assert db.query("SELECT email, display_name FROM accounts") == [
        ("ada@example.com", "ada@example.com")
    ]


def test_downgrade_one_then_base_then_stamp(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", env=env).code == 0

    one = run_job("downgrade", "-1", env=env)
    assert one.code == 0
    assert one.one("migration_finished")["direction"] == "downgrade"
    assert db.version() == [REVISIONS[-2]]
    assert db.query("SELECT indexname FROM pg_indexes WHERE tablename = 'comments'") == [
        ("pk_comments",)
    ]

    base = run_job("downgrade", "base", env=env)
    assert base.code == 0
    assert [e["revision"] for e in base.named("migration_finished")] == REVISIONS[-2::-1]
    assert db.version() == []
    assert db.tables() == {"alembic_version"}
    assert db.query("SELECT count(*) FROM pg_type WHERE typname = 'task_status'") == [(0,)]

    stamp = run_job("stamp", HEAD, env=env)
    assert stamp.code == 0
    assert stamp.one("migration_finished")["direction"] == "stamp"
    assert db.version() == [HEAD]
    assert db.tables() == {"alembic_version"}, "stamp records a revision, it runs nothing"


def test_every_revision_upgrades_and_downgrades_cleanly(db: Database) -> None:
    env = job_env(db.url)
    for index, revision in enumerate(REVISIONS):
        assert run_job("upgrade", "+1", env=env).code == 0
        assert db.version() == [revision]
        assert run_job("downgrade", "-1", env=env).code == 0
        assert db.version() == ([REVISIONS[index - 1]] if index else [])
        assert run_job("upgrade", "+1", env=env).code == 0
    assert run_job("check", env=env).code == 0


def test_read_only_commands_report_and_change_nothing(db: Database) -> None:
    env = job_env(db.url)
    current = run_job("current", env=env)
    assert current.code == 0
    assert current.one("current")["current"] == []
    assert current.one("current")["at_head"] is False
    assert db.tables() == set(), "current must not create the version table"

    heads = run_job("heads", env=job_env(None))  # needs no database at all
    assert heads.code == 0
    assert [h["revision"] for h in heads.one("heads")["heads"]] == [HEAD]

    history = run_job("history", env=job_env(None))
    assert [r["revision"] for r in history.one("history")["revisions"]] == REVISIONS
    assert [r["is_head"] for r in history.one("history")["revisions"]] == [0, 0, 0, 0, 1]

    assert run_job("upgrade", env=env).code == 0
    at_head = run_job("current", env=env).one("current")
    assert at_head["current"] == [HEAD] and at_head["at_head"] is True


def test_sql_mode_prints_sql_and_touches_no_database(db: Database) -> None:
    result = run_raw("upgrade", "head", "--sql", env=job_env(db.url))
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE accounts" in result.stdout
    assert "CREATE TYPE task_status" in result.stdout
    assert "ALTER TABLE comments RENAME text TO body" in result.stdout
    assert "COMMIT;\n\nDROP INDEX CONCURRENTLY IF EXISTS ix_comments_task_id" in result.stdout
    assert "CREATE INDEX CONCURRENTLY ix_comments_task_id ON comments (task_id)" in result.stdout
    assert parse_events(result.stderr)[-1]["event"] == "finished"
    assert db.tables() == set()

    down = run_raw("downgrade", f"{HEAD}:base", "--sql", env=job_env(db.url))
    assert down.returncode == 0
    assert "DROP TABLE accounts" in down.stdout


def test_check_passes_at_head_and_fails_before(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", "3c4d5e6f7a82", env=env).code == 0
    behind = run_job("check", env=env)
    assert behind.code == 7
    assert behind.final["error"] == "NotUpToDate"
    assert run_job("upgrade", env=env).code == 0
    ok = run_job("check", env=env)
    assert ok.code == 0
    assert ok.one("check")["differences"] == []


def test_check_lists_each_difference_of_a_changed_model(db: Database, project: Path) -> None:
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_job("upgrade", env=env).code == 0
    tables = project / "models" / "tables.py"
    tables.write_text(
        tables.read_text().replace(
            "    title: Mapped[str] = mapped_column(String(300))\n",
            "    title: Mapped[str] = mapped_column(String(300))\n"
            "    estimate: Mapped[int | None] = mapped_column()\n",
        )
    )
    result = run_job("check", env=env)
    assert result.code == 7
    assert result.final["differences"] == [
        {"op": "add_column", "args": [None, "tasks", "tasks.estimate"]}
    ]


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_url_spellings_all_reach_psycopg2(cluster, scheme: str) -> None:
    database = Database(cluster, cluster.create_database())
    result = run_job("upgrade", env=job_env(cluster.url(database.name, scheme=scheme)))
    assert result.code == 0, result.stdout
    assert result.one("starting")["database"].startswith("postgresql+psycopg2://admin:***@")
    assert database.version() == [HEAD]


def test_url_from_a_file(db: Database, tmp_path: Path) -> None:
    url_file = tmp_path / "database-url"
    url_file.write_text(db.url + "\n")
    env = job_env(None, DATABASE_URL_FILE=str(url_file))
    assert run_job("upgrade", env=env).code == 0
    assert db.version() == [HEAD]


def test_sqlite_end_to_end(tmp_path: Path) -> None:
    env = job_env(f"sqlite:///{tmp_path / 'app.db'}")
    assert run_job("upgrade", env=env).code == 0
    assert run_job("current", env=env).one("current")["current"] == [HEAD]
    assert run_job("check", env=env).code == 0
    assert run_job("downgrade", "-1", env=env).code == 0
    assert run_job("current", env=env).one("current")["current"] == [REVISIONS[-2]]
    assert run_job("downgrade", "base", env=env).code == 0
    assert run_job("current", env=env).one("current")["current"] == []
    assert (tmp_path / "app.db.lock").exists()


def test_wait_command_only_waits(db: Database) -> None:
    result = run_job("wait", env=job_env(db.url))
    assert result.code == 0
    assert [e["event"] for e in result.events] == ["starting", "database_ready", "finished"]
    assert db.tables() == set()


def test_console_format_shows_progress(db: Database) -> None:
    done = run_raw("upgrade", env=job_env(db.url, MIGRATE_LOG_FORMAT="console"))
    assert done.returncode == 0
    assert "[1/5] 1a2b3c4d5e60 initial schema" in done.stdout
    assert "[4/5] 4d5e6f7a8b93 rename comments.text to comments.body ... " in done.stdout


def test_termination_message_summarises_the_outcome(db: Database, tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    env = job_env(db.url, MIGRATE_TERMINATION_LOG=str(message))
    assert run_job("upgrade", env=env).code == 0
    assert message.read_text() == (
        f"finished exit=0 command=upgrade applied={len(REVISIONS)} revisions=['{HEAD}']"
    )
    assert run_job("upgrade", "0123456789ab", env=env).code == 2
    assert message.read_text().startswith("failed exit=2 command=upgrade applied=0")
    assert "error=RevisionError: " in message.read_text()


def test_termination_message_never_holds_the_password(db: Database, tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    url = db.url.replace(db.name, "no_such_db")
    env = job_env(url, MIGRATE_TERMINATION_LOG=str(message))
    assert run_job("upgrade", env=env).code == 2
    assert message.read_text().startswith("failed exit=2")
    assert db.cluster.password not in message.read_text()


@pytest.mark.parametrize("args", [("upgrade",), ("upgrade", "0123456789ab")])
def test_an_unwritable_termination_log_is_reported_before_the_final_event(
    db: Database, args: tuple[str, ...]
) -> None:
    result = run_job(*args, env=job_env(db.url, MIGRATE_TERMINATION_LOG="/nonexistent/dir/x"))
    assert result.final["event"] in ("finished", "failed")
    assert result.final["exit_code"] == result.code
    warning = result.one("termination_log_unwritable")
    assert warning["path"] == "/nonexistent/dir/x" and "No such file" in warning["error"]


def test_every_event_names_the_database_revisions_current(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", "3c4d5e6f7a82", env=env).code == 0
    assert run_job("current", env=env).one("current")["current"] == ["3c4d5e6f7a82"]
    upgraded = run_job("upgrade", env=env)
    assert upgraded.one("plan")["current"] == ["3c4d5e6f7a82"]
    assert run_job("upgrade", env=env).one("nothing_to_do")["current"] == [HEAD]
    at_head = run_job("current", env=env).one("current")
    assert at_head["current"] == [HEAD]
    assert at_head["revisions"] == at_head["current"], "the old name stays, for one release"
    gate = run_job("await-head", env=env).one("up_to_date")
    assert gate["current"] == [HEAD] and gate["revisions"] == [HEAD]


@pytest.mark.parametrize(
    ("command", "target", "instead"),
    [("upgrade", "-1", "downgrade -1"), ("downgrade", "+2", "upgrade +2")],
)
def test_a_relative_step_the_wrong_way_is_refused_before_waiting(
    command: str, target: str, instead: str
) -> None:
    # Nothing listens there: a job that waited or locked first would show database_unavailable.
    url = f"postgresql://u:pw@127.0.0.1:{free_port()}/db"
    result = run_job(command, target, env=job_env(url, MIGRATE_WAIT_TIMEOUT="5"))
    assert result.code == 2
    assert [event["event"] for event in result.events] == ["starting", "failed"]
    assert result.final["error"] == "RevisionError"
    assert f"`{instead}`" in result.final["message"]


def test_check_without_target_metadata_is_a_usage_error(db: Database, project: Path) -> None:
    env_py = project / "migrations" / "env.py"
    env_py.write_text(
        env_py.read_text().replace("target_metadata = Base.metadata", "target_metadata = None")
    )
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_job("upgrade", env=env).code == 0
    result = run_job("check", env=env)
    assert result.code == 2, result.stdout
    assert result.final["error"] == "ConfigError" and "traceback" not in result.final
    assert "target_metadata" in result.final["message"]
    assert str(env_py) in result.final["message"]


def _add_estimate_to_the_models(project: Path) -> None:
    tables = project / "models" / "tables.py"
    tables.write_text(
        tables.read_text().replace(
            "    title: Mapped[str] = mapped_column(String(300))\n",
            "    title: Mapped[str] = mapped_column(String(300))\n"
            "    estimate: Mapped[int | None] = mapped_column()\n",
        )
    )


def test_check_says_which_side_has_what_and_never_advises_a_drop(
    db: Database, project: Path
) -> None:
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_job("upgrade", env=env).code == 0
    db.query("ALTER TABLE accounts ADD COLUMN nickname text")  # added by hand, holds data
    only_database = run_job("check", env=env)
    assert only_database.code == 7
    final = only_database.final
    assert final["in_database_only"] == ["column accounts.nickname"]
    assert final["in_models_only"] == [] and final["changed"] == []
    assert "in the database but not in the models: column accounts.nickname" in final["message"]
    assert "--autogenerate" not in final["message"], "an autogenerated revision drops the column"

    _add_estimate_to_the_models(project)
    both = run_job("check", env=env).final
    assert both["in_database_only"] == ["column accounts.nickname"]
    assert both["in_models_only"] == ["column tasks.estimate"]
    assert "in the models but not in the database: column tasks.estimate" in both["message"]
    assert "--autogenerate" not in both["message"]

    db.query("ALTER TABLE accounts DROP COLUMN nickname")
    only_models = run_job("check", env=env).final
    assert only_models["in_models_only"] == ["column tasks.estimate"]
    assert only_models["in_database_only"] == []
    assert "`alembic revision --autogenerate`" in only_models["message"], "safe: it only adds"

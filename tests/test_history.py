"""The run history (migrate_job schema), file checksums, and a database ahead of the image.

End to end through the CLI on a private PostgreSQL; "an older image" is a script directory
without the newest revision (the repository's own scripts, with heads.json, so that it takes the
fast path as the image would), against a database a project with one more revision migrated.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from migrator import history
from tests.conftest import (
    HEAD,
    REVISIONS,
    ROOT,
    Database,
    MySQLDatabase,
    Running,
    add_revision,
    job_env,
    run_job,
)

NEWER = "6f7a8b9ca0b5"  # the revision only the newer image has
NEWEST = "7a8b9ca0b1c6"


def steps(db: Database) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT run_id::text, revision, down_revisions, direction, duration_s, sha256"
        " FROM migrate_job.revisions ORDER BY id"
    )
    names = ("run_id", "revision", "down_revisions", "direction", "duration_s", "sha256")
    return [dict(zip(names, row, strict=True)) for row in rows]


def runs(db: Database) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT id::text, command, revisions_before, revisions_after, result, exit_code, error,"
        " message, image_version, image_revision, host, finished IS NOT NULL"
        " FROM migrate_job.runs ORDER BY started"
    )
    names = (
        "id", "command", "before", "after", "result", "exit_code", "error", "message",
        "image_version", "image_revision", "host", "finished",
    )  # fmt: skip
    return [dict(zip(names, row, strict=True)) for row in rows]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def revision_file(project: Path, revision: str) -> Path:
    (found,) = (project / "migrations" / "versions").glob(f"*{revision}*.py")
    return found


def newer_project(project: Path) -> Path:
    """The scripts of an image one revision ahead of the repository's."""
    add_revision(project, NEWER, HEAD, "op.create_table('newer', sa.Column('id', sa.Integer))")
    return project


def with_config(url: str, config: Path, **extra: str) -> dict[str, str]:
    return job_env(url, ALEMBIC_CONFIG=str(config), **extra)


# -- the rows ----------------------------------------------------------------------------------


def test_upgrade_records_each_revision_with_its_lineage_and_digest(db: Database) -> None:
    env = job_env(db.url, MIGRATE_IMAGE_VERSION="1.4.2", MIGRATE_IMAGE_REVISION="abc123")
    result = run_job("upgrade", "head", env=env)
    assert result.code == 0, result.stdout
    recorded = steps(db)
    assert [row["revision"] for row in recorded] == REVISIONS
    assert [row["down_revisions"] for row in recorded] == [[], *([r] for r in REVISIONS[:-1])]
    assert {row["direction"] for row in recorded} == {"upgrade"}
    for row in recorded:
        assert row["sha256"] == digest(revision_file(ROOT, row["revision"]))
        assert row["duration_s"] >= 0
    (run,) = runs(db)
    assert {row["run_id"] for row in recorded} == {run["id"]}
    assert run["command"] == "upgrade"
    assert (run["before"], run["after"]) == ([], [HEAD])
    assert (run["result"], run["exit_code"], run["error"]) == ("succeeded", 0, None)
    assert (run["image_version"], run["image_revision"]) == ("1.4.2", "abc123")
    assert run["finished"] and run["host"]

    # A run with nothing to do leaves no row.
    assert run_job("upgrade", "head", env=env).code == 0
    assert len(runs(db)) == 1
    assert len(steps(db)) == len(REVISIONS)


def test_a_run_with_nothing_to_do_sends_no_query_about_the_history(db: Database) -> None:
    """The no-op (upgrade head, await-head at head) costs the history nothing: the server's
    own statement log, read from this run alone, never mentions it."""
    env = job_env(db.url)
    assert run_job("upgrade", "head", env=env).code == 0
    db.query(f"ALTER DATABASE \"{db.name}\" SET log_statement = 'all'")
    log = db.cluster.root / "log"
    for command in (("upgrade", "head"), ("await-head",)):
        start = log.stat().st_size
        result = run_job(*command, env=env)
        assert result.code == 0, result.stdout
        with log.open("rb") as file:
            file.seek(start)
            statements = file.read().decode()
        assert "SELECT version_num FROM" in statements, "the log shows the run's statements"
        assert "migrate_job" not in statements and "pg_namespace" not in statements, statements


def test_the_history_lives_in_its_own_schema(db: Database) -> None:
    assert run_job("upgrade", "head", env=job_env(db.url)).code == 0
    rows = db.query(
        "SELECT schemaname, tablename FROM pg_tables WHERE tablename IN ('runs', 'revisions')"
    )
    assert sorted(rows) == [("migrate_job", "revisions"), ("migrate_job", "runs")]
    assert not {"runs", "revisions"} & db.tables()


def test_a_failed_revision_leaves_a_failed_run_and_no_step_of_its_own(
    db: Database, project: Path
) -> None:
    # The revision's error quotes the URL: the row's message must not hold the password.
    add_revision(project, NEWER, HEAD, "import os\nraise RuntimeError(os.environ['DATABASE_URL'])")
    result = run_job("upgrade", "head", env=with_config(db.url, project / "alembic.ini"))
    assert result.code == 5, result.stdout
    assert [row["revision"] for row in steps(db)] == REVISIONS
    (run,) = runs(db)
    assert (run["result"], run["exit_code"], run["error"]) == ("failed", 5, "MigrationFailed")
    assert (run["before"], run["after"]) == ([], [HEAD])
    assert NEWER in run["message"] and run["finished"]
    assert db.cluster.password not in run["message"]
    assert "***" in run["message"]


def test_a_failed_first_revision_still_leaves_a_run_row(db: Database, project: Path) -> None:
    """Nothing committed, so the run's row comes from the end of the run alone."""
    assert run_job("upgrade", "head", env=job_env(db.url)).code == 0
    add_revision(project, NEWER, HEAD, "raise RuntimeError('no')")
    result = run_job("upgrade", "head", env=with_config(db.url, project / "alembic.ini"))
    assert result.code == 5, result.stdout
    failed = runs(db)[-1]
    assert (failed["result"], failed["exit_code"], failed["before"]) == ("failed", 5, [HEAD])
    assert not [row for row in steps(db) if row["run_id"] == failed["id"]]


def replayed(before: list[str], recorded: list[dict[str, Any]]) -> list[str]:
    """The heads the recorded steps lead to from `before` (a straight chain)."""
    heads = set(before)
    for step in recorded:
        if step["direction"] == "upgrade":
            heads = (heads - set(step["down_revisions"])) | {step["revision"]}
        elif step["direction"] == "downgrade":
            heads = (heads - {step["revision"]}) | set(step["down_revisions"])
    return sorted(heads)


def test_sigkill_mid_run_leaves_the_committed_steps_under_an_unfinished_run(
    db: Database, project: Path
) -> None:
    add_revision(project, NEWER, HEAD, "op.execute('SELECT pg_sleep(60)')")
    env = with_config(db.url, project / "alembic.ini")
    runner = Running("upgrade", "head", env=env)
    assert runner.wait_for("migration_started", timeout=60)["revision"] == REVISIONS[0]
    while runner.wait_for("migration_started", timeout=60)["revision"] != NEWER:
        pass
    runner.process.send_signal(signal.SIGKILL)
    assert runner.finish().code == -signal.SIGKILL
    (run,) = runs(db)
    assert (run["result"], run["finished"], run["exit_code"]) == ("running", False, None)
    recorded = steps(db)
    assert [row["revision"] for row in recorded] == REVISIONS
    # The history agrees with the version table: its steps lead exactly where it stands.
    assert replayed(run["before"], recorded) == db.version() == [HEAD]


def test_sigterm_mid_run_finishes_the_run_row_as_interrupted(db: Database, project: Path) -> None:
    add_revision(project, NEWER, HEAD, "op.execute('SELECT pg_sleep(60)')")
    runner = Running("upgrade", "head", env=with_config(db.url, project / "alembic.ini"))
    while runner.wait_for("migration_started", timeout=60)["revision"] != NEWER:
        pass
    runner.process.send_signal(signal.SIGTERM)
    result = runner.finish()
    assert result.code == 143, result.stdout
    assert result.final["event"] == "failed"
    (run,) = runs(db)
    assert (run["result"], run["exit_code"], run["finished"]) == ("interrupted", 143, True)
    assert run["after"] == [HEAD] == db.version()
    assert [row["revision"] for row in steps(db)] == REVISIONS


@pytest.mark.parametrize("seed", [1, 2])
def test_any_sequence_of_commands_leaves_the_history_agreeing_with_the_version_table(
    db: Database, seed: int
) -> None:
    """After each upgrade, downgrade or stamp, the last recorded step's heads are the version
    table's, and the last run's revisions_after too."""
    rng = random.Random(seed)
    env = job_env(db.url)
    codes = set()
    for _ in range(8):
        at = REVISIONS.index(db.version()[0]) + 1 if db.version() else 0  # 0: base
        choices = [("stamp", rng.choice([*REVISIONS, "base"]))]
        if at < len(REVISIONS):
            choices += [("upgrade", "+1"), ("upgrade", rng.choice(REVISIONS[at:]))]
        if at > 0:
            choices += [("downgrade", "-1"), ("downgrade", rng.choice(["base", *REVISIONS[:at]]))]
        command = rng.choice(choices)
        result = run_job(*command, env=env)
        # A stamp moves the version table without the schema: a later revision may then fail
        # (exit 5), and the history must agree with the version table all the same.
        assert result.code in (0, 5), (command, result.stdout)
        last = db.query("SELECT heads_after FROM migrate_job.revisions ORDER BY id DESC LIMIT 1")
        assert [row[0] for row in last] in ([], [db.version()]), command
        assert not runs(db) or runs(db)[-1]["after"] == db.version(), command
        codes.add(result.code)
    assert 0 in codes


def test_mariadb_keeps_no_history_and_says_so(mdb: MySQLDatabase) -> None:
    result = run_job("upgrade", "head", env=job_env(mdb.url))
    assert result.code == 0, result.stdout
    unavailable = result.one("history_unavailable")
    assert unavailable["level"] == "info" and "did not name" in unavailable["reason"]
    assert mdb.version() == [HEAD]


def test_downgrade_and_stamp_are_recorded(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", "head", env=env).code == 0
    assert run_job("downgrade", "-1", env=env).code == 0
    assert run_job("stamp", HEAD, env=env).code == 0
    recorded = steps(db)[len(REVISIONS) :]
    assert [(r["revision"], r["direction"], r["down_revisions"]) for r in recorded] == [
        (HEAD, "downgrade", [REVISIONS[-2]]),
        (HEAD, "stamp", [REVISIONS[-2]]),
    ]
    assert recorded[0]["sha256"] == digest(revision_file(ROOT, HEAD))
    assert recorded[1]["sha256"] is None  # a stamp runs no file
    assert [run["command"] for run in runs(db)] == ["upgrade", "downgrade", "stamp"]
    assert runs(db)[1]["after"] == [REVISIONS[-2]]
    assert runs(db)[-1]["after"] == db.version() == [HEAD]
    assert replayed([], steps(db)[: len(REVISIONS) + 1]) == [REVISIONS[-2]]


def test_history_runs_prints_the_last_runs_newest_first(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", REVISIONS[1], env=env).code == 0
    assert run_job("upgrade", "head", env=env).code == 0
    result = run_job("history", "--runs", env=env)
    assert result.code == 0, result.stdout
    shown = result.named("run")
    assert [run["revisions_after"] for run in shown] == [[HEAD], [REVISIONS[1]]]
    assert [step["revision"] for step in shown[0]["steps"]] == REVISIONS[2:]
    assert shown[0]["result"] == "succeeded" and shown[0]["exit_code"] == 0
    limited = run_job("history", "--runs", "--limit", "1", env=env)
    assert [run["id"] for run in limited.named("run")] == [shown[0]["id"]]
    assert run_job("history", "--limit", "1", env=env).code == 2


def test_sqlite_says_once_that_it_keeps_no_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    result = run_job("upgrade", "head", env=job_env(url))
    assert result.code == 0, result.stdout
    assert "SQLite has no schemas" in result.one("history_unavailable")["reason"]


def test_a_role_that_may_not_create_the_schema_migrates_without_history(db: Database) -> None:
    db.query(
        "CREATE ROLE plain LOGIN PASSWORD 'plain-Pa55word';"
        f' GRANT CONNECT ON DATABASE "{db.name}" TO plain;'
        " GRANT USAGE, CREATE ON SCHEMA public TO plain;"
    )
    try:
        url = f"postgresql://plain:plain-Pa55word@127.0.0.1:{db.cluster.port}/{db.name}"
        result = run_job("upgrade", "head", env=job_env(url))
        assert result.code == 0, result.stdout
        warning = result.one("history_unavailable")
        assert warning["level"] == "warning" and "may not create" in warning["reason"]
        assert db.version() == [HEAD]
        assert not db.query("SELECT 1 FROM pg_namespace WHERE nspname = 'migrate_job'")
    finally:
        db.query("DROP OWNED BY plain; DROP ROLE plain")


def test_a_role_that_may_not_write_the_schema_migrates_without_history(db: Database) -> None:
    db.query(history.DDL)  # an owner made the history; this role got USAGE on it, no more
    db.query(
        "CREATE ROLE plain2 LOGIN PASSWORD 'plain-Pa55word';"
        " GRANT USAGE, CREATE ON SCHEMA public TO plain2;"
        " GRANT USAGE ON SCHEMA migrate_job TO plain2;"
        " GRANT SELECT ON ALL TABLES IN SCHEMA migrate_job TO plain2;"
    )
    try:
        url = f"postgresql://plain2:plain-Pa55word@127.0.0.1:{db.cluster.port}/{db.name}"
        result = run_job("upgrade", "head", env=job_env(url))
        assert result.code == 0, result.stdout
        warning = result.one("history_unavailable")
        assert warning["level"] == "warning" and "may not use" in warning["reason"]
        assert db.version() == [HEAD]
        assert not runs(db) and not steps(db)
    finally:
        db.query("DROP OWNED BY plain2; DROP ROLE plain2")


def test_a_step_row_that_cannot_be_written_never_fails_the_revision(db: Database) -> None:
    assert run_job("upgrade", REVISIONS[1], env=job_env(db.url)).code == 0
    db.query(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'disk full, say'; END$$;"
        " CREATE TRIGGER refuse BEFORE INSERT ON migrate_job.revisions"
        " FOR EACH ROW EXECUTE FUNCTION refuse();"
    )
    result = run_job("upgrade", "head", env=job_env(db.url))
    assert result.code == 0, result.stdout
    assert "disk full, say" in result.one("history_unwritten")["reason"]
    assert db.version() == [HEAD]
    assert result.final["applied"] == len(REVISIONS) - 2
    assert len(runs(db)) == 1  # the first run's; this one wrote nothing, not half a run


def test_history_off_records_nothing(db: Database) -> None:
    result = run_job("upgrade", "head", env=job_env(db.url, MIGRATE_HISTORY="off"))
    assert result.code == 0, result.stdout
    assert result.one("history_unavailable")["reason"] == "MIGRATE_HISTORY=off"
    assert not db.query("SELECT 1 FROM pg_namespace WHERE nspname = 'migrate_job'")


# -- checksums ---------------------------------------------------------------------------------


def test_an_edited_applied_revision_warns_and_strict_stops_before_any_change(
    db: Database, project: Path
) -> None:
    env = with_config(db.url, project / "alembic.ini")
    assert run_job("upgrade", REVISIONS[-2], env=env).code == 0
    edited = revision_file(project, REVISIONS[1])
    recorded = digest(edited)
    edited.write_text(edited.read_text() + "\n# edited after it was applied\n")

    strict = run_job("upgrade", "head", env={**env, "MIGRATE_VERIFY": "strict"})
    assert strict.code == 2, strict.stdout
    warning = strict.one("revision_edited")
    assert warning["revision"] == REVISIONS[1]
    assert (warning["recorded_sha256"], warning["image_sha256"]) == (recorded, digest(edited))
    assert REVISIONS[1] in strict.final["message"] and "MIGRATE_VERIFY" in strict.final["message"]
    assert db.version() == [REVISIONS[-2]]  # nothing changed
    assert not strict.named("migration_started")
    assert runs(db)[-1]["result"] == "failed" and runs(db)[-1]["exit_code"] == 2

    warned = run_job("upgrade", "head", env=env)
    assert warned.code == 0, warned.stdout
    assert warned.one("revision_edited")["revision"] == REVISIONS[1]
    assert db.version() == [HEAD]


def test_revisions_applied_before_the_history_are_unknown_not_edited(
    db: Database, project: Path
) -> None:
    env = with_config(db.url, project / "alembic.ini")
    assert run_job("upgrade", REVISIONS[1], env={**env, "MIGRATE_HISTORY": "off"}).code == 0
    env["MIGRATE_VERIFY"] = "strict"
    edited = revision_file(project, REVISIONS[0])
    edited.write_text(edited.read_text() + "\n# edited\n")
    result = run_job("upgrade", "head", env=env)
    assert result.code == 0, result.stdout
    assert not result.named("revision_edited")


# -- a database ahead of the image -------------------------------------------------------------


def test_an_older_image_finds_the_database_ahead_and_has_nothing_to_do(
    db: Database, project: Path
) -> None:
    newer = with_config(db.url, newer_project(project) / "alembic.ini")
    assert run_job("upgrade", "head", env=newer).code == 0
    assert db.version() == [NEWER]

    older = job_env(db.url)  # the repository's scripts: head is HEAD
    result = run_job("upgrade", "head", env=older)
    assert result.code == 0, result.stdout
    ahead = result.one("database_ahead")
    assert (ahead["ahead"], ahead["count"], ahead["heads"]) == ([NEWER], 1, [HEAD])
    assert result.final["event"] == "finished" and result.final["applied"] == 0
    assert db.version() == [NEWER]

    # MIGRATE_AWAIT_TIMEOUT far beyond the test's own timeout: it must return at once.
    waited = run_job("await-head", env={**older, "MIGRATE_AWAIT_TIMEOUT": "600"}, timeout=30)
    assert waited.code == 0, waited.stdout
    assert waited.one("database_ahead")["ahead"] == [NEWER]
    assert not waited.named("awaiting_head")

    refused = {**older, "MIGRATE_DATABASE_AHEAD": "error"}
    for command in ("upgrade", "await-head"):
        result = run_job(command, env={**refused, "MIGRATE_AWAIT_TIMEOUT": "600"}, timeout=30)
        assert result.code == 2, result.stdout
        assert "MIGRATE_DATABASE_AHEAD=error" in result.final["message"]
        assert result.one("database_ahead")["count"] == 1
    assert db.version() == [NEWER]


def test_status_says_ahead_with_the_revisions_and_exits_0(db: Database, project: Path) -> None:
    newer = with_config(db.url, newer_project(project) / "alembic.ini")
    assert run_job("upgrade", "head", env=newer).code == 0
    result = run_job("status", env=job_env(db.url))
    assert result.code == 0, result.stdout
    status = result.one("status")
    assert (status["verdict"], status["ahead"], status["unknown"]) == ("ahead", [NEWER], [NEWER])
    assert status["pending"] == []
    refused = run_job("status", env=job_env(db.url, MIGRATE_DATABASE_AHEAD="error"))
    assert refused.code == 2 and refused.one("status")["verdict"] == "ahead"
    db.query("DROP SCHEMA migrate_job CASCADE")
    unproven = run_job("status", env=job_env(db.url))
    assert unproven.code == 2 and unproven.one("status")["verdict"] == "unknown_revision"
    # status only reads: it did not create the schema again
    assert not db.query("SELECT 1 FROM pg_namespace WHERE nspname = 'migrate_job'")


def test_ahead_by_several_revisions_lists_them_oldest_first(db: Database, project: Path) -> None:
    newer_project(project)
    add_revision(project, NEWEST, NEWER, "pass")
    assert run_job("upgrade", "head", env=with_config(db.url, project / "alembic.ini")).code == 0
    result = run_job("upgrade", "head", env=job_env(db.url))
    assert result.code == 0, result.stdout
    assert result.one("database_ahead")["ahead"] == [NEWER, NEWEST]


def ahead_without_history(db: Database, project: Path) -> dict[str, str]:
    """A database migrated by a newer image, whose history was then lost: nothing can prove
    it ahead. The newer image's environment."""
    newer = with_config(db.url, newer_project(project) / "alembic.ini")
    assert run_job("upgrade", "head", env=newer).code == 0
    db.query("DROP SCHEMA migrate_job CASCADE")
    return newer


def test_ahead_without_history_is_not_proven_and_exits_2_saying_why(
    db: Database, project: Path
) -> None:
    ahead_without_history(db, project)
    result = run_job("upgrade", "head", env=job_env(db.url))
    assert result.code == 2, result.stdout
    message = result.final["message"]
    assert "cannot be proven" in message and "records no parents for 6f7a8b9ca0b5" in message
    assert "MIGRATE_DATABASE_AHEAD=assume" in message and NEWER in message
    assert not result.named("database_ahead")

    # await-head says the same at once: no wait can prove it (the timeout is beyond the test's).
    waited = run_job("await-head", env=job_env(db.url, MIGRATE_AWAIT_TIMEOUT="600"), timeout=30)
    assert waited.code == 2, waited.stdout
    assert "may be ahead" in waited.final["message"]
    assert waited.final["unknown"] == [NEWER] and "records no parents" in waited.final["reason"]
    assert db.version() == [NEWER]


def test_assume_accepts_an_unproven_database_ahead_and_says_it_is_unproven(
    db: Database, project: Path
) -> None:
    newer = ahead_without_history(db, project)
    assumed = job_env(db.url, MIGRATE_DATABASE_AHEAD="assume", MIGRATE_AWAIT_TIMEOUT="600")
    for command in ("upgrade", "await-head", "status"):
        result = run_job(command, env=assumed, timeout=30)
        assert result.code == 0, result.stdout
        ahead = result.one("database_ahead")
        assert (ahead["ahead"], ahead["proven"]) == ([NEWER], False), command
        assert "records no parents" in ahead["reason"]
    assert result.one("status")["verdict"] == "ahead"
    assert db.version() == [NEWER]
    # A database behind the image is still migrated: assume is about unknown revisions only.
    assert run_job("downgrade", REVISIONS[-2], env=newer).code == 0
    result = run_job("upgrade", "head", env=assumed)
    assert result.code == 0, result.stdout
    assert db.version() == [HEAD] and result.final["applied"] == 1


def test_a_database_on_another_branch_is_not_ahead(db: Database, project: Path) -> None:
    """A sibling of the image's head (same parent) does not descend from it."""
    add_revision(project, NEWER, REVISIONS[-2], "pass")
    (revision_file(project, HEAD)).unlink()
    (project / "migrations" / "heads.json").unlink(missing_ok=True)
    assert run_job("upgrade", "head", env=with_config(db.url, project / "alembic.ini")).code == 0
    result = run_job("upgrade", "head", env=job_env(db.url))
    assert result.code == 2, result.stdout
    assert "another branch" in result.final["message"]


# -- autogenerate ------------------------------------------------------------------------------


INCLUDE_SCHEMAS = """
def include_name(name, type_, parent_names):
    if type_ == "schema":
        return name in (None, "public")  # the README's advice: never migrate_job
    return True


"""


@pytest.mark.parametrize("filtered", [True, False])
def test_include_schemas_needs_the_readmes_filter(
    db: Database, project: Path, filtered: bool
) -> None:
    """With include_schemas=True autogenerate sees every schema: the README's include_name
    keeps the history out of it; without it, `check` would propose dropping the history."""
    env_py = project / "migrations" / "env.py"
    text = env_py.read_text()
    options = "include_schemas=True, include_name=include_name" if filtered else ""
    options = options or "include_schemas=True"
    text = text.replace("def configure(", INCLUDE_SCHEMAS + "def configure(", 1)
    text = text.replace(
        "        **options,\n    )", f"        {options},\n        **options,\n    )", 1
    )
    assert "include_schemas=True" in text
    env_py.write_text(text)
    env = with_config(db.url, project / "alembic.ini")
    assert run_job("upgrade", "head", env=env).code == 0
    check = run_job("check", env=env)
    if filtered:
        assert check.code == 0, check.stdout
    else:
        assert check.code == 7, check.stdout
        assert {"table runs", "table revisions"} <= set(check.final["in_database_only"])


def test_autogenerate_proposes_nothing_about_the_history(db: Database, tmp_path: Path) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", "head", env=env).code == 0
    # The history is there to be seen, wherever it is.
    assert db.query("SELECT count(*) FROM pg_tables WHERE tablename = 'runs'") == [(1,)]
    check = run_job("check", env=env)
    assert check.code == 0, check.stdout
    # Alembic's own CLI, with the project's env.py, as a developer runs it.
    alembic = Path(sys.executable).with_name("alembic")
    done = subprocess.run(
        [str(alembic), "-c", str(ROOT / "alembic.ini"), "check"],
        env=env, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No new upgrade operations detected" in done.stdout + done.stderr
    scratch = tmp_path / "scratch"
    shutil.copytree(ROOT / "migrations", scratch / "migrations")
    shutil.copytree(ROOT / "models", scratch / "models")
    shutil.copy(ROOT / "alembic.ini", scratch / "alembic.ini")
    done = subprocess.run(
        [str(alembic), "-c", str(scratch / "alembic.ini"), "revision", "--autogenerate",
         "-m", "probe"],
        env={**env, "PYTHONPATH": str(scratch)}, capture_output=True, text=True, timeout=60,
        check=False, cwd=scratch,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (generated,) = (scratch / "migrations" / "versions").glob("*_probe.py")
    text = generated.read_text()
    assert "migrate_job" not in text and "runs" not in text and "drop_table" not in text

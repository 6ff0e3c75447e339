"""Every bad input: exit 2, one `failed` event saying what was wrong, no traceback, nothing run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import HEAD, Database, add_revision, job_env, parse_events, run_job, run_raw

SQLITE = "sqlite:////nonexistent-dir/never.db"


def assert_usage_error(result, *fragments: str) -> None:
    assert result.code == 2, result.stdout + result.stderr
    failed = result.one("failed")
    assert failed is result.final
    assert failed["exit_code"] == 2
    for fragment in fragments:
        assert fragment in failed["message"], failed["message"]
    assert result.stderr == ""
    assert result.events[0]["event"] in ("starting", "failed")


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (["frobnicate"], {}, ["invalid choice", "upgrade"]),
        (["upgrade", "--bogus"], {}, ["unrecognized arguments: --bogus"]),
        (["downgrade"], {}, ["required: REVISION"]),
        (["stamp"], {}, ["required: REVISION"]),
        ([], {}, ["required: COMMAND"]),
        (["current", "head"], {}, ["current: unrecognized arguments: head"]),
        (["stamp", ""], {}, ["stamp: REVISION is empty"]),
        (["downgrade", " "], {}, ["downgrade: REVISION is empty"]),
        (["upgrade", "--timeout", "5"], {}, ["--timeout applies to await-head only"]),
        (["upgrade", "head", "extra"], {}, ["unrecognized arguments: extra"]),
        (["upgrade"], {"DATABASE_URL": None}, ["DATABASE_URL is not set"]),
        (["upgrade"], {"MIGRATE_WAIT_TIMEOUT": "soon"}, ["MIGRATE_WAIT_TIMEOUT", "'soon'"]),
        (["upgrade"], {"MIGRATE_LOCK_TIMEOUT": "-5"}, ["MIGRATE_LOCK_TIMEOUT", "0 or more"]),
        (["upgrade"], {"MIGRATE_CONNECT_TIMEOUT": "0"}, ["MIGRATE_CONNECT_TIMEOUT"]),
        (["upgrade"], {"MIGRATE_WAIT_TIMEOUT": "nan"}, ["MIGRATE_WAIT_TIMEOUT"]),
        (["upgrade", "--wait-timeout", "inf"], {}, ["--wait-timeout 'inf'"]),
        (["upgrade"], {"MIGRATE_LOG_FORMAT": "xml"}, ["MIGRATE_LOG_FORMAT", "json"]),
        (["upgrade"], {"MIGRATE_LOG_LEVEL": "loud"}, ["MIGRATE_LOG_LEVEL", "debug"]),
        (["upgrade"], {"ALEMBIC_CONFIG": "/nope/alembic.ini"}, ["ALEMBIC_CONFIG"]),
        (["upgrade"], {"DATABASE_URL": "oracle://u@h/db"}, ["'oracle' is not supported"]),
        (["upgrade"], {"DATABASE_URL": "just-a-hostname"}, ["not a URL"]),
        (
            ["upgrade"],
            {"DATABASE_URL": "postgresql://u@h:port/db"},
            ["malformed", "expected scheme://user:password@host:port/dbname"],  # not user:***@
        ),
        (
            ["upgrade"],
            {"DATABASE_URL": None, "DATABASE_URL_FILE": "/nope/url"},
            ["DATABASE_URL_FILE", "cannot read"],
        ),
        (["upgrade", "no-such-revision"], {}, ["no-such-revision"]),
        (["downgrade", "abc123xyz"], {}, ["abc123xyz"]),
    ],
)
def test_bad_input_is_a_usage_error(args, env, fragments) -> None:
    environment = job_env(SQLITE)
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    result = run_job(*args, env=environment)
    assert_usage_error(result, *fragments)


@pytest.mark.parametrize(
    ("args", "env", "named", "not_named"),
    [
        (["upgrade", "--wait-timeout", "-5"], {}, "--wait-timeout '-5'", "MIGRATE_WAIT_TIMEOUT"),
        (["upgrade"], {"MIGRATE_WAIT_TIMEOUT": "-5"}, "MIGRATE_WAIT_TIMEOUT='-5'", "--wait"),
        (["await-head", "--timeout", "-1"], {}, "--timeout '-1'", "MIGRATE_AWAIT_TIMEOUT"),
        (["upgrade", "--log-format", "xml"], {}, "--log-format 'xml'", "MIGRATE_LOG_FORMAT"),
        (["upgrade", "--ddl-retries", "many"], {}, "--ddl-retries 'many'", "MIGRATE_DDL"),
        (["upgrade", "--alembic-config", "/nope.ini"], {}, "--alembic-config:", "ALEMBIC_CONFIG"),
        (
            ["upgrade", "--database-url", "oracle://u@h/db"],
            {"DATABASE_URL": None},
            "--database-url scheme 'oracle'",
            "DATABASE_URL",
        ),
    ],
)
def test_an_error_names_the_flag_or_the_variable_as_typed(args, env, named, not_named) -> None:
    environment = job_env(SQLITE)
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    result = run_job(*args, env=environment)
    assert_usage_error(result, named)
    assert not_named not in result.final["message"]


def test_flags_win_over_the_environment() -> None:
    env = job_env(SQLITE, MIGRATE_LOG_FORMAT="xml")
    result = run_job("heads", "--log-format", "json", env=env)
    assert result.code == 0
    assert result.one("heads")["heads"][0]["revision"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["upgrade", "--sql", "nope:head"], "nope"),
        (["downgrade", "base", "--sql"], "FROM:TO"),
        # A mistake on the command line goes the same way as a run's error: stdout is the SQL's.
        (["history", "--sql"], "--sql applies to upgrade, downgrade, stamp only"),
        (["stamp", "--purge", "--sql", "head"], "--purge needs the database"),
        (["upgrade", "--sql", "--wait-timeout", "soon"], "--wait-timeout 'soon'"),
    ],
)
def test_sql_mode_reports_errors_on_stderr_and_prints_no_sql(args, fragment) -> None:
    result = run_raw(*args, env=job_env(SQLITE))
    assert result.returncode == 2
    assert result.stdout == ""
    failed = parse_events(result.stderr)[-1]
    assert failed["event"] == "failed"
    assert fragment in failed["message"]


@pytest.mark.parametrize("command", ["upgrade", "current", "stamp head"])
def test_a_sqlite_url_with_two_slashes_is_refused_before_any_file_exists(
    tmp_path: Path, command: str
) -> None:
    result = run_job(*command.split(), env=job_env("sqlite://demo.db"), cwd=tmp_path)
    assert_usage_error(result, "('demo.db')", "three slashes (sqlite:///demo.db)", "sqlite:////")
    assert list(tmp_path.iterdir()) == [], "nothing may be created for a refused URL"


def test_both_url_and_url_file_is_refused(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    url_file.write_text("sqlite:///x.db\n")
    result = run_job("upgrade", env=job_env(SQLITE, DATABASE_URL_FILE=str(url_file)))
    assert_usage_error(result, "both set")


def test_several_heads_are_refused_where_one_is_needed(project: Path, db: Database) -> None:
    add_revision(project, "aaaa00000001", "4d5e6f7a8b93", "pass")  # a branch beside head
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    result = run_job("upgrade", "head", env=env)
    assert_usage_error(result, "several heads", HEAD, "aaaa00000001", "merge")
    assert db.tables() == set(), "nothing may run when the request is ambiguous"
    heads = run_job("heads", env=env).one("heads")["heads"]
    assert sorted(h["revision"] for h in heads) == sorted([HEAD, "aaaa00000001"])


def test_unknown_revision_in_the_version_table_says_how_to_repair(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", "head", env=env).code == 0
    db.query("UPDATE alembic_version SET version_num = 'deadbeef0000'")
    result = run_job("upgrade", "head", env=env)
    assert_usage_error(result, "deadbeef0000", "stamp")
    assert result.final["unknown"] == ["deadbeef0000"]
    assert db.advisory_locks() == 0


def test_a_malformed_url_never_prints_its_password(tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    env = job_env("postgresql://app:hunter2?x#@db/app", MIGRATE_TERMINATION_LOG=str(message))
    result = run_job("upgrade", env=env)
    assert_usage_error(result, "malformed", "percent-encode")
    assert "hunter2" not in result.stdout
    assert "hunter2" not in message.read_text()


def test_a_broken_revision_chain_is_a_usage_error(project: Path) -> None:
    add_revision(project, "ffff00000001", "doesnotexist", "pass")
    env = job_env(SQLITE, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    for command in ("upgrade", "heads", "history"):
        result = run_job(command, env=env)
        assert_usage_error(result, "doesnotexist")


def test_a_role_without_privileges_is_refused_with_exit_2(db: Database) -> None:
    assert run_job("upgrade", env=job_env(db.url)).code == 0
    db.query("CREATE ROLE reader LOGIN PASSWORD 'reader-pass'")
    url = f"postgresql://reader:reader-pass@127.0.0.1:{db.cluster.port}/{db.name}"
    for command in ("current", "upgrade", "await-head"):
        result = run_job(command, env=job_env(url))
        assert_usage_error(result, "permission denied")
        assert result.final["error"] == "DatabaseRejected"


@pytest.mark.parametrize("command", ["upgrade", "downgrade", "stamp"])
def test_an_unknown_revision_argument_says_what_is_accepted(command: str) -> None:
    result = run_job(command, "0123456789ab", env=job_env(SQLITE))
    assert_usage_error(result, "0123456789ab", "accepted:", "head", "base", "history", HEAD)


def test_the_repair_an_unknown_version_advises_works_when_followed(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", "head", env=env).code == 0
    db.query("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    refused = run_job("upgrade", "head", env=env)
    assert_usage_error(refused, "feedfacecafe")
    advice = re.search(r"run `([^`]*)<revision>`", refused.final["message"])
    assert advice, refused.final["message"]
    # The schema really is at head here; the operator names that revision, as told.
    for plain in ([HEAD], ["head"], ["base"]):
        stamped = run_job(*advice.group(1).split(), *plain, env=env)
        assert stamped.code == 0, stamped.stdout
        assert stamped.final["revisions_after"] == ([] if plain == ["base"] else [HEAD])
    assert db.version() == [], "the last stamp above was `base`"
    assert run_job(*advice.group(1).split(), HEAD, env=env).code == 0
    after = run_job("upgrade", "head", env=env)
    assert after.code == 0 and after.final["applied"] == 0, after.stdout
    assert db.version() == [HEAD]
    assert run_job("check", env=env).code == 0, "the schema and the version agree again"


def test_stamp_without_purge_over_an_unknown_version_points_to_purge(db: Database) -> None:
    env = job_env(db.url)
    assert run_job("upgrade", "head", env=env).code == 0
    db.query("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    assert_usage_error(run_job("stamp", HEAD, env=env), "feedfacecafe", "stamp --purge")
    assert_usage_error(run_job("upgrade", "--purge", env=env), "--purge applies to stamp only")
    assert db.version() == ["feedfacecafe"]


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "raise KeyboardInterrupt"])
def test_a_revision_that_exits_fails_the_run_and_is_rolled_back(
    project: Path, db: Database, exit_call: str
) -> None:
    """SystemExit and KeyboardInterrupt are BaseExceptions: a revision raising one must not end
    the job with exit 0 and no final event."""
    add_revision(
        project,
        "aaaa00000001",
        HEAD,
        f"import sys\nop.create_table('t', sa.Column('id', sa.Integer))\n{exit_call}",
    )
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    result = run_job("upgrade", "head", env=env)
    assert result.code == 5, result.stdout
    failed = result.one("failed")
    assert failed is result.final
    assert failed["revision"] == "aaaa00000001"
    assert db.version() == [HEAD], "the revision before it stays committed, this one rolled back"
    assert "t" not in db.tables()

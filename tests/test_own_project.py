"""A project the job did not write: env.py files from Alembic's own templates (generated at test
time from the installed Alembic) and the styles real projects use, each run unchanged.

Every revision records the database backend that ran it and whether that backend held the
migration lock, so "the DDL ran on the locked connection" is read from the database itself.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Database, Running, finish, job_env, run_job, start_job

REVISIONS = ["a0000000001a", "a0000000002b", "a0000000003c"]
HEAD = REVISIONS[-1]

RECORD = (
    "op.execute(\"INSERT INTO ddl_runs VALUES ('{rev}', pg_backend_pid(), EXISTS (SELECT 1 FROM "
    "pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()))\")"
)
BODIES = {
    REVISIONS[0]: (
        [
            'op.create_table("ddl_runs", sa.Column("revision", sa.Text), '
            'sa.Column("pid", sa.Integer), sa.Column("held_lock", sa.Boolean))',
            'op.create_table("items", sa.Column("id", sa.Integer, primary_key=True))',
        ],
        ['op.drop_table("items")', 'op.drop_table("ddl_runs")'],
    ),
    REVISIONS[1]: (
        [
            'op.add_column("items", sa.Column("name", sa.Text))',
            # A hook for the SIGKILL test: a revision still running when the runner dies.
            'if os.environ.get("SLOW_REVISION"): op.execute("SELECT pg_sleep(60)")',
        ],
        ['op.drop_column("items", "name")'],
    ),
    REVISIONS[2]: (
        ['op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True))'],
        ['op.drop_table("notes")'],
    ),
}

# Hand-written env.py styles, each a complete file as a project would have it.
ENV_VAR = """
import os
from logging.config import fileConfig
from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
fileConfig(config.config_file_name)
engine = create_engine(os.environ["{var}"], poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""
ATTRIBUTES = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    section = config.get_section(config.config_ini_section)
    engine = engine_from_config(section, poolclass=pool.NullPool)
    connection = engine.connect()
context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
"""
SINGLE_TRANSACTION = """
from logging.config import fileConfig
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
fileConfig(config.config_file_name, disable_existing_loggers=True)
engine = engine_from_config(config.get_section(config.config_ini_section), poolclass=pool.NullPool)
with engine.connect() as connection, connection.begin():
    context.configure(connection=connection, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()
"""
HOSTILE_LOGGING = """
import logging
from logging.config import fileConfig
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
fileConfig(config.config_file_name, disable_existing_loggers=True)
logging.getLogger().handlers.clear()
logging.getLogger().setLevel(logging.CRITICAL)
logging.basicConfig(level=logging.CRITICAL, force=True)
engine = engine_from_config(config.get_section(config.config_ini_section), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""
# Configures and returns without running anything: the job must not report work it never saw.
FORGETS_TO_RUN = """
from alembic import context

context.configure(connection=context.config.attributes["connection"])
"""
# Opts out of per-revision transactions and then never opens one: nothing is committed.
NEVER_COMMITS = """
from alembic import context

config = context.config
context.configure(connection=config.attributes["connection"])
context.run_migrations()
"""


def _init(directory: Path, template: str, record: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "init", "-t", template, "migrations"],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    versions = directory / "migrations" / "versions"
    down = None
    for revision in REVISIONS:
        upgrade, downgrade = BODIES[revision]
        body = "\n    ".join([*upgrade, record.format(rev=revision)])
        back = "\n    ".join(downgrade)
        (versions / f"{revision}_step.py").write_text(
            f'"""step {revision}"""\nimport os\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {revision!r}\ndown_revision = {down!r}\n"
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {body}\n\n\ndef downgrade():\n    {back}\n"
        )
        down = revision


def make_project(directory: Path, style: str, record: str = RECORD) -> Path:
    """An Alembic project of the given style; returns the path ALEMBIC_CONFIG names.

    `record`: the statement each revision ends with, noting its session and whether that
    session held the migration lock (PostgreSQL's by default)."""
    template = {"pyproject": "pyproject", "async": "async", "multidb": "multidb"}.get(
        style, "generic"
    )
    _init(directory, template, record)
    env_py = directory / "migrations" / "env.py"
    own = {
        "env_var": ENV_VAR.format(var="DATABASE_URL"),
        "custom_var": ENV_VAR.format(var="APP_DATABASE_URL"),
        "attributes": ATTRIBUTES,
        "single_transaction": SINGLE_TRANSACTION,
        "hostile_logging": HOSTILE_LOGGING,
        "forgets_to_run": FORGETS_TO_RUN,
        "never_commits": NEVER_COMMITS,
    }
    if style in own:
        env_py.write_text(own[style])
    return directory / "alembic.ini"


def set_ini(ini: Path, key: str, value: str) -> None:
    text = ini.read_text()
    line = f"{key} = {value.replace('%', '%%')}"
    if re.search(rf"^{re.escape(key)} = .*$", text, flags=re.M):
        text = re.sub(rf"^{re.escape(key)} = .*$", lambda _: line, text, count=1, flags=re.M)
    else:
        text = text.replace("[alembic]\n", f"[alembic]\n{line}\n", 1)
    ini.write_text(text)


def ddl_runs(db: Database) -> list[tuple[str, int, bool]]:
    return [tuple(row) for row in db.query("SELECT revision, pid, held_lock FROM ddl_runs")]


# Each style the job must run unchanged, with what it adapts.
STYLES = {
    "generic": "own connection",
    "pyproject": "own connection",
    "async": "own connection",
    "env_var": "own connection",
    "custom_var": "own connection",
    "attributes": None,
    "single_transaction": "own connection",
    "hostile_logging": "own connection",
    "decoy": "own connection",
}
MUTATING_EVENTS = ["plan"] + ["migration_started", "migration_finished"] * 3


@pytest.fixture
def decoy(cluster) -> Database:
    return Database(cluster, cluster.create_database())


def style_env(style: str, db: Database, decoy: Database, ini: Path, **extra: str) -> dict:
    env = job_env(db.url, ALEMBIC_CONFIG=str(ini), **extra)
    if style == "custom_var":
        env["APP_DATABASE_URL"] = db.url  # postgresql://: psycopg 3 to SQLAlchemy 2.1
    if style == "decoy":
        set_ini(ini, "sqlalchemy.url", decoy.cluster.url(decoy.name, "postgresql+psycopg2"))
    return env


@pytest.mark.parametrize("style", list(STYLES))
def test_upgrade_and_downgrade_run_on_the_locked_connection(
    tmp_path: Path, db: Database, decoy: Database, style: str
) -> None:
    ini = make_project(tmp_path, "generic" if style == "decoy" else style)
    env = style_env(style, db, decoy, ini)

    up = run_job("upgrade", "head", env=env)
    assert up.code == 0, up.stdout + up.stderr
    names = [e["event"] for e in up.events if e["event"] not in ("env_adapted",)]
    assert names[names.index("plan") : names.index("lock_released")] == MUTATING_EVENTS
    assert names[-2:] == ["lock_released", "finished"]
    assert up.final["applied"] == 3 and up.final["revisions_after"] == [HEAD]
    adapted = up.named("env_adapted")
    if STYLES[style] is None:
        assert adapted == []
    else:
        assert any(STYLES[style] in change for change in adapted[0]["changes"]), adapted
    if style == "async":
        assert any("asyncio engine" in c for c in adapted[0]["changes"])
    if style == "single_transaction":
        assert any("one transaction" in c for c in adapted[0]["changes"])
    runs = ddl_runs(db)
    assert [run[0] for run in runs] == REVISIONS
    assert all(held for _, _, held in runs), runs  # the backend running DDL held the lock
    assert len({pid for _, pid, _ in runs}) == 1
    assert db.version() == [HEAD]
    assert decoy.tables() == set()  # the ini's own URL named it: never touched

    down = run_job("downgrade", "base", env=env)
    assert down.code == 0, down.stdout
    assert down.final["event"] == "finished" and down.final["revisions_after"] == []
    assert [e["revision"] for e in down.named("migration_finished")] == REVISIONS[::-1]
    assert db.tables() == {"alembic_version"}
    assert db.advisory_locks() == 0


@pytest.mark.parametrize("style", list(STYLES))
def test_eight_runners_apply_each_revision_once(
    tmp_path: Path, db: Database, decoy: Database, style: str
) -> None:
    ini = make_project(tmp_path, "generic" if style == "decoy" else style)
    env = style_env(style, db, decoy, ini)
    runners = [start_job("upgrade", "head", env=env) for _ in range(8)]
    results = [finish(runner, timeout=120) for runner in runners]
    assert [r.code for r in results] == [0] * 8, [r.stdout[-600:] for r in results]
    assert sorted(r.final["applied"] for r in results) == [0] * 7 + [3]
    assert [run[0] for run in ddl_runs(db)] == REVISIONS
    assert all(r.final["event"] == "finished" for r in results)


@pytest.mark.parametrize(
    ("style", "opt_out"),
    [("generic", False), ("async", False), ("env_var", False), ("single_transaction", False),
     ("single_transaction", True)],
)  # fmt: skip
def test_sigkill_mid_revision_then_rerun_leaves_a_clean_schema(
    tmp_path: Path, db: Database, decoy: Database, style: str, opt_out: bool
) -> None:
    ini = make_project(tmp_path, style)
    if opt_out:
        set_ini(ini, "transaction_per_migration", "false")
    env = style_env(style, db, decoy, ini)
    job = Running("upgrade", "head", env={**env, "SLOW_REVISION": "1"})
    while job.wait_for("migration_started")["revision"] != REVISIONS[1]:
        pass
    job.process.send_signal(signal.SIGKILL)
    job.process.wait(timeout=30)

    rerun = run_job("upgrade", "head", env=env)
    assert rerun.code == 0, rerun.stdout
    assert db.version() == [HEAD]
    # Per revision (whatever env.py asked for), the first was committed before the kill and is
    # not run again; with the project's opt-out, one transaction for all: nothing was.
    expected = 3 if opt_out else 2
    assert rerun.final["applied"] == expected
    assert [run[0] for run in ddl_runs(db)] == REVISIONS
    columns = db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'"
    )
    assert sorted(row[0] for row in columns) == ["id", "name"]


def test_multidb_template_is_refused_before_any_change(tmp_path: Path, db: Database) -> None:
    ini = make_project(tmp_path, "multidb")
    result = run_job("upgrade", "head", env=job_env(db.url, ALEMBIC_CONFIG=str(ini)))
    assert result.code == 2, result.stdout
    assert result.final["event"] == "failed" and result.final["error"] == "ProjectError"
    assert "several databases" in result.final["message"]
    assert "traceback" not in result.final
    assert db.tables() == set()
    assert db.advisory_locks() == 0


def test_env_py_connecting_elsewhere_is_refused_before_any_change(
    tmp_path: Path, db: Database, decoy: Database
) -> None:
    ini = make_project(tmp_path, "custom_var")
    env = job_env(db.url, ALEMBIC_CONFIG=str(ini), APP_DATABASE_URL=decoy.url)
    result = run_job("upgrade", "head", env=env)
    assert result.code == 2, result.stdout
    assert result.final["error"] == "ProjectError"
    assert "does not reach the database the job locked" in result.final["message"]
    assert decoy.cluster.password not in result.stdout
    assert db.tables() == set() and decoy.tables() == set()


def test_async_env_py_without_an_async_driver_is_refused_clearly(
    tmp_path: Path, db: Database
) -> None:
    """The image ships no asyncpg: stand in for its absence with a package that cannot import."""
    blocker = tmp_path / "blocked" / "asyncpg"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('asyncpg is not installed')\n")
    (tmp_path / "project").mkdir()
    ini = make_project(tmp_path / "project", "async")
    env = job_env(db.url, ALEMBIC_CONFIG=str(ini), PYTHONPATH=str(blocker.parent))
    result = run_job("upgrade", "head", env=env)
    assert result.code == 2, result.stdout
    assert "asyncio engine" in result.final["message"]
    assert "pip install asyncpg" in result.final["message"]
    assert db.tables() == set()


@pytest.mark.parametrize(
    ("style", "phrase"),
    [
        ("forgets_to_run", "returned without running the migrations"),
        ("never_commits", "did not reach the locked database"),
    ],
)
def test_work_the_job_cannot_see_is_never_reported_as_success(
    tmp_path: Path, db: Database, style: str, phrase: str
) -> None:
    ini = make_project(tmp_path, style)
    set_ini(ini, "transaction_per_migration", "false")
    result = run_job("upgrade", "head", env=job_env(db.url, ALEMBIC_CONFIG=str(ini)))
    assert result.code == 2, result.stdout
    assert result.final["event"] == "failed" and phrase in result.final["message"]
    assert db.version() == []  # nothing committed on the locked database
    assert db.advisory_locks() == 0


def test_env_py_that_fails_is_exit_2_naming_the_file(tmp_path: Path, db: Database) -> None:
    """The stock template with its placeholder URL read directly: the project's bug, not ours."""
    ini = make_project(tmp_path, "generic")
    env_py = tmp_path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace("target_metadata = None", "import no_such_module"))
    result = run_job("upgrade", "head", env=job_env(db.url, ALEMBIC_CONFIG=str(ini)))
    assert result.code == 2, result.stdout
    assert result.final["error"] == "ProjectError"
    assert result.final["file"] == str(env_py)
    assert "no_such_module" in result.final["message"]
    assert "traceback" not in result.final


def test_pyproject_project_takes_the_fast_path_once_heads_are_recorded(
    tmp_path: Path, db: Database
) -> None:
    ini = make_project(tmp_path, "pyproject")
    env = job_env(db.url, ALEMBIC_CONFIG=str(ini))
    first = run_job("upgrade", "head", env=env)
    assert first.code == 0
    slow = first.one("fast_path_unavailable")
    assert slow["reason"] == "no heads.json beside env.py" and "migrator.heads" in slow["fix"]
    recorded = subprocess.run(
        [sys.executable, "-m", "migrator.heads", str(ini)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    again = run_job("upgrade", "head", env=env)
    assert again.code == 0
    names = [e["event"] for e in again.events]
    assert names == ["starting", "database_ready", "nothing_to_do", "finished"]


def test_stdlib_lines_follow_the_users_logging_while_job_events_stay_on_stdout(
    tmp_path: Path, db: Database
) -> None:
    ini = make_project(tmp_path, "generic")
    result = run_job("upgrade", "head", env=job_env(db.url, ALEMBIC_CONFIG=str(ini)))
    assert result.code == 0
    # The template's fileConfig sends Alembic's INFO lines to stderr, in its own format.
    assert "INFO  [alembic.runtime.migration]" in result.stderr
    assert result.final["event"] == "finished"


def test_opting_out_of_per_revision_transactions_says_so_in_the_events(
    tmp_path: Path, db: Database
) -> None:
    ini = make_project(tmp_path, "generic")
    set_ini(ini, "transaction_per_migration", "false")
    result = run_job("upgrade", "head", env=job_env(db.url, ALEMBIC_CONFIG=str(ini)))
    assert result.code == 0, result.stdout
    assert result.named("migration_finished") == []  # "finished" would claim a commit
    assert [e["revision"] for e in result.named("migration_ran")] == REVISIONS
    names = [e["event"] for e in result.events]
    assert names.index("migrations_committed") > names.index("migration_ran")
    assert result.one("migrations_committed")["steps"] == 3
    assert result.final["applied"] == 3 and db.version() == [HEAD]

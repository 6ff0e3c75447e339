"""alembic.ini or a migration script that cannot be read or loaded is the user's to fix: exit 2,
one `failed` event naming the file and the problem, no traceback, for every command that reads it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ENTRYPOINT, HEAD, Database, Result, job_env, parse_events, run_job

READERS = ("upgrade", "heads", "current", "history")

BROKEN_REVISIONS = {
    "syntax": ("def upgrade(:\n    pass\n", ["SyntaxError", "line 5"]),
    "import": ("import no_such_module_xyz\n", ["ModuleNotFoundError", "no_such_module_xyz"]),
    "name": ("from models import NoSuchModel\n", ["ImportError", "NoSuchModel"]),
}


def assert_user_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, result.stdout + result.stderr
    failed = result.final
    assert failed["event"] == "failed"
    assert failed["exit_code"] == 2
    assert failed["error"] == "ProjectError"
    assert "traceback" not in failed
    for fragment in fragments:
        assert fragment in failed["message"], failed["message"]


def break_revision(project: Path, body: str) -> Path:
    path = project / "migrations" / "versions" / "ffff00000002_broken.py"
    path.write_text(f'"""broken"""\nrevision = "ffff00000002"\ndown_revision = "{HEAD}"\n\n{body}')
    return path


@pytest.mark.parametrize("kind", BROKEN_REVISIONS)
def test_a_revision_that_cannot_be_loaded_is_a_usage_error(
    kind: str, project: Path, db: Database
) -> None:
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_job("upgrade", "head", env=env).code == 0  # at head: the no-op path applies
    body, fragments = BROKEN_REVISIONS[kind]
    path = break_revision(project, body)
    for command in READERS:
        result = run_job(command, env=env)
        assert_user_error(result, str(path), *fragments)
    assert db.version() == [HEAD]


def test_an_edited_revision_that_cannot_be_loaded_fails_even_when_at_head(
    project: Path, db: Database
) -> None:
    """The no-op path trusts heads.json only while the files are unchanged: an edit that breaks
    the head revision must not be reported as nothing to do."""
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_job("upgrade", "head", env=env).code == 0
    (head,) = (project / "migrations" / "versions").glob(f"*_{HEAD}_*.py")
    head.write_text("import no_such_module_xyz\n" + head.read_text())
    result = run_job("upgrade", "head", env=env)
    assert_user_error(result, str(head), "line 1", "no_such_module_xyz")
    assert not result.named("nothing_to_do")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("script_location = migrations\n", ["no section headers", "line 1"]),
        ("[alembic]\nscript_location = a\nscript_location = b\n", ["already exists"]),
        ("[alembic]\nscript_location = %(nope)s/migrations\n", ["nope"]),
    ],
    ids=["no-section", "duplicate-option", "bad-interpolation"],
)
def test_a_malformed_alembic_ini_is_a_usage_error(
    text: str, fragments: list[str], tmp_path: Path, db: Database
) -> None:
    ini = tmp_path / "alembic.ini"
    ini.write_text(text)
    for command in READERS:
        result = run_job(command, env=job_env(db.url, ALEMBIC_CONFIG=str(ini)))
        assert_user_error(result, str(ini), "not a valid ini file", *fragments)


def run_unprivileged(*args: str, env: dict[str, str]) -> Result:
    """The job without the power to read any file: root ignores file modes, so as root it runs
    without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (still uid 0, so the interpreter under
    /root and the sources stay readable to it as their owner)."""
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    done = subprocess.run(
        [*prefix, sys.executable, str(ENTRYPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr, parse_events(done.stdout))


def test_an_unreadable_alembic_ini_says_permission_denied(tmp_path: Path, db: Database) -> None:
    ini = tmp_path / "alembic.ini"
    ini.write_text((Path(__file__).parent.parent / "alembic.ini").read_text())
    ini.chmod(0)
    for command in READERS:
        result = run_unprivileged(command, env=job_env(db.url, ALEMBIC_CONFIG=str(ini)))
        assert_user_error(result, f"cannot read {ini}: Permission denied")


def test_an_unreadable_revision_says_permission_denied(project: Path, db: Database) -> None:
    path = break_revision(project, "")
    path.chmod(0)
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    result = run_unprivileged("heads", env=env)
    assert_user_error(result, f"cannot read {path}: Permission denied")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[alembic]\nversion_table = v\n", ["sets no script_location", "[alembic]"]),
        ("[other]\nscript_location = migrations\n", ["sets no script_location"]),
        ("[alembic]\nscript_location = %(here)s/nowhere\n", ["nowhere", "is not a directory"]),
    ],
    ids=["no-key", "no-section", "no-directory"],
)
def test_a_missing_script_location_does_not_advise_init(
    text: str, fragments: list[str], tmp_path: Path, db: Database
) -> None:
    ini = tmp_path / "alembic.ini"
    ini.write_text(text)
    for command in READERS:
        result = run_job(command, env=job_env(db.url, ALEMBIC_CONFIG=str(ini)))
        assert_user_error(result, str(ini), *fragments)
        assert "init" not in result.final["message"]


def test_alembic_config_naming_a_directory_says_so(tmp_path: Path) -> None:
    env = job_env("sqlite:////nonexistent-dir/never.db", ALEMBIC_CONFIG=str(tmp_path))
    result = run_job("heads", env=env)
    assert result.code == 2
    assert "is a directory" in result.final["message"]

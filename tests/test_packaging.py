"""The developer workflow of the brief, verbatim, with Poetry 2, uv and pip (real installs).

pyproject.toml is standard PEP 621; each tool installs the project from a pristine copy of the
repository into its own environment, then runs the plain `alembic` commands from the root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import HEAD, REVISIONS, ROOT, Database

# Real installs from PyPI: beyond the suite's per-test timeout (pyproject.toml) on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SHIPPED = ("pyproject.toml", "README.md", "entrypoint.py", "alembic.ini")
PACKAGES = ("migrator", "models", "migrations")


def _copy_repository(target: Path) -> Path:
    target.mkdir()
    for name in SHIPPED:
        shutil.copy(ROOT / name, target / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _tool_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "POETRY", "UV_"))
    }
    env.update(DATABASE_URL=database_url, **extra)
    return env


def _venv_with(tmp_path: Path, requirement: str) -> Path:
    venv = tmp_path / "tool"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _run([str(venv / "bin/pip"), "install", "-q", requirement], tmp_path, dict(os.environ))
    return venv / "bin"


def _assert_brief_workflow(run, db: Database, project: Path) -> None:
    """The four commands of the brief, in its order, with their effects on a real database."""
    run("alembic", "upgrade", "head")
    assert db.version() == [HEAD]
    output = run("alembic", "revision", "--autogenerate", "-m", "nothing new")
    generated = list((project / "migrations" / "versions").glob("*_nothing_new.py"))
    assert len(generated) == 1, output
    assert f"down_revision: str | Sequence[str] | None = {HEAD!r}" in generated[0].read_text()
    run("alembic", "upgrade", "head")
    run("alembic", "downgrade", "-1")
    assert db.version() == [HEAD]
    run("alembic", "downgrade", "-1")
    assert db.version() == [REVISIONS[-2]]
    run("alembic", "downgrade", "base")
    assert db.version() == []
    assert db.tables() == {"alembic_version"}


def test_poetry_2_runs_the_brief_verbatim(tmp_path: Path, db: Database) -> None:
    poetry = str(_venv_with(tmp_path, "poetry>=2,<3") / "poetry")
    project = _copy_repository(tmp_path / "project")
    env = _tool_env(
        db.url, POETRY_VIRTUALENVS_IN_PROJECT="true", POETRY_CACHE_DIR=str(tmp_path / "cache")
    )
    assert "Poetry (version 2." in _run([poetry, "--version"], project, env)
    _run([poetry, "check"], project, env)
    # This machine's package mirror serves PyPI's simple index but not its JSON API, which
    # Poetry's built-in PyPI source uses; against pypi.org itself this line is not needed.
    simple_index = ["source", "add", "--priority=primary", "simple", "https://pypi.org/simple/"]
    _run([poetry, *simple_index], project, env)
    _run([poetry, "install", "--no-interaction"], project, env)
    _assert_brief_workflow(lambda *a: _run([poetry, "run", *a], project, env), db, project)


def test_uv_runs_the_same_workflow(tmp_path: Path, db: Database) -> None:
    uv = str(_venv_with(tmp_path, "uv") / "uv")
    project = _copy_repository(tmp_path / "project")
    env = _tool_env(db.url, UV_CACHE_DIR=str(tmp_path / "cache"))
    _assert_brief_workflow(lambda *a: _run([uv, "run", *a], project, env), db, project)


def test_pip_installs_the_project_and_its_console_script(tmp_path: Path, db: Database) -> None:
    project = _copy_repository(tmp_path / "project")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _run([str(venv / "bin/pip"), "install", "-q", str(project)], tmp_path, dict(os.environ))
    env = _tool_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"), MIGRATE_LOG_FORMAT="json")
    output = _run([str(venv / "bin/migrate-job"), "upgrade", "head"], tmp_path, env)
    assert '"event": "finished"' in output
    assert db.version() == [HEAD]
    _assert_brief_workflow(
        lambda *a: _run([str(venv / "bin" / a[0]), *a[1:]], project, env), db, project
    )


def test_the_wheel_is_the_runner_alone_and_runs_your_own_project(
    tmp_path: Path, db: Database
) -> None:
    """Way 3 of README "Use it with your own Alembic project": pip install the runner into the
    application's image; `migrate-job` reads alembic.ini from the working directory."""
    source = _copy_repository(tmp_path / "source")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
         tmp_path, dict(os.environ))  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"migrator"}
    # Every subpackage too (backends, commands, project, lint): one left out would make its
    # command fail to import from a pip-installed runner.
    packages = {str(path.relative_to(ROOT)) for path in ROOT.glob("migrator/**/__init__.py")}
    assert packages <= set(names), sorted(packages - set(names))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _run([str(venv / "bin/pip"), "install", "-q", str(wheel)], tmp_path, dict(os.environ))
    app = tmp_path / "app"
    app.mkdir()
    _run([str(venv / "bin/alembic"), "init", "-t", "generic", "migrations"], app, dict(os.environ))
    (app / "migrations/versions/b1_first.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        "revision = 'b1'\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n    op.create_table('widgets', sa.Column('id', sa.Integer, "
        "primary_key=True))\n\n\ndef downgrade():\n    op.drop_table('widgets')\n"
    )
    env = _tool_env(db.url, MIGRATE_LOG_FORMAT="json")
    output = _run([str(venv / "bin/migrate-job"), "upgrade", "head"], app, env)
    assert '"event": "finished"' in output, output
    assert db.version() == ["b1"]
    assert "widgets" in db.tables()

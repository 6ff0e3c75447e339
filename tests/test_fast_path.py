"""The cheap path: a run with nothing to do never imports SQLAlchemy or Alembic, because the
scripts' heads were recorded by Alembic at build time (migrator/heads.py); whenever that record
is missing or no longer matches the revision files, the run takes Alembic's full path (and stays
correct).

Imports are observed from outside with `python -v`, which lists every module a real process
loaded (and not an import made to fail on purpose: see migrator/backends/postgresql.py).
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from migrator.heads import FILENAME, recorded_heads
from migrator.heads import write as write_heads
from migrator.ini import AlembicIni
from tests.conftest import ENTRYPOINT, HEAD, Database, add_revision, job_env, parse_events


def start_traced(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], IO[str]]:
    """The entrypoint, telling every module it loads (see `loaded`) into a temporary file.

    A file, not a pipe: a runner at work writes thousands of lines, and a full pipe would stall
    it (with the lock held) while the test still reads another runner. Without `site` (-S),
    with the packages on PYTHONPATH instead: the image's venv has no .pth files, and the
    editable install's import hook here would import pathlib itself.
    """
    trace = tempfile.TemporaryFile("w+")  # noqa: SIM115 - finish_traced closes it
    process = subprocess.Popen(
        [sys.executable, "-S", "-v", str(ENTRYPOINT), *args],
        env={**env, "PYTHONPATH": os.pathsep.join(site.getsitepackages())},
        stdout=subprocess.PIPE,
        stderr=trace,
        text=True,
    )
    return process, trace


def finish_traced(
    process: subprocess.Popen[str], trace: IO[str]
) -> tuple[int, list[dict], set[str]]:
    stdout, _ = process.communicate(timeout=60)
    with trace:
        trace.seek(0)
        return process.returncode, parse_events(stdout), loaded(trace.read())


def loaded(stderr: str) -> set[str]:
    """The top-level packages of the modules `python -v` reports as loaded."""
    return {
        line.split("'")[1].split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import '")
    }


def run_traced(*args: str, env: dict[str, str]) -> tuple[int, list[dict], set[str]]:
    return finish_traced(*start_traced(*args, env=env))


HEAVY = {"sqlalchemy", "alembic"}
# Cheaper, but each still a few milliseconds of a run that costs ~0.1 s (see bench/RESULTS.md):
# `_ssl` is Python's TLS (libpq has its own), the others are avoided on purpose in migrator/.
AVOIDED = {"_ssl", "socket", "dataclasses", "inspect", "shutil", "structlog", "tenacity", "pathlib"}
AVOIDED |= {"_hashlib"}  # migrator/digest.py: OpenSSL's libcrypto is 3.5 MiB of RSS


def test_nothing_to_do_imports_neither_sqlalchemy_nor_alembic(db: Database) -> None:
    env = job_env(db.url)
    code, _, modules = run_traced("upgrade", env=env)
    assert code == 0
    assert modules & HEAVY == HEAVY, "applying revisions does need them"
    code, events, modules = run_traced("upgrade", "head", env=env)
    assert code == 0
    assert [e["event"] for e in events] == [
        "starting",
        "database_ready",
        "nothing_to_do",
        "finished",
    ]
    assert not modules & HEAVY
    assert not modules & AVOIDED, sorted(modules & AVOIDED)
    code, events, modules = run_traced("await-head", env=env)
    assert code == 0 and not modules & HEAVY
    code, events, modules = run_traced("current", env=env)
    assert code == 0 and not modules & HEAVY
    assert events[-2]["at_head"] is True


def test_waiters_that_find_the_work_done_skip_the_heavy_imports(db: Database) -> None:
    runners = [start_traced("upgrade", env=job_env(db.url)) for _ in range(4)]
    heavy, finals = 0, []
    for runner in runners:
        code, events, modules = finish_traced(*runner)
        assert code == 0, events
        finals.append(events[-1])
        if events[-1]["applied"]:
            heavy += 1
            assert modules >= HEAVY
        else:
            assert not modules & HEAVY, f"a runner with nothing to do stays light: {events}"
    assert heavy == 1, finals
    assert db.version() == [HEAD]


def test_a_stale_or_missing_heads_file_takes_the_full_path_and_stays_correct(
    db: Database, project: Path
) -> None:
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_traced("upgrade", env=env)[0] == 0
    add_revision(project, "eeee00000001", HEAD, "pass")  # after the build step: stale
    code, events, modules = run_traced("upgrade", env=env)
    assert code == 0
    assert modules & HEAVY, "stale: the full path decides"
    assert events[-1]["applied"] == 1
    assert db.version() == ["eeee00000001"]
    (project / "migrations" / FILENAME).unlink()
    code, events, modules = run_traced("upgrade", env=env)
    assert code == 0 and events[-1]["applied"] == 0 and modules & HEAVY
    assert write_heads(project / "alembic.ini")["heads"] == ["eeee00000001"]  # the build step
    code, events, modules = run_traced("upgrade", env=env)
    assert code == 0 and events[-1]["applied"] == 0 and not modules & HEAVY


def test_unknown_revision_in_the_table_takes_the_full_path(db: Database) -> None:
    env = job_env(db.url)
    assert run_traced("upgrade", env=env)[0] == 0
    db.query("UPDATE alembic_version SET version_num = 'abcdefabcdef'")
    code, events, modules = run_traced("upgrade", env=env)
    assert code == 2 and modules & HEAVY
    assert events[-1]["unknown"] == ["abcdefabcdef"]


def _scripts(tmp_path: Path, files: dict[str, str], ini_extra: str = "") -> Path:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for name, body in files.items():
        (versions / name).write_text(body)
    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = %(here)s/migrations\n{ini_extra}")
    return ini


def rev(revision: str, down: object) -> str:
    return f'"""x"""\nrevision = {revision!r}\ndown_revision = {down!r}\n'


TWO = {"a.py": rev("a", None), "b.py": rev("b", "a")}


def test_a_symlinked_alembic_ini_keeps_its_own_directory(tmp_path: Path) -> None:
    """As for Alembic's %(here)s: a ConfigMap mount is a symlink into a hidden directory."""
    (target := tmp_path / "..data").mkdir()
    (target / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    (app := tmp_path / "app").mkdir()
    (app / "alembic.ini").symlink_to(target / "alembic.ini")
    assert AlembicIni.read(str(app / "alembic.ini")).script_location == f"{app}/migrations"


def test_recorded_heads_are_alembics_own(tmp_path: Path) -> None:
    """Even where reading the text would mislead: only running the file tells."""
    files = {**TWO, "c.py": rev("c", "b") + "if True:\n    revision = 'd'\n"}
    ini = _scripts(tmp_path, files)
    alembic_heads = ScriptDirectory.from_config(Config(str(ini))).get_heads()
    assert write_heads(ini)["heads"] == alembic_heads == ["d"]
    assert recorded_heads(AlembicIni.read(ini)) == ["d"]


def test_recorded_heads_match_alembic_on_the_real_scripts() -> None:
    root = ENTRYPOINT.parent
    alembic_heads = ScriptDirectory.from_config(Config(str(root / "alembic.ini"))).get_heads()
    assert recorded_heads(AlembicIni.read(root / "alembic.ini")) == alembic_heads == [HEAD]


def _edit(versions: Path) -> None:
    (versions / "b.py").write_text(rev("b", "a") + "# a comment added later\n")


def _crlf(versions: Path) -> None:
    (versions / "b.py").write_bytes(rev("b", "a").replace("\n", "\r\n").encode())


@pytest.mark.parametrize(
    "change",
    [
        lambda versions: (versions / "c.py").write_text(rev("c", "b")),  # added
        lambda versions: (versions / "b.py").unlink(),  # removed
        lambda versions: (versions / "b.py").rename(versions / "b2.py"),  # renamed
        _edit,
        _crlf,
        lambda versions: (versions / "b.pyc").write_bytes(b""),  # bytecode beside the sources
        lambda versions: (versions.parent / FILENAME).write_text("{not json"),
        lambda versions: (versions.parent / FILENAME).write_text('{"heads": [], "digest": ""}'),
        lambda versions: (versions.parent / FILENAME).unlink(),
    ],
    ids=["added", "removed", "renamed", "edited", "crlf", "pyc", "garbled", "empty", "missing"],
)
def test_any_change_after_the_build_step_voids_the_record(tmp_path: Path, change) -> None:
    ini = _scripts(tmp_path, TWO)
    assert write_heads(ini)["written"]
    assert recorded_heads(AlembicIni.read(ini)) == ["b"]
    change(tmp_path / "migrations" / "versions")
    assert recorded_heads(AlembicIni.read(ini)) is None


@pytest.mark.parametrize(
    "ini_extra",
    [
        "version_locations = %(here)s/other\n",
        "recursive_version_locations = true\n",
        "sourceless = true\n",
    ],
)
def test_layouts_only_alembic_reads_are_not_recorded(tmp_path: Path, ini_extra: str) -> None:
    ini = _scripts(tmp_path, TWO, ini_extra)
    (tmp_path / "other").mkdir()
    report = write_heads(ini)
    assert report["written"] is False and "layout" in str(report["reason"])
    assert recorded_heads(AlembicIni.read(ini)) is None


def test_the_build_step_fails_on_scripts_alembic_cannot_load(tmp_path: Path) -> None:
    ini = _scripts(tmp_path, {**TWO, "c.py": rev("c", "missing")})
    done = subprocess.run(
        [sys.executable, "-m", "migrator.heads", str(ini)],
        cwd=ENTRYPOINT.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["written"] is False and "missing" in report["error"]
    assert not (tmp_path / "migrations" / FILENAME).exists()

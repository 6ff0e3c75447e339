"""The cheap path: a run with nothing to do never imports SQLAlchemy or Alembic, and every case
where the cheap reading is not certain falls back to Alembic's full path (and stays correct).

Imports are observed from outside with `python -X importtime`, which lists every module a real
process imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from migrator.versions import AlembicIni, script_heads
from tests.conftest import ENTRYPOINT, HEAD, Database, add_revision, job_env, parse_events


def run_traced(*args: str, env: dict[str, str]) -> tuple[int, list[dict], set[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(ENTRYPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    modules = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done.returncode, parse_events(done.stdout), modules


HEAVY = {"sqlalchemy", "alembic"}
# Cheaper, but each still a few milliseconds of a run that costs ~0.1 s (see bench/RESULTS.md):
# `_ssl` is Python's TLS (libpq has its own), the others are avoided on purpose in migrator/.
AVOIDED = {"_ssl", "socket", "dataclasses", "inspect", "shutil", "structlog", "tenacity"}


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
    assert not modules & AVOIDED
    code, events, modules = run_traced("await-head", env=env)
    assert code == 0 and not modules & HEAVY
    code, events, modules = run_traced("current", env=env)
    assert code == 0 and not modules & HEAVY
    assert events[-2]["at_head"] is True


def test_waiters_that_find_the_work_done_skip_the_heavy_imports(db: Database) -> None:
    runners = [
        subprocess.Popen(
            [sys.executable, "-X", "importtime", str(ENTRYPOINT), "upgrade"],
            env=job_env(db.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    heavy, finals = 0, []
    for runner in runners:
        stdout, stderr = runner.communicate(timeout=60)
        assert runner.returncode == 0, stdout
        events = parse_events(stdout)
        finals.append(events[-1])
        if events[-1]["applied"]:
            heavy += 1
            assert "sqlalchemy" in stderr
        else:
            assert "sqlalchemy" not in stderr, f"a runner with nothing to do stays light: {stdout}"
    assert heavy == 1, finals
    assert db.version() == [HEAD]


def test_uncertain_scripts_fall_back_to_alembic_and_stay_correct(
    db: Database, project: Path
) -> None:
    env = job_env(db.url, ALEMBIC_CONFIG=str(project / "alembic.ini"))
    assert run_traced("upgrade", env=env)[0] == 0
    add_revision(project, "eeee00000001", HEAD, "pass")
    extra = project / "migrations" / "versions" / "eeee00000001_test.py"
    # Valid for Alembic, which imports the module; not a literal a plain reading can trust.
    extra.write_text(
        extra.read_text().replace(
            f"down_revision = {HEAD!r}", f"PREVIOUS = {HEAD!r}\ndown_revision = PREVIOUS"
        )
    )
    assert script_heads(AlembicIni.read(project / "alembic.ini")) is None
    code, events, modules = run_traced("upgrade", env=env)
    assert code == 0
    assert modules & HEAVY, "not certain: the full path decides"
    assert events[-1]["applied"] == 1
    assert db.version() == ["eeee00000001"]
    code, events, modules = run_traced("upgrade", env=env)
    assert code == 0 and events[-1]["applied"] == 0 and modules & HEAVY


def test_unknown_revision_in_the_table_takes_the_full_path(db: Database) -> None:
    env = job_env(db.url)
    assert run_traced("upgrade", env=env)[0] == 0
    db.query("UPDATE alembic_version SET version_num = 'abcdefabcdef'")
    code, events, modules = run_traced("upgrade", env=env)
    assert code == 2 and modules & HEAVY
    assert events[-1]["unknown"] == ["abcdefabcdef"]


def _scripts(tmp_path: Path, files: dict[str, str], ini_extra: str = "") -> AlembicIni:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for name, body in files.items():
        (versions / name).write_text(body)
    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = %(here)s/migrations\n{ini_extra}")
    return AlembicIni.read(ini)


def rev(revision: str, down: object) -> str:
    return f'"""x"""\nrevision: str = {revision!r}\ndown_revision = {down!r}  # why\n'


@pytest.mark.parametrize(
    ("files", "ini_extra", "heads"),
    [
        ({"a.py": rev("a", None), "b.py": rev("b", "a")}, "", ["b"]),
        ({"a.py": rev("a", None), "b.py": rev("b", "a"), "c.py": rev("c", "a")}, "", ["b", "c"]),
        (
            {"a.py": rev("a", None), "m.py": rev("m", ("a", "a2")), "a2.py": rev("a2", None)},
            "",
            ["m"],
        ),
        ({"a.py": rev("a", None), "__init__.py": "", ".#b.py": "junk"}, "", ["a"]),
        ({"a.py": rev("a", None), "b.py": rev("b", "missing")}, "", None),
        ({"a.py": rev("a", None), "b.py": rev("a", None)}, "", None),
        ({"a.py": rev("a", None), "b.pyc": ""}, "", None),
        ({"a.py": rev("a", None) + "revision = 'again'\n"}, "", None),
        ({"a.py": "revision = make_id()\ndown_revision = None\n"}, "", None),
        ({"a.py": rev("a", None)}, "version_locations = %(here)s/other\n", None),
        ({"a.py": rev("a", None), "b.py": rev("b", "a") + "depends_on = 'a'\n"}, "", None),
        ({"a.py": rev("a", None), "b.py": rev("b", "a") + "down_revision += ('x',)\n"}, "", None),
        ({"a.py": rev("a", None)}, "recursive_version_locations = true\n", None),
        ({"a.py": rev("a", None)}, "sourceless = true\n", None),
        ({"a.py": rev("a", None)}, "sourceless = false\n", ["a"]),
        ({"a.py": rev("a", None) + "depends_on = None\n"}, "", ["a"]),
        ({"a.py": "revision = 'a'\r\ndown_revision = None\r\n"}, "", ["a"]),  # first line, CRLF
        ({"a.py": rev("a", None) + "revision.extra = 1\n"}, "", None),
        ({}, "", None),
    ],
)
def test_script_heads_answers_only_when_certain(tmp_path: Path, files, ini_extra, heads) -> None:
    assert script_heads(_scripts(tmp_path, files, ini_extra)) == heads


def test_script_heads_matches_alembic_on_the_real_scripts() -> None:
    root = ENTRYPOINT.parent
    alembic_heads = ScriptDirectory.from_config(Config(str(root / "alembic.ini"))).get_heads()
    assert script_heads(AlembicIni.read(root / "alembic.ini")) == sorted(alembic_heads) == [HEAD]

"""Exit 1, a bug in the job: still one JSON `failed` event, with the traceback as a field; and
the helpers every test reads the job with, which must let such a run be tested and never hang.

No project arrangement reaches exit 1 (each would be a bug to fix, not a behaviour to pin), so
the fault is injected: the job runs as a real process in which Alembic's `ScriptDirectory.run_env`
(the call that runs env.py) raises an error no layer of the job expects.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    ENTRYPOINT,
    RAW_TRACEBACK,
    Database,
    Result,
    Running,
    assert_no_raw_traceback,
    job_env,
    parse_events,
)
from tests.pgcluster import free_port

# Runs entrypoint.py as `python entrypoint.py ARGS` would, once the fault is in place.
BROKEN = """
import os, runpy, sys
import alembic.script

def run_env(self):
    raise RuntimeError("injected: a bug stands in here")

alembic.script.ScriptDirectory.run_env = run_env
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_broken_job(*args: str, env: dict[str, str]) -> Result:
    done = subprocess.run(
        [sys.executable, "-c", BROKEN, str(ENTRYPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr, parse_events(done.stdout))


def test_a_bug_ends_in_one_failed_event_with_its_traceback(db: Database, tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    result = run_broken_job(
        "upgrade", "head", env=job_env(db.url, MIGRATE_TERMINATION_LOG=str(message))
    )
    assert result.code == 1, result.stdout + result.stderr
    failed = result.final
    assert (failed["event"], failed["exit_code"]) == ("failed", 1)
    assert failed["error"] == "RuntimeError"
    assert failed["message"] == "injected: a bug stands in here"
    trace = failed["traceback"]
    assert isinstance(trace, list) and all(isinstance(line, str) for line in trace)
    assert trace[0].startswith(RAW_TRACEBACK)
    assert trace[-1].strip() == "RuntimeError: injected: a bug stands in here"
    assert any("in run_env" in line for line in trace), "the frames, not just the message"
    assert_no_raw_traceback(result.stderr)
    # Unwound like any other failure: the lock given back, nothing changed, the summary written.
    assert result.one("lock_released")
    assert db.advisory_locks() == 0
    assert db.tables() == set()
    assert message.read_text().startswith("failed exit=1 command=upgrade")
    assert db.cluster.password not in result.stdout + result.stderr


def test_a_raw_traceback_on_stdout_is_never_accepted() -> None:
    """The helpers every test reads the job's output with: JSON data may hold a traceback."""
    reported = {"timestamp": "t", "level": "error", "logger": "migrator", "event": "failed"}
    reported["traceback"] = [f"{RAW_TRACEBACK}\n", "RuntimeError: x\n"]
    assert parse_events(json.dumps(reported) + "\n")[0]["traceback"][1] == "RuntimeError: x\n"
    with pytest.raises(AssertionError, match="raw traceback"):
        parse_events(f'{json.dumps(reported)}\n{RAW_TRACEBACK}\n  File "x.py"\nRuntimeError: x\n')


def test_a_wait_for_an_event_that_never_comes_gives_up() -> None:
    """Running.wait_for and finish have deadlines of their own: a hung job fails its test."""
    url = f"postgresql://u:pw@127.0.0.1:{free_port()}/db"  # nothing listens there
    runner = Running("upgrade", env=job_env(url, MIGRATE_WAIT_TIMEOUT="600"))
    with pytest.raises(AssertionError, match="no 'database_ready' event within 1 s"):
        runner.wait_for("database_ready", timeout=1)
    with pytest.raises(AssertionError, match="did not end within 1 s"):
        runner.finish(timeout=1)
    assert runner.process.returncode == -signal.SIGKILL, "not left running"

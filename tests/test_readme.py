"""The README's quick start does what the README says it does, on a terminal and through a pipe."""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import subprocess
import sys
from pathlib import Path

from migrator.job import COMMANDS
from migrator.verdict import VERDICTS
from tests.conftest import ENTRYPOINT, ROOT


def quick_start() -> tuple[str, list[str]]:
    """The paragraph that introduces the quick start, and the command that runs the job."""
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1]
    paragraph, rest = section.split("```sh\n", 1)
    command = rest.split("```", 1)[0].strip().split("&&")[-1]
    return " ".join(paragraph.split()), shlex.split(command)


def run_quick_start(cwd: Path, *, terminal: bool) -> str:
    words = quick_start()[1]
    assignments = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
    program = [word for word in words if not re.match(r"^[A-Z_]+=", word)]
    assert program[:2] == [".venv/bin/python", "entrypoint.py"], program
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_", "DATABASE_"))}
    command = [sys.executable, str(ENTRYPOINT), *program[2:]]
    if not terminal:
        done = subprocess.run(
            command,
            env={**env, **assignments},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            command, env={**env, **assignments}, cwd=cwd, stdout=follower, stderr=follower
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the job closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0, b"".join(chunks)
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_the_quick_start_prints_the_log_it_promises(tmp_path: Path) -> None:
    paragraph, _ = quick_start()
    on_terminal = run_quick_start(tmp_path, terminal=True)
    lines = [line for line in on_terminal.splitlines() if line.strip()]
    assert lines and not any(line.lstrip().startswith("{") for line in lines), on_terminal
    assert "finished" in on_terminal
    piped = run_quick_start(tmp_path, terminal=False)  # the database is at head now
    events = [json.loads(line)["event"] for line in piped.splitlines()]
    assert events[-2:] == ["nothing_to_do", "finished"]
    # So the paragraph must say both, and which is which.
    assert "console lines on a terminal" in paragraph, paragraph
    assert "JSON lines when the output goes to a pipe" in paragraph, paragraph


def test_every_command_and_status_verdict_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n\n", 3)[2]
    documented = {
        row.split("`")[1].split()[0] for row in table.splitlines() if row.startswith("| `")
    }
    assert documented == set(COMMANDS)
    status = readme.split("### Status", 1)[1].split("\n### ", 1)[0]
    for verdict in VERDICTS:
        assert f"`{verdict}`" in status, verdict

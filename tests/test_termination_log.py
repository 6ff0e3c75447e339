"""The termination message: `/dev/termination-log` (Kubernetes' default) is used when it exists and
is writable, and only then; MIGRATE_TERMINATION_LOG names another file, or `off`.

The machine's own /dev is never touched: each job runs in a private mount namespace whose /dev is
an overlay of the real one, so the test decides whether the default exists there (and whether
it is writable) and reads what the job wrote from the overlay's upper layer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ENTRYPOINT, Result, job_env, parse_events


def _private_dev_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _private_dev_works(), reason="needs root and unshare for a private /dev"
)

DEFAULT = "termination-log"  # in /dev


def run_with_private_dev(tmp_path: Path, default: str, **extra: str) -> tuple[Result, Path]:
    """`current` in a private /dev where the default file is `absent`, `writable` or
    `read-only`; returns the result and the overlay's upper layer (what was written to /dev)."""
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    if default != "absent":
        (upper / DEFAULT).touch()
    options = f"lowerdir=/dev,upperdir={upper},workdir={work}"
    if default == "read-only":
        options += ",ro"
    script = f'mount -t overlay overlay -o {options} /dev && exec "$@"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "sh",
         sys.executable, str(ENTRYPOINT), "current"],
        env=job_env(f"sqlite:///{tmp_path / 'app.db'}", **extra),
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return Result(done.returncode, done.stdout, done.stderr, parse_events(done.stdout)), upper


def test_the_default_is_written_when_it_exists_and_is_writable(tmp_path: Path) -> None:
    result, upper = run_with_private_dev(tmp_path, "writable")
    assert result.final["event"] == "finished"
    assert (upper / DEFAULT).read_text() == "finished exit=0 command=current applied=0 revisions=[]"
    assert result.named("termination_log_unwritable") == []


def test_no_default_no_file_and_no_warning(tmp_path: Path) -> None:
    result, upper = run_with_private_dev(tmp_path, "absent")
    assert result.final["event"] == "finished"
    assert list(upper.iterdir()) == [], "nothing created in /dev"
    assert result.named("termination_log_unwritable") == []


def test_a_default_that_is_not_writable_is_left_alone_without_a_warning(tmp_path: Path) -> None:
    result, upper = run_with_private_dev(tmp_path, "read-only")
    assert result.final["event"] == "finished"
    assert (upper / DEFAULT).read_text() == ""
    assert result.named("termination_log_unwritable") == []


def test_off_disables_even_the_default(tmp_path: Path) -> None:
    result, upper = run_with_private_dev(tmp_path, "writable", MIGRATE_TERMINATION_LOG="off")
    assert result.final["event"] == "finished"
    assert (upper / DEFAULT).read_text() == ""
    assert not (tmp_path / "off").exists(), "a word, not a file name"


def test_a_path_set_is_written_instead_of_the_default(tmp_path: Path) -> None:
    chosen = tmp_path / "summary"
    result, upper = run_with_private_dev(tmp_path, "writable", MIGRATE_TERMINATION_LOG=str(chosen))
    assert chosen.read_text().startswith("finished exit=0 command=current")
    assert (upper / DEFAULT).read_text() == ""
    assert result.named("termination_log_unwritable") == []

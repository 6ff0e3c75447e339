"""scripts/test.sh on a machine without the tools: it says what it would install before doing
anything, can be told to stop there, and writes no configuration file of the machine.

The run happens in a private mount namespace without a network: the machine's server binaries
and PgBouncer are hidden there, /etc/postgresql-common is an empty tmpfs (whatever the script
does, the machine's file stays out of its reach), and all of it vanishes with the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pgcluster import TOOLS

SCRIPT = ROOT / "scripts" / "test.sh"

NO_POSTGRESQL = """
set -e
[ -d /usr/lib/postgresql ] && mount -t tmpfs none /usr/lib/postgresql
for binary in /usr/sbin/pgbouncer /usr/bin/pgbouncer; do
    [ -e "$binary" ] && mount --bind /dev/null "$binary"
done
mkdir -p /etc/postgresql-common && mount -t tmpfs none /etc/postgresql-common
exec bash "$0"
"""
NO_GALERA = """
set -e
for place in /usr/lib/galera "$MIGRATE_TEST_TOOLS/usr/lib/galera"; do
    [ -d "$place" ] && mount -t tmpfs none "$place"
done
exec bash "$0"
"""

# Hiding the machine's files takes a private mount namespace, which needs root (CI runs as
# root: its scripts/test.sh installs packages, so these run there). Elsewhere they cannot run
# at all without touching the machine, so they are skipped, saying why.
sandboxed = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a private mount namespace needs root and unshare",
)


def in_sandbox(hide: str, tools: Path) -> subprocess.CompletedProcess[str]:
    """scripts/test.sh told not to install, with `hide`'s mounts, no network, `tools` as its
    tools directory."""
    return subprocess.run(
        ["unshare", "--mount", "--net", "--fork", "bash", "-c", hide, str(SCRIPT)],
        env={**os.environ, "MIGRATE_TEST_NO_INSTALL": "1", "MIGRATE_TEST_TOOLS": str(tools)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@sandboxed
def test_without_the_tools_it_says_what_it_would_install_and_stops_when_asked(
    tmp_path: Path,
) -> None:
    done = in_sandbox(NO_POSTGRESQL, tmp_path / "tools")
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr
    for step in (
        "apt-get update",
        "apt-get download postgresql-<version> pgbouncer",
        "apt-get satisfy --no-install-recommends",
        f"dpkg-deb -x <each of the two packages> {tmp_path / 'tools'}",
        "No configuration file is changed",
        "not installing",
    ):
        assert step in said, said
    assert not (tmp_path / "tools").exists()


@sandboxed
def test_without_galera_it_says_it_would_unpack_galera_4() -> None:
    """A machine with the other tools but no Galera provider (the MariaDB Galera tests need
    it): the script says what it would do, and stops there when told to."""
    done = in_sandbox(NO_GALERA, TOOLS)
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr
    for step in (
        "needs Galera's provider library (libgalera_smm.so)",
        "apt-get download galera-4",
        "apt-get satisfy --no-install-recommends",
        f"dpkg-deb -x <the package> {TOOLS}",
        "not installing",
    ):
        assert step in said, said
    assert "PostgreSQL server binaries" not in said and "MariaDB's server" not in said


def test_the_script_writes_no_file_under_etc() -> None:
    """The part no sandbox run can prove for every branch: nothing in it writes under /etc."""
    text = SCRIPT.read_text()
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    writes = [line for line in lines if ">/etc" in line.replace(" ", "") or "tee /etc" in line]
    assert writes == []
    assert "createcluster.conf" not in "\n".join(lines)

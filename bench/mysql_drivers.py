"""One-off: the floor of a no-op with each MySQL driver, PyMySQL (the image's) and mysqlclient.

    .venv/bin/python bench/mysql_drivers.py     (needs gcc, pkg-config and libmariadb-dev for
                                                 mysqlclient's build; not run in CI)

Builds a scratch venv with both drivers, starts a private MariaDB (tests/mariadb.py), and for
each driver measures its floor (import, connect, one query on alembic_version, exit): instructions
with `valgrind --tool=callgrind` (independent of the machine's load) and the wall median of 15
runs. bench/RESULTS.md has the figures and the choice they led to.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.mariadb import MariaDB  # noqa: E402

QUERY = "SELECT version_num FROM alembic_version"
CONNECT = {
    "PyMySQL": "import pymysql as driver",
    "mysqlclient": "import MySQLdb as driver",
}


def instructions(python: Path, code: str) -> float:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-c", code],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found, done.stderr
    return int(found.group(1)) / 1e6


def wall(python: Path, code: str, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([python, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="migrate-drivers-"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    pymysql = next(
        line.split()[0] for line in (REPO / "requirements.lock").read_text().splitlines()
        if line.lower().startswith("pymysql==")
    )  # fmt: skip
    subprocess.run([python, "-m", "pip", "install", "-q", pymysql, "mysqlclient"], check=True)
    server = MariaDB()
    server.start()
    try:
        name = server.create_database()
        with server.admin(name) as cursor:
            cursor.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            cursor.execute("INSERT INTO alembic_version VALUES ('abc')")
        sys.stdout.write(f"python -c pass: {instructions(python, 'pass'):.0f} M instructions\n")
        for driver, load in CONNECT.items():
            floor = (
                f"{load}; c = driver.connect(host='127.0.0.1', port={server.port}, user='app', "
                f"password={server.password!r}, database={name!r}); cur = c.cursor(); "
                f"cur.execute({QUERY!r}); cur.fetchall(); c.close()"
            )
            sys.stdout.write(
                f"{driver}: import {instructions(python, load):.0f} M, floor "
                f"{instructions(python, floor):.0f} M instructions, wall median "
                f"{wall(python, floor):.1f} ms (load {os.getloadavg()[0]:.1f})\n"
            )
    finally:
        server.destroy()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()

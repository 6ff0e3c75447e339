"""Fixtures: a private PostgreSQL cluster, fresh databases, and the job run as a real process."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from migrator.heads import write as write_heads
from tests.mariadb import GaleraNode, MariaDB
from tests.pgcluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "entrypoint.py"
HEAD = "5e6f7a8b9ca4"
REVISIONS = ["1a2b3c4d5e60", "2b3c4d5e6f71", "3c4d5e6f7a82", "4d5e6f7a8b93", "5e6f7a8b9ca4"]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def one(self, event: str) -> dict[str, Any]:
        found = self.named(event)
        assert len(found) == 1, f"expected one {event!r} event, got {len(found)}: {self.stdout}"
        return found[0]

    @property
    def final(self) -> dict[str, Any]:
        return self.events[-1]


# How Python starts printing an uncaught exception. Inside a JSON line (the `traceback` field of
# a `failed` event, exit 1) it is reported data; at the start of a line it escaped the job.
RAW_TRACEBACK = "Traceback (most recent call last):"


def assert_no_raw_traceback(text: str) -> None:
    raw = [line for line in text.splitlines() if line.lstrip().startswith(RAW_TRACEBACK)]
    assert not raw, f"a raw traceback escaped the job: {text[-3000:]}"


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON object carrying the contract keys."""
    assert_no_raw_traceback(stdout)
    events = []
    for line in stdout.splitlines():
        event = json.loads(line)
        assert {"timestamp", "level", "event", "logger"} <= event.keys(), line
        events.append(event)
    return events


def job_env(url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_", "DATABASE_"))}
    env.update({"MIGRATE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"})
    if url is not None:
        env["DATABASE_URL"] = url
    env.update(extra)
    return env


def run_raw(
    *args: str, env: Mapping[str, str], timeout: float = 60, cwd: str | Path = "/"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def run_job(
    *args: str, env: Mapping[str, str], timeout: float = 60, cwd: str | Path = "/"
) -> Result:
    done = run_raw(*args, env=env, timeout=timeout, cwd=cwd)
    result = Result(done.returncode, done.stdout, done.stderr)
    result.events = parse_events(done.stdout)
    return result


def start_job(*args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ENTRYPOINT), *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )


class Running:
    """A job started in the background, whose events can be awaited one by one.

    Threads drain stdout and stderr as the job writes them, so that a wait can give up at its
    own deadline (a blocking read could not) and a chatty stderr never fills its pipe.
    """

    def __init__(self, *args: str, env: Mapping[str, str]) -> None:
        self.process = start_job(*args, env=env)
        self.seen: list[str] = []  # the stdout lines read so far
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._drain_stdout, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._stderr.extend, args=(self.process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _drain_stdout(self, stream: Any) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def wait_for(self, event: str, timeout: float = 60) -> dict[str, Any]:
        """The next `event` line; fails if the job ends, or `timeout` seconds pass, first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {event!r} event within {timeout} s: {''.join(self.seen)}"
                ) from None
            if line is None:
                self._lines.put(None)  # later waits see the end too
                raise AssertionError(f"the job ended without {event!r}: {''.join(self.seen)}")
            self.seen.append(line)
            if json.loads(line)["event"] == event:
                return dict(json.loads(line))

    def finish(self, timeout: float = 60) -> Result:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # never left running behind a failed test
            self.process.wait()
            self._drain()
            seen = "".join(self.seen)
            raise AssertionError(f"the job did not end within {timeout} s: {seen}") from None
        self._drain()
        stdout = "".join(self.seen)
        return Result(self.process.returncode, stdout, "".join(self._stderr), parse_events(stdout))

    def _drain(self) -> None:
        """Every stdout line the job wrote, once it has ended."""
        for reader in self._readers:
            reader.join(timeout=10)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._lines.put(None)
                return
            self.seen.append(line)


def finish(process: subprocess.Popen[str], timeout: float = 60) -> Result:
    stdout, stderr = process.communicate(timeout=timeout)
    return Result(process.returncode, stdout, stderr, parse_events(stdout))


@pytest.fixture(scope="session", autouse=True)
def built_heads() -> None:
    """What the image build does (see the Dockerfile): heads.json for the repository's scripts."""
    assert write_heads(ROOT / "alembic.ini")["written"]


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Shared by the whole session; never stopped by a test (faults use `own_cluster`)."""
    server = Cluster()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, initialised but not started: the test controls it."""
    server = Cluster()
    yield server
    server.destroy()


@dataclass
class Database:
    cluster: Cluster
    name: str

    @property
    def url(self) -> str:
        return self.cluster.url(self.name)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        connection = self.cluster.connect(self.name)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def version(self) -> list[str]:
        exists = self.query("SELECT to_regclass('public.alembic_version') IS NOT NULL")[0][0]
        if not exists:
            return []
        return sorted(row[0] for row in self.query("SELECT version_num FROM alembic_version"))

    def tables(self) -> set[str]:
        rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}

    def advisory_locks(self) -> int:
        rows = self.query(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND d.datname = %s",
            self.name,
        )
        return int(rows[0][0])


@pytest.fixture
def db(cluster: Cluster) -> Database:
    return Database(cluster, cluster.create_database())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of alembic.ini, migrations/ and models/ that a test may change."""
    for name in ("migrations", "models"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    return tmp_path


def add_revision(
    project: Path, revision: str, down: str | None, upgrade: str, downgrade: str = "pass"
) -> None:
    """Append a revision whose bodies are the given Python statements."""
    body = "\n    ".join(upgrade.strip().splitlines())
    back = "\n    ".join(downgrade.strip().splitlines())
    (project / "migrations" / "versions" / f"{revision}_test.py").write_text(
        f'"""test revision {revision}"""\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = {revision!r}\ndown_revision = {down!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():\n    {body}\n\n\ndef downgrade():\n    {back}\n"
    )


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A private MariaDB server shared by the session; faults use `own_mariadb`."""
    server = MariaDB()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def own_mariadb() -> Iterator[MariaDB]:
    """A MariaDB server of the test's own, initialised but not started: the test controls it."""
    server = MariaDB()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def galera() -> Iterator[GaleraNode]:
    """A private single-node Galera cluster (MariaDB Cluster) shared by the session."""
    server = GaleraNode()
    server.start()
    yield server
    server.destroy()


@dataclass
class MySQLDatabase:
    server: MariaDB
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def running(self, prefix: str, timeout: float = 30) -> list[int]:
        """The sessions running a statement that starts with `prefix`, once there is one."""
        deadline = time.monotonic() + timeout
        sql = "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s"
        while not (rows := self.query(sql, prefix + "%")):
            assert time.monotonic() < deadline, f"{prefix!r} never started"
            time.sleep(0.02)
        return [int(row[0]) for row in rows]

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        connection = self.server.connect(self.name)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params or None)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def tables(self) -> set[str]:
        return {row[0] for row in self.query("SHOW TABLES")}

    def version(self) -> list[str]:
        if "alembic_version" not in self.tables():
            return []
        return sorted(row[0] for row in self.query("SELECT version_num FROM alembic_version"))


@pytest.fixture
def mdb(mariadb: MariaDB) -> MySQLDatabase:
    """A fresh database on the session's MariaDB server."""
    return MySQLDatabase(mariadb, mariadb.create_database())


@pytest.fixture
def gdb(galera: GaleraNode) -> MySQLDatabase:
    """A fresh database on the session's Galera node."""
    return MySQLDatabase(galera, galera.create_database())

"""Benchmark: the runner (`entrypoint.py upgrade head`) against the floor and bare Alembic.

    .venv/bin/python bench/run.py [--iterations N] [--quick] [--output bench/RESULTS.md]

Builds an image-like runtime (a venv from requirements.lock and a byte-compiled copy of the app,
as the Dockerfile builds /opt/venv and /app), starts a throwaway PostgreSQL cluster
(tests/pgcluster.py), generates linear revision chains of 5, 50 and 300 revisions (each creates
one table with an index) into temporary script directories, runs every scenario interleaving
the runner with its references (the floor, bench/floor.py; bare Alembic) on the same cluster,
and prints the targets and one markdown table. See bench/README.md for what each scenario
measures. A missed target is reported, never fatal; the exit status is non-zero only when a run
itself fails.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib.metadata
import itertools
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fleet  # bench/fleet.py: this directory is sys.path[0] when run.py runs

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 600.0
TOOLS = ("runner", "alembic")
NOOP_TOOLS = ("runner", "floor", "alembic")  # the no-op's references: the floor and bare Alembic
TOOL_NAMES = {
    "runner": "runner",
    "alembic": "bare alembic",
    "floor": "floor",
    "mysql floor": "floor (PyMySQL)",
    "floor group": "runner + floor waiters",
    "separate": "separate runs",
}


class BenchError(Exception):
    """A run did not do what it must (non-zero exit, wrong work done): the benchmark is void."""


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# -- processes -----------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured process: its output lines with arrival times, exit status and peak RSS."""

    label: str
    argv: list[str]
    pid: int = 0
    t_spawn: float = 0.0  # time.monotonic() in the spawner, just before posix_spawn
    t_exit: float = 0.0  # time.monotonic() in the spawner, just after wait4 returned
    exit_code: int | None = None
    maxrss_kb: int = 0
    cpu_s: float = 0.0  # user + system CPU of the process itself (ru_utime + ru_stime)
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (arrival, stream, text)
    error: str | None = None
    spawned: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return self.t_exit - self.t_spawn

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kb / 1024

    @property
    def first_line(self) -> float:
        """Seconds from spawn to the first line on stdout or stderr."""
        return min(t for t, _, _ in self.lines) - self.t_spawn

    def events(self) -> list[dict[str, Any]]:
        found = []
        for _, stream, text in list(self.lines):
            if stream == "stdout" and text.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(text))
        return found

    def event(self, name: str) -> dict[str, Any] | None:
        return next((event for event in self.events() if event.get("event") == name), None)

    def arrivals(self, predicate: Callable[[str, str], bool]) -> list[float]:
        return [t for t, stream, text in list(self.lines) if predicate(stream, text)]

    def wait_for_event(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while (found := self.event(name)) is None:
                if self.exited.is_set() and not any(r.is_alive() for r in self.readers):
                    raise BenchError(f"{self.label} exited before `{name}`:\n{self.tail()}")
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.label}: no `{name}` within {timeout:g} s")
                self.changed.wait(0.05)
        return found

    def tail(self, count: int = 15) -> str:
        return "\n".join(f"  {stream}: {text}" for _, stream, text in self.lines[-count:])

    def read(self, fd: int, stream: str) -> None:
        with open(fd, "rb") as pipe:
            for raw in pipe:
                arrived = time.monotonic()
                with self.changed:
                    self.lines.append((arrived, stream, raw.decode(errors="replace").rstrip()))
                    self.changed.notify_all()


class Spawner:
    """Starts processes through bench/spawner.py (see its docstring: honest peak RSS)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(REPO / "bench" / "spawner.py"), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._channel = ours
        self._runs: dict[str, Run] = {}
        self._counter = 0
        self._receiver = threading.Thread(target=self._receive, daemon=True)
        self._receiver.start()

    def _receive(self) -> None:
        with contextlib.suppress(OSError):  # the socket closes at the end
            self._receive_replies()

    def _receive_replies(self) -> None:
        while data := self._channel.recv(1 << 20):
            reply = json.loads(data)
            run = self._runs[reply["id"]]
            if "error" in reply:
                run.error = reply["error"]
                run.spawned.set()
                run.exited.set()
            elif "pid" in reply:
                run.pid, run.t_spawn = reply["pid"], reply["t_spawn"]
                run.spawned.set()
            else:
                run.exit_code = os.waitstatus_to_exitcode(reply["status"])
                run.maxrss_kb, run.t_exit = reply["maxrss_kb"], reply["t_exit"]
                run.cpu_s = reply["cpu_s"]
                self._runs.pop(reply["id"])
                run.exited.set()
            with run.changed:
                run.changed.notify_all()

    def start(self, label: str, argv: Sequence[str], env: dict[str, str]) -> Run:
        self._counter += 1
        run = Run(label=label, argv=list(argv))
        request_id = str(self._counter)
        self._runs[request_id] = run
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            reader = threading.Thread(target=run.read, args=(fd, stream), daemon=True)
            reader.start()
            run.readers.append(reader)
        message = json.dumps({"id": request_id, "argv": run.argv, "env": env}).encode()
        socket.send_fds(self._channel, [message], [out_w, err_w])
        os.close(out_w)
        os.close(err_w)
        return run

    def wait(self, run: Run, timeout: float = RUN_TIMEOUT) -> Run:
        if not run.exited.wait(timeout):
            if run.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.pid, signal.SIGKILL)
            raise BenchError(f"{run.label} did not exit within {timeout:g} s:\n{run.tail()}")
        for reader in run.readers:
            reader.join(timeout)
        if run.error:
            raise BenchError(run.error)
        return run

    def close(self) -> None:
        """Closing the socket makes the spawner kill whatever still runs, then exit."""
        with contextlib.suppress(OSError):
            self._channel.shutdown(socket.SHUT_RDWR)
        self._channel.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# -- the image-like runtime ----------------------------------------------------------------------

# What the Dockerfile copies to /app (its .dockerignore keeps bytecode out).
APP_FILES = ("entrypoint.py", "alembic.ini")
APP_DIRS = ("migrator", "models", "migrations")
# The build stage's ENV: nothing compiled behind compileall's back, no pip cache.
BUILD_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_CACHE_DIR": "1"}


@dataclass(frozen=True)
class Runtime:
    """The image's /opt/venv and /app, built under the benchmark's temporary directory."""

    venv: Path
    app: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def alembic(self) -> Path:
        return self.venv / "bin" / "alembic"

    def versions(self, first: Sequence[str]) -> str:
        """Every distribution installed in the venv, `first` (those present) leading."""
        site = [str(path) for path in self.venv.glob("lib/python*/site-packages")]
        found = {
            dist.metadata["Name"].lower().replace("_", "-"): dist.version
            for dist in importlib.metadata.distributions(path=site)
        }
        names = [name for name in first if name in found]
        names += sorted(set(found) - set(names))
        return ", ".join(f"{name} {found[name]}" for name in names)


def build_runtime(root: Path) -> Runtime:
    """Both tools run here, not from .venv and the checkout, which the image has neither of.

    .venv's editable-install import hook and setuptools' .pth cost every interpreter start, and
    with PYTHONDONTWRITEBYTECODE the checkout's migrator/ is compiled from source on every run.
    """
    started = time.monotonic()
    runtime = Runtime(root / "venv", root / "app")
    build_venv(runtime.venv)
    build_app(runtime)
    log(f"built the image-like runtime in {time.monotonic() - started:.1f} s")
    return runtime


def base_python() -> str:
    """The interpreter behind the project venv (what `python3` is in the image's base)."""
    return getattr(sys, "_base_executable", sys.executable)


def build_venv(venv: Path) -> None:
    """/opt/venv: the locked wheels, hash-checked, no pip, pyc files trusted as they are."""
    _build(base_python(), "-m", "venv", "--without-pip", venv)
    # The project venv's pip installs into the new one: the image uninstalls pip anyway.
    _build(
        sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
        "--require-hashes", "--no-deps", "--only-binary=:all:", "--no-compile",
        "--disable-pip-version-check", "-q", "-r", REPO / "requirements.lock",
    )  # fmt: skip
    _build(
        base_python(), "-m", "compileall", "-q", "-j", "0",
        "--invalidation-mode", "unchecked-hash", venv / "lib",
    )  # fmt: skip


def build_app(runtime: Runtime) -> None:
    """/app: the Dockerfile's COPY lines, its heads step, then checked-hash pyc files."""
    app = runtime.app
    app.mkdir()
    for name in APP_FILES:
        shutil.copy2(REPO / name, app / name)
    for name in APP_DIRS:
        shutil.copytree(
            REPO / name,
            app / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]", "heads.json"),
        )
    record_heads(runtime, app / "alembic.ini")
    _build(
        base_python(), "-m", "compileall", "-q", "-j", "0",
        "--invalidation-mode", "checked-hash", *(app / name for name in APP_DIRS),
    )  # fmt: skip


def record_heads(runtime: Runtime, ini: Path) -> None:
    """The Dockerfile's `python -m migrator.heads` step (see migrator/heads.py)."""
    _build("env", f"PYTHONPATH={runtime.app}", runtime.python, "-m", "migrator.heads", ini)


def _build(*argv: str | Path) -> None:
    """One build command, silent unless it fails (pip warns about this machine's index config).

    Its own process group: `pip --python` runs a second pip under the target interpreter, and an
    interrupted build must stop both before the temporary directory is removed.
    """
    args = [str(arg) for arg in argv]
    with subprocess.Popen(
        args, env={**os.environ, **BUILD_ENV}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, process_group=0,
    ) as process:  # fmt: skip
        try:
            output, _ = process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
    if process.returncode != 0:
        raise BenchError(
            f"runtime build failed ({process.returncode}): {shlex.join(args)}\n{output}"
        )


# -- generated script directories ----------------------------------------------------------------

MODELS_STANDIN = '''"""Stand-in for the application's models: the generated revisions have none."""

from sqlalchemy import MetaData


class Base:
    metadata = MetaData()
'''

INI = """# Generated by bench/run.py: {count} generated revisions, the repository's env.py.
[alembic]
script_location = {directory}/migrations
# This directory first (its models/ stand-in), then the image-like app copy (migrator/).
prepend_sys_path = {directory}{pathsep}{app}
path_separator = os
version_table = alembic_version
"""

REVISION = '''"""bench table {n:04d}

Revision ID: {revision}
Revises: {revises}
"""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bench_{n:04d}",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("ix_bench_{n:04d}_name", "bench_{n:04d}", ["name"])


def downgrade() -> None:
    op.drop_index("ix_bench_{n:04d}_name", table_name="bench_{n:04d}")
    op.drop_table("bench_{n:04d}")
'''


def revision_id(n: int) -> str:
    return hashlib.sha256(f"bench revision {n}".encode()).hexdigest()[:12]


def generate_scripts(root: Path, count: int, runtime: Runtime) -> Path:
    """A script directory with `count` chained revisions; returns its alembic.ini."""
    directory = root / f"scripts-{count}"
    versions = directory / "migrations" / "versions"
    versions.mkdir(parents=True)
    for name in ("env.py", "script.py.mako"):
        shutil.copy2(REPO / "migrations" / name, directory / "migrations" / name)
    (directory / "models").mkdir()
    (directory / "models" / "__init__.py").write_text(MODELS_STANDIN)
    ini = directory / "alembic.ini"
    ini.write_text(
        INI.format(count=count, directory=directory, pathsep=os.pathsep, app=runtime.app)
    )
    for n in range(1, count + 1):
        down = revision_id(n - 1) if n > 1 else None
        text = REVISION.format(n=n, revision=revision_id(n), revises=down or "", down_revision=down)
        (versions / f"{n:04d}_{revision_id(n)}_bench_table_{n:04d}.py").write_text(text)
    image_build_steps(ini, runtime)
    return ini


def image_build_steps(ini: Path, runtime: Runtime) -> None:
    """What the Dockerfile does to /app after copying the scripts, done here the same way:
    record the heads (without it every no-op would take Alembic's full path), then byte-compile
    (checked-hash pyc), so no run pays for compiling the revision files.
    """
    record_heads(runtime, ini)
    directory = ini.parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash",
         str(directory)],
        check=True,
    )  # fmt: skip


# -- the benchmark -------------------------------------------------------------------------------


@dataclass
class Sample:
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


class Bench:
    def __init__(
        self,
        cluster: Any,
        spawner: Spawner,
        runtime: Runtime,
        scripts: dict[int, Path],
        iterations: int,
        *,
        mariadb: Any = None,
    ):
        self.cluster = cluster
        self.mariadb = mariadb
        self.spawner = spawner
        self.runtime = runtime
        self.scripts = scripts
        self.iterations = iterations
        self.samples: dict[tuple[str, str], Sample] = {}
        self.checks: list[str] = []

    # helpers ---------------------------------------------------------------------------------
    log = staticmethod(log)

    @property
    def work_iterations(self) -> int:
        """Runs per fleet scenario with work: each is hundreds of processes (bench/fleet.py)."""
        return max(1, self.iterations // 5)

    @staticmethod
    def head(count: int) -> str:
        return revision_id(count)

    @staticmethod
    def void(message: str) -> None:
        raise BenchError(message)

    def sample(self, scenario: str, tool: str) -> Sample:
        return self.samples.setdefault((scenario, tool), Sample())

    def env(self, database: str, count: int, server: Any = None) -> dict[str, str]:
        dropped = ("MIGRATE_", "DATABASE_URL", "ALEMBIC_CONFIG", "PYTHON")
        env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
        url = (server or self.cluster).url(database)
        env.update(DATABASE_URL=url, ALEMBIC_CONFIG=str(self.scripts[count]))
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # as the image sets it: every run is like the first
        return env

    def argv(self, tool: str, count: int) -> list[str]:
        runtime = self.runtime
        if tool == "runner":
            return [str(runtime.python), str(runtime.app / "entrypoint.py"), "upgrade", "head"]
        if tool == "floor":
            return [str(runtime.python), str(REPO / "bench" / "floor.py")]
        if tool == "mysql floor":
            return [str(runtime.python), str(REPO / "bench" / "floor_mysql.py")]
        return [str(runtime.alembic), "-c", str(self.scripts[count]), "upgrade", "head"]

    def start(self, tool: str, count: int, database: str, label: str) -> Run:
        return self.spawner.start(label, self.argv(tool, count), self.env(database, count))

    def finish(self, run: Run) -> Run:
        self.spawner.wait(run)
        if run.exit_code != 0:
            raise BenchError(f"{run.label} exited {run.exit_code}:\n{run.tail()}")
        return run

    def run(self, tool: str, count: int, database: str, label: str) -> Run:
        return self.finish(self.start(tool, count, database, label))

    def create_database(self) -> str:
        return str(self.cluster.create_database())

    def drop_database(self, name: str) -> None:
        connection = self.cluster.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            connection.close()

    @contextlib.contextmanager
    def database(self, at_head_of: int | None = None) -> Iterator[str]:
        name = self.create_database()
        try:
            if at_head_of is not None:
                self.run("runner", at_head_of, name, f"prepare {name}")
            yield name
        finally:
            with contextlib.suppress(Exception):
                self.drop_database(name)

    @staticmethod
    def order(iteration: int, tools: tuple[str, ...] = TOOLS) -> tuple[str, ...]:
        """Rotate which tool goes first, so a drift during the run favours none."""
        first = iteration % len(tools)
        return tools[first:] + tools[:first]

    # scenarios -------------------------------------------------------------------------------
    def noop(self, count: int) -> None:
        scenario = f"no-op, {count} revisions"
        with self.database(at_head_of=count) as name:
            for tool in NOOP_TOOLS:  # warm-up: page cache, first-run effects
                self.run(tool, count, name, f"{scenario} warm-up {tool}")
            for iteration in range(self.iterations):
                for tool in self.order(iteration, NOOP_TOOLS):
                    run = self.run(tool, count, name, f"{scenario} {tool}")
                    if tool == "floor":
                        _check_floor(run, revision_id(count))
                    elif applied := _applied(run, tool):
                        raise BenchError(f"{run.label} applied {applied} at head:\n{run.tail()}")
                    self.sample(scenario, tool).add(run.wall)
                    self.sample(f"CPU time, no-op, {count} revisions", tool).add(run.cpu_s)
                    self.sample(f"peak RSS, no-op, {count} revisions", tool).add(run.rss_mib)
                    if tool != "floor":  # its one line comes at the end
                        self.sample("startup: spawn -> first log line (no-op runs)", tool).add(
                            run.first_line
                        )
                log(f"{scenario}: iteration {iteration + 1}/{self.iterations} done")

    def noop_mariadb(self, count: int) -> None:
        """The no-op on MariaDB, against PyMySQL's floor (bench/floor_mysql.py)."""
        scenario = f"no-op, {count} revisions, MariaDB"
        server, tools = self.mariadb, ("runner", "mysql floor")
        name = server.create_database()
        env = self.env(name, count, server)
        start = functools.partial(self.spawner.start, env=env)
        self.finish(start(f"{scenario} prepare", self.argv("runner", count)))
        for tool in tools:  # warm-up
            self.finish(start(f"{scenario} warm-up {tool}", self.argv(tool, count)))
        for iteration in range(self.iterations):
            for tool in self.order(iteration, tools):
                run = self.finish(start(f"{scenario} {tool}", self.argv(tool, count)))
                if tool == "mysql floor":
                    _check_floor(run, revision_id(count))
                elif applied := _applied(run, tool):
                    raise BenchError(f"{run.label} applied {applied} at head:\n{run.tail()}")
                self.sample(scenario, tool).add(run.wall)
                self.sample(f"CPU time, no-op, {count} revisions, MariaDB", tool).add(run.cpu_s)
            log(f"{scenario}: iteration {iteration + 1}/{self.iterations} done")

    def apply(self, count: int) -> None:
        scenario = f"apply from empty, {count} revisions"
        for iteration in range(self.iterations):
            for tool in self.order(iteration):
                with self.database() as name:
                    run = self.run(tool, count, name, f"{scenario} {tool}")
                if (applied := _applied(run, tool)) != count:
                    raise BenchError(f"{run.label} applied {applied}, not {count}:\n{run.tail()}")
                self.sample(scenario, tool).add(run.wall)
                self.sample(f"peak RSS, full run, {count} revisions", tool).add(run.rss_mib)
                starts = _revision_starts(run, tool)
                gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
                per_revision = f"apply: time per revision (median gap), {count}-chain"
                self.sample(per_revision, tool).add(statistics.median(gaps))
            log(f"{scenario}: iteration {iteration + 1}/{self.iterations} done")

    def concurrency(self, count: int, sizes: Sequence[int]) -> None:
        groups: list[Callable[[], None]] = [
            *(functools.partial(self._runners_group, count, size) for size in sizes),
            functools.partial(self._floor_group, count, max(sizes)),
        ]
        for iteration in range(self.iterations):
            for group in groups if iteration % 2 == 0 else groups[::-1]:
                group()
            log(f"concurrency: iteration {iteration + 1}/{self.iterations} done")
        total = self.iterations * sum(sizes)
        self.checks.append(
            f"Concurrency: all {total} runner processes exited 0, and in every group the "
            f"{count} revisions were applied exactly once."
        )

    def _runners_group(self, count: int, size: int) -> None:
        scenario = f"concurrency: {size} runner{'s' if size > 1 else ''}, {count} rev."
        with self.database() as name:
            runs = [self.start("runner", count, name, f"{scenario} #{i + 1}") for i in range(size)]
            for run in runs:
                self.finish(run)
        applied = sum(_applied(run, "runner") for run in runs)
        if applied != count:
            raise BenchError(f"{scenario}: {applied} revisions applied in total")
        self.sample(scenario, "runner").add(_group_wall(runs))

    def _floor_group(self, count: int, size: int) -> None:
        """One runner with size-1 bench/floor_waiter.py processes beside it (see that file)."""
        key, channel = _runner_lock()
        argv = [
            str(self.runtime.python), str(REPO / "bench" / "floor_waiter.py"), str(key), channel,
            revision_id(count),
        ]  # fmt: skip
        with self.database() as name:
            runs = [self.start("runner", count, name, "concurrency floor: runner")]
            env = self.env(name, count)
            runs += [self.spawner.start(f"floor waiter #{i}", argv, env) for i in range(size - 1)]
            for run in runs:
                self.finish(run)
        if (applied := _applied(runs[0], "runner")) != count:
            raise BenchError(f"concurrency floor: the runner applied {applied}, not {count}")
        self.sample(floor_scenario(count, size), "floor group").add(_group_wall(runs))

    def wake_on_database_start(self, count: int) -> None:
        """Server accepting connections -> the runner's `database_ready` event."""
        scenario = "wake-up: server accepting -> database_ready"
        with self.database(at_head_of=count) as name:
            for iteration in range(self.iterations):
                self.cluster.stop()
                run = self.start("runner", count, name, scenario)
                run.wait_for_event("database_unavailable", 30)
                time.sleep(random.uniform(0.5, 2.5))  # noqa: S311 - a random phase, not crypto
                accepting = self._start_cluster_and_poll()
                self.finish(run)
                ready = _timestamp(run.wait_for_event("database_ready", 0))
                self.sample(scenario, "runner").add(max(0.0, ready - accepting))
                log(f"{scenario}: iteration {iteration + 1}/{self.iterations} done")

    def _start_cluster_and_poll(self) -> float:
        """Start the cluster; the wall-clock time of the first connection attempt it accepted."""
        import psycopg2  # noqa: PLC0415 - only the harness needs it, and only here and in pgcluster

        starter = threading.Thread(target=self.cluster.start)
        starter.start()
        try:
            while True:
                attempt = time.time()
                try:
                    psycopg2.connect(self.cluster.url("postgres"), connect_timeout=2).close()
                except psycopg2.OperationalError:
                    time.sleep(0.002)
                    continue
                return attempt
        finally:
            starter.join()

    def wake_on_lock_release(self, count: int) -> None:
        """Lock let go by its holder -> the waiting runner's `lock_acquired` event.

        Two ways: released as a runner releases it (unlock and NOTIFY in one transaction), and
        freed without a word when the holder's session dies (the waiter's poll finds it).
        On an empty database: a runner that finds nothing to do may rightly skip the lock.
        """
        key, channel = _runner_lock()
        ways = {
            WAKE_NOTIFIED: f"SELECT pg_advisory_unlock(%s), pg_notify('{channel}', '')",
            WAKE_UNANNOUNCED: None,  # the holder's connection closes: its session ends
        }
        for iteration in range(self.iterations):
            for scenario, release in ways.items():
                self._wake_on_release(count, scenario, key, release)
            log(f"wake-up on lock release: iteration {iteration + 1}/{self.iterations} done")

    def _wake_on_release(self, count: int, scenario: str, key: int, release: str | None) -> None:
        with self.database() as name:
            holder = self.cluster.connect(name)
            try:
                with holder.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
                    run = self.start("runner", count, name, scenario)
                    run.wait_for_event("lock_waiting", 60)
                    time.sleep(random.uniform(1.0, 2.5))  # noqa: S311 - a random phase
                    if release:
                        cursor.execute(release, (key,))
                    released = time.time()
            finally:
                holder.close()
            self.finish(run)
        if (applied := _applied(run, "runner")) != count:
            raise BenchError(f"{run.label} applied {applied}, not {count}:\n{run.tail()}")
        acquired = _timestamp(run.wait_for_event("lock_acquired", 0))
        self.sample(scenario, "runner").add(acquired - released)


WAKE_NOTIFIED = "wake-up: lock released (as a runner does) -> lock_acquired"
WAKE_UNANNOUNCED = "wake-up: lock holder's session ends -> lock_acquired"


def floor_scenario(count: int, size: int) -> str:
    return f"concurrency floor: 1 runner + {size - 1} floor waiters, {count} rev."


def _runner_lock() -> tuple[int, str]:
    """The key and the NOTIFY channel of the runners' lock (default name)."""
    from migrator.backends.postgresql import lock_channel, lock_key  # noqa: PLC0415 - REPO on sys.path first

    key = lock_key("alembic:alembic_version")
    return key, lock_channel(key)


def _group_wall(runs: Sequence[Run]) -> float:
    """From the first spawn to the last exit."""
    return max(run.t_exit for run in runs) - min(run.t_spawn for run in runs)


def _check_floor(run: Run, head: str) -> None:
    """The floor must have done its one query, on a database at head: else its time is void."""
    if (found := run.event("floor")) is None or found.get("versions") != head:
        raise BenchError(f"{run.label} did not read the head {head}:\n{run.tail()}")


def _applied(run: Run, tool: str) -> int:
    if tool == "runner":
        finished = run.event("finished")
        if finished is None:
            raise BenchError(f"{run.label}: no `finished` event:\n{run.tail()}")
        return int(finished["applied"])
    return len(_revision_starts(run, tool))


def _revision_starts(run: Run, tool: str) -> list[float]:
    """When each revision began, as the lines arrived (the same clock for both tools)."""
    if tool == "runner":
        return run.arrivals(lambda stream, text: '"event": "migration_started"' in text)
    return run.arrivals(lambda stream, text: "Running upgrade" in text)  # bare Alembic's INFO


def _timestamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


# -- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    scenario: str
    tool: str
    unit: str  # "s" or "MiB"
    baseline: tuple[str, str] | None = None  # the (scenario, tool) the ratio divides by
    baseline_name: str = ""
    limit: float | None = None  # target on the ratio, or on the value when `absolute`
    absolute: bool = False
    target: str = ""
    on: str = "median"  # which statistic the target is judged on
    headline: bool = False  # a target of the runner redesign (issue 13): shown first


def rows(sizes: dict[str, Sequence[int]]) -> list[Row]:
    """Every row of the table, in order, with its baseline and target."""
    result: list[Row] = []
    for count in sizes["noop"]:
        s = f"no-op, {count} revisions"
        floor = (s, "floor")
        result += [
            Row(s, "runner", "s", floor, "floor", 1.30, target="≤ 1.30x the floor", headline=True),
            Row(s, "floor", "s"),
            Row(s, "alembic", "s", floor, "floor"),  # context: what a runner saves over Alembic
        ]
    for count in sizes["noop"]:
        # Not a target: the targets are on wall times. CPU time leaves out what a busy or
        # virtualised machine adds (steal, run-queue waits), so it varies less between runs.
        s = f"CPU time, no-op, {count} revisions"
        floor = (s, "floor")
        result += [
            Row(s, "runner", "s", floor, "floor"),
            Row(s, "floor", "s"),
            Row(s, "alembic", "s", floor, "floor"),
        ]
    for count in sizes["noop_mariadb"]:
        # Not a target (issue 14 sets none): how the fast path fares with a pure-Python driver.
        for kind in ("no-op", "CPU time, no-op"):
            s = f"{kind}, {count} revisions, MariaDB"
            floor = (s, "mysql floor")
            result += [Row(s, "runner", "s", floor, "floor"), Row(s, "mysql floor", "s")]
    for count in sizes["apply"]:
        s = f"apply from empty, {count} revisions"
        judged = count == max(sizes["apply"])
        limit, target = (1.0, "runner/bare ≤ 1.00") if judged else (None, "")
        result += [
            Row(s, "runner", "s", (s, "alembic"), "bare", limit, target=target, headline=judged),
            Row(s, "alembic", "s"),
        ]
    result += _per_revision_rows(sizes) + _concurrency_rows(sizes)
    for s, limit in (
        ("wake-up: server accepting -> database_ready", 1.0),
        (WAKE_NOTIFIED, 0.5),
    ):
        result.append(Row(s, "runner", "s", None, "", limit, True, f"median ≤ {limit:g} s"))
    result.append(Row(WAKE_UNANNOUNCED, "runner", "s"))  # polled: at most a second apart
    s = "startup: spawn -> first log line (no-op runs)"
    result += [
        Row(s, "runner", "s", (s, "alembic"), "bare", 0.150, True, "≤ 150 ms (every run)", "max"),
        Row(s, "alembic", "s"),
    ]
    result += fleet_rows(sizes)
    for kind, counts, mib in (("no-op", sizes["noop"], 25), ("full run", sizes["apply"], 100)):
        for count in counts:
            s = f"peak RSS, {kind}, {count} revisions"
            target = f"≤ {mib} MiB (every run)"
            noop = kind == "no-op"
            result.append(
                Row(s, "runner", "MiB", (s, "alembic"), "bare", mib, True, target, "max", noop)
            )
            result += [Row(s, "floor", "MiB")] * noop + [Row(s, "alembic", "MiB")]
    return result


def _per_revision_rows(sizes: dict[str, Sequence[int]]) -> list[Row]:
    if not sizes["apply"]:
        return []
    result: list[Row] = []
    small, large = min(sizes["apply"]), max(sizes["apply"])
    per_revision = "apply: time per revision (median gap), {}-chain"
    for tool in TOOLS:
        base = (per_revision.format(small), tool)
        runner = tool == "runner"
        result += [
            Row(base[0], tool, "s"),
            Row(
                per_revision.format(large), tool, "s", base, f"{small}-chain",
                1.20 if runner else None, target=f"flat: ≤ 1.20x the {small}-chain" * runner,
            ),
        ]  # fmt: skip
    return result


def _concurrency_rows(sizes: dict[str, Sequence[int]]) -> list[Row]:
    if not sizes["concurrency"]:
        return []
    result: list[Row] = []
    count = sizes["concurrency_revisions"][0]
    one = (f"concurrency: 1 runner, {count} rev.", "runner")
    biggest = max(sizes["concurrency"])
    floor = (floor_scenario(count, biggest), "floor group")
    for size in sizes["concurrency"]:
        s = f"concurrency: {size} runner{'s' if size > 1 else ''}, {count} rev."
        if size == biggest:
            target = "≤ 1.25x the floor group"
            result.append(
                Row(s, "runner", "s", floor, "floor group", 1.25, target=target, headline=True)
            )
        else:
            result.append(Row(s, "runner", "s", one, "1 runner"))
    result.append(Row(floor[0], "floor group", "s", one, "1 runner"))  # what no runner can beat
    return result


def fleet_rows(sizes: dict[str, Sequence[int]]) -> list[Row]:
    """The fleet's rows (bench/fleet.py): at head against one run per target, the scaling with
    MIGRATE_PARALLEL, and peak RSS at the largest fleet against the smallest."""
    if not sizes["fleet_at_head"]:
        return []
    small, large = min(sizes["fleet_at_head"]), max(sizes["fleet_at_head"])
    separate = (fleet.SEPARATE.format(large, sizes["fleet_separate"][0]), "separate")
    result = [
        Row(fleet.AT_HEAD.format(small), "runner", "s"),
        Row(
            fleet.AT_HEAD.format(large), "runner", "s", separate, "separate runs", 0.05,
            target="≤ 0.05x one run per target",
        ),
        Row(separate[0], "separate", "s"),
    ]  # fmt: skip
    count, parallels = sizes["fleet_work"][0], sizes["fleet_parallel"]
    one = (fleet.WORK.format(count, parallels[0]), "runner")
    result.append(Row(one[0], "runner", "s"))
    result += [
        Row(fleet.WORK.format(count, p), "runner", "s", one, f"parallel {parallels[0]}")
        for p in parallels[1:]
    ]
    rss = (fleet.RSS.format(small), "runner")
    result += [
        Row(rss[0], "runner", "MiB"),
        Row(
            fleet.RSS.format(large), "runner", "MiB", rss, f"{small} targets", 1.5,
            target=f"≤ 1.5x at {small} targets",
        ),
    ]  # fmt: skip
    return result


@dataclass(frozen=True)
class Judged:
    """One row's figures as measured, and its verdict when it has a target."""

    row: Row
    sample: Sample
    baseline: Sample | None
    ratio: float | None
    met: bool | None


def judge(bench: Bench, sizes: dict[str, Sequence[int]]) -> list[Judged]:
    judged = []
    for row in rows(sizes):
        sample = bench.samples.get((row.scenario, row.tool))
        if sample is None:
            continue
        baseline = bench.samples.get(row.baseline) if row.baseline else None
        ratio = sample.median / baseline.median if baseline else None
        met = None
        if row.limit is not None:
            statistic = max(sample.values) if row.on == "max" else sample.median
            value = statistic if row.absolute else ratio
            met = value is not None and value <= row.limit
        judged.append(Judged(row, sample, baseline, ratio, met))
    return judged


def _fmt(value: float, unit: str) -> str:
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if abs(value) < 0.01:
        return f"{value * 1000:.2f} ms"
    return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"


def _verdict(met: bool | None) -> str:
    return "" if met is None else "met" if met else "**not met**"


def headline(judged: Sequence[Judged]) -> str:
    """The redesign's targets, each with the figure it is judged on and its reference."""
    lines = [
        "| target | runner | reference | ratio | met? |",
        "|---|---:|---:|---:|---|",
    ]
    for j in judged:
        if not j.row.headline:
            continue
        row = j.row
        statistic = "max" if row.on == "max" else "median"
        value = max(j.sample.values) if row.on == "max" else j.sample.median
        reference = f"{row.baseline_name} {_fmt(j.baseline.median, row.unit)}" if j.baseline else ""
        ratio = f"{j.ratio:.2f}x" if j.ratio is not None else ""
        lines.append(
            f"| {row.scenario}: {row.target} | {_fmt(value, row.unit)} ({statistic}) "
            f"| {reference} | {ratio} | {_verdict(j.met)} |"
        )
    return "\n".join(lines)


def table(judged: Sequence[Judged]) -> str:
    lines = [
        "| scenario | tool | median | min | max | ratio | target | met? |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for j in judged:
        row, values = j.row, j.sample.values
        ratio = f"{j.ratio:.2f}x {row.baseline_name}" if j.ratio is not None else ""
        figures = (_fmt(v, row.unit) for v in (j.sample.median, min(values), max(values)))
        lines.append(
            f"| {row.scenario} | {TOOL_NAMES[row.tool]} | {' | '.join(figures)} | {ratio} "
            f"| {row.target} | {_verdict(j.met)} |"
        )
    return "\n".join(lines)


def missed(judged: Sequence[Judged]) -> list[str]:
    return [f"{j.row.scenario} ({j.row.target})" for j in judged if j.met is False]


def machine(bench: Bench) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    memory = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024
    connection = bench.cluster.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            server = cursor.fetchone()[0]
    finally:
        connection.close()
    versions = bench.runtime.versions(
        ("alembic", "sqlalchemy", "psycopg2-binary", "structlog", "tenacity")
    )
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() or "unknown"  # fmt: skip
    return [
        f"- CPUs: {len(os.sched_getaffinity(0))} (nproc), {model}",
        f"- Memory: {memory:.1f} GiB; kernel {platform.release()}",
        f"- PostgreSQL {server} (private throwaway cluster on 127.0.0.1, fsync=off)",
        f"- Python {platform.python_version()}; {versions}",
        "- Runtime: image-like venv from requirements.lock + byte-compiled app copy, as the "
        "Dockerfile builds /opt/venv and /app; PYTHONDONTWRITEBYTECODE=1 for every process",
        *commands(bench),
        f"- Repository: {commit}",
    ]


def commands(bench: Bench) -> list[str]:
    """The command lines as run: the temporary directory as <tmp>, the checkout's files relative."""
    count = min(bench.scripts)
    tmp = str(bench.runtime.venv.parent)
    shown = {
        tool: shlex.join(bench.argv(tool, count))
        .replace(str(bench.scripts[count]), "<tmp>/scripts-N/alembic.ini")
        .replace(tmp, "<tmp>")
        .replace(f"{REPO}{os.sep}", "")
        for tool in NOOP_TOOLS
    }
    return [f"- {TOOL_NAMES[tool]}: `{shown[tool]}`" for tool in NOOP_TOOLS]


def report(
    bench: Bench, args: argparse.Namespace, sizes: dict[str, Sequence[int]], info: dict[str, Any]
) -> str:
    """One section: `## title`, the header facts, the redesign's targets, then every scenario."""
    judged = judge(bench, sizes)
    misses = missed(judged)
    summary = (
        f"{len(misses)} target(s) not met: " + "; ".join(misses) + "."
        if misses
        else "Every target met."
    )
    parts = [
        f"## {args.title}",
        "",
        f"Command: `{args.command}`  ",
        f"Date: {info['date']}; took {info['duration']:.0f} s; {bench.iterations} iteration(s) "
        "per scenario (median, min, max over the iterations).",
        "",
        *info["machine"],
        "",
    ]
    if args.note:
        parts += [args.note, ""]
    if any(j.row.headline for j in judged):
        parts += [
            "Targets of the runner redesign (issue 13), each against a reference measured in "
            "this run:",
            "",
            headline(judged),
            "",
        ]
    parts += [
        "Every scenario:",
        "",
        table(judged),
        "",
        summary,
        "",
        *(f"{check}" for check in bench.checks),
        "",
        "Ratios divide medians. Times are wall-clock from spawn to exit unless the scenario names "
        "other events; RSS is the process's own peak (ru_maxrss). See bench/README.md.",
    ]
    return "\n".join(parts) + "\n"


def write(path: Path, section: str, *, prepend: bool) -> None:
    """The file is `# Benchmark results`, an optional preamble, then one section per run.

    Prepending keeps the runs already there, newest first, so that a before/after pair is
    measured and recorded by the same harness without hand-editing its tables.
    """
    heading = "# Benchmark results\n\n"
    if not prepend or not path.exists():
        path.write_text(heading + section)
        return
    text = path.read_text()
    at = text.find("\n## ") + 1  # the first run's section; 0 when there is none yet
    before, after = (text[:at], text[at:]) if at else (text.rstrip("\n") + "\n\n", "")
    path.write_text(before + section + ("\n" + after if after else ""))


# -- main ----------------------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=None, help="per scenario (default 7)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 iteration")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--prepend", action="store_true", help="with --output: add above the runs already there"
    )
    parser.add_argument("--title", default="Results", help="the run's section heading")
    parser.add_argument("--note", default="", help="a paragraph to put above the table")
    parser.add_argument(
        "--only", choices=("runner", "fleet"), help="only the single-database or fleet scenarios"
    )
    args = parser.parse_args(argv)
    if args.prepend and not args.output:
        parser.error("--prepend needs --output")
    if args.iterations is None:
        args.iterations = 1 if args.quick else 7
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    python = os.path.relpath(sys.executable, Path.cwd()) if sys.executable else "python"
    script = os.path.relpath(__file__, Path.cwd())
    args.command = shlex.join([python, script, *_without_note(argv)])
    return args


def _without_note(argv: Sequence[str]) -> list[str]:
    """The command as shown: the note's text is printed below it, once is enough."""
    shown = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--note" and i + 1 < len(argv):
            shown[i + 1] = "<the note>"
        elif arg.startswith("--note="):
            shown[i] = "--note=<the note>"
    return shown


SIZES: dict[str, Sequence[int]] = {
    "noop": (5, 300),
    "noop_mariadb": (5,),
    "apply": (50, 300),
    "concurrency": (1, 4, 16),
    "concurrency_revisions": (50,),
    "fleet_at_head": (10, 1000),  # schema targets; peak RSS compares the two
    "fleet_separate": (100,),  # single runs measured for the 1,000-target reference
    "fleet_work": (200,),
    "fleet_parallel": (1, 2, 4, 8),
}
# The CI smoke run: every scenario once, small.
SIZES_QUICK: dict[str, Sequence[int]] = {
    **SIZES,
    "fleet_at_head": (10, 50),
    "fleet_separate": (5,),
    "fleet_work": (4,),
    "fleet_parallel": (1, 2),
}


def benchmark(
    args: argparse.Namespace, root: Path, spawner: Spawner, cluster: Any, mariadb: Any
) -> str:
    sizes = SIZES_QUICK if args.quick else SIZES
    if args.only == "fleet":
        sizes = {**{key: () for key in sizes}, **{k: v for k, v in sizes.items() if "fleet" in k}}
    elif args.only == "runner":
        sizes = {**sizes, "fleet_at_head": ()}
    started, load_before = time.monotonic(), os.getloadavg()
    runtime = build_runtime(root)
    counts = sorted(
        {*sizes["noop"], *sizes["apply"], *sizes["concurrency_revisions"]}
        | ({1, 5} if sizes["fleet_at_head"] else set())
    )
    scripts = {count: generate_scripts(root, count, runtime) for count in counts}
    log(f"generated script directories: {', '.join(map(str, counts))} revisions")
    cluster.start()
    if sizes["noop_mariadb"]:
        mariadb.start()
    bench = Bench(cluster, spawner, runtime, scripts, args.iterations, mariadb=mariadb)
    for count in sizes["noop"]:
        bench.noop(count)
    for count in sizes["noop_mariadb"]:
        bench.noop_mariadb(count)
    for count in sizes["apply"]:
        bench.apply(count)
    if sizes["concurrency"]:
        bench.concurrency(sizes["concurrency_revisions"][0], sizes["concurrency"])
        bench.wake_on_database_start(min(scripts))
        bench.wake_on_lock_release(min(scripts))
    if sizes["fleet_at_head"]:
        largest = max(sizes["fleet_at_head"])
        for count in sizes["fleet_at_head"]:
            fleet.at_head(bench, count, sizes["fleet_separate"][0] if count == largest else 0)
        fleet.with_work(bench, sizes["fleet_work"][0], tuple(sizes["fleet_parallel"]))
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration": time.monotonic() - started,
        "machine": [*machine(bench), _load(load_before, os.getloadavg())],
    }
    return report(bench, args, sizes, info)


def _load(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    """Other work on the machine skews every figure: say how busy it was."""
    return (
        f"- Load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in before)}; "
        f"at end: {', '.join(f'{x:.2f}' for x in after)} (the benchmark's own processes included)"
    )


def _terminate(signum: int, _: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: cluster and temp dirs go


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)
    sys.path.insert(0, str(REPO))
    from tests.mariadb import MariaDB  # noqa: PLC0415 - needs the repository on sys.path
    from tests.pgcluster import Cluster  # noqa: PLC0415

    root = Path(tempfile.mkdtemp(prefix="migrate-bench-"))
    spawner = Spawner()
    cluster = mariadb = None
    try:
        cluster, mariadb = Cluster(), MariaDB()
        text = benchmark(args, root, spawner, cluster, mariadb)
    except BenchError as error:
        log(f"a run failed, no results: {error}")
        return 1
    finally:
        spawner.close()
        for server in (cluster, mariadb):
            if server is not None:
                server.destroy()
        shutil.rmtree(root, ignore_errors=True)
    sys.stdout.write(text)
    if args.output:
        write(args.output, text, prepend=args.prepend)
        log(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

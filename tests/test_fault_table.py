"""Faults and bad input, as a table: what happens, the exit code, the final event, nothing lost.

Every case runs against a private PostgreSQL cluster of its own (so it may stop, restart or kill
it) and a project whose head revision, EXTRA, adds a column to `accounts` and, while a marker file
exists, then sleeps in the database: the "long migration statement" faults strike there.
After every case `assert_nothing_lost` checks: the schema is exactly that of a clean revision,
`alembic_version` holds one known revision, no index was left INVALID, no advisory lock is held,
and the password appears in no output. Cases that leave work undone then rerun the job, which
must complete.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from migrator.backends.postgresql import lock_key
from tests.conftest import (
    HEAD,
    REVISIONS,
    Database,
    Result,
    Running,
    add_revision,
    finish,
    job_env,
    run_job,
    start_job,
)
from tests.pgcluster import ADMIN, Cluster

EXTRA = "cccc00000001"
LOCK = lock_key("alembic:alembic_version")


@dataclass
class Scene:
    cluster: Cluster
    db: Database
    project: Path
    outputs: list[str] = field(default_factory=list)

    @property
    def slow_marker(self) -> Path:
        return self.project / "slow"

    @property
    def fail_marker(self) -> Path:
        return self.project / "fail"

    def env(self, **extra: str) -> dict[str, str]:
        return job_env(
            self.db.url,
            ALEMBIC_CONFIG=str(self.project / "alembic.ini"),
            MIGRATE_CONNECT_TIMEOUT="2",
            **extra,
        )

    def run(self, *args: str, **extra: str) -> Result:
        return self.keep(run_job(*args, env=self.env(**extra)))

    def start(self, *args: str, **extra: str) -> Running:
        return Running(*args, env=self.env(**extra))

    def keep(self, result: Result) -> Result:
        self.outputs.append(result.stdout + result.stderr)
        return result

    def hold_lock(self) -> Callable[[], None]:
        holder = self.cluster.connect(self.db.name)
        holder.cursor().execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        return holder.close

    def in_sleep(self) -> bool:
        return bool(self.db.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND query LIKE %s"
            " AND pid <> pg_backend_pid()",
            self.db.name, "%pg_sleep%",
        ))  # fmt: skip


def _until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _mid_statement(scene: Scene) -> Running:
    """A runner that is inside EXTRA's long statement, holding the lock."""
    scene.slow_marker.touch()
    runner = scene.start("upgrade")
    runner.wait_for("migration_started")
    _until(scene.in_sleep)
    return runner


def _signal_finish(runner: Running, signum: int, scene: Scene) -> Result:
    sent = time.monotonic()
    runner.process.send_signal(signum)
    result = scene.keep(runner.finish(timeout=15))
    assert time.monotonic() - sent < 5, "must exit within 5 s of the signal"
    return result


# ---- the faults -------------------------------------------------------------------------------
def _sigterm(runner: Running, scene: Scene) -> Result:
    return _signal_finish(runner, signal.SIGTERM, scene)


def _sigkill(runner: Running, scene: Scene) -> Result:
    runner.process.kill()
    result = scene.keep(runner.finish())
    assert result.code == -signal.SIGKILL, "killed while still at work, not ended by itself"
    return result


def _sessions_of_the_job(scene: Scene) -> list[tuple[object, ...]]:
    return scene.db.query(
        "SELECT pid, state FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s",
        scene.db.name,
        "migrate-job@%",
    )


Stop = Callable[[Running, Scene], Result]


def _while_waiting_for_database(scene: Scene, stop: Stop) -> Result:
    scene.cluster.stop()
    runner = scene.start("upgrade")
    runner.wait_for("database_unavailable")
    runner.wait_for("database_unavailable")  # still retrying, not given up
    result = stop(runner, scene)
    scene.cluster.start()
    return result


def _while_waiting_for_lock(scene: Scene, stop: Stop) -> Result:
    release = scene.hold_lock()
    try:
        runner = scene.start("upgrade")
        runner.wait_for("lock_waiting")
        return stop(runner, scene)
    finally:
        release()


def sigterm_waiting_for_database(scene: Scene) -> Result:
    return _while_waiting_for_database(scene, _sigterm)


def sigterm_waiting_for_lock(scene: Scene) -> Result:
    result = _while_waiting_for_lock(scene, _sigterm)
    assert 0 < result.final["lock_wait_s"] <= result.final["duration_s"], "the seconds waited"
    assert result.final["revisions_after"] == [], "read on the way out"
    return result


def sigterm_mid_statement(scene: Scene) -> Result:
    result = _sigterm(_mid_statement(scene), scene)
    interrupted = result.one("interrupted")
    assert interrupted["running"]["revision"] == EXTRA
    assert result.final["revisions_after"] == [HEAD], "what is committed, read on the way out"
    assert result.final["lock_wait_s"] is not None
    return result


def sigint_mid_statement(scene: Scene) -> Result:
    return _signal_finish(_mid_statement(scene), signal.SIGINT, scene)


def sigkill_waiting_for_database(scene: Scene) -> Result:
    result = _while_waiting_for_database(scene, _sigkill)
    assert result.named("database_ready") == [], "killed before it ever connected"
    return result


def sigkill_waiting_for_lock(scene: Scene) -> Result:
    release = scene.hold_lock()
    try:
        runner = scene.start("upgrade")
        runner.wait_for("lock_waiting")
        # A waiter waits on its own side, between polls: its session idle, in no transaction
        # (one blocked in the server would outlive a kill, and take the lock later).
        _until(lambda: [state for _, state in _sessions_of_the_job(scene)] == ["idle"])
        result = _sigkill(runner, scene)
        # Still inside the holder's lock: the killed waiter's session is gone from the server,
        # and it had changed nothing.
        _until(lambda: _sessions_of_the_job(scene) == [], timeout=5)
        assert scene.db.tables() == set(), "nothing may change before the lock is held"
    finally:
        release()
    return result


def sigkill_mid_statement(scene: Scene) -> Result:
    result = _sigkill(_mid_statement(scene), scene)
    # The backend notices its client is gone (client_connection_check_interval) and lets go,
    # long before the statement's 60 s are up.
    _until(lambda: scene.db.advisory_locks() == 0, timeout=15)
    assert _sessions_of_the_job(scene) == []
    return result


def server_down_during_wait(scene: Scene) -> Result:
    scene.cluster.stop()
    result = scene.run("upgrade", MIGRATE_WAIT_TIMEOUT="2")
    scene.cluster.start()
    return result


def server_stopped_during_lock_wait(scene: Scene) -> Result:
    release = scene.hold_lock()
    runner = scene.start("upgrade", MIGRATE_WAIT_TIMEOUT="2")
    runner.wait_for("lock_waiting")
    scene.cluster.stop("immediate")  # the holder's session dies with the server
    release()
    result = scene.keep(runner.finish())
    scene.cluster.start()
    return result


def _server_down_mid_statement(scene: Scene, take_down: Callable[[], None]) -> Result:
    runner = _mid_statement(scene)
    take_down()
    result = scene.keep(runner.finish())
    scene.cluster.start()
    return result


def server_stopped_mid_statement(scene: Scene) -> Result:
    return _server_down_mid_statement(scene, lambda: scene.cluster.stop("fast"))


def server_restarted_mid_statement(scene: Scene) -> Result:
    runner = _mid_statement(scene)
    scene.cluster.restart()
    return scene.keep(runner.finish())


def server_crashed_mid_statement(scene: Scene) -> Result:
    result = _server_down_mid_statement(scene, scene.cluster.kill)
    assert result.final["revisions_after"] == "unknown", "the connection died: say so"
    return result


def _reader_on_accounts(scene: Scene) -> Callable[[], None]:
    """An application transaction that read `accounts` and stays open (ACCESS SHARE)."""
    reader = scene.cluster.connect(scene.db.name)
    reader.cursor().execute("SET application_name = 'app-reader'")
    reader.autocommit = False
    reader.cursor().execute("SELECT count(*) FROM accounts WHERE email <> 'ada-literal'")
    return reader.close


def ddl_lock_timeout_then_success(scene: Scene) -> Result:
    assert scene.run("upgrade", HEAD).code == 0
    finish_reader = _reader_on_accounts(scene)
    runner = scene.start("upgrade", MIGRATE_DDL_LOCK_TIMEOUT="0.3", MIGRATE_DDL_RETRIES="20")
    try:
        assert runner.wait_for("ddl_lock_timeout")["revision"] == EXTRA
    finally:
        finish_reader()  # the application transaction ends; the next retry gets the table
    return scene.keep(runner.finish())


def ddl_lock_timeout_exhausted(scene: Scene) -> Result:
    assert scene.run("upgrade", HEAD).code == 0
    finish_reader = _reader_on_accounts(scene)
    try:
        result = scene.run("upgrade", MIGRATE_DDL_LOCK_TIMEOUT="0.2", MIGRATE_DDL_RETRIES="2")
    finally:
        finish_reader()
    assert len(result.named("ddl_lock_timeout")) == 2
    assert result.final["kind"] == "lock_timeout" and result.final["revision"] == EXTRA
    # Whom to ask: the session holding the table, in every retry's event and in the final one.
    for event in [*result.named("ddl_lock_timeout"), result.final]:
        (blocker,) = event["blocking"]
        assert blocker["application_name"] == "app-reader"
        assert blocker["state"] == "idle in transaction" and blocker["query_start"]
        assert blocker["query"].startswith("SELECT count(*) FROM accounts WHERE email <> ")
    assert (
        f"blocked by pid {blocker['pid']} (application_name app-reader" in result.final["message"]
    )
    assert "ada-literal" not in result.stdout, "literals in another session's query are masked"
    return result


def revision_opts_out_of_the_ddl_lock_timeout(scene: Scene) -> Result:
    extra = scene.project / "migrations" / "versions" / f"{EXTRA}_test.py"
    extra.write_text(extra.read_text() + "\nddl_lock_timeout = None\n")
    assert scene.run("upgrade", HEAD).code == 0
    finish_reader = _reader_on_accounts(scene)
    runner = scene.start("upgrade", MIGRATE_DDL_LOCK_TIMEOUT="0.2", MIGRATE_DDL_RETRIES="0")
    try:
        runner.wait_for("migration_started")
        # Still queued for the table after 1 s, five times the 0.2 s it would have waited
        # without opting out (a lock timeout would have ended the job: exit 6, no retries).
        _until(
            lambda: (
                runner.process.poll() is not None
                or scene.db.query(
                    "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND a.datname = %s"
                    " AND clock_timestamp() - a.query_start > interval '1 second'",
                    scene.db.name,
                )
            )
        )
        assert runner.process.poll() is None, "it gave up waiting for the table"
    finally:
        finish_reader()
    result = scene.keep(runner.finish())
    assert result.named("ddl_lock_timeout") == [], "it waited for the table instead"
    return result


def failing_revision(scene: Scene) -> Result:
    scene.fail_marker.touch()
    result = scene.run("upgrade")
    assert result.final["revision"] == EXTRA and result.final["direction"] == "upgrade"
    assert "division by zero" in result.final["message"]
    assert result.final["applied"] == len(REVISIONS), "the good revisions stay committed"
    assert result.named("lock_released")
    return result


def statement_timeout(scene: Scene) -> Result:
    scene.slow_marker.touch()
    result = scene.run("upgrade", MIGRATE_STATEMENT_TIMEOUT="1")
    assert result.final["kind"] == "statement_timeout"
    return result


def black_holed_host(scene: Scene) -> Result:
    # A listener that never answers: TCP connects, PostgreSQL's greeting never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        url = f"postgresql://{ADMIN}:{quote(scene.cluster.password, safe='')}@127.0.0.1:{port}/x"
        result = scene.keep(run_job("upgrade", env=job_env(
            url, MIGRATE_CONNECT_TIMEOUT="1", MIGRATE_WAIT_TIMEOUT="3",
        )))  # fmt: skip
    assert result.final["duration_s"] < 3 + 2 + 1, "the connect timeout bounds every attempt"
    assert all("timeout" in e["error"] for e in result.named("database_unavailable"))
    return result


def twenty_runners_at_once(scene: Scene) -> Result:
    runners = [start_job("upgrade", env=scene.env()) for _ in range(20)]
    results = [scene.keep(finish(runner, timeout=120)) for runner in runners]
    assert [r.code for r in results] == [0] * 20
    started = [e["revision"] for r in results for e in r.named("migration_started")]
    assert sorted(started) == sorted([*REVISIONS, EXTRA]), "each revision exactly once"
    return results[0]


def corrupted_version_table(scene: Scene) -> Result:
    assert scene.run("upgrade", HEAD).code == 0
    scene.db.query(f"UPDATE alembic_version SET version_num = '{CORRUPT[0]}'")
    result = scene.run("upgrade")
    assert "`stamp --purge <revision>`" in result.final["message"]
    assert result.final["unknown"] == CORRUPT
    return result


def stamp_purge(scene: Scene) -> None:
    """The repair the refusal names, done by the job: the schema is HEAD's."""
    repair = scene.run("stamp", "--purge", HEAD)
    assert repair.code == 0, repair.stdout
    assert repair.final["revisions_after"] == [HEAD]
    assert scene.db.version() == [HEAD]


def several_heads(scene: Scene) -> Result:
    add_revision(scene.project, "dddd00000001", HEAD, "pass")
    result = scene.run("upgrade")
    (scene.project / "migrations" / "versions" / "dddd00000001_test.py").unlink()
    return result


def unknown_revision_argument(scene: Scene) -> Result:
    return scene.run("upgrade", "0123456789ab")


def bad_environment_value(scene: Scene) -> Result:
    return scene.run("upgrade", MIGRATE_DDL_RETRIES="-1")


def password_twice(scene: Scene) -> Result:
    secret = scene.project / "password"
    secret.write_text(scene.cluster.password)
    return scene.run("upgrade", DATABASE_PASSWORD_FILE=str(secret))


def password_from_a_file(scene: Scene) -> Result:
    secret = scene.project / "password"
    secret.write_text(scene.cluster.password + "\n")
    url = f"postgresql://{ADMIN}@127.0.0.1:{scene.cluster.port}/{scene.db.name}"
    env = scene.env(DATABASE_PASSWORD_FILE=str(secret), DATABASE_URL=url)
    return scene.keep(run_job("upgrade", env=env))


@dataclass(frozen=True)
class Case:
    fault: Callable[[Scene], Result]
    code: int
    error: str | None  # the final event's error class; None: `finished`
    at: list[str]  # the version right after the fault
    rerun: bool = False  # a rerun must then complete
    repair: Callable[[Scene], None] | None = None  # what the operator does before the rerun

    def __str__(self) -> str:
        return self.fault.__name__


NONE: list[str] = []
CORRUPT = ["feedfacecafe"]  # a revision the scripts do not know
CASES = [
    #    fault                                      exit final error           after    rerun
    Case(sigterm_waiting_for_database,              143, "Interrupted",         NONE),
    Case(sigterm_waiting_for_lock,                  143, "Interrupted",         NONE),
    Case(sigterm_mid_statement,                     143, "Interrupted",         [HEAD],  True),
    Case(sigint_mid_statement,                      130, "Interrupted",         [HEAD],  True),
    Case(sigkill_waiting_for_database,              -9,  None,                  NONE,    True),
    Case(sigkill_waiting_for_lock,                  -9,  None,                  NONE,    True),
    Case(sigkill_mid_statement,                     -9,  None,                  [HEAD],  True),
    Case(server_down_during_wait,                   3,   "DatabaseUnavailable", NONE,    True),
    Case(server_stopped_during_lock_wait,           3,   "DatabaseUnavailable", NONE,    True),
    Case(server_stopped_mid_statement,              3,   "DatabaseUnavailable", [HEAD],  True),
    Case(server_restarted_mid_statement,            3,   "DatabaseUnavailable", [HEAD],  True),
    Case(server_crashed_mid_statement,              3,   "DatabaseUnavailable", [HEAD],  True),
    Case(ddl_lock_timeout_then_success,             0,   None,                  [EXTRA]),
    Case(ddl_lock_timeout_exhausted,                6,   "DDLTimeout",          [HEAD],  True),
    Case(revision_opts_out_of_the_ddl_lock_timeout, 0,   None,                  [EXTRA]),
    Case(failing_revision,                          5,   "MigrationFailed",     [HEAD],  True),
    Case(statement_timeout,                         6,   "DDLTimeout",          [HEAD],  True),
    Case(black_holed_host,                          3,   "DatabaseUnavailable", NONE),
    Case(twenty_runners_at_once,                    0,   None,                  [EXTRA]),
    Case(corrupted_version_table,                   2,   "RevisionError",       CORRUPT, True,   stamp_purge),  # noqa: E501
    Case(several_heads,                             2,   "RevisionError",       NONE,    True),
    Case(unknown_revision_argument,                 2,   "RevisionError",       NONE),
    Case(bad_environment_value,                     2,   "ConfigError",         NONE),
    Case(password_twice,                            2,   "ConfigError",         NONE),
    Case(password_from_a_file,                      0,   None,                  [EXTRA]),
]  # fmt: skip


@pytest.fixture
def scene(project: Path) -> Iterator[Scene]:
    cluster = Cluster()
    cluster.start()
    add_revision(
        project,
        EXTRA,
        HEAD,
        'op.add_column("accounts", sa.Column("nickname", sa.String(50)))\n'
        f"if __import__('os').path.exists({str(project / 'slow')!r}):\n"
        '    op.execute("SELECT pg_sleep(60)")\n'
        f"if __import__('os').path.exists({str(project / 'fail')!r}):\n"
        '    op.execute("SELECT 1/0")',
        'op.drop_column("accounts", "nickname")',
    )
    yield Scene(cluster, Database(cluster, cluster.create_database()), project)
    cluster.destroy()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fault(case: Case, scene: Scene) -> None:
    result = case.fault(scene)
    assert result.code == case.code, result.stdout[-3000:]
    if case.error is None and case.code == 0:
        assert result.final["event"] == "finished"
    elif case.error is not None:
        assert (result.final["event"], result.final["error"]) == ("failed", case.error)
        assert result.final["exit_code"] == case.code
    assert_nothing_lost(scene, expected=case.at)
    if case.rerun:
        scene.slow_marker.unlink(missing_ok=True)
        scene.fail_marker.unlink(missing_ok=True)
        if case.repair is not None:
            case.repair(scene)
        rerun = scene.run("upgrade")
        assert rerun.code == 0, rerun.stdout
        assert rerun.named("lock_waiting") == [], "the failed run left the lock taken"
        assert_nothing_lost(scene, expected=[EXTRA])


def assert_nothing_lost(scene: Scene, expected: list[str]) -> None:
    db = scene.db
    version = db.version()
    assert version == expected
    tables = db.tables()
    columns = {row[0] for row in db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts'"
    )}  # fmt: skip
    if version:
        assert tables == {"accounts", "projects", "tasks", "comments", "alembic_version"}
        assert ("nickname" in columns) == (version == [EXTRA]), "schema matches the revision"
    else:
        # Every such case ends before any revision ran: not even the version table is made.
        assert tables == set(), "nothing applied without a recorded revision"
    assert db.query("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid") == []
    _until(lambda: db.advisory_locks() == 0, timeout=15)
    for output in scene.outputs:
        assert scene.cluster.password not in output

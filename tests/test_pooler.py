"""Through PgBouncer: session pooling works; transaction pooling is detected and refused.

In transaction mode every transaction may run on another server connection, so a session
advisory lock protects nothing (and leaks onto a pooled connection). The runner proves, right
after taking the lock, that its own session holds it, and fails with a clear message otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import HEAD, Database, job_env, run_job
from tests.pgcluster import ADMIN, TOOLS, free_port

PGBOUNCER = (
    os.environ.get("PGBOUNCER")
    or shutil.which("pgbouncer")
    or next(
        (str(p) for p in (Path("/usr/sbin/pgbouncer"), TOOLS / "usr/sbin/pgbouncer") if p.exists()),
        "/usr/sbin/pgbouncer",
    )
)


def _bouncer(db: Database, pool_mode: str) -> Iterator[str]:
    assert os.access(PGBOUNCER, os.X_OK), f"{PGBOUNCER} missing: scripts/test.sh installs it"
    root = Path(tempfile.mkdtemp(prefix="migrate-bouncer-"))
    port = free_port()
    (root / "userlist.txt").write_text(f'"{ADMIN}" ""\n')
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"app = host=127.0.0.1 port={db.cluster.port} dbname={db.name} user={ADMIN}"
        f" password={db.cluster.password}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root}/userlist.txt\n"
        f"pool_mode = {pool_mode}\ndefault_pool_size = 4\n"
        # Hand out idle server connections in turn, as a busy pool would.
        "server_round_robin = 1\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {root}/log\n"
    )
    command = [PGBOUNCER, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        for path in root.iterdir():
            shutil.chown(path, "postgres", "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://{ADMIN}@127.0.0.1:{port}/app"
    try:
        _warm_two_server_connections(port)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _warm_two_server_connections(port: int) -> None:
    """Two clients in a transaction at once make the pool open two server connections."""
    deadline = time.monotonic() + 10
    while True:
        try:
            clients = [psycopg2.connect(host="127.0.0.1", port=port, user=ADMIN, dbname="app")]
            break
        except psycopg2.OperationalError:
            assert time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.05)
    clients.append(psycopg2.connect(host="127.0.0.1", port=port, user=ADMIN, dbname="app"))
    for client in clients:
        client.cursor().execute("SELECT pg_backend_pid()")
    for client in clients:
        client.commit()  # a client leaving mid-transaction would get its server link closed
        client.close()


@pytest.fixture
def transaction_pooler(db: Database) -> Iterator[str]:
    yield from _bouncer(db, "transaction")


@pytest.fixture
def session_pooler(db: Database) -> Iterator[str]:
    yield from _bouncer(db, "session")


def test_transaction_pooling_is_refused_before_anything_runs(
    db: Database, transaction_pooler: str
) -> None:
    result = run_job("upgrade", env=job_env(transaction_pooler))
    assert result.code == 2
    assert result.final["error"] == "LockNotHeld"
    assert "transaction mode" in result.final["message"]
    assert "direct or session-pooled connection" in result.final["message"]
    assert result.named("plan") == [] and result.named("migration_started") == []
    assert db.version() == []


def test_session_pooling_works(db: Database, session_pooler: str) -> None:
    result = run_job("upgrade", env=job_env(session_pooler))
    assert result.code == 0, result.stdout
    assert db.version() == [HEAD]

"""A private, throwaway PostgreSQL cluster that tests may stop, start, restart and kill.

Password (scram) auth, a free port on 127.0.0.1, a socket directory of its own: the machine's
shared server is never touched. PostgreSQL refuses to run as root, so as root every server
command runs as the `postgres` OS user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg2
import psycopg2.extensions

ADMIN = "admin"


# Where scripts/test.sh unpacks the server binaries when the machine has none (see there why
# they are not installed).
TOOLS = Path(os.environ.get("MIGRATE_TEST_TOOLS") or "/var/tmp/migrate-job-test-tools")


def _bin_dir() -> Path:
    """The newest PostgreSQL server binaries: PG_BINDIR if set, the system's, scripts/test.sh's."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob(f"{TOOLS}/usr/lib/postgresql/*/bin")
    candidates = sorted(found, key=lambda path: int(Path(path).parent.name))
    if candidates:
        return Path(candidates[-1])
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
    raise RuntimeError(
        "PostgreSQL server binaries not found: run scripts/test.sh, which installs them"
    )


def free_port() -> int:
    """A free port below the kernel's ephemeral range.

    A server that tests stop and start again must keep its port; an ephemeral port could be
    taken meanwhile as the local end of some client's connection.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10000, min(low, 32768))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Cluster:
    def __init__(self, password: str = "s3cr3t-Pa55:w@rd/x") -> None:
        self.password = password
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="migrate-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(password)
        if self._as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        self._run(
            "initdb",
            "-D", str(self.data),
            "-U", ADMIN,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--no-sync",
            "-E", "UTF8",
        )  # fmt: skip
        pwfile.unlink()

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    # server lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c max_connections=100 -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def kill(self) -> None:
        """SIGKILL the postmaster and wait until it is gone (a stale pid file blocks a restart)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.02)

    def destroy(self) -> None:
        if self.is_running():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # access ----------------------------------------------------------------------------------
    def url(self, database: str, scheme: str = "postgresql", password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"{scheme}://{ADMIN}:{secret}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg2.extensions.connection:
        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=ADMIN, password=self.password,
            dbname=database, connect_timeout=5,
        )  # fmt: skip
        connection.autocommit = True
        return connection

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return name

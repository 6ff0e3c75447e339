"""A private, throwaway MariaDB server that tests may stop, start and kill.

Password auth for the test user, a free port on 127.0.0.1, a socket and data directory of its
own: the machine's shared server (port 3306) is never touched. As root, the server runs as the
`mysql` OS user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pymysql

from tests.pgcluster import TOOLS, free_port

USER = "app"


def _binary(name: str, *places: str) -> str:
    """The system's binary, else the one scripts/test.sh unpacked into MIGRATE_TEST_TOOLS."""
    for place in places:
        for root in ("", str(TOOLS)):
            path = f"{root}{place}/{name}"
            if os.access(path, os.X_OK):
                return path
    raise RuntimeError(f"{name} not found: run scripts/test.sh, which installs MariaDB's server")


def galera_provider() -> str:
    """Galera's provider library: the system's (galera-4), else the one scripts/test.sh
    unpacked into MIGRATE_TEST_TOOLS."""
    for root in ("", str(TOOLS)):
        path = f"{root}/usr/lib/galera/libgalera_smm.so"
        if os.path.exists(path):
            return os.path.realpath(path)
    raise RuntimeError("libgalera_smm.so not found: run scripts/test.sh, which installs galera-4")


class MariaDB:
    def __init__(self, password: str = "s3cr3t-Pa55:w@rd/x") -> None:
        self.password = password
        self.server = _binary("mariadbd", "/usr/sbin")
        install = _binary("mariadb-install-db", "/usr/bin")
        self.root = Path(tempfile.mkdtemp(prefix="migrate-maria-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "mysql", "mysql")
        self.root.chmod(0o700)
        base = Path(install).parent.parent  # /usr, or the unpacked tree's usr
        # Temporary tables of its own: in a shared /tmp, their names (the server's pid in hex)
        # can clash with another server's of the same pid in another pid namespace, and the
        # bootstrap then fails ("Could not remove temporary table ... Unknown table").
        (self.root / "tmp").mkdir()
        if self._as_root:
            shutil.chown(self.root / "tmp", "mysql", "mysql")
        installed = subprocess.run(
            [
                install,
                "--no-defaults",
                f"--basedir={base}",
                f"--datadir={self.data}",
                f"--tmpdir={self.root}/tmp",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *(["--user=mysql"] if self._as_root else []),
            ],
            check=False,
            capture_output=True,
            timeout=120,
        )
        if installed.returncode != 0:
            said = (installed.stdout + installed.stderr).decode(errors="replace")[-2000:]
            raise RuntimeError(f"mariadb-install-db failed ({installed.returncode}): {said}")
        self.process: subprocess.Popen[bytes] | None = None

    # server lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.server,
                "--no-defaults",
                *(["--user=mysql"] if self._as_root else []),
                f"--datadir={self.data}",
                f"--tmpdir={self.root}/tmp",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.root}/sock",
                f"--pid-file={self.root}/pid",
                f"--log-error={self.root}/err.log",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=200",
                *self._options(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self._root_connection().close()
                break
            except pymysql.err.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "err.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"MariaDB did not start: {log}") from None
                time.sleep(0.05)  # a readiness poll, not an assertion
        self._ready(deadline)
        with self.admin() as cursor:
            # `%%`: the driver formats the statement with the password as its one parameter.
            cursor.execute(
                f"CREATE USER IF NOT EXISTS '{USER}'@'%%' IDENTIFIED BY %s", (self.password,)
            )
            cursor.execute(f"GRANT ALL ON *.* TO '{USER}'@'%'")

    def _options(self) -> list[str]:
        """Server options beyond the common ones (a kind of server: Galera's)."""
        return []

    def _ready(self, deadline: float) -> None:
        """Wait, once a client connects, for what else the kind of server needs to be ready."""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # access ----------------------------------------------------------------------------------
    def _root_connection(self) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", connect_timeout=5, autocommit=True
        )

    @contextlib.contextmanager
    def admin(self, database: str | None = None):  # type: ignore[no-untyped-def]
        """A cursor as root, autocommit."""
        connection = self._root_connection()
        try:
            if database:
                connection.select_db(database)
            with connection.cursor() as cursor:
                yield cursor
        finally:
            connection.close()

    def connect(
        self, database: str | None = None, client_flag: int = 0
    ) -> pymysql.connections.Connection:
        """A connection as the test user, autocommit."""
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password,
            database=database, connect_timeout=5, autocommit=True, client_flag=client_flag,
        )  # fmt: skip

    def url(self, database: str, scheme: str = "mysql", password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"{scheme}://{USER}:{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
        return name


class GaleraNode(MariaDB):
    """A single-node Galera cluster (MariaDB Cluster) of its own, every port on 127.0.0.1.

    `gcomm://` with no peers bootstraps a new cluster, which is what a first (here: only) node
    does; with no other node there is no state transfer, so the SST method is `skip`, which
    needs no rsync or mariabackup. The node is a real wsrep node: wsrep_on=ON, the provider
    loaded, the cluster primary and synced.
    """

    def __init__(self, password: str = "s3cr3t-Pa55:w@rd/x") -> None:
        self.provider = galera_provider()
        super().__init__(password)
        # Galera's own ports (group communication, incremental state transfer, state transfer),
        # distinct from each other and from the server's.
        ports = {self.port}
        while len(ports) < 4:
            ports.add(free_port())
        self.gcomm_port, self.ist_port, self.sst_port = sorted(ports - {self.port})

    def _options(self) -> list[str]:
        provider = ";".join(
            (
                f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm_port}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                "gcache.size=16M",  # the default 128M is written out in full, in the datadir
            )
        )
        return [
            "--wsrep-on=ON",
            f"--wsrep-provider={self.provider}",
            "--wsrep-cluster-address=gcomm://",
            "--wsrep-cluster-name=migrate-test",
            f"--wsrep-provider-options={provider}",
            "--wsrep-node-address=127.0.0.1",
            f"--wsrep-node-incoming-address=127.0.0.1:{self.port}",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            "--wsrep-sst-method=skip",
            # What Galera requires of every node.
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--default-storage-engine=InnoDB",
        ]

    def _ready(self, deadline: float) -> None:
        # A node accepts clients before it has joined the cluster; until then it refuses most
        # statements ("WSREP has not yet prepared node for application use").
        while self.status("wsrep_ready") != "ON":
            if time.monotonic() > deadline:
                log = (self.root / "err.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the Galera node never became ready: {log}")
            time.sleep(0.05)  # a readiness poll, not an assertion

    def status(self, name: str) -> str:
        """A global status variable's value ("" when the server has none of that name)."""
        with self.admin() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cursor.fetchone()
        return str(row[1]) if row else ""

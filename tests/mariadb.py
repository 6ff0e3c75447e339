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
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--basedir={base}",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *(["--user=mysql"] if self._as_root else []),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.process: subprocess.Popen[bytes] | None = None

    # server lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.server,
                "--no-defaults",
                *(["--user=mysql"] if self._as_root else []),
                f"--datadir={self.data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.root}/sock",
                f"--pid-file={self.root}/pid",
                f"--log-error={self.root}/err.log",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=200",
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
        with self.admin() as cursor:
            # `%%`: the driver formats the statement with the password as its one parameter.
            cursor.execute(
                f"CREATE USER IF NOT EXISTS '{USER}'@'%%' IDENTIFIED BY %s", (self.password,)
            )
            cursor.execute(f"GRANT ALL ON *.* TO '{USER}'@'%'")

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

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        """A connection as the test user, autocommit."""
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password,
            database=database, connect_timeout=5, autocommit=True,
        )  # fmt: skip

    def url(self, database: str, scheme: str = "mysql", password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"{scheme}://{USER}:{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
        return name

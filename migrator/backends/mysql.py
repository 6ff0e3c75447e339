"""MySQL and MariaDB through PyMySQL: the connection, the named lock, limits, error meanings.

The lock is `GET_LOCK` taken on the very connection that runs the migrations: a named lock
lives as long as its session, so if the runner dies the server frees it, and it can never
outlive the work it protects (a lock on a second connection could be lost while the migrations
go on). MySQL caps lock names at 64 characters: the name is a short hash of the job's lock name,
and both are logged. Nothing wakes a waiter when the holder lets go, so waiters poll, with the
same backoff as on PostgreSQL and a shorter ceiling.

DDL commits implicitly on MySQL (`transactional_ddl = False`): a revision that fails halfway
leaves its earlier statements applied. The `failed` event gives the account of them (account.py)
and the version table's comment records the revision as half-applied (halfapplied.py): the
backend reads and writes that comment, `read_note` and `write_note`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pymysql.connections

from migrator.backends import UNSET, Backend, ConnectFailed, Limits, Lock, Raw, VersionTable
from migrator.digest import sha256
from migrator.errors import DatabaseRejected, LockNotHeld
from migrator.urls import DatabaseURL

# Connection errors that repeat on every attempt: access denied (1045, 1698), no such database
# (1049), no access to it (1044), a host not allowed (1130), a bad character set (1115, 2019).
# Everything else (2003 can't connect, 2005 unknown host, 2013 lost, 1040 too many connections,
# 1053 shutting down) can heal while the server comes up, and is waited out.
_PERMANENT = frozenset((1044, 1045, 1049, 1115, 1130, 1698, 2019))

# Error numbers, by what they mean to the job.
_MEANINGS = {
    1146: "missing_table",  # ER_NO_SUCH_TABLE
    # ER_LOCK_WAIT_TIMEOUT: a metadata lock (lock_wait_timeout) or a row lock
    # (innodb_lock_wait_timeout) not granted in time.
    1205: "lock_timeout",
    1969: "statement_timeout",  # MariaDB: max_statement_time exceeded
    3024: "statement_timeout",  # MySQL: max_execution_time exceeded
}
# Privileges and missing objects no retry changes: database, table, column, routine access
# denied, a privilege missing, an unknown database.
_REFUSED = frozenset((1044, 1045, 1049, 1142, 1143, 1227, 1370))

# A year, MySQL's default lock_wait_timeout: what "no limit" (0) means to the server.
_NO_LIMIT = 31536000
LOCK_PREFIX = "migrate_job_"


def lock_key(name: str) -> str:
    """The server's lock name for a lock name: stable, and within MySQL's 64 characters."""
    return LOCK_PREFIX + sha256(name.encode()).hexdigest()[:40]


class _Connection(pymysql.connections.Connection):  # type: ignore[misc]
    """PyMySQL's connection, keeping how it was opened: the canceller opens a second one."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        super().__init__(**options)

    def close(self) -> None:
        # A signal that lands inside PyMySQL's socket read makes PyMySQL drop the connection;
        # the job's own close afterwards must not fail (psycopg2's and sqlite3's never do).
        if self.open:
            super().close()


def _options(database: DatabaseURL, timeout: float) -> dict[str, Any]:
    parts = urlsplit(database.url)
    query = dict(parse_qsl(parts.query))
    options: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")),
        "charset": query.pop("charset", "utf8mb4"),
        "connect_timeout": max(1, round(timeout)),
        "autocommit": False,
    }
    if "unix_socket" in query:
        options["unix_socket"] = query.pop("unix_socket")
    ssl: dict[str, Any] = {key.removeprefix("ssl_"): value for key, value in query.items()}
    if ssl:
        if "check_hostname" in ssl:
            ssl["check_hostname"] = ssl["check_hostname"].lower() in ("1", "true", "yes")
        options["ssl"] = ssl
    return options


def _beside(raw: Raw, sql: str) -> Any:
    """Run one statement on a second connection to the same server; its first value."""
    other = pymysql.connect(**{**raw.options, "connect_timeout": 3, "autocommit": True})
    try:
        with other.cursor() as cursor:
            cursor.execute(sql)
            row = cursor.fetchone()
    finally:
        other.close()
    return row[0] if row else None


class MySQL(Backend):
    transactional_ddl = False
    no_history = (
        "on MySQL a schema of its own is another database, one the user did not name; a "
        "table beside the application's would show in autogenerate"
    )

    def quote(self, identifier: str) -> str:
        return f"`{identifier.replace('`', '``')}`"

    def connect(self, database: DatabaseURL, timeout: float) -> Raw:
        try:
            return _Connection(**_options(database, timeout))
        except pymysql.err.MySQLError as error:
            code = error.args[0] if error.args and isinstance(error.args[0], int) else 0
            message = " ".join(str(error.args[-1] if error.args else error).split())
            raise ConnectFailed(f"({code}) {message}", heals=code not in _PERMANENT) from None

    def prepare(self, raw: Raw) -> None:
        refused = self.refusal(raw)
        if refused is not None:
            raise refused

    def refusal(self, raw: Raw) -> DatabaseRejected | None:
        # Galera (MariaDB Cluster, Percona XtraDB Cluster) keeps GET_LOCK on the node that took
        # it: a runner connected to another node takes "the same" lock at the same time, and
        # both migrate. No lock the job can take there is proven safe, so it refuses, before
        # the lock and before any change. (Checked on a real node: tests/test_galera.py.)
        with raw.cursor() as cursor:
            cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
            row = cursor.fetchone()
        raw.rollback()
        if not row or str(row[1]).upper() != "ON":
            return None
        return DatabaseRejected(
            "the server is a Galera cluster node (wsrep_on=ON: MariaDB Cluster or Percona "
            "XtraDB Cluster), where GET_LOCK holds on one node only: two runners on two "
            "nodes would both migrate, so this job does not change a Galera cluster. "
            "Apply the migrations from exactly one place at a time instead: `upgrade "
            "--sql` writes them as SQL for one client on one node (never through a load "
            "balancer across nodes); current, status and history still work here",
            wsrep_on=True,
        )

    def lock(self, raw: Raw, database: DatabaseURL, name: str) -> Lock:
        return NamedLock(raw, name)

    def read_note(self, raw: Raw, table: VersionTable) -> str:
        with raw.cursor() as cursor:
            cursor.execute(
                "SELECT TABLE_COMMENT FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
                (table.schema, table.name),
            )
            row = cursor.fetchone()
        raw.rollback()
        return str(row[0] or "") if row else ""

    def uncommitted_rows(self, raw: Raw) -> int | None:
        # InnoDB's own count for this session's transaction (no row: no transaction, nothing
        # pending). Reading it takes the PROCESS privilege: without it, None, and the account
        # says what it cannot know.
        try:
            with raw.cursor() as cursor:
                cursor.execute(
                    "SELECT trx_rows_modified FROM information_schema.INNODB_TRX"
                    " WHERE trx_mysql_thread_id = CONNECTION_ID()"
                )
                row = cursor.fetchone()
        except pymysql.err.MySQLError:
            return None
        return int(row[0]) if row else 0

    def write_note(self, raw: Raw, table: VersionTable, note: str) -> None:
        quoted = ".".join(map(self.quote, filter(None, (table.schema, table.name))))
        with raw.cursor() as cursor:
            # DDL: it commits by itself, and what the session had open with it, as any DDL
            # statement of a revision would (metadata only, on a table of a few rows).
            cursor.execute(f"ALTER TABLE {quoted} COMMENT = %s", (note,))
        raw.commit()

    def canceller(self, raw: Raw) -> Callable[[], None]:
        # KILL QUERY stops the statement and keeps the session (and its lock) for the rollback
        # and release that follow.
        return lambda: _beside(raw, f"KILL QUERY {int(raw.thread_id())}")

    def lost(self, raw: Raw) -> bool:
        return not raw.open

    def classify(self, error: BaseException) -> str | None:
        driver_error = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's
        args = getattr(driver_error, "args", ())
        if not isinstance(driver_error, pymysql.err.MySQLError) or not args:
            return None
        code = args[0]
        if code in _MEANINGS:
            return _MEANINGS[code]
        return "refused" if code in _REFUSED else None

    def apply_limits(self, connection: Any, limits: Limits, own: object) -> None:
        lock = limits.ddl_lock_timeout if own is UNSET else float(own or 0)  # type: ignore[arg-type]
        # Whole seconds, at least one (the servers' unit), from validated floats.
        wait = max(1, round(lock)) if lock else _NO_LIMIT
        # The last bounds SELECT statements only: neither server stops DDL on it.
        if connection.dialect.is_mariadb:
            statement = f"max_statement_time = {limits.statement_timeout:.3f}"
        else:
            statement = f"max_execution_time = {int(limits.statement_timeout * 1000)}"
        # One statement, one round trip, before each revision (a revision may have changed them).
        waits = f"lock_wait_timeout = {wait}, innodb_lock_wait_timeout = {wait}"
        connection.exec_driver_sql(f"SET SESSION {waits}, {statement}")


class NamedLock(Lock):
    # Nothing wakes a waiter: polling is all there is, so it is more frequent than PostgreSQL's.
    LONGEST_PAUSE = 0.5

    def __init__(self, raw: Raw, name: str) -> None:
        self._raw = raw
        self.key = lock_key(name)

    def gone(self) -> bool:
        return not self._raw.open

    def _row(self, sql: str) -> dict[str, Any] | None:
        with self._raw.cursor() as cursor:
            cursor.execute(sql, (self.key,))
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description or ()]
        # At once: a waiter must hold no transaction (and no snapshot, no metadata lock).
        self._raw.rollback()
        return dict(zip(names, row, strict=True)) if row else None

    def _value(self, sql: str) -> Any:
        row = self._row(sql)
        return next(iter(row.values())) if row else None

    def try_acquire(self) -> bool:
        return bool(self._value("SELECT GET_LOCK(%s, 0)") == 1)

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def verify(self) -> None:
        if not self._value("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()"):
            raise LockNotHeld(
                f"the named lock {self.key} just taken is not held by this database session: "
                "a proxy multiplexes the connection (ProxySQL with multiplexing on for this "
                "user?). Migrate through a direct connection."
            )

    def holder(self) -> dict[str, Any] | None:
        return self._row(
            "SELECT p.ID AS pid, p.USER AS user, p.HOST AS host, p.COMMAND AS command,"
            " p.TIME AS time_s FROM information_schema.PROCESSLIST p"
            " WHERE p.ID = IS_USED_LOCK(%s)"
        )

    def release(self) -> bool:
        if not self._raw.open:
            return self._end_session()
        self._raw.rollback()
        return bool(self._value("SELECT RELEASE_LOCK(%s)") == 1)

    def _end_session(self) -> bool:
        """End our session from a second connection, and see its lock go with it.

        PyMySQL drops the connection when a signal lands in its socket read, but the server
        keeps the session, with its statement, its transaction and this lock, until the
        statement ends (a SLEEP(30): thirty seconds of a lock nobody holds).
        """
        session = int(self._raw.thread_id())
        if not _beside(self._raw, f"SELECT IS_USED_LOCK('{self.key}') = {session}"):
            return True  # the session, and the lock with it, is gone already
        with contextlib.suppress(pymysql.err.OperationalError):  # 1094: it ended meanwhile
            _beside(self._raw, f"KILL {session}")
        deadline = time.monotonic() + 5
        while _beside(self._raw, f"SELECT IS_USED_LOCK('{self.key}') = {session}"):
            if time.monotonic() > deadline:
                raise LockNotHeld(f"session {session} was killed but still holds {self.key}")
            time.sleep(0.05)
        return True


BACKEND = MySQL()

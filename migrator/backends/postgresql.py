"""PostgreSQL through psycopg2: the connection, the advisory lock, limits, and error meanings.

The lock is a session-level advisory lock taken on the very connection that runs the
migrations, so it lives exactly as long as the backend doing the work; if the runner dies, the
server frees it. We poll `pg_try_advisory_lock` instead of blocking in `pg_advisory_lock`: a
waiter blocked inside a transaction would deadlock with `CREATE INDEX CONCURRENTLY`, which waits
for every open transaction. Between polls a waiter sleeps on its connection, LISTENing: the
holder NOTIFYs as it releases the lock, so waiters wake at once instead of at their next poll
(polling remains for a holder that dies without a word).
"""

from __future__ import annotations

import functools
import math
import os
import re
import select
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

from migrator.backends import UNSET, Backend, ConnectFailed, Limits, Lock, Raw, Watch
from migrator.digest import sha256
from migrator.errors import ConfigError, LockNotHeld
from migrator.urls import DatabaseURL


def _import_psycopg2() -> ModuleType:
    """psycopg2, loaded without Python's `ssl` module: the one start-up trick, and why.

    At load, psycopg2 imports `ssl` only so that Python sets up libcrypto's locking callbacks
    before libpq would; OpenSSL 1.1 and later lock by themselves and libpq 14 and later ignore
    that setup. The import costs ~20 ms, a fifth of a run with nothing to do. When it fails,
    psycopg2 takes its own fallback (libpq sets up libcrypto, as for a Python built without
    ssl); libpq's TLS is untouched (tests/test_tls.py connects with sslmode=verify-full).
    `ssl` stays importable for everything loaded later.
    """
    if "ssl" in sys.modules:
        import psycopg2
    else:
        sys.modules["ssl"] = None  # type: ignore[assignment]  # makes `import ssl` fail
        try:
            import psycopg2
        finally:
            del sys.modules["ssl"]
    return psycopg2  # type: ignore[no-any-return]


psycopg2 = _import_psycopg2()

# libpq reports connection failures as text without an SQLSTATE, so the verdict reads the text.
# Whatever is not known to be permanent is retried until the deadline: a wrong verdict there
# costs a wait, while a wrong "permanent" would fail a deploy that would have healed. So these
# stay transient on purpose: an unknown host name (DNS converges while a Kubernetes Service or
# pod comes up), connection refused or reset, the server starting or shutting down, too many
# clients, `target_session_attrs` not met yet (a failover in progress), a GSSAPI credential
# cache not there yet (a kinit sidecar), and TLS EOFs (a network blip looks the same).
_PERMANENT_TEXT = (
    "|".join(
        (
            # credentials, names, access rules
            r"password authentication failed|authentication failed|no password supplied"
            r"|fe_sendauth|database \".*\" does not exist|role \".*\" does not exist"
            r"|no pg_hba\.conf entry|permission denied for database|requirepeer"
            r"|authentication method requirement",
            # the URL or its options: the same text on every attempt
            r"invalid dsn|invalid connection option|invalid integer value|invalid port number"
            r"|invalid \"?\w+\"? value|invalid uri|invalid percent-encoded|could not match \d+"
            r"|invalid ssl protocol version range|weak sslmode|host name must be specified"
            r"|unsupported frontend protocol",
            # server-side settings passed in `options`
            r"unrecognized configuration parameter|invalid value for parameter",
            # TLS asked for and not possible, or refused: the server's setup, not its state
            r"server does not support ssl|ssl was required|ssl not in use|channel binding"
            r"|server doesn't support gssapi encryption",
            # certificates and keys, ours or the server's (mounted files exist before the start)
            r"certificate verify failed|does not match host name|root certificate file"
            r"|certificate file|private key|ssl certificate|server did not request an ssl"
            r"|alert (unknown ca|bad certificate|certificate|unsupported certificate"
            r"|protocol version|handshake failure|access denied|decrypt error)",
        )
    ),
    re.IGNORECASE,
)


@functools.cache
def _permanent() -> re.Pattern[str]:
    """Compiled on the first failed connect only: compiling costs ~5 M instructions, and a run
    that connects at once never reads it."""
    return re.compile(*_PERMANENT_TEXT)


# SQLSTATEs, by what they mean to the job.
_MEANINGS = {"42P01": "missing_table", "55P03": "lock_timeout"}
_QUERY_CANCELED = "57014"
# Classes no retry changes: invalid authorization, invalid catalog name, access rule violation.
_REFUSED_CLASSES = ("28", "3D", "42")


def application_name() -> str:
    """How the runner shows up in pg_stat_activity: the pod's hostname identifies it."""
    return f"migrate-job@{os.uname().nodename}"[:63]


def lock_key(name: str) -> int:
    """The signed 64-bit advisory lock key for a lock name (stable across runs and hosts)."""
    return int.from_bytes(sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_channel(key: int) -> str:
    """The channel waiters LISTEN on and the holder NOTIFYs as it lets go."""
    # Unquoted identifiers fold to lower case; this one is lower case already.
    return f"migrate_job_{key & 0xFFFFFFFFFFFFFFFF:016x}"


class PostgreSQL(Backend):
    no_history = None  # the migrate_job schema (history.py)

    def connect(self, database: DatabaseURL, timeout: float) -> Raw:
        options: dict[str, Any] = {
            # libpq takes whole seconds; rounding up never makes a short timeout shorter.
            "connect_timeout": max(1, math.ceil(timeout)),
            # A silently dead peer is noticed in about a minute rather than the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        if "application_name=" not in database.url:
            options["application_name"] = application_name()
        # libpq reads the same URL SQLAlchemy does, once the driver name is out of the scheme.
        dsn = database.url.replace("postgresql+psycopg2://", "postgresql://", 1)
        try:
            return psycopg2.connect(dsn, **options)
        except psycopg2.OperationalError as error:
            message = " ".join(str(error).split())
            raise ConnectFailed(message, heals=not _permanent().search(message)) from None
        except psycopg2.ProgrammingError as error:
            message = " ".join(str(error).split())
            raise ConfigError(f"DATABASE_URL is not usable: {message}") from None

    def prepare(self, raw: Raw) -> None:
        if raw.server_version >= 140000:
            # If this runner is killed mid-statement, the backend checks its socket every few
            # seconds, stops, rolls back and frees the lock, instead of running on.
            with raw.cursor() as cursor:
                cursor.execute("SET client_connection_check_interval = '2s'")
            raw.commit()

    def lock(self, raw: Raw, database: DatabaseURL, name: str) -> Lock:
        return AdvisoryLock(raw, name)

    def canceller(self, raw: Raw) -> Callable[[], None]:
        cancel: Callable[[], None] = raw.cancel  # documented as safe from another thread
        return cancel

    def lost(self, raw: Raw) -> bool:
        return bool(raw.closed)

    def classify(self, error: BaseException) -> str | None:
        driver_error = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's
        code = getattr(driver_error, "pgcode", None) or ""
        if code in _MEANINGS:
            return _MEANINGS[code]
        if code == _QUERY_CANCELED and "statement timeout" in str(driver_error):
            return "statement_timeout"
        if code[:2] in _REFUSED_CLASSES:
            return "refused"
        return None

    def apply_limits(self, connection: Any, limits: Limits, own: object) -> None:
        lock = limits.ddl_lock_timeout if own is UNSET else float(own or 0)  # type: ignore[arg-type]
        # Whole milliseconds from validated floats: nothing user-written reaches the SQL text.
        # One round trip for both, before every revision (a revision may have changed them):
        # two would add ~0.4 ms a revision, a tenth of applying 300 (bench/).
        connection.exec_driver_sql(
            f"SET lock_timeout = {int(lock * 1000)}; "
            f"SET statement_timeout = {int(limits.statement_timeout * 1000)}"
        )

    def watch_blockers(
        self, raw: Raw, database: DatabaseURL, lock_timeout: float
    ) -> AbstractContextManager[Watch]:
        from migrator.backends import blockers  # only a run with work watches

        return blockers.watching(self, raw, database, lock_timeout)


class AdvisoryLock(Lock):
    # A runner holding the lock NOTIFYs as it lets go, which wakes the waiters at once: polling
    # is only for a holder that died without a word (the server frees its lock). A shorter
    # ceiling costs every waiter of a crowded deploy CPU taken from the runner doing the work.
    LONGEST_PAUSE = 1.0

    def __init__(self, raw: Raw, name: str) -> None:
        self._raw = raw
        self.key = lock_key(name)
        self.channel = lock_channel(self.key)

    def gone(self) -> bool:
        return bool(self._raw.closed)

    def _row(self, sql: str, **params: Any) -> dict[str, Any] | None:
        with self._raw.cursor() as cursor:
            cursor.execute(sql, {"key": self.key, **params})
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description]
        # Commit at once: nothing may sit in an open transaction while we wait (see above).
        self._raw.commit()
        return dict(zip(names, row, strict=True)) if row else None

    def _value(self, sql: str) -> Any:
        row = self._row(sql)
        return next(iter(row.values())) if row else None

    def try_acquire(self) -> bool:
        return bool(self._value("SELECT pg_try_advisory_lock(%(key)s)"))

    def listen(self, on: bool = True) -> None:
        # A session that listens and then sits in a long migration would hold back the
        # cluster's whole notification queue: the winner stops listening at once.
        with self._raw.cursor() as cursor:
            cursor.execute(f"{'LISTEN' if on else 'UNLISTEN'} {self.channel}")
        self._raw.commit()

    def pause(self, seconds: float) -> None:
        """Sleep until the holder's NOTIFY (or anything else) arrives, or `seconds` pass."""
        if self._raw.notifies:  # it arrived during a query: psycopg2 has already read it
            self._raw.notifies.clear()
            return
        readable, _, _ = select.select([self._raw], [], [], seconds)
        if readable:
            self._raw.poll()  # reads the notification, or notices a closed connection
            self._raw.notifies.clear()

    def _holder_row(self) -> dict[str, Any] | None:
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        # The functions behind the pg_locks and pg_stat_activity views: a new session expanding
        # the views loads their catalog entries first, ~1 ms of server CPU for each waiter.
        return self._row(
            "SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr,"
            " a.backend_start, a.state, l.pid = pg_backend_pid() AS ours"
            " FROM pg_lock_status() l, pg_stat_get_activity(l.pid) a"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.pid IS NOT NULL"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid = %(high)s AND l.objid = %(low)s AND l.objsubid = 1",
            high=unsigned >> 32,
            low=unsigned & 0xFFFFFFFF,
        )

    def verify(self) -> None:
        row = self._holder_row()
        if row is None or not row["ours"]:
            raise LockNotHeld(
                "the advisory lock just taken is not held by this database session: the "
                "connection goes through a pooler in transaction mode (PgBouncer "
                "pool_mode=transaction?), where session locks protect nothing. Migrate through "
                "a direct or session-pooled connection."
            )

    def holder(self) -> dict[str, Any] | None:
        row = self._holder_row()
        if row is None:
            return None
        since = row.pop("backend_start")
        row.pop("ours")
        return {**row, "since": since.isoformat() if since else None}

    def release(self) -> bool:
        self._raw.rollback()  # a failed revision may have left the transaction aborted
        # The notification goes out at the commit that follows, after the unlock itself.
        return bool(
            self._value(f"SELECT pg_advisory_unlock(%(key)s), pg_notify('{self.channel}', '')")
        )


BACKEND = PostgreSQL()

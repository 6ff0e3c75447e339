"""The migration lock: one runner migrates, the others wait and then find nothing to do.

PostgreSQL: a session-level advisory lock taken on the very connection that runs the migrations,
so it lives exactly as long as the backend doing the work; if the runner dies, the server frees
it. We poll `pg_try_advisory_lock` instead of blocking in `pg_advisory_lock`: a waiter blocked
inside a transaction would deadlock with `CREATE INDEX CONCURRENTLY`, which waits for every
open transaction. Between polls a waiter sleeps on its connection, LISTENing: the holder NOTIFYs
as it releases the lock, so waiters wake at once instead of at their next poll (polling remains
for a holder that dies without a word). SQLite: an exclusive `flock` on a file beside the
database gives the same guarantee to processes on one host.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from migrator.database import lost, sqlite_path
from migrator.errors import LockNotHeld, LockTimeout
from migrator.hashing import sha256
from migrator.logs import Log
from migrator.settings import DatabaseURL
from migrator.waiting import describe

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from typing import Any, Protocol

    from migrator.database import Raw

    class Lock(Protocol):
        LONGEST_PAUSE: float  # seconds between polls, at most

        def gone(self) -> bool: ...
        def try_acquire(self) -> bool: ...
        def listen(self, on: bool = True) -> None: ...
        def pause(self, seconds: float) -> None: ...
        def verify(self) -> None: ...
        def holder(self) -> dict[str, Any] | None: ...
        def release(self) -> bool: ...


HOLDER_LOOKUP_INTERVAL = 5.0  # seconds


def lock_key(name: str) -> int:
    """The signed 64-bit advisory lock key for a lock name (stable across runs and hosts)."""
    return int.from_bytes(sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_channel(key: int) -> str:
    """The channel waiters LISTEN on and the holder NOTIFYs as it lets go."""
    # Unquoted identifiers fold to lower case; this one is lower case already.
    return f"migrate_job_{key & 0xFFFFFFFFFFFFFFFF:016x}"


class AdvisoryLock:
    # A runner holding the lock NOTIFYs as it lets go, which wakes the waiters at once: polling
    # is only for a holder that died without a word (the server frees its lock). A shorter
    # ceiling costs every waiter of a crowded deploy CPU taken from the runner doing the work.
    LONGEST_PAUSE = 1.0

    def __init__(self, raw: Raw, name: str) -> None:
        self._raw = raw
        self.key = lock_key(name)
        self.channel = lock_channel(self.key)

    def gone(self) -> bool:
        return lost(self._raw)

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
        """Prove this session holds the lock; a transaction-mode pooler would break that."""
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


class FileLock:
    LONGEST_PAUSE = 0.25  # nothing wakes a waiter here: polling is all there is

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename}).encode())
        self._fd = fd
        return True

    def gone(self) -> bool:
        return False

    def listen(self, on: bool = True) -> None:
        """Waiters on one host poll the file; there is no channel to listen on."""

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def verify(self) -> None:
        """flock is held by the open descriptor itself: nothing can take it away."""

    def holder(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as file:
                return dict(json.loads(file.read() or "null") or {}) or None
        except (OSError, ValueError):
            return None

    def release(self) -> bool:
        if self._fd is None:
            return False
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None
        return True


def make_lock(raw: Raw, database: DatabaseURL, name: str) -> Lock:
    """The lock for this database (an in-memory SQLite database is refused before any lock)."""
    if database.dialect == "postgresql":
        return AdvisoryLock(raw, name)
    path = sqlite_path(database)
    if path is None:
        raise AssertionError("in-memory SQLite reached the lock: settings should refuse it")
    return FileLock(f"{path}.lock")


@contextmanager
def migration_lock(
    raw: Raw,
    database: DatabaseURL,
    *,
    name: str,
    timeout: float,
    log: Log,
    unneeded: Callable[[], bool] = lambda: False,
    waited: Callable[[float], None] = lambda seconds: None,
) -> Iterator[float | None]:
    """Hold the migration lock for the body; yields the seconds spent waiting for it.

    While waiting, `unneeded()` is asked between polls; once it says the work is done (another
    runner finished it), the wait ends without the lock and the body gets None. However the
    wait ends (the lock, the work done, a timeout, a signal), `waited` gets its seconds.
    """
    lock = make_lock(raw, database, name)
    started = time.monotonic()
    try:
        acquired = lock.try_acquire() or _Waiting(
            lock, name=name, timeout=timeout, log=log, started=started
        ).until_acquired(unneeded)
    finally:
        seconds = round(time.monotonic() - started, 3)
        waited(seconds)
    if not acquired:
        yield None
        return
    try:
        lock.verify()
        log.info("lock_acquired", lock=name, waited_s=seconds)
        yield seconds
    except BaseException:
        _release(lock, name, log)
        raise
    if not _release(lock, name, log):
        raise LockNotHeld(
            f"migration lock {name!r} was no longer held by this session at the end: the "
            "session changed under us (a transaction-mode pooler?). Migrate through a direct "
            "or session-pooled connection, and check the schema."
        )


class _Waiting:
    """Polls for the lock until it is ours, the work is done, or the timeout passes.

    Written by hand, not with tenacity (which the other retries use): every waiter of a crowded
    deploy runs this, and importing tenacity costs each ~35 ms of CPU, taken from the one runner
    doing the work (16 runners on 2 cores, bench/RESULTS.md).
    """

    # Full-jitter exponential backoff from 10 ms (the first poll also closes the window between
    # the failed attempt and LISTEN, when a NOTIFY could be missed) up to the lock's ceiling.
    FIRST = 0.01

    def __init__(self, lock: Lock, *, name: str, timeout: float, log: Log, started: float):
        self.lock, self.name, self.timeout, self.log = lock, name, timeout, log
        self.started, self.deadline = started, started + timeout
        self.holder: Any = object()  # the last holder logged
        self.next_look = 0.0

    def until_acquired(self, unneeded: Callable[[], bool]) -> bool:
        """True once the lock is held; False when `unneeded()` says the work got done."""
        self.lock.listen()
        ceiling = self.FIRST
        while True:
            self._report_holder()
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                holder = self.lock.holder()
                raise LockTimeout(
                    f"migration lock {self.name!r} not acquired within {self.timeout:g} s "
                    f"(MIGRATE_LOCK_TIMEOUT); held by {describe_holder(holder)}",
                    holder=holder,
                )
            self.lock.pause(min(random.uniform(self.FIRST, ceiling), remaining))  # noqa: S311
            ceiling = min(ceiling * 2, self.lock.LONGEST_PAUSE)
            # Work done first: woken by the NOTIFY, most waiters find it so, and leave without
            # taking the lock (and waking all the others again as they release it).
            if unneeded():
                return False
            if self.lock.try_acquire():
                self.lock.listen(on=False)
                return True

    def _report_holder(self) -> None:
        # Who holds the lock, looked up every few seconds rather than every poll: sixteen
        # waiters reading pg_stat_activity at every poll would load the server for nothing.
        if time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + HOLDER_LOOKUP_INTERVAL
        holder = self.lock.holder()
        if holder != self.holder:  # once per holder, not once per look
            self.holder = holder
            self.log.info(
                "lock_waiting",
                lock=self.name,
                holder=holder,
                waited_s=round(time.monotonic() - self.started, 3),
                timeout_s=self.timeout,
            )


def describe_holder(holder: dict[str, Any] | None) -> str:
    """The holder for a sentence: `pid 4242 (application_name web-1, state idle, ...)`."""
    if not holder:
        return "an unknown session"
    rest = ", ".join(f"{key} {value}" for key, value in holder.items() if key != "pid" and value)
    head = f"pid {holder['pid']}" if holder.get("pid") is not None else "a session"
    return f"{head} ({rest})" if rest else head


def _release(lock: Lock, name: str, log: Log) -> bool:
    """Give the lock back; False when it turns out we did not hold it."""
    try:
        held = lock.release()
    except Exception as error:
        # Either way the lock goes with the session: ours ends when the connection closes.
        by = "server" if lock.gone() else "closing the connection"
        log.warning("lock_released", lock=name, by=by, reason=describe(error))
        return True
    if held:
        log.info("lock_released", lock=name)
    else:
        log.error("lock_lost", lock=name, reason="the lock was not held at release")
    return held

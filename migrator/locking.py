"""The migration lock: one runner migrates, the others wait and then find nothing to do.

The lock itself is the backend's (an advisory lock on PostgreSQL, a flock beside a SQLite file);
acquiring, waiting, reporting who holds it, and releasing it are written once, here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from migrator import backoff
from migrator.backends import Lock, holder_text
from migrator.errors import LockNotHeld, LockTimeout
from migrator.failures import describe
from migrator.logs import Log

HOLDER_LOOKUP_INTERVAL = 5.0  # seconds


@contextmanager
def migration_lock(
    lock: Lock,
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
        log.info("lock_acquired", lock=name, key=lock.key, waited_s=seconds)
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
    """Polls for the lock until it is ours, the work is done, or the timeout passes."""

    def __init__(self, lock: Lock, *, name: str, timeout: float, log: Log, started: float):
        self.lock, self.name, self.timeout, self.log = lock, name, timeout, log
        self.started, self.deadline = started, started + timeout
        self.holder: Any = object()  # the last holder logged
        self.next_look = 0.0

    def until_acquired(self, unneeded: Callable[[], bool]) -> bool:
        """True once the lock is held; False when `unneeded()` says the work got done."""
        self.lock.listen()
        policy = backoff.Backoff(backoff.LOCK_FIRST, backoff.LOCK_FIRST, self.lock.LONGEST_PAUSE)
        pauses = policy.pauses(self.deadline)
        while True:
            self._report_holder()
            pause = next(pauses, None)
            if pause is None:
                holder = self.lock.holder()
                raise LockTimeout(
                    f"migration lock {self.name!r} not acquired within {self.timeout:g} s "
                    f"(MIGRATE_LOCK_TIMEOUT); held by {holder_text(holder)}",
                    holder=holder,
                )
            self.lock.pause(pause)
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
                key=self.lock.key,
                holder=holder,
                waited_s=round(time.monotonic() - self.started, 3),
                timeout_s=self.timeout,
            )


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

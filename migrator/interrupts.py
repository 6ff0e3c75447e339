"""SIGTERM and SIGINT become an exception, so unwinding rolls back and releases the lock.

Python runs a signal handler only when the main thread is back in the interpreter; while psycopg2
waits inside libpq for a long statement, it is not. So the C-level handler's wake-up byte is also
read by a small watcher thread, which cancels the running statement server-side (psycopg2's
`cancel()` is documented as safe from another thread). The statement ends at once, and the main
thread raises `Interrupted` and unwinds: the revision's transaction rolls back, the lock is
released, the final event is written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from migrator.errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _State:
    """Process-wide by nature: there is one set of signal handlers per process."""

    received: int | None = None
    cancel: Callable[[], None] | None = None


def install() -> None:
    """As PID 1 in a container there is no default SIGTERM handling: install our own."""
    for signum in SIGNALS:
        signal.signal(signum, _interrupt)
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    # A daemon: it blocks in read() for the whole run and must not hold the exit up.
    threading.Thread(target=_watch, args=(reader,), name="signals", daemon=True).start()


def shield() -> None:
    """From here on, termination signals are ignored: the job is writing its final event."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def received() -> int | None:
    """The signal that asked us to stop, if one did."""
    return _State.received


@contextmanager
def cancelling(cancel: Callable[[], None]) -> Iterator[None]:
    """While the body runs, a termination signal also calls `cancel` from the watcher thread."""
    _State.cancel = cancel
    try:
        yield
    finally:
        _State.cancel = None


def _interrupt(signum: int, _: FrameType | None) -> None:
    # The first signal starts an orderly exit; later ones must not break that cleanup halfway.
    shield()
    _State.received = _State.received or signum
    raise Interrupted(signum)


def _watch(reader: int) -> None:
    while data := os.read(reader, 16):
        signals = [number for number in data if number in SIGNALS]
        if not signals or _State.received is not None:
            continue
        _State.received = signals[0]
        cancel = _State.cancel
        if cancel is not None:
            # Best effort: if cancelling fails, the main thread still unwinds when it can.
            with contextlib.suppress(Exception):
                cancel()

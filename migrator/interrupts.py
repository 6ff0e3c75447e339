"""SIGTERM and SIGINT become an exception, so unwinding rolls back and releases the lock."""

from __future__ import annotations

import signal
from types import FrameType

from migrator.errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install() -> None:
    """As PID 1 in a container we get no default SIGTERM handling: we must install our own."""
    for signum in SIGNALS:
        signal.signal(signum, _interrupt)


def _interrupt(signum: int, _: FrameType | None) -> None:
    # The first signal starts an orderly exit; later ones must not break that cleanup halfway.
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)

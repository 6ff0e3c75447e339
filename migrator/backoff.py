"""The one retry policy: full-jitter exponential backoff that ends on a deadline.

Every loop that waits uses it: the database wait, the lock wait, await-head and the DDL retries.
Full jitter because many pods start at once and must not retry in step; cut at the deadline so
that the last attempt falls right on it, never early and never far past it.

Written here rather than taken from tenacity (which STYLE.md admires for policies as values):
importing tenacity costs about 36 ms of CPU (it imports asyncio), more than half of a whole run
with nothing to do, and every lock waiter of a crowded deploy would pay it, taking CPU from the
one runner doing the work. The policy itself is these few lines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import NamedTuple


class Backoff(NamedTuple):
    """Pause n is uniform(low, min(ceiling, start * 2**n)) seconds."""

    low: float
    start: float
    ceiling: float

    def pauses(self, deadline: float | None = None) -> Iterator[float]:
        """Pauses, each cut to end by `deadline` (monotonic seconds); none once it has passed."""
        import random  # only a run that waits needs it: ~1 ms of every run otherwise

        high = self.start
        while True:
            pause = random.uniform(self.low, max(self.low, high))  # noqa: S311 - jitter, not crypto
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                pause = min(pause, remaining)
            yield pause
            high = min(high * 2, self.ceiling)


# The policies, side by side.
# The database coming up is noticed within a second.
DATABASE = Backoff(low=0.05, start=0.1, ceiling=1.0)
# From 10 ms (the first poll also closes the window between the failed try and LISTEN, when a
# NOTIFY could be missed) up to the lock's own ceiling, which its backend sets.
LOCK_FIRST = 0.01
# A revision that hit lock_timeout: let the application transaction that held the table finish.
DDL = Backoff(low=0.0, start=0.5, ceiling=10.0)
# await-head polls a database that is being migrated by someone else: a steady pace.
AWAIT = Backoff(low=0.5, start=1.0, ceiling=1.0)

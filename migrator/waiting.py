"""Wait until the database accepts a connection, for exactly as long as the user allows."""

from __future__ import annotations

import time
from collections.abc import Callable

from migrator import backoff
from migrator.backends import ConnectFailed, Raw
from migrator.errors import DatabaseUnavailable
from migrator.logs import Log


def wait_for_database(connect: Callable[[], Raw], timeout: float, log: Log) -> Raw:
    """A live connection, or DatabaseUnavailable once `timeout` seconds have passed.

    A failure that cannot heal (a wrong password) is raised at once, as ConnectFailed; the
    failure boundary names it.
    """
    started = time.monotonic()
    pauses = backoff.DATABASE.pauses(deadline=started + timeout)
    attempt = 0
    while True:
        attempt += 1
        try:
            raw = connect()
        except ConnectFailed as error:
            if not error.heals:
                raise
            pause = next(pauses, None)
            if pause is None:
                raise DatabaseUnavailable(
                    f"database not reachable after {attempt} attempts in "
                    f"{time.monotonic() - started:.1f} s (MIGRATE_WAIT_TIMEOUT={timeout:g}): "
                    f"{error}"
                ) from None
            log.warning(
                "database_unavailable",
                attempt=attempt,
                error=str(error),
                retry_in_s=round(pause, 3),
                elapsed_s=round(time.monotonic() - started, 3),
            )
            time.sleep(pause)
            continue
        log.info("database_ready", attempts=attempt, waited_s=round(time.monotonic() - started, 3))
        return raw

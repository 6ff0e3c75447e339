"""Who blocks the migration's DDL on PostgreSQL: the sessions behind a `lock_timeout`.

`pg_blocking_pids()` answers only while our statement is still waiting; once `lock_timeout` fires
and the revision rolls back, nobody is blocking us any more. So while revisions run, a watcher
thread on a second connection of its own asks every fraction of the lock timeout, and keeps the
latest answer that named someone. Best effort by design: a watcher that cannot connect or query
only means the timeout is reported without names, never that the migration fails.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from migrator.backends import Backend, Raw, Watch
from migrator.urls import DatabaseURL

QUERY_CHARS = 120  # enough to recognise the statement; the rest is noise in a log line

# A string literal (possibly cut short by the truncation): another session's query may carry
# anything (a token, a customer's e-mail address), and the value is never what identifies it.
_LITERAL = re.compile(r"'(?:[^']|'')*(?:'|$)")

_BLOCKERS_SQL = (
    "SELECT a.pid, a.application_name, a.state, a.query_start, a.query"
    " FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(%s)) ORDER BY a.pid"
)


@contextmanager
def watching(
    backend: Backend, raw: Raw, database: DatabaseURL, lock_timeout: float
) -> Iterator[Watch]:
    """While the body runs, note who blocks the backend behind `raw`."""
    watch = Watch()
    try:
        side = backend.connect(database, timeout=2)
        side.autocommit = True  # no snapshot held open by the watcher
    except Exception:  # diagnostics only: the migration goes on without names
        yield watch
        return
    # A quarter of the lock timeout or finer, so even a short wait is seen a few times.
    interval = min(0.5, max(0.02, lock_timeout / 5)) if lock_timeout > 0 else 0.5
    stop = threading.Event()
    thread = threading.Thread(
        target=_poll,
        args=(side, raw.get_backend_pid(), watch, stop, interval),
        name="ddl-blockers",
        daemon=True,
    )
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        thread.join(timeout=2)
        with contextlib.suppress(Exception):
            side.close()


def _poll(side: Any, pid: int, watch: Watch, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        try:
            with side.cursor() as cursor:
                cursor.execute(_BLOCKERS_SQL, (pid,))
                names = [column[0] for column in cursor.description]
                rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except Exception:
            return  # the watcher's connection broke: stop watching, quietly
        watch.record([_session(row) for row in rows])


def _session(row: dict[str, Any]) -> dict[str, Any]:
    query = row.get("query")
    started = row.get("query_start")
    return {
        "pid": row["pid"],
        "application_name": row.get("application_name") or None,
        "state": row.get("state"),
        "query_start": started.isoformat() if started else None,
        "query": _LITERAL.sub("'…'", " ".join(query.split())[:QUERY_CHARS]) if query else None,
    }

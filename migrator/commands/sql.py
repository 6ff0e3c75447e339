"""`--sql`: the SQL a command would run, written to stdout; the database is never changed.

`upgrade --sql` without a range reads the database's revision first (read-only, no lock), so
that the script holds what `upgrade` would run there: the pending revisions only. An explicit
`FROM:TO` stays fully offline, and so does an in-memory SQLite URL, which has no revision.
"""

from __future__ import annotations

import sys

from migrator import project
from migrator.commands import Job, connected
from migrator.errors import DatabaseUnavailable

OFFLINE_WAY = (
    "upgrade --sql reads the database's revision to write only the pending revisions; to "
    "write SQL without a database, give the range FROM:TO, e.g. `upgrade --sql base:head` or "
    "`upgrade --sql <revision>:head`"
)


def write_sql(job: Job, kind: str, target: str) -> None:
    """The script for `kind` to `target` on stdout; the log says what it covers."""
    database = job.settings.require_database()  # the URL names the SQL dialect to write
    if kind != "upgrade" or ":" in target or database.in_memory:
        project.validate(job.project, target, kind)
        project.write_sql(job.project, kind, target, sys.stdout)
        return
    cheap = job.targets_recorded_head(target)
    if not cheap:
        project.validate(job.project, target, kind)  # a bad target exits 2 before any wait
    current = _read_current(job)
    job.outcome.revisions_before = job.outcome.revisions_after = current
    if cheap and current == job.known_heads:
        job.log.info("nothing_to_do", current=current)  # as `upgrade` says it: no SQL written
        return
    project.refuse_unknown(job.project, current)
    steps = project.pending(job.project, current, target)
    if not steps:
        job.log.info("nothing_to_do", current=current)
        return
    job.log.info("plan", current=current, steps=len(steps), revisions=steps)
    project.write_sql(job.project, kind, target, sys.stdout, current)


def _read_current(job: Job) -> list[str]:
    """The database's revisions, after the usual wait; exit 3 names the offline way."""
    try:
        with connected(job, read_only=True) as raw:
            return job.read_versions(raw)
    except DatabaseUnavailable as error:
        raise DatabaseUnavailable(f"{error}; {OFFLINE_WAY}", **error.details) from None

"""`history --runs`: the last runs the database's run history recorded, newest first."""

from __future__ import annotations

from migrator import history
from migrator.commands import Job, connected
from migrator.commands.recording import unavailable
from migrator.errors import UsageError

DEFAULT_LIMIT = 20
MOST = 1000


def runs(job: Job) -> None:
    """One `run` event per run, each with its steps; `history_unavailable` when there is none."""
    limit = _limit(job.request.options.get("limit"))
    with connected(job) as raw:
        opened = history.open_store(job.backend, raw, job.settings, write=False)
        if isinstance(opened, str):
            unavailable(job, opened)
            return
        found = opened.runs(limit)
    for run in found:
        job.log.info("run", **run)
    job.log.info("runs", count=len(found), limit=limit, recorded=opened.exists)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MOST:
        raise UsageError(f"history: --limit {raw!r} must be a whole number from 1 to {MOST}")
    return int(raw)

"""`status`: what `upgrade` would do here, and whether anything is wrong. Read-only: no lock.

Pending revisions are what `upgrade heads` would apply, every branch to its head; with one head
(the usual case) that is exactly `upgrade head`, which refuses several heads.
"""

from __future__ import annotations

from typing import Any

from migrator import project
from migrator.commands import Job, connected
from migrator.errors import NotUpToDate
from migrator.verdict import PENDING, UNKNOWN_REVISION, verdict


def status(job: Job) -> None:
    with connected(job, read_only=True) as raw:
        current = job.read_versions(raw)
    job.outcome.revisions_before = job.outcome.revisions_after = current
    if job.known_heads is not None and current == job.known_heads:
        # At the heads Alembic recorded at build time: nothing pending, nothing unknown, and
        # no need to load Alembic to say so (as `upgrade`'s no-op).
        _report(job, current, job.known_heads, unknown=[], pending=[])
        return
    heads = sorted(job.project.heads)
    unknown = project.unknown_revisions(job.project, current)
    # With an unknown revision there is nothing to plan from: Alembic cannot walk from it.
    pending = None if unknown else project.pending(job.project, current, "heads")
    _report(job, current, heads, unknown=unknown, pending=pending)


def _report(
    job: Job,
    current: list[str],
    heads: list[str],
    *,
    unknown: list[str],
    pending: list[dict[str, Any]] | None,
) -> None:
    """The `status` event, then the verdict's exit: 0, 7 (pending) or 2 (unknown)."""
    found = verdict(unknown=unknown, pending=pending)
    listed = None if pending is None else [_entry(step) for step in pending]
    job.log.info(
        "status", current=current, heads=heads, pending=listed, unknown=unknown, verdict=found
    )
    if found == UNKNOWN_REVISION:
        project.refuse_unknown(job.project, current)
    if found == PENDING and listed:
        revisions = [step["revision"] for step in listed]
        command = "upgrade head" if len(heads) == 1 else "upgrade heads"
        raise NotUpToDate(
            f"{len(revisions)} revision(s) pending: {', '.join(revisions)}; `{command}` "
            "applies them",
            current=current,
            heads=heads,
            pending=revisions,
            verdict=found,
        )


def _entry(step: dict[str, Any]) -> dict[str, Any]:
    return {"revision": step["revision"], "message": step["message"]}

"""`status`: what `upgrade` would do here, and whether anything is wrong. Read-only: no lock.

Pending revisions are what `upgrade heads` would apply, every branch to its head; with one head
(the usual case) that is exactly `upgrade head`, which refuses several heads.
"""

from __future__ import annotations

from typing import Any

from migrator import halfapplied, project
from migrator.backends import Raw
from migrator.commands import Job, connected
from migrator.errors import DatabaseRejected, NotUpToDate
from migrator.lineage import Verdict
from migrator.verdict import AHEAD, PENDING, verdict


def status(job: Job) -> None:
    with connected(job, read_only=True) as raw:
        current = job.read_versions(raw)
        refused = job.backend.refusal(raw)
        record = halfapplied.read(job.backend, raw, job.ini.versions)
        at_recorded_heads = job.known_heads is not None and current == job.known_heads
        unknown = [] if at_recorded_heads else project.unknown_revisions(job.project, current)
        lineage = _lineage(job, raw, current) if unknown else None
    # MySQL: a revision that failed halfway is reported (upgrade would refuse), not failed on.
    half = None if record is None else record.details
    job.outcome.revisions_before = job.outcome.revisions_after = current
    if at_recorded_heads:
        # At the heads Alembic recorded at build time: nothing pending, nothing unknown, and
        # no need to load Alembic to say so (as `upgrade`'s no-op).
        _report(job, current, job.known_heads or [], unknown=[], pending=[], half_applied=half)
        return
    heads = sorted(job.project.heads)
    # With an unknown revision there is nothing to plan from: Alembic cannot walk from it.
    pending = None if unknown else project.pending(job.project, current, "heads")
    _report(
        job,
        current,
        heads,
        unknown=unknown,
        pending=pending,
        half_applied=half,
        ahead=lineage,
        refused=refused,
    )


def _lineage(job: Job, raw: Raw, current: list[str]) -> Verdict:
    """Whether the recorded lineage proves the database ahead (recording.py), and if not, why."""
    from migrator.commands.recording import ahead_verdict, scripts_known

    heads = sorted(job.project.heads)
    return ahead_verdict(job, raw, current, heads, scripts_known(job))


def _report(
    job: Job,
    current: list[str],
    heads: list[str],
    *,
    unknown: list[str],
    pending: list[dict[str, Any]] | None,
    half_applied: dict[str, Any] | None,
    ahead: Verdict | None = None,
    refused: DatabaseRejected | None = None,
) -> None:
    """The `status` event, then the verdict's exit: 0, 7 (pending) or 2 (unknown, unless proven
    ahead or MIGRATE_DATABASE_AHEAD=assume; ahead with MIGRATE_DATABASE_AHEAD=error)."""
    assumed = job.settings.database_ahead == "assume"
    found = verdict(
        unknown=unknown, pending=pending, ahead=ahead is not None and (ahead.proven or assumed)
    )
    listed = [] if found == AHEAD else None if pending is None else [_entry(s) for s in pending]
    extra = {} if found != AHEAD or ahead is None else {"ahead": ahead.ahead or unknown}
    job.log.info(
        "status",
        current=current,
        heads=heads,
        pending=listed,
        unknown=unknown,
        verdict=found,
        half_applied=half_applied,
        **extra,
    )
    if ahead is not None:
        from migrator.commands.recording import report_ahead, unproven

        if ahead.proven:
            report_ahead(job, current, heads, ahead.ahead)
        else:
            unproven(job, current, heads, unknown, ahead.reason or "no proof")
    if found == PENDING and listed:
        revisions = [step["revision"] for step in listed]
        command = "upgrade head" if len(heads) == 1 else "upgrade heads"
        how = (
            f"`{command}` applies them" if refused is None else f"`{command}` refuses to: {refused}"
        )
        raise NotUpToDate(
            f"{len(revisions)} revision(s) pending: {', '.join(revisions)}; `{command}` {how}",
            current=current,
            heads=heads,
            pending=revisions,
            verdict=found,
        )


def _entry(step: dict[str, Any]) -> dict[str, Any]:
    return {"revision": step["revision"], "message": step["message"]}

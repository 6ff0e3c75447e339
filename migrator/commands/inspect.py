"""Commands that only read: `current` (the database), `heads` and `history` (the scripts)."""

from __future__ import annotations

from migrator.commands import Job, connected
from migrator.errors import UsageError


def current(job: Job) -> None:
    with connected(job) as raw:
        revisions = job.read_versions(raw)
    job.outcome.revisions_before = job.outcome.revisions_after = revisions
    # `current`, as in plan, nothing_to_do and awaiting_head; `revisions` is the old name, kept
    # as an alias for one release (README).
    job.log.info(
        "current",
        current=revisions,
        heads=job.heads,
        at_head=revisions == job.heads,
        revisions=revisions,
    )


def heads(job: Job) -> None:
    script = job.project.script
    job.log.info(
        "heads",
        heads=[
            {
                "revision": revision.revision,
                "message": revision.doc,
                "branch_labels": sorted(revision.branch_labels),
            }
            for revision in script.get_revisions("heads")
            if revision is not None
        ],
    )


def history(job: Job) -> None:
    if job.request.options.get("runs"):  # the database's run history, not the scripts'
        from migrator.commands.runs import runs

        runs(job)
        return
    if "limit" in job.request.options:
        raise UsageError("history: --limit applies to --runs only")
    script = job.project.script
    heads = set(script.get_heads())
    revisions = [
        {
            "revision": revision.revision,
            "down_revision": revision.down_revision,
            "message": revision.doc,
            "is_head": revision.revision in heads,
        }
        for revision in script.walk_revisions()
    ]
    job.log.info("history", revisions=revisions[::-1])

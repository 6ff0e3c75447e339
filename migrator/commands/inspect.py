"""Commands that only read: `current` (the database), `heads` and `history` (the scripts,
and with DATABASE_URL set, which of them the database has applied)."""

from __future__ import annotations

from migrator import halfapplied, project
from migrator.commands import Job, connected
from migrator.errors import UsageError


def current(job: Job) -> None:
    with connected(job, read_only=True) as raw:
        revisions = job.read_versions(raw)
        record = halfapplied.read(job.backend, raw, job.ini.versions)
    job.outcome.revisions_before = job.outcome.revisions_after = revisions
    # `current`, as in plan, nothing_to_do and awaiting_head; `revisions` is the old name, kept
    # as an alias for one release (README).
    job.log.info(
        "current",
        current=revisions,
        heads=job.heads,
        at_head=revisions == job.heads,
        revisions=revisions,
        # MySQL: a revision that failed halfway (null where none is, or none can be); reported,
        # not failed on: `current` is how one looks before repairing.
        half_applied=None if record is None else record.details,
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
    """Every revision, oldest first; with DATABASE_URL set, each marked applied or not.
    `--runs`: the database's run history instead (runs.py).

    With a URL, the database is read (after the usual wait, exit 3 if it never answers): a
    history that silently left the marks out would read as "nothing applied"."""
    if job.request.options.get("runs"):  # the database's run history, not the scripts'
        from migrator.commands.runs import runs

        runs(job)
        return
    if "limit" in job.request.options:
        raise UsageError("history: --limit applies to --runs only")
    script = job.project.script  # first: broken scripts exit 2 before any wait
    current = _current(job) if job.settings.database is not None else None
    heads = set(script.get_heads())
    revisions = [
        {
            "revision": revision.revision,
            "down_revision": revision.down_revision,
            "message": revision.doc,
            "is_head": revision.revision in heads,
        }
        for revision in script.walk_revisions()
    ][::-1]
    if current is None:
        job.log.info("history", revisions=revisions)
        return
    unknown = project.unknown_revisions(job.project, current)
    # A revision the scripts do not know may descend from any of them: no mark is a fact then.
    applied = None if unknown else project.applied(job.project, current)
    for revision in revisions:
        revision["applied"] = None if applied is None else revision["revision"] in applied
    job.log.info("history", revisions=revisions, current=current, unknown=unknown)
    project.refuse_unknown(job.project, current)


def _current(job: Job) -> list[str]:
    with connected(job, read_only=True) as raw:
        revisions = job.read_versions(raw)
    job.outcome.revisions_before = job.outcome.revisions_after = revisions
    return revisions

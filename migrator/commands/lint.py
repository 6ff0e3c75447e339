"""`lint`: the revisions checked offline, before they merge; no database is needed."""

from __future__ import annotations

from migrator.commands import Job


def lint(job: Job) -> None:
    """Exit 8 (LintFindings) when a revision would lock a table or break running pods."""
    from migrator.lint import lint as lint_revisions  # Alembic and squawk: only for lint

    options = job.request.options
    lint_revisions(
        job.settings.alembic_config,
        revisions=job.request.revision,
        since=options.get("since"),
        fmt=options.get("format", "json"),
        output_path=options.get("output"),
        pg_version=options.get("pg-version"),
        log=job.log,
    )

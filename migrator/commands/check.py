"""`check`: do the models and the database agree? Exit 7 with each difference if not."""

from __future__ import annotations

from migrator import project
from migrator.commands import Job, connected


def check(job: Job) -> None:
    with connected(job) as raw:
        current = job.read_versions(raw)
        with project.session(job.backend, raw, job.settings.require_database()) as connection:
            project.compare_models(job.project, connection, current)
    job.log.info("check", differences=[], up_to_date=True)

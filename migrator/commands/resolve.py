"""`resolve`: clear the record of a half-applied revision, once the user repaired the schema.

Only MySQL has such records (halfapplied.py): its DDL commits as it runs, so a revision that
failed halfway left statements applied, and upgrade, downgrade and stamp refuse until the user
has finished or undone them by hand and says so with `resolve`. The record is cleared under the
migration lock, so that no runner reads it half-way, and read back to prove it is gone. The
version table itself is not touched: `stamp` stays the tool for that.
"""

from __future__ import annotations

from migrator import halfapplied
from migrator.commands import Job, connected
from migrator.errors import MigrateError
from migrator.locking import migration_lock


def resolve(job: Job) -> None:
    database = job.settings.require_database()
    backend = job.backend
    if backend.transactional_ddl:
        # Nothing to look at: the job never writes a record there, by construction.
        job.log.info(
            "nothing_to_resolve",
            reason=f"{database.dialect} rolls a failed revision back with its transaction, "
            "DDL included: a revision is never half-applied there",
        )
        return
    versions = job.ini.versions
    with connected(job) as raw:
        backend.prepare(raw)
        lock = migration_lock(
            backend.lock(raw, database, job.lock_name),
            name=job.lock_name,
            timeout=job.settings.lock_timeout,
            log=job.log,
            waited=job.outcome.waited_for_lock,
        )
        with lock:
            current = job.read_versions(raw)
            job.outcome.revisions_before = job.outcome.revisions_after = current
            record = halfapplied.read(backend, raw, versions)
            if record is None:
                job.log.info(
                    "nothing_to_resolve", reason="no half-applied revision is recorded here",
                    current=current,
                )  # fmt: skip
                return
            backend.write_note(raw, versions, "")
            if halfapplied.read(backend, raw, versions) is not None:
                raise MigrateError("the half-applied record is still there after clearing it")
            job.log.info(
                "resolved",
                half_applied=record.details,
                current=current,
                next=f"the version table shows {', '.join(current) or 'base'}: if that is not "
                "what the schema now matches, run `stamp <revision>`",
            )

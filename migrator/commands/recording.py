"""The run history around a command that changes the database, once the lock is held.

Before any change: a database whose revision the scripts do not know is checked against the
recorded lineage (lineage.py): proven ahead of this image, `upgrade` has nothing to do (or, with
MIGRATE_DATABASE_AHEAD=error, exits 2); not proven, it exits 2 saying why. Then each applied
revision's recorded file digest is compared with this image's file (`revision_edited`; exit 2
with MIGRATE_VERIFY=strict). Afterwards the run's row records how it ended. None of this runs on
a run with nothing to do at head: that one ends before the lock (migrate.py `_finish_if_done`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from migrator import history, lineage
from migrator.backends import Raw
from migrator.commands import Job
from migrator.errors import ConfigError, RevisionError
from migrator.job import UNKNOWN

LAST_LOOK_TIMEOUT = 3.0  # seconds, as migrate.py's last look at the version table


class Run(NamedTuple):
    """`recorder`: writes the run's rows (None without a history). `done`: nothing to do."""

    recorder: history.Recorder | None
    done: bool


@contextmanager
def recorded(job: Job, raw: Raw, kind: str) -> Iterator[Run]:
    """The guards before any change, then the body, then the run's row, however it ended."""
    opened = history.open_store(job.backend, raw, job.settings, write=True)
    store, reason = (None, opened) if isinstance(opened, str) else (opened, None)
    if reason is not None:
        unavailable(job, reason)
    recorder = None
    if store is not None:
        table = ".".join(filter(None, (job.ini.versions.schema, job.ini.versions.name)))
        recorder = history.Recorder(
            store,
            job.outcome,
            table,
            job.settings.secrets,
            warn=lambda reason: job.log.warning("history_unwritten", reason=reason),
        )
    try:
        done = _guard(job, raw, kind, store, reason)
        yield Run(recorder, done)
    except BaseException as error:
        _finish(job, recorder, error)
        raise
    _finish(job, recorder, None)


def unavailable(job: Job, reason: str) -> None:
    """`history_unavailable`, once per run: a warning when something is wrong, else info."""
    expected = reason in ("MIGRATE_HISTORY=off", job.backend.no_history)
    (job.log.info if expected else job.log.warning)("history_unavailable", reason=reason)


def _finish(job: Job, recorder: history.Recorder | None, error: BaseException | None) -> None:
    if recorder is None:
        return
    database, seconds = job.settings.require_database(), job.settings.connect_timeout
    # Not when the last look at the version table found no database (UNKNOWN): no second wait.
    fresh = (
        None
        if job.outcome.revisions_after == UNKNOWN
        else lambda: job.backend.connect(database, min(seconds, LAST_LOOK_TIMEOUT))
    )
    why = recorder.finish(error, fresh=fresh)
    if why is not None:
        job.log.warning("history_unwritten", reason=why)


def _guard(job: Job, raw: Raw, kind: str, store: history.Store | None, reason: str | None) -> bool:
    """True when an upgrade has nothing to do because the database is ahead of the image."""
    if kind != "upgrade":
        return False  # downgrade and stamp keep their own checks (steps.refuse_unknown)
    current = job.read_versions(raw)
    known = scripts_known(job)
    unknown = [revision for revision in current if known(revision) is None]
    if unknown:
        _ahead(job, current, unknown, store, reason, known)
        return True
    _verify(job, store, reason, current)
    return False


def _ahead(  # noqa: PLR0917 - the facts _guard gathered
    job: Job,
    current: list[str],
    unknown: list[str],
    store: history.Store | None,
    reason: str | None,
    known: lineage.Known,
) -> None:
    """Returns when the database is proven ahead and that is accepted; raises otherwise."""
    job.outcome.revisions_before = job.outcome.revisions_after = current
    heads = sorted(job.project.heads)
    if store is None:
        why = f"there is no run history ({reason})"
    else:
        edges = {revision: row.down_revisions for revision, row in store.latest().items()}
        verdict = lineage.ahead_of(current, heads, edges, known)
        if verdict.proven:
            if report_ahead(job, current, heads, verdict.ahead):
                job.log.info("nothing_to_do", current=current)
            return
        why = verdict.reason or "no proof"
    unproven(job, current, heads, unknown, why)
    job.log.info("nothing_to_do", current=current)


def unproven(job: Job, current: list[str], heads: list[str], unknown: list[str], why: str) -> None:
    """A revision the scripts do not know, and no proof that it is ahead: accepted only with
    MIGRATE_DATABASE_AHEAD=assume (the user's word, logged as such); RevisionError otherwise."""
    if job.settings.database_ahead == "assume":
        job.log.warning(
            "database_ahead",
            current=current,
            heads=heads,
            ahead=unknown,
            count=len(unknown),
            proven=False,
            reason=why,
        )
        return
    raise RevisionError(
        f"the database's version table holds {', '.join(unknown)}, which this image's "
        "migrations do not contain. The database may be ahead of this image (migrated by a "
        f"newer one), but that cannot be proven: {why}. MIGRATE_DATABASE_AHEAD=assume treats "
        "it as ahead without proof (README: Database ahead of the image); otherwise deploy the "
        "image that migrated it, or, if the version table was edited, find the revision the "
        "schema really matches and run `stamp --purge <revision>`",
        unknown=unknown,
        reason=why,
    )


def await_ahead(job: Job, raw: Raw, current: list[str]) -> bool:
    """await-head, on revisions other than the image's heads: True when the database is ahead
    (proven by the recorded lineage, or assumed), False when it is behind (keep waiting), and
    RevisionError when it holds a revision this image does not know and that is not accepted:
    no wait can change that, so it is said at once rather than at the timeout."""
    if not current:
        return False
    off = "MIGRATE_HISTORY=off" if job.settings.history == "off" else None
    reason = job.backend.no_history or off
    if reason is None:
        verdict = ahead_verdict(job, raw, current, job.heads)
        if verdict.proven:
            return report_ahead(job, current, job.heads, verdict.ahead)
        why = verdict.reason or "no proof"
    else:
        why = f"there is no run history ({reason})"
    from migrator.project import unknown_revisions

    unknown = unknown_revisions(job.project, current)
    if not unknown:
        return False
    unproven(job, current, job.heads, unknown, why)
    return True


def ahead_verdict(
    job: Job, raw: Raw, current: list[str], heads: list[str], known: lineage.Known | None = None
) -> lineage.Verdict:
    """For the read-only commands: the lineage's verdict, from the history if there is one."""
    opened = history.open_store(job.backend, raw, job.settings, write=False)
    if isinstance(opened, str):
        return lineage.Verdict(False, [], f"there is no run history ({opened})")
    edges = {revision: row.down_revisions for revision, row in opened.latest().items()}
    return lineage.ahead_of(current, heads, edges, known or (lambda _: None))


def scripts_known(job: Job) -> lineage.Known:
    """The scripts' down_revisions of a revision they contain; None for one they do not."""
    script = job.project.script

    def known(revision: str) -> tuple[str, ...] | None:
        try:
            found = script.revision_map.get_revision(revision)
        except Exception:  # Alembic's "no such revision", whatever its class
            return None
        return None if found is None else _tuple(found.down_revision)

    return known


def report_ahead(job: Job, current: list[str], heads: list[str], ahead: list[str]) -> bool:
    """`database_ahead`; True when that is accepted, RevisionError when the setting refuses."""
    job.log.warning(
        "database_ahead", current=current, heads=heads, ahead=ahead, count=len(ahead), proven=True
    )
    if job.settings.database_ahead == "accept":
        return True
    raise RevisionError(
        f"the database is ahead of this image by {len(ahead)} revision(s) "
        f"({', '.join(ahead)}), migrated by a newer image, and MIGRATE_DATABASE_AHEAD=error "
        "refuses that: deploy the newer image, or set MIGRATE_DATABASE_AHEAD=accept to let an "
        "older image run against it",
        ahead=ahead,
        heads=heads,
    )


def _verify(
    job: Job, store: history.Store | None, reason: str | None, current: Sequence[str]
) -> None:
    """`revision_edited` for each applied revision whose file differs from the one applied."""
    strict = job.settings.verify == "strict"
    if store is None:
        if strict:
            job.outcome.revisions_before = job.outcome.revisions_after = list(current)
            raise ConfigError(
                f"MIGRATE_VERIFY=strict compares the applied revisions with the run history, "
                f"and there is none: {reason}"
            )
        return
    latest = store.latest()
    edited = []
    for script in job.project.script.iterate_revisions(tuple(current), "base"):
        row = latest.get(script.revision)
        if script.path is None or row is None or row.direction != "upgrade" or not row.sha256:
            continue  # never recorded (or last downgraded): unknown, not a mismatch
        image = history.file_digest(script.path)
        if image != row.sha256:
            edited.append(script.revision)
            job.log.warning(
                "revision_edited",
                revision=script.revision,
                file=script.path,
                recorded_sha256=row.sha256,
                image_sha256=image,
            )
    if edited and strict:
        job.outcome.revisions_before = job.outcome.revisions_after = list(current)
        raise RevisionError(
            f"{len(edited)} applied revision file(s) differ from the file applied then "
            f"({', '.join(edited)}): the databases they ran on may differ while their version "
            "tables agree. MIGRATE_VERIFY=strict stops before any change: restore the file as "
            "it was applied (or write a new revision for the change)",
            edited=edited,
        )


def _tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]

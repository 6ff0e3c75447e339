"""Commands that wait and never change anything: `wait` and `await-head`."""

from __future__ import annotations

import time
from collections.abc import Iterator

from migrator import backoff
from migrator.backends import Raw
from migrator.commands import Job, connected
from migrator.errors import DatabaseUnavailable, NotUpToDate

AWAIT_PROGRESS_INTERVAL = 5.0  # seconds between `awaiting_head` lines while nothing changes


def wait(job: Job) -> None:
    with connected(job):
        pass


def await_head(job: Job) -> None:
    """Poll until the database is at this image's head; never migrates, never locks.

    Exit 7 when the database answers but is not at head by the deadline; exit 3 when it never
    answered at all, because that is a different page for the on-call engineer.
    """
    started = time.monotonic()
    deadline = started + job.settings.await_timeout
    heads = job.heads
    pauses = backoff.AWAIT.pauses(deadline)
    seen: list[str] | None = None  # the last revisions read; None: the database never answered
    next_report = started
    while True:
        try:
            with connected(job, timeout=max(0.0, deadline - time.monotonic())) as raw:
                while (found := job.read_versions(raw)) != heads:
                    if found != seen and _ahead(job, raw, found):
                        job.outcome.revisions_after = found
                        return
                    now = time.monotonic()
                    # On every change, and at a steady pace meanwhile: never silent for long.
                    if found != seen or now >= next_report:
                        job.log.info(
                            "awaiting_head",
                            current=found,
                            heads=heads,
                            waited_s=round(now - started, 3),
                            timeout_s=job.settings.await_timeout,
                        )
                        next_report = now + AWAIT_PROGRESS_INTERVAL
                    seen = found
                    _pause(pauses, seen, heads)
        except DatabaseUnavailable as error:
            if seen is None and time.monotonic() >= deadline:
                raise
            job.log.warning("database_unavailable", error=str(error))  # broke between polls
            _pause(pauses, seen, heads)
            continue
        job.outcome.revisions_after = found
        job.log.info("up_to_date", current=found, revisions=found)  # revisions: old name
        return


def _ahead(job: Job, raw: Raw, found: list[str]) -> bool:
    """Whether the database is ahead of this image: then it is as good as at head (recording.py
    says when; it raises when the database holds a revision this image cannot accept)."""
    from migrator.commands.recording import await_ahead

    return await_ahead(job, raw, found)


def _pause(pauses: Iterator[float], current: list[str] | None, heads: list[str]) -> None:
    pause = next(pauses, None)
    if pause is None:
        raise NotUpToDate(
            f"the database did not reach head {heads} within MIGRATE_AWAIT_TIMEOUT (--timeout)",
            current=current,
            heads=heads,
        )
    time.sleep(pause)

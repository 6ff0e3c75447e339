"""The commands, one module per kind, each a composition of the steps: wait -> lock -> run.

`Job` is what every command gets: the request, the settings, the log, the outcome, and the
project's facts, each read once and only when a command needs it. Waiting, locking and reading
versions use the driver alone; the project (Alembic, SQLAlchemy) is loaded through its gateway
only by commands that have work for it, so a run with nothing to do never pays for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING

from migrator import interrupts
from migrator.backends import Backend, Raw, for_database
from migrator.failures import Scene, translated
from migrator.heads import recorded_heads
from migrator.ini import AlembicIni
from migrator.job import Outcome, Request
from migrator.logs import Log
from migrator.project import load as load_project
from migrator.settings import Settings
from migrator.waiting import wait_for_database

if TYPE_CHECKING:  # the heavy module, for annotations only
    from migrator.project.loading import Project


class Job:
    """One run of one command: what was asked, with what, reporting to where."""

    def __init__(self, request: Request, settings: Settings, log: Log, outcome: Outcome) -> None:
        self.request, self.settings, self.log, self.outcome = request, settings, log, outcome

    def for_database(self, settings: Settings, log: Log) -> Job:
        """The same command on another database of the same project (a fleet's target): the
        project's facts read so far are shared, the database's are its own."""
        job = Job(self.request, settings, log, Outcome(self.request.command))
        for fact in ("ini", "known_heads"):  # cached_property keeps its value in __dict__
            if fact in self.__dict__:
                job.__dict__[fact] = self.__dict__[fact]
        return job

    @cached_property
    def ini(self) -> AlembicIni:
        return AlembicIni.read(self.settings.alembic_config)

    @cached_property
    def known_heads(self) -> list[str] | None:
        """The scripts' heads as Alembic found them at build time, if the files are unchanged."""
        return recorded_heads(self.ini)

    @cached_property
    def project(self) -> Project:
        database = self.settings.database
        return load_project(
            self.settings.alembic_config, self.log, database.url if database else None
        )

    @cached_property
    def backend(self) -> Backend:
        return for_database(self.settings.require_database())

    @property
    def heads(self) -> list[str]:
        return self.known_heads if self.known_heads is not None else sorted(self.project.heads)

    def targets_recorded_head(self, target: str) -> bool:
        """Whether `target` is the one head recorded at build time (`head`, or its id): then
        "is there anything to do?" needs the driver alone."""
        single = self.known_heads if self.known_heads and len(self.known_heads) == 1 else None
        return single is not None and target in ("head", single[0])

    @property
    def lock_name(self) -> str:
        return self.settings.lock_name or self.ini.versions.lock_name

    def read_versions(self, raw: Raw) -> list[str]:
        return self.backend.read_versions(raw, self.ini.versions)


@contextmanager
def connected(job: Job, timeout: float | None = None, *, read_only: bool = False) -> Iterator[Raw]:
    """A connection once the database accepts one; closed on the way out, whatever happens.

    `read_only`: the command only reads, so it must not create the database (a SQLite file)."""
    database = job.settings.require_database()
    backend = job.backend
    wait = job.settings.wait_timeout if timeout is None else timeout
    connect = backend.connect_to_read if read_only else backend.connect
    with translated(Scene(backend=backend)):
        raw = wait_for_database(
            lambda: connect(database, job.settings.connect_timeout), wait, job.log
        )
    try:
        with (
            translated(Scene(backend=backend, raw=raw)),
            interrupts.cancelling(backend.canceller(raw)),
        ):
            yield raw
    finally:
        raw.close()

"""The gateway to the user's Alembic project: the one way in to Alembic and SQLAlchemy.

Every function here imports the heavy modules it hands over to when it is called, not before;
so a run with nothing to do, which calls none of them, never pays for Alembic or SQLAlchemy
(about 0.8 s of CPU). `load` comes first in any run that calls them, and it routes the stdlib's
log records (Alembic's, SQLAlchemy's) through the job's chain before either is imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from migrator.backends import Backend, Raw
from migrator.logs import Log
from migrator.urls import DatabaseURL

if TYPE_CHECKING:  # the heavy modules, for annotations only
    from sqlalchemy import Connection

    from migrator.project.loading import Project


def load(config_path: str, log: Log, database_url: str | None) -> Project:
    """The project as Alembic's CLI reads it, with the job's URL handed to its env.py."""
    log.route_stdlib()  # their stdlib records go through our chain, until env.py says otherwise
    from migrator.project.loading import load_project

    return load_project(config_path, log, database_url)


def validate(project: Project, target: str, kind: str) -> None:
    """Refuse a target the scripts cannot reach, before waiting for anything."""
    from migrator.project.steps import validate_target

    validate_target(project, target, kind)


@contextmanager
def session(backend: Backend, raw: Raw, database: DatabaseURL) -> Iterator[Connection]:
    """SQLAlchemy on the connection the job already holds (and locks on)."""
    with backend.sqlalchemy(raw, database).connect() as connection:
        yield connection


def migrate(
    project: Project, connection: Connection, kind: str, target: str, **kw: Any
) -> list[str]:
    """Run `kind` to `target` on the locked connection; the verified heads after it."""
    from migrator.project.migrating import migrate as run

    return run(project, connection, kind, target, **kw)


def write_sql(
    project: Project, kind: str, target: str, output: TextIO, start: list[str] | None = None
) -> None:
    """`--sql`: the script for `kind` to `target` (from `start`, the database's revisions when
    they were read), written to `output`."""
    from migrator.project.offline import write_sql as write

    write(project, kind, target, output, start)


def unknown_revisions(project: Project, current: list[str]) -> list[str]:
    """The database's revisions that the scripts do not contain."""
    from migrator.project.steps import unknown_revisions as unknown

    return unknown(project, current)


def refuse_unknown(project: Project, current: list[str]) -> None:
    """RevisionError (exit 2) naming the database's revisions that the scripts do not contain."""
    from migrator.project.steps import refuse_unknown as refuse

    refuse(project, current)


def pending(project: Project, current: list[str], target: str) -> list[dict[str, Any]]:
    """The steps `upgrade target` would take from `current`, in order (each as `plan` logs it)."""
    from migrator.project.steps import pending as steps

    return steps(project, current, target)


def applied(project: Project, current: list[str]) -> set[str]:
    """The revisions a database at `current` has applied: those and their ancestors."""
    from migrator.project.steps import applied as ancestors

    return ancestors(project, current)


def compare_models(project: Project, connection: Connection, current: list[str]) -> None:
    """`check`: NotUpToDate lists each difference between the models and the database."""
    from migrator.project.checking import compare_models as compare

    compare(project, connection, current)

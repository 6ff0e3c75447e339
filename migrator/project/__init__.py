"""The gateway to the user's Alembic project: the one way in to Alembic and SQLAlchemy.

`load` is the only entry. It first routes the stdlib's log records (Alembic's, SQLAlchemy's)
through the job's chain, then imports the heavy modules; so a run with nothing to do, which
never calls it, never pays for either (about 0.8 s of CPU), and a run that does cannot forget
the logging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from migrator.logs import Log

if TYPE_CHECKING:  # the heavy module, for annotations only
    from migrator.project.loading import Project


def load(config_path: str, log: Log, database_url: str | None) -> Project:
    """The project as Alembic's CLI reads it, with the job's URL handed to its env.py."""
    log.route_stdlib()  # their stdlib records go through our chain, until env.py says otherwise
    from migrator.project.loading import load_project

    return load_project(config_path, log, database_url)

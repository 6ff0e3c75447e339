"""`--sql`: the SQL a command would run, written out; no database is touched."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TextIO

from migrator.failures import Scene, translated
from migrator.project.environment import JobEnvironment, refuse_multidb
from migrator.project.loading import Project
from migrator.project.steps import plan


def write_sql(
    project: Project, kind: str, target: str, output: TextIO, current: list[str] | None = None
) -> None:
    """The script for `kind` to `target` (FROM:TO; else from `current`, the database's
    revisions, or from base) written to `output`."""
    start, _, destination = target.rpartition(":")
    starting: str | tuple[str, ...] | None = start or None
    if not start and current is not None:
        starting = tuple(current)
    with translated(Scene(scripts=project.script.dir)):
        write_steps(
            project,
            lambda heads: plan(project.script, kind, destination, heads),
            starting,
            output,
        )


def write_steps(
    project: Project,
    steps: Callable[[tuple[str, ...]], Sequence[Any]],
    start: str | tuple[str, ...] | None,
    output: TextIO,
) -> None:
    """The script of `steps` (planned from `start`, one revision or several) to `output`.

    The project's own errors come out as they are: lint reports a revision that fails offline
    as a finding, where --sql fails the run."""
    project.config.output_buffer = output
    refuse_multidb(project.config)
    with JobEnvironment(
        project.config,
        project.script,
        connection=None,
        fn=lambda heads, _: steps(heads),
        as_sql=True,
        starting_rev=start,
    ):
        project.script.run_env()

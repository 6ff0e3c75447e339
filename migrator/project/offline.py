"""`--sql`: the SQL a command would run, written out; no database is touched."""

from __future__ import annotations

from typing import TextIO

from migrator.failures import Scene, translated
from migrator.project.environment import JobEnvironment, refuse_multidb
from migrator.project.loading import Project
from migrator.project.steps import plan


def write_sql(project: Project, kind: str, target: str, output: TextIO) -> None:
    """The script for `kind` to `target` (FROM:TO, or from base) written to `output`."""
    start, _, destination = target.rpartition(":")
    project.config.output_buffer = output
    refuse_multidb(project.config)
    with (
        translated(Scene(scripts=project.script.dir)),
        JobEnvironment(
            project.config,
            project.script,
            connection=None,
            fn=lambda heads, _: plan(project.script, kind, destination, heads),
            as_sql=True,
            starting_rev=start or None,
        ),
    ):
        project.script.run_env()

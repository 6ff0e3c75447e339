"""The project, loaded once per run: its configuration and its scripts, as Alembic reads them."""

from __future__ import annotations

import os
from typing import NamedTuple, TextIO, cast

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import coerce_resource_to_filename

from migrator.errors import ProjectError
from migrator.failures import Scene, translated
from migrator.ini import AlembicIni, config_files
from migrator.logs import Log, LogWriter
from migrator.project.environment import hand_over


class Project(NamedTuple):
    """The Alembic configuration and script directory."""

    config: Config
    script: ScriptDirectory

    @property
    def heads(self) -> list[str]:
        return list(self.script.get_heads())


def load_project(config_path: str, log: Log, database_url: str | None = None) -> Project:
    """alembic.ini, and pyproject.toml's [tool.alembic], as Alembic's CLI reads them."""
    ini, toml = config_files(config_path)
    config = Config(ini, toml_file=toml, stdout=cast(TextIO, LogWriter(log)))
    config.attributes["database_url"] = database_url
    with translated(Scene(reading=config_path)):
        AlembicIni.read(config_path)  # Alembic's reader skips an unreadable file silently
        if database_url:
            hand_over(config, database_url)
        _require_scripts(config, config_path)
        script = ScriptDirectory.from_config(config)
        script.revision_map.heads  # noqa: B018 - builds the map now: a broken chain fails here
    return Project(config, script)


def _require_scripts(config: Config, config_path: str) -> None:
    """A missing script directory, said plainly: Alembic's own error advises `alembic init`,
    which would start a new, empty history beside the real one."""
    location = config.get_alembic_option("script_location")
    if location is None:
        raise ProjectError(
            f"{config_path} sets no script_location in its [alembic] section: set it to the "
            "directory holding env.py and versions/, e.g. script_location = %(here)s/migrations"
        )
    directory = str(coerce_resource_to_filename(location))
    if not os.path.isdir(directory):
        resolved = f" ({directory})" if directory != location else ""
        raise ProjectError(
            f"script_location {location!r}{resolved} in {config_path} is not a directory: "
            "check the path, or mount the migrations there"
        )

"""What alembic.ini (and pyproject.toml's [tool.alembic]) says, read cheaply: no Alembic.

With migrator/heads.py this is what lets a run with nothing to do stop after one query.
"""

from __future__ import annotations

import configparser
import os
from typing import NamedTuple

from migrator.backends import VersionTable
from migrator.failures import Scene, translated


def config_files(path: str) -> tuple[str | None, str | None]:
    """alembic.ini and pyproject.toml, as Alembic's CLI pairs them (1.16+): ALEMBIC_CONFIG names
    either one; the other is read when it sits beside it. Beside, not in the working directory
    as the CLI looks: a job's working directory is wherever the orchestrator started it."""
    directory = os.path.dirname(path)
    if os.path.basename(path) == "pyproject.toml":
        ini = os.path.join(directory, "alembic.ini")
        return (ini if os.path.isfile(ini) else None), path
    toml = os.path.join(directory, "pyproject.toml")
    return path, (toml if os.path.isfile(toml) else None)


def _tool_alembic(path: str | None, here: str) -> dict[str, object]:
    """pyproject.toml's [tool.alembic], with %(here)s filled in as Alembic fills it."""
    if path is None:
        return {}
    import tomllib  # only projects that keep their settings there pay for it

    try:
        with open(path, "rb") as file:
            table = tomllib.load(file).get("tool", {}).get("alembic", {})
    except (OSError, ValueError):
        return {}  # Alembic reads it again, and says what is wrong with it
    if not isinstance(table, dict):
        return {}
    return {
        key: value % {"here": here} if isinstance(value, str) else value
        for key, value in table.items()
    }


class AlembicIni(NamedTuple):
    """The few alembic.ini settings the runner needs before (or instead of) loading Alembic."""

    script_location: str | None
    # Layouts only Alembic reads: other or nested version directories, bytecode-only revisions.
    other_layout: bool
    version_table: str
    version_table_schema: str | None

    @classmethod
    def read(cls, path: str) -> AlembicIni:
        # The file's own directory, as for Alembic's %(here)s: a symlinked alembic.ini (a
        # ConfigMap mount) keeps the directory of the link, not its target's.
        here = os.path.realpath(os.path.dirname(path))
        ini, toml = config_files(path)
        parser = configparser.ConfigParser(defaults={"here": here})
        with translated(Scene(reading=ini or path)):
            if ini is not None:
                # Not parser.read(): it skips a file it cannot open, silently (so does Alembic's).
                with open(ini, encoding="utf-8") as file:
                    parser.read_file(file, ini)
            section = dict(parser["alembic"]) if parser.has_section("alembic") else {}
        # As Alembic does: the ini's [alembic] first, then [tool.alembic]; that one only when
        # the ini does not locate the scripts (tomllib imports typing: ~4 ms of a no-op).
        tool = _tool_alembic(None if "script_location" in section else toml, here)

        def setting(name: str) -> object:
            return section.get(name, tool.get(name))

        location = setting("script_location")
        return cls(
            # "package:dir" locations are resolved by Alembic only.
            script_location=location
            if isinstance(location, str) and location and ":" not in location
            else None,
            other_layout=bool(setting("version_locations"))
            or any(
                str(setting(option) or "false").strip().lower() in ("true", "1", "yes", "on")
                for option in ("recursive_version_locations", "sourceless")
            ),
            version_table=str(setting("version_table") or "alembic_version"),
            version_table_schema=str(setting("version_table_schema") or "") or None,
        )

    @property
    def versions(self) -> VersionTable:
        return VersionTable(self.version_table, self.version_table_schema)

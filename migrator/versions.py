"""Where the database is, and what alembic.ini says, read cheaply: no Alembic, no SQLAlchemy.

With migrator/heads.py this is what lets a run with nothing to do stop after one query.
"""

from __future__ import annotations

import configparser
import os
from contextlib import contextmanager

from migrator.database import missing_table
from migrator.errors import ProjectError
from migrator.records import Record

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from collections.abc import Iterator

    from migrator.database import Raw


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


class AlembicIni(Record):
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
        with loading_errors(ini or path):
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
    def lock_name(self) -> str:
        if self.version_table_schema:
            return f"alembic:{self.version_table_schema}.{self.version_table}"
        return f"alembic:{self.version_table}"


@contextmanager
def loading_errors(path: str) -> Iterator[None]:
    """alembic.ini, or a script it leads to, that cannot be read or loaded: the user's to fix.

    Without this, a typo in a revision file or an unreadable ini ends as exit 1 ("a bug in the
    job") with a traceback, and the chart retries what can never succeed.
    """
    try:
        yield
    except configparser.Error as error:
        # The first line says what is wrong; the rest quotes the file's line.
        what = str(error).splitlines()[0].rstrip(".")
        line = getattr(error, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ProjectError(f"{path} is not a valid ini file: {what}{where}") from None
    except UnicodeDecodeError:
        raise ProjectError(f"{path} is not UTF-8 text") from None
    except OSError as error:
        raise ProjectError(f"cannot read {error.filename or path}: {error.strerror}") from None
    except SyntaxError as error:
        raise ProjectError(
            f"cannot load {error.filename}: {error.__class__.__name__} at line {error.lineno}: "
            f"{error.msg}"
        ) from None
    except ImportError as error:
        raise ProjectError(
            f"cannot load {_loading_file(error)}: {error.__class__.__name__}: {error}"
        ) from None


def _loading_file(error: BaseException) -> str:
    """The script whose import raised: the outermost module-level frame of the traceback."""
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "<module>":
            return f"{code.co_filename}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return "a migration script"


def current(raw: Raw, ini: AlembicIni) -> list[str]:
    """The revisions in the version table; [] when there is no table yet."""
    table = ini.version_table
    qualified = f"{ini.version_table_schema}.{table}" if ini.version_table_schema else table
    # The name comes from alembic.ini, not from a user of the job; quote it all the same.
    quoted = ".".join(f'"{part}"' for part in qualified.split("."))
    cursor = raw.cursor()
    try:
        cursor.execute(f"SELECT version_num FROM {quoted}")  # one query, whatever the case
        rows = cursor.fetchall()
    except Exception as error:
        if not missing_table(error):
            raise
        rows = []
    finally:
        cursor.close()
    raw.rollback()  # a poller must not keep a transaction (and its snapshot) open
    return sorted(row[0] for row in rows)

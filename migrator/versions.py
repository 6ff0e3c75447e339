"""Where the database is and where the scripts end, read cheaply: no Alembic, no SQLAlchemy.

This is what lets a run with nothing to do stop after one query. It must never be wrong in the
direction that matters: `script_heads` answers None whenever it is not certain (a revision file
it cannot read plainly, dependencies, other version locations), and the caller then takes
Alembic's full path. It only ever decides "nothing to do"; all real work goes through Alembic.
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path
from typing import NamedTuple

from migrator.database import Raw, missing_table

# Every line that starts with one of the names (the text is read with a newline in front). The
# leading newline is a literal the regex engine scans for quickly: ~20x faster than `^` with
# re.MULTILINE, which matters at hundreds of revisions.
_MENTION = re.compile(r"\n(revision|down_revision|depends_on)\b")
# What must follow a mention: `[: annotation] = value  # comment`. Any other form
# (`down_revision += ...`) is one that only running the file resolves.
_ASSIGNMENT = re.compile(r"\s*(?::[^=\n]*)?=\s*(?P<value>.+?)\s*(?:#.*)?$", re.MULTILINE)
_PLAIN = re.compile(r"""None|(['"])([\w.-]+)\1""")  # what nearly every file holds: cheap to read


def _literal(value: str) -> object:
    plain = _PLAIN.fullmatch(value)
    if plain:
        return plain.group(2)  # None when the value is None
    import ast  # only merge revisions need it

    return ast.literal_eval(value)  # tuples and lists of revisions, for merges


class AlembicIni(NamedTuple):
    """The few alembic.ini settings the runner needs before (or instead of) loading Alembic."""

    script_location: Path | None
    # Layouts only Alembic reads: other or nested version directories, bytecode-only revisions.
    other_layout: bool
    version_table: str
    version_table_schema: str | None

    @classmethod
    def read(cls, path: Path) -> AlembicIni:
        parser = configparser.ConfigParser(defaults={"here": str(path.parent.resolve())})
        parser.read(path, encoding="utf-8")
        section = parser["alembic"] if parser.has_section("alembic") else {}
        location = section.get("script_location")
        return cls(
            # "package:dir" locations are resolved by Alembic only.
            script_location=Path(location) if location and ":" not in location else None,
            other_layout=bool(section.get("version_locations"))
            or any(
                section.get(option, "false").strip().lower() in ("true", "1", "yes", "on")
                for option in ("recursive_version_locations", "sourceless")
            ),
            version_table=section.get("version_table") or "alembic_version",
            version_table_schema=section.get("version_table_schema") or None,
        )

    @property
    def lock_name(self) -> str:
        if self.version_table_schema:
            return f"alembic:{self.version_table_schema}.{self.version_table}"
        return f"alembic:{self.version_table}"


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


def script_heads(ini: AlembicIni) -> list[str] | None:
    """The head revisions of the script directory, or None when a plain reading is not certain."""
    if ini.script_location is None or ini.other_layout:
        return None
    files = _revision_files(os.path.join(ini.script_location, "versions"))
    parsed = [_read_revision(path) for path in files or ()]
    if not parsed or None in parsed:
        return None
    revisions = [revision for revision, _ in parsed]  # type: ignore[misc]
    parents = {parent for _, down in parsed for parent in down}  # type: ignore[misc]
    if len(set(revisions)) != len(revisions) or not parents <= set(revisions):
        return None
    return sorted(set(revisions) - parents)


def _revision_files(versions: str) -> list[str] | None:
    """The files Alembic would load as revisions; None when some cannot be read plainly."""
    try:
        with os.scandir(versions) as entries:
            names = [e.name for e in entries if not e.name.startswith((".#", "__init__"))]
    except OSError:
        return None
    if any(name.endswith((".pyc", ".pyo")) for name in names):
        return None  # sourceless revisions beside the sources: for Alembic alone to read
    return [os.path.join(versions, name) for name in names if name.endswith(".py")]


def _read_revision(path: str) -> tuple[str, tuple[str, ...]] | None:
    """`revision` and `down_revision` of one file, if both are plain literals written once."""
    try:
        with open(path, "rb") as file:
            text = "\n" + file.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = _assignments(text)
    if found is None:
        return None
    try:
        revision, down, depends_on = (_literal(v[0]) if v else None for v in found.values())
    except (ValueError, SyntaxError):
        return None
    if not isinstance(revision, str) or depends_on is not None:
        return None
    down = () if down is None else (down,) if isinstance(down, str) else down
    if isinstance(down, tuple | list) and all(isinstance(item, str) for item in down):
        return revision, tuple(down)
    return None


def _assignments(text: str) -> dict[str, list[str]] | None:
    """The value texts of each name; None unless each is assigned once, plainly."""
    found: dict[str, list[str]] = {"revision": [], "down_revision": [], "depends_on": []}
    for mention in _MENTION.finditer(text):
        assignment = _ASSIGNMENT.match(text, mention.end())
        if assignment is None:
            return None
        found[mention[1]].append(assignment["value"])
    counts = [len(values) for values in found.values()]
    return found if counts[0] == counts[1] == 1 and counts[2] <= 1 else None

"""Where the database is, and what alembic.ini says, read cheaply: no Alembic, no SQLAlchemy.

With migrator/heads.py this is what lets a run with nothing to do stop after one query.
"""

from __future__ import annotations

import configparser
import os

from migrator.database import missing_table
from migrator.records import Record

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from migrator.database import Raw


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
        parser = configparser.ConfigParser(defaults={"here": here})
        parser.read(path, encoding="utf-8")
        section = parser["alembic"] if parser.has_section("alembic") else {}
        location = section.get("script_location")
        return cls(
            # "package:dir" locations are resolved by Alembic only.
            script_location=location if location and ":" not in location else None,
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

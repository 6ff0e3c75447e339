"""Statement limits for the migration session, so DDL never freezes the application's traffic.

An `ALTER TABLE` waiting for a table lock queues every later query on that table behind it; with
`lock_timeout` it gives up after a few seconds instead, the revision rolls back, and the runner
tries again a little later (see commands.py). A revision may set its own limit, or opt out, with
a module attribute: `ddl_lock_timeout = 30` (seconds) or `ddl_lock_timeout = None` (no limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from migrator.errors import DDLTimeout

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from typing import Any

    from sqlalchemy import Connection

LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
_UNSET = object()


@dataclass(frozen=True)
class Limits:
    """Seconds; 0 means no limit."""

    ddl_lock_timeout: float
    statement_timeout: float


def apply(connection: Connection, limits: Limits, revision_module: ModuleType | None) -> None:
    """Set the session's limits for the next revision (PostgreSQL only)."""
    if connection.dialect.name != "postgresql":
        return
    own: Any = getattr(revision_module, "ddl_lock_timeout", _UNSET)
    lock = limits.ddl_lock_timeout if own is _UNSET else (own or 0)
    # Whole milliseconds from validated floats: nothing user-written reaches the SQL text.
    connection.exec_driver_sql(f"SET lock_timeout = {int(float(lock) * 1000)}")
    connection.exec_driver_sql(f"SET statement_timeout = {int(limits.statement_timeout * 1000)}")


def as_timeout(error: BaseException, running: dict[str, Any] | None) -> DDLTimeout | None:
    """The DDLTimeout this driver error means, if it is one."""
    driver_error = getattr(error, "orig", None)  # SQLAlchemy wraps the driver's error
    code = getattr(driver_error, "pgcode", None)
    if running is None:
        return None
    if code == LOCK_NOT_AVAILABLE:
        kind = "lock_timeout"
    elif code == QUERY_CANCELED and "statement timeout" in str(driver_error):
        kind = "statement_timeout"
    else:
        return None
    return DDLTimeout(
        f"revision {running['revision']} hit {kind} and was rolled back: another transaction "
        "holds a lock on a table it changes"
        if kind == "lock_timeout"
        else f"revision {running['revision']} ran past MIGRATE_STATEMENT_TIMEOUT and was "
        "rolled back",
        kind=kind,
        revision=running["revision"],
        direction=running["direction"],
    )

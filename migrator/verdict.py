"""The `status` verdict: what `upgrade` would find, from facts already read.

Pure on purpose: no database, no Alembic, so that every case is a line here and a unit test,
and a new case (a database proved ahead of the image, issue 15 section 4) is one more branch
before the ones below, not a change to the command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

AT_HEAD = "at_head"  # `upgrade` has nothing to do
PENDING = "pending"  # `upgrade` would apply the pending revisions
UNKNOWN_REVISION = "unknown_revision"  # the database holds a revision the scripts do not know
AHEAD = "ahead"  # ... and the run history proves it descends from the image's head (lineage.py)

VERDICTS = (AT_HEAD, PENDING, UNKNOWN_REVISION, AHEAD)


def verdict(*, unknown: Sequence[str], pending: Sequence[Any] | None, ahead: bool = False) -> str:
    """The one word for what `upgrade` would find.

    `pending` is None when it could not be planned (an unknown revision: Alembic cannot walk
    from a revision it does not have), so an unknown revision wins over everything else.
    """
    if unknown:
        return AHEAD if ahead else UNKNOWN_REVISION
    if pending:
        return PENDING
    return AT_HEAD

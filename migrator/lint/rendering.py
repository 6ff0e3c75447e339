"""Each revision rendered to SQL on its own, by Alembic's offline mode (what `--sql` writes).

A whole-range script would show every table as created a few lines earlier, and linters treat
such a table as new and empty. Rendered one at a time, only the tables a revision creates itself
are new; a table from any earlier revision is an existing one, with rows and readers.

Each write Alembic makes to the output is traced back to the line of the revision file that
caused it (the innermost frame in that file), so a finding can point there.
"""

from __future__ import annotations

import inspect
import io
import os
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alembic.runtime.migration import MigrationStep
from alembic.script import Script, ScriptDirectory
from alembic.util import to_tuple

from migrator.errors import MigrateError, ProjectError, RevisionError
from migrator.lint import sql

if TYPE_CHECKING:
    from migrator.project.loading import Project

# Names the SQL dialect for env.py; offline mode never connects to it.
OFFLINE_URL = "postgresql+psycopg2://lint@lint.invalid/lint"


@dataclass(frozen=True)
class Statement:
    text: str
    line: int | None  # in the revision file; None for Alembic's own bookkeeping
    sql_line: int  # 1-based, in the rendered SQL: first and last line
    sql_end_line: int
    in_transaction: bool
    region: int  # statements with the same region run in the same transaction (or outside one)
    on_new_table: bool  # its table (or index) was created earlier in this same revision
    shape: sql.Shape


@dataclass
class Rendered:
    revision: str
    path: str
    sql: str = ""
    statements: list[Statement] = field(default_factory=list)  # the revision's own, in order
    bookkeeping: list[tuple[int, int]] = field(default_factory=list)  # Alembic's, as line spans
    error: str | None = None  # why it could not be rendered
    error_line: int | None = None  # the revision file's line that raised


def select(script: ScriptDirectory, revisions: str | None, since: str | None) -> list[Script]:
    """The revisions to lint, oldest first.

    `A:B` is every revision after A up to and including B (as `upgrade --sql A:B` runs them),
    `A` alone that one revision, nothing at all every revision; `since` is `since:heads`.
    """
    if since is not None:
        revisions = f"{since}:heads"
    if revisions is None:
        return _oldest_first(script, "heads", None)
    if ":" not in revisions:
        return [_one(script, revisions)]
    lower, _, upper = revisions.partition(":")
    return _oldest_first(script, upper or "heads", lower if lower not in ("", "base") else None)


def _one(script: ScriptDirectory, name: str) -> Script:
    found = _resolve(script, name)
    if len(found) != 1:
        raise RevisionError(f"{name!r} names {len(found)} revisions; name one", revision=name)
    return found[0]


def _resolve(script: ScriptDirectory, name: str) -> list[Script]:
    from alembic.script.revision import RevisionError as AlembicRevisionError
    from alembic.util import CommandError

    try:
        found = script.get_revisions(name)
    except (CommandError, AlembicRevisionError) as error:
        heads = ", ".join(script.get_heads())
        raise RevisionError(
            f"{error}; lint takes a revision id (or a unique prefix), head, heads or base, or a "
            f"range FROM:TO; this project's heads: {heads}",
            revision=name,
        ) from None
    return [revision for revision in found if isinstance(revision, Script)]


def _oldest_first(script: ScriptDirectory, upper: str, lower: str | None) -> list[Script]:
    """Ancestors of `upper` (inclusive) that descend from `lower` (exclusive), oldest first."""
    tops = _resolve(script, upper)
    wanted = {r.revision for top in tops for r in script.iterate_revisions(top.revision, "base")}
    if lower is not None:
        for bottom in _resolve(script, lower):
            if bottom.revision not in wanted:
                raise RevisionError(
                    f"{bottom.revision} is not an ancestor of {upper}: the range is empty",
                    revision=bottom.revision,
                )
            wanted &= _descendants(script, bottom)
    ordered = [r for r in script.walk_revisions() if r.revision in wanted]  # newest first
    return ordered[::-1]


def _descendants(script: ScriptDirectory, revision: Script) -> set[str]:
    found: set[str] = set()
    pending = list(revision.nextrev)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            child = script.get_revision(name)
            pending.extend(child.nextrev if child is not None else ())
    return found


class _Traced(io.StringIO):
    """The output buffer, noting for each write the revision file's line that caused it."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = os.path.realpath(path)
        self.writes: list[tuple[int, str, int | None]] = []  # (offset, text, line)
        self._ours: dict[object, bool] = {}

    def write(self, text: str) -> int:
        self.writes.append((self.tell(), text, self._line()))
        return super().write(text)

    def _line(self) -> int | None:
        frame = inspect.currentframe()
        while frame is not None:
            code = frame.f_code
            if code not in self._ours:
                self._ours[code] = os.path.realpath(code.co_filename) == self.path
            if self._ours[code]:
                return frame.f_lineno
            frame = frame.f_back
        return None


def render(project: Project, revision: Script) -> Rendered:
    """The revision's upgrade as SQL, from the state just before it."""
    from migrator.project.offline import write_steps

    rendered = Rendered(revision=revision.revision, path=revision.path)
    output = _Traced(revision.path)
    start = to_tuple(revision.down_revision, default=())  # a merge starts from all its parents

    def steps(_: tuple[str, ...]) -> list[MigrationStep]:
        return [MigrationStep.upgrade_from_script(project.script.revision_map, revision)]

    try:
        write_steps(project, steps, start, output)
    except MigrateError:
        raise
    except Exception as error:
        line = _raised_at(error, output.path)
        if line is None:  # env.py or the job, not the revision: nothing can be linted
            raise ProjectError(
                f"cannot render revision {revision.revision} offline: "
                f"{error.__class__.__name__}: {error}",
                revision=revision.revision,
            ) from None
        # The revision's own code failed offline: a finding about it, and the others go on.
        rendered.error = f"{error.__class__.__name__}: {error}"
        rendered.error_line = line
        return rendered
    rendered.sql = output.getvalue()
    _read(output, rendered)
    return rendered


def _raised_at(error: BaseException, path: str) -> int | None:
    """The deepest line of the revision file in the error's traceback."""
    line = None
    for frame, number in traceback.walk_tb(error.__traceback__):
        if os.path.realpath(frame.f_code.co_filename) == path:
            line = number
    return line


def _read(output: _Traced, rendered: Rendered) -> None:
    """The revision's statements, each knowing whether a transaction is open around it and
    whether its table is one this revision created (new, empty, read by nobody yet)."""
    text = output.getvalue()
    in_transaction, region = False, 0
    new_tables: set[str] = set()
    new_indexes: set[str] = set()
    for offset, chunk, line in output.writes:
        for start, statement in sql.split(chunk):
            first = text.count("\n", 0, offset + start) + 1
            last = first + statement.count("\n")
            control = sql.transaction_control(statement)
            if control is not None:
                in_transaction = control
                region += 1
                continue
            if line is None:  # Alembic's own: the version table
                rendered.bookkeeping.append((first, last))
                continue
            shape = sql.shape(statement)
            table = _bare(shape.table)
            new = table in new_tables or _bare(shape.index) in new_indexes
            if shape.kind == "create_table" and table:
                new_tables.add(table)
            elif shape.kind == "create_index" and new and shape.index:
                new_indexes.add(_bare(shape.index) or "")
            rendered.statements.append(
                Statement(statement, line, first, last, in_transaction, region, new, shape)
            )


def _bare(name: str | None) -> str | None:
    """public.t and t are one table to the rules (the default search_path)."""
    return name.removeprefix("public.") if name else None

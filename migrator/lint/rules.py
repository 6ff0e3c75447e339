"""The rules only an Alembic-aware linter can apply: it knows which statements Alembic runs in
the revision's transaction and which in an `autocommit_block()`, which tables the revision
itself created, and what the revision file's downgrade() does."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from migrator.lint import sql
from migrator.lint.catalog import RULES, Finding
from migrator.lint.rendering import Rendered, Statement


def check(revision: Rendered, source: str, pg_major: int) -> Iterator[Finding]:
    if revision.error is not None:
        yield _finding(revision, "render-failed", revision.error_line, extra=revision.error)
    statements = revision.statements
    for statement in statements:
        if statement.in_transaction and sql.non_transactional(statement.text, pg_major):
            yield _finding(revision, "needs-autocommit-block", statement.line, statement)
    yield from _autocommit_blocks(revision)
    yield from _backfills(revision)
    yield from _downgrade(revision, source)


def _finding(
    revision: Rendered,
    rule: str,
    line: int | None,
    statement: Statement | None = None,
    extra: str | None = None,
) -> Finding:
    table = statement.shape.table if statement else None
    message = RULES[rule].message(table)
    if extra:
        message = f"{message}. ({extra})"
    return Finding(
        rule=rule,
        revision=revision.revision,
        file=revision.path,
        line=line,
        message=message,
        sql=sql.redacted(statement.text) if statement else None,
    )


def _autocommit_blocks(revision: Rendered) -> Iterator[Finding]:
    """Outside a transaction, each CONCURRENTLY statement must survive being run twice."""
    dropped: dict[int, set[str]] = {}  # region -> indexes dropped IF EXISTS so far
    for statement in revision.statements:
        shape = statement.shape
        if statement.in_transaction or not shape.concurrently:
            continue
        if shape.kind == "drop_index":
            if shape.guarded and shape.index:
                dropped.setdefault(statement.region, set()).add(shape.index)
            else:
                yield _finding(
                    revision, "autocommit-block-not-rerunnable", statement.line, statement
                )
        elif shape.kind == "create_index":
            cleared = shape.index in dropped.get(statement.region, set())
            if shape.guarded or not cleared:
                yield _finding(
                    revision, "autocommit-block-not-rerunnable", statement.line, statement
                )


def _backfills(revision: Rendered) -> Iterator[Finding]:
    """An UPDATE of every row, in the transaction that also alters the same (existing) table."""
    ddl: dict[tuple[int, str], bool] = {}
    for statement in revision.statements:
        shape = statement.shape
        if (
            statement.in_transaction
            and shape.table
            and shape.kind in ("alter_table", "create_index")
        ):
            ddl[(statement.region, shape.table)] = True
    for statement in revision.statements:
        shape = statement.shape
        if (
            shape.kind == "update"
            and not shape.where
            and statement.in_transaction
            and not statement.on_new_table
            and shape.table
            and ddl.get((statement.region, shape.table))
        ):
            yield _finding(revision, "backfill-in-ddl-transaction", statement.line, statement)


def _downgrade(revision: Rendered, source: str) -> Iterator[Finding]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return  # Alembic loaded the file, so this cannot happen; nothing to say if it does
    functions = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    downgrade = functions.get("downgrade")
    if downgrade is None:
        yield _finding(revision, "missing-downgrade", None, extra="there is no downgrade()")
        return
    body = [node for node in downgrade.body if not _docstring(node)]
    if all(isinstance(node, ast.Pass) or _ellipsis(node) for node in body):
        line = body[0].lineno if body else downgrade.lineno
        yield _finding(revision, "missing-downgrade", line, extra="downgrade() does nothing")


def _docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _ellipsis(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and (node.value.value is Ellipsis)
    )

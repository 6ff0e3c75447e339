"""The statement account: what the revision in flight executed, for a server without
transactional DDL.

On MySQL each DDL statement commits as it runs, so a revision that fails halfway leaves its
earlier statements applied. The account is kept on the migrating connection, from SQLAlchemy's
cursor events: every statement that reached the driver, in order, reset when a revision starts.
A statement is counted once the driver returned from it; the one in flight when the revision
failed is the failing one. Texts are kept as executed (placeholders, not parameters: values
never enter the account) and redacted when they are read.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from migrator.redaction import redact

TEXT_LIMIT = 500  # characters of one statement in an event
COUNT_LIMIT = 50  # statements listed in an event; the count says how many there were
INNODB_BUFFER_AGE = 0.15  # seconds: information_schema.INNODB_TRX may be 0.1 s old


@functools.cache
def _commits() -> re.Pattern[str]:
    """The statements after which MySQL has committed everything before them: DDL and the
    others of its "statements that cause an implicit commit" a revision may run. Temporary
    tables are the exception the server makes.

    Compiled on first use: only MySQL runs with work need it, and compiling it costs ~2 M
    instructions, 1 % of every run with nothing to do (bench/)."""
    return re.compile(
        r"(?:\s|/\*.*?\*/)*(?!(?:CREATE|DROP)\s+TEMPORARY\b)"
        r"(?:CREATE|ALTER|DROP|RENAME|TRUNCATE|GRANT|REVOKE|LOCK|UNLOCK|ANALYZE|OPTIMIZE|REPAIR)\b",
        re.IGNORECASE | re.DOTALL,
    )


class Failure(NamedTuple):
    """Where a revision stopped: the statement that failed, and the ones before it."""

    failed_statement: int | None  # 1-based; None: it failed in its Python code, between statements
    committed: list[str]  # the statements committed by the server, redacted, in order
    failed_sql: str | None  # the failing statement, redacted
    # The statements after the committed ones, in the open transaction that the failure rolls
    # back (data changes after the last DDL statement); `rollback_known` False when the server
    # could not say whether that transaction held changes.
    rolled_back: tuple[str, ...] = ()
    rollback_known: bool = True

    @property
    def details(self) -> dict[str, Any]:
        """The structured account for the final event, truncated sensibly."""
        details: dict[str, Any] = {
            "failed_statement": self.failed_statement,
            "failed_sql": None if self.failed_sql is None else shortened(self.failed_sql),
            "committed_statements": [shortened(text) for text in self.committed[:COUNT_LIMIT]],
            "committed_count": len(self.committed),
        }
        if self.rolled_back:
            texts = self.rolled_back[:COUNT_LIMIT]
            details["rolled_back_statements"] = [shortened(text) for text in texts]
        return details


class Account:
    """The statements of the revision in flight on one connection."""

    def __init__(
        self, secrets: tuple[str, ...] = (), pending: Callable[[], int | None] = lambda: None
    ) -> None:
        self.secrets = secrets
        self.pending = pending  # rows changed by the open transaction (None: cannot tell)
        self.done: list[str] = []
        self.running: str | None = None
        self.rows_pending: int | None = None

    def reset(self) -> None:
        """A revision starts: nothing of it has run yet."""
        self.done, self.running, self.rows_pending = [], None, None

    def attach(self, connection: Any) -> None:
        """Count the statements executed on this SQLAlchemy connection from now on."""
        from sqlalchemy import event

        event.listen(connection, "before_cursor_execute", self._before)
        event.listen(connection, "after_cursor_execute", self._after)
        # SQLAlchemy takes this one on the engine only: the job's, whose one connection this is.
        event.listen(connection.engine, "handle_error", self._failed)

    def failure(self) -> Failure:
        """The account as it stands: called on the failure path, while nothing else runs."""
        done = [self._clean(text) for text in self.done]
        failed = len(done) + 1 if self.running is not None else None
        failed_sql = None if self.running is None else self._clean(self.running)
        # Everything up to the last implicitly committing statement is committed. What ran
        # after it is too, unless the open transaction held changes when the revision failed:
        # the server says, when asked before the rollback (`pending`). Unasked, it is rolled
        # back for sure unless the failing statement was one that commits before it runs.
        last = max((n for n, text in enumerate(done, 1) if _commits().match(text)), default=0)
        if self.rows_pending == 0 or last == len(done):
            return Failure(failed, done, failed_sql)
        known = self.rows_pending is not None or not _commits().match(failed_sql or "")
        return Failure(failed, done[:last], failed_sql, tuple(done[last:]), known)

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.running = statement

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.done.append(statement)
        self.running = None

    def _failed(self, context: Any) -> None:
        # Before anything rolls back: does the open transaction hold changes of its own? Only
        # asked when statements ran after the last one that commits (a pure-DDL revision's
        # answer is known).
        if self.running is None or context.is_disconnect or not self._after_last_commit():
            return
        # InnoDB answers from a buffer it refreshes when it is more than 0.1 s old: read that
        # long after the failure, the answer is from after it (our session does nothing else).
        time.sleep(INNODB_BUFFER_AGE)
        self.rows_pending = self.pending()

    def _after_last_commit(self) -> bool:
        return bool(self.done) and not _commits().match(self.done[-1])

    def _clean(self, text: str) -> str:
        # One line: DDL rendered by SQLAlchemy spans several, with tabs.
        return redact(" ".join(text.split()), self.secrets)


def shortened(text: str, limit: int = TEXT_LIMIT) -> str:
    """At most `limit` characters; a cut text ends with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def numbered(texts: Sequence[str], limit: int = TEXT_LIMIT, start: int = 1) -> str:
    """Statements for a sentence: `[1] CREATE TABLE a (...); [2] ...`."""
    shown = [f"[{n}] {shortened(text, limit)}" for n, text in enumerate(texts[:COUNT_LIMIT], start)]
    if len(texts) > COUNT_LIMIT:
        shown.append(f"... and {len(texts) - COUNT_LIMIT} more")
    return "; ".join(shown)


def account_text(revision: str, failure: Failure, server: str = "MySQL") -> str:
    """What became of a failed revision's statements, in one sentence.

    "revision X failed at statement N; statements 1-(N-1) were committed by MySQL and are not
    rolled back: [1] ...; [2] ..." There is no "of M": how many statements the revision would
    have run is not known (a revision may branch on what it reads, and may not render offline).
    """
    done, ran = len(failure.committed), len(failure.committed) + len(failure.rolled_back)
    where = (
        f"failed at statement {failure.failed_statement}"
        if failure.failed_statement is not None
        else f"failed in its Python code after statement {ran}"
        if ran
        else "failed in its Python code before its first statement"
    )
    if not done:
        text = f"revision {revision} {where}; nothing of it was committed"
    else:
        which = "statement 1 was" if done == 1 else f"statements 1-{done} were"
        verb = "is" if done == 1 else "are"
        text = (
            f"revision {revision} {where}; {which} committed by {server} and {verb} not rolled "
            f"back: {numbered(failure.committed)}"
        )
    return text + rolled_back_text(failure)


def rolled_back_text(failure: Failure) -> str:
    """The statements after the last commit, in the transaction the failure rolled back."""
    if not failure.rolled_back:
        return ""
    first, last = len(failure.committed) + 1, len(failure.committed) + len(failure.rolled_back)
    which = f"statement {first} was" if first == last else f"statements {first}-{last} were"
    listed = numbered(failure.rolled_back, start=first)
    if failure.rollback_known:
        return f"; {which} in the open transaction, rolled back with it: {listed}"
    return (
        f"; {which} in the open transaction after the last DDL statement: rolled back, unless "
        f"the failing statement committed it before it ran (check their data): {listed}"
    )

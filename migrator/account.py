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

from typing import Any, NamedTuple

from migrator.redaction import redact

TEXT_LIMIT = 500  # characters of one statement in an event
COUNT_LIMIT = 50  # statements listed in an event; the count says how many there were


class Failure(NamedTuple):
    """Where a revision stopped: the statement that failed, and the ones before it."""

    failed_statement: int | None  # 1-based; None: it failed in its Python code, between statements
    committed: list[str]  # the statements that had completed, redacted, in order
    failed_sql: str | None  # the failing statement, redacted

    @property
    def details(self) -> dict[str, Any]:
        """The structured account for the final event, truncated sensibly."""
        return {
            "failed_statement": self.failed_statement,
            "failed_sql": None if self.failed_sql is None else shortened(self.failed_sql),
            "committed_statements": [shortened(text) for text in self.committed[:COUNT_LIMIT]],
            "committed_count": len(self.committed),
        }


class Account:
    """The statements of the revision in flight on one connection."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self.secrets = secrets
        self.done: list[str] = []
        self.running: str | None = None

    def reset(self) -> None:
        """A revision starts: nothing of it has run yet."""
        self.done, self.running = [], None

    def attach(self, connection: Any) -> None:
        """Count the statements executed on this SQLAlchemy connection from now on."""
        from sqlalchemy import event

        event.listen(connection, "before_cursor_execute", self._before)
        event.listen(connection, "after_cursor_execute", self._after)

    def failure(self) -> Failure:
        """The account as it stands: called on the failure path, while nothing else runs."""
        committed = [self._clean(text) for text in self.done]
        if self.running is None:
            return Failure(None, committed, None)
        return Failure(len(committed) + 1, committed, self._clean(self.running))

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.running = statement

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.done.append(statement)
        self.running = None

    def _clean(self, text: str) -> str:
        # One line: DDL rendered by SQLAlchemy spans several, with tabs.
        return redact(" ".join(text.split()), self.secrets)


def shortened(text: str, limit: int = TEXT_LIMIT) -> str:
    """At most `limit` characters; a cut text ends with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def numbered(texts: list[str], limit: int = TEXT_LIMIT) -> str:
    """Statements for a sentence: `[1] CREATE TABLE a (...); [2] ...`."""
    shown = [f"[{n}] {shortened(text, limit)}" for n, text in enumerate(texts[:COUNT_LIMIT], 1)]
    if len(texts) > COUNT_LIMIT:
        shown.append(f"... and {len(texts) - COUNT_LIMIT} more")
    return "; ".join(shown)


def account_text(revision: str, failure: Failure, server: str = "MySQL") -> str:
    """What became of a failed revision's statements, in one sentence.

    "revision X failed at statement N; statements 1-(N-1) were committed by MySQL and are not
    rolled back: [1] ...; [2] ..." There is no "of M": how many statements the revision would
    have run is not known (a revision may branch on what it reads, and may not render offline).
    """
    done = len(failure.committed)
    where = (
        f"failed at statement {failure.failed_statement}"
        if failure.failed_statement is not None
        else f"failed in its Python code after statement {done}"
        if done
        else "failed in its Python code before its first statement"
    )
    if not done:
        return f"revision {revision} {where}; nothing of it was committed"
    which = "statement 1 was" if done == 1 else f"statements 1-{done} were"
    verb = "is" if done == 1 else "are"
    return (
        f"revision {revision} {where}; {which} committed by {server} and {verb} not rolled "
        f"back: {numbered(failure.committed)}"
    )

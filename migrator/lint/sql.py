"""Just enough reading of PostgreSQL statements for the Alembic-aware rules: where one ends, what
it does, and to which table. squawk parses SQL properly; this only has to agree with it on the
statements Alembic writes."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR = re.compile(r"\$[A-Za-z_0-9]*\$")


def split(text: str) -> list[tuple[int, str]]:
    """(offset, statement) for each `;`-terminated statement, quotes and comments respected."""
    pieces: list[tuple[int, str]] = []
    start, i, n = 0, 0, len(text)
    while i < n:
        char = text[i]
        if char in "'\"":
            end = text.find(char, i + 1)
            while end != -1 and text[end + 1 : end + 2] == char:  # '' and "" escape themselves
                end = text.find(char, end + 2)
            i = n if end == -1 else end + 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif char == "$" and (tag := _DOLLAR.match(text, i)):
            end = text.find(tag.group(), tag.end())
            i = n if end == -1 else end + len(tag.group())
        elif char == ";":
            pieces.append((start, text[start : i + 1]))
            start = i = i + 1
        else:
            i += 1
    if text[start:].strip():
        pieces.append((start, text[start:]))
    return [(offset + _leading(piece), piece.strip()) for offset, piece in pieces if _code(piece)]


def _leading(piece: str) -> int:
    return len(piece) - len(piece.lstrip())


def _code(piece: str) -> bool:
    """Whether a piece holds more than comments and the delimiter."""
    stripped = re.sub(r"--[^\n]*|/\*.*?\*/", "", piece, flags=re.DOTALL)
    return bool(stripped.strip().strip(";").strip())


def without_comments(statement: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", " ", statement, flags=re.DOTALL).strip()


_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z_0-9$]*)'
_QUALIFIED = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
_ALTER_TABLE = re.compile(
    rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<table>{_QUALIFIED})", re.I
)
_CREATE_TABLE = re.compile(
    rf"^CREATE\s+(?:(?:GLOBAL\s+|LOCAL\s+)?(?:TEMP|TEMPORARY|UNLOGGED)\s+)?TABLE\s+"
    rf"(?:IF\s+NOT\s+EXISTS\s+)?(?P<table>{_QUALIFIED})",
    re.I,
)
_CREATE_INDEX = re.compile(
    rf"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?P<concurrently>CONCURRENTLY\s+)?"
    rf"(?P<if_not_exists>IF\s+NOT\s+EXISTS\s+)?(?:(?P<index>{_QUALIFIED})\s+)?"
    rf"ON\s+(?:ONLY\s+)?(?P<table>{_QUALIFIED})",
    re.I,
)
_DROP_INDEX = re.compile(
    rf"^DROP\s+INDEX\s+(?P<concurrently>CONCURRENTLY\s+)?(?P<if_exists>IF\s+EXISTS\s+)?"
    rf"(?P<index>{_QUALIFIED})",
    re.I,
)
_UPDATE = re.compile(rf"^UPDATE\s+(?:ONLY\s+)?(?P<table>{_QUALIFIED})", re.I)
_DELETE = re.compile(rf"^DELETE\s+FROM\s+(?:ONLY\s+)?(?P<table>{_QUALIFIED})", re.I)
_WHERE = re.compile(r"\bWHERE\b", re.I)

# What PostgreSQL refuses to run inside a transaction block (the ones a migration writes).
_NON_TRANSACTIONAL = re.compile(
    r"^(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY"
    r"|REINDEX\b.*\bCONCURRENTLY|VACUUM\b|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM"
    r"|CREATE\s+TABLESPACE|DROP\s+TABLESPACE"
    r"|ALTER\s+TABLE\b.*\bDETACH\s+PARTITION\b.*\bCONCURRENTLY)",
    re.I | re.S,
)
_ADD_ENUM_VALUE = re.compile(r"^ALTER\s+TYPE\s+\S+\s+ADD\s+VALUE\b", re.I)
_TRANSACTION = {"BEGIN": True, "START TRANSACTION": True, "COMMIT": False, "END": False}


def name(raw: str) -> str:
    """A table or index name as PostgreSQL folds it: unquoted lower-cased, quotes removed."""
    parts = re.findall(r'"((?:[^"]|"")+)"|([^".\s]+)', raw)
    return ".".join(
        quoted.replace('""', '"') if quoted else plain.lower() for quoted, plain in parts
    )


@dataclass(frozen=True)
class Shape:
    """What a statement does, as far as the rules care."""

    kind: str  # create_table, alter_table, create_index, drop_index, update, delete, other
    table: str | None = None  # unqualified names stay unqualified
    index: str | None = None
    concurrently: bool = False
    guarded: bool = False  # IF [NOT] EXISTS
    where: bool = False


def shape(statement: str) -> Shape:  # noqa: PLR0911 - one table of statement kinds
    text = without_comments(statement)
    if match := _CREATE_TABLE.match(text):
        return Shape("create_table", table=name(match["table"]))
    if match := _ALTER_TABLE.match(text):
        return Shape("alter_table", table=name(match["table"]))
    if match := _CREATE_INDEX.match(text):
        index = name(match["index"]) if match["index"] else None
        return Shape(
            "create_index",
            table=name(match["table"]),
            index=index,
            concurrently=bool(match["concurrently"]),
            guarded=bool(match["if_not_exists"]),
        )
    if match := _DROP_INDEX.match(text):
        return Shape(
            "drop_index",
            index=name(match["index"]),
            concurrently=bool(match["concurrently"]),
            guarded=bool(match["if_exists"]),
        )
    if match := _UPDATE.match(text):
        return Shape("update", table=name(match["table"]), where=bool(_WHERE.search(text)))
    if match := _DELETE.match(text):
        return Shape("delete", table=name(match["table"]), where=bool(_WHERE.search(text)))
    return Shape("other")


def transaction_control(statement: str) -> bool | None:
    """True for BEGIN, False for COMMIT, None for anything else."""
    words = " ".join(without_comments(statement).rstrip(";").split()).upper()
    return _TRANSACTION.get(words)


def non_transactional(statement: str, pg_major: int) -> bool:
    """Whether PostgreSQL refuses it inside a transaction block."""
    text = without_comments(statement)
    if _NON_TRANSACTIONAL.match(text):
        return True
    # ALTER TYPE ... ADD VALUE runs in a transaction from PostgreSQL 12 on.
    return pg_major < 12 and bool(_ADD_ENUM_VALUE.match(text))


_LITERAL = re.compile(r"'(?:[^']|'')*'")


def redacted(statement: str, limit: int = 300) -> str:
    """The statement on one line, string literals masked: a backfill's values may be data."""
    text = _LITERAL.sub("'…'", " ".join(statement.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The one place that owns output: every event goes through `Log`, rendered by one chain.

The chain (enrich, redact, render) is a list of structlog-style processors, defined once below.
The job's own events run through it and are written straight to the job's stream, never through
the stdlib `logging` tree: a project's env.py may call `fileConfig` (every Alembic template
does), which disables existing loggers and replaces the root handlers, and the job's events, the
final `finished`/`failed` line above all, must survive that. Alembic's and SQLAlchemy's stdlib
records are routed through the same chain by a root handler (`route_stdlib`), until an env.py
configures logging its own way; then they follow the user's configuration, as they would under
Alembic's own CLI.

structlog itself is imported only for the console renderer and the stdlib bridge: importing it
costs ~50 ms (its stdlib integration imports asyncio), a third of a run with nothing to do.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from migrator.redaction import redact

EventDict = dict[str, Any]
Processor = Callable[[Any, str, Any], Any]  # structlog's processor signature

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
CONTRACT_KEYS = ("timestamp", "level", "logger", "event")

# Alembic and SQLAlchemy narrate at INFO ("Context impl PostgresqlImpl.", "Running upgrade");
# our own events say the same with structure, so theirs only show at debug.
_LIBRARY_LOGGERS = ("alembic", "sqlalchemy")


# Fields whose values are the job's own words, never a secret: a password equal to "finished"
# or "upgrade" must not mask the event or the command. (A stdlib record's `event` is its
# library's message, and is cleaned like any other field.)
_OWN_FIELDS = frozenset(("timestamp", "level", "logger", "command"))


class Redact:
    """Processor: no secret value, and no password inside a URL, survives into any field."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = secrets

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        own = _OWN_FIELDS if "_record" in event_dict else _OWN_FIELDS | {"event"}
        return {
            key: value if key in own else self._clean(value) for key, value in event_dict.items()
        }

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, self._secrets)
        if isinstance(value, Mapping):
            return {key: self._clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(item) for item in value]
        if isinstance(value, BaseException):
            return redact(str(value), self._secrets)
        return value


def _timestamp(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """structlog's TimeStamper(fmt="iso", utc=True), without importing structlog."""
    now = datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z")
    event_dict["timestamp"] = now
    return event_dict


def _contract_keys_first(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """`timestamp level logger event` lead every line, so a human scanning JSON finds them."""
    head = {key: event_dict.pop(key) for key in CONTRACT_KEYS}
    return {**head, **event_dict}


def _json(_: Any, __: str, event_dict: EventDict) -> str:
    return json.dumps(event_dict, default=str)


def _progress(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Console only: migration events read as `[3/7] a1b2c3 add task due date ... 0.42 s`."""
    event = event_dict.get("event")
    if event in ("migration_started", "migration_finished"):
        head = f"[{event_dict.pop('step')}/{event_dict.pop('steps')}]"
        line = f"{head} {event_dict.pop('revision')} {event_dict.pop('message', '') or ''}"
        if event == "migration_finished":
            line += f" ... {event_dict.pop('duration_s'):.2f} s"
        event_dict["event"] = line.rstrip()
    elif event in _LISTS and isinstance(event_dict.get(_LISTS[event][0]), list):
        # One revision a line: a list of dicts printed as a Python literal is unreadable.
        event_dict["event"] = _LISTS[event][1](event_dict)
    return event_dict


def _plan_lines(event_dict: EventDict) -> str:
    current = ", ".join(event_dict.pop("current", None) or []) or "base"
    steps = event_dict.pop("revisions")
    event_dict.pop("steps", None)
    lines = [f"plan: {len(steps)} step(s) from {current}"]
    for number, step in enumerate(steps, start=1):
        words = (f"{number}.", step.get("direction"), step.get("revision"), step.get("message"))
        lines.append("  " + " ".join(str(word) for word in words if word))
    return "\n".join(lines)


def _history_lines(event_dict: EventDict) -> str:
    revisions = event_dict.pop("revisions")
    lines = [f"history: {len(revisions)} revision(s), oldest first"]
    for revision in revisions:
        words = (revision.get("revision"), revision.get("message"))
        line = "  " + " ".join(str(word) for word in words if word)
        marks = ["head"] if revision.get("is_head") else []
        marks += ["applied"] if revision.get("applied") is True else []
        lines.append(line + (f" ({', '.join(marks)})" if marks else ""))
    return "\n".join(lines)


def _status_lines(event_dict: EventDict) -> str:
    pending = event_dict.pop("pending")
    verdict = event_dict.pop("verdict", None)
    current = ", ".join(event_dict.pop("current", None) or []) or "base"
    lines = [f"status: {verdict}, at {current}, {len(pending)} pending"]
    for revision in pending:
        words = (revision.get("revision"), revision.get("message"))
        lines.append("  " + " ".join(str(word) for word in words if word))
    return "\n".join(lines)


# The events shown one revision a line on a console: {event: (the list's field, renderer)}.
_LISTS = {
    "plan": ("revisions", _plan_lines),
    "history": ("revisions", _history_lines),
    "status": ("pending", _status_lines),
}


def _enrich(secrets: tuple[str, ...]) -> list[Processor]:
    return [_timestamp, Redact(secrets)]


def _render(fmt: str, stream: TextIO) -> list[Processor]:
    if fmt != "console":
        return [_contract_keys_first, _json]
    import structlog  # see the module docstring: loaded only when needed

    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    return [_progress, structlog.dev.ConsoleRenderer(colors=is_tty)]


class Log:
    """The runner's logger: `log.info("event", key=value)`, as with structlog."""

    def __init__(
        self,
        *,
        fmt: str = "json",
        level: str = "info",
        secrets: tuple[str, ...] = (),
        stream: TextIO | None = None,
        name: str = "migrator",
        bound: Mapping[str, Any] | None = None,
    ) -> None:
        self._fmt, self._level, self._secrets = fmt, level, secrets
        self._stream = stream or sys.stdout
        self._name = name
        self._chain = [*_enrich(secrets), *_render(fmt, self._stream)]
        self._bound = dict(bound or {})  # in every event (a fleet's `target`)

    @property
    def stream(self) -> TextIO:
        return self._stream

    def bind(
        self,
        stream: TextIO | None = None,
        secrets: tuple[str, ...] | None = None,
        **fields: Any,
    ) -> Log:
        """The same log with `fields` in every event, written to `stream` and masking
        `secrets` instead if given."""
        return Log(
            fmt=self._fmt,
            level=self._level,
            secrets=self._secrets if secrets is None else secrets,
            stream=stream or self._stream,
            name=self._name,
            bound={**self._bound, **fields},
        )

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def _emit(self, level: str, event: str, fields: EventDict) -> None:
        if LEVELS[level] < LEVELS[self._level]:
            return
        rendered: Any = {
            **self._bound,
            **fields,
            "event": event,
            "level": level,
            "logger": self._name,
        }
        for processor in self._chain:
            rendered = processor(None, level, rendered)
        self._stream.write(f"{rendered}\n")
        self._stream.flush()

    def route_stdlib(self) -> None:
        """Send stdlib records (Alembic, SQLAlchemy, warnings) through the same chain and stream."""
        import logging

        import structlog

        handler = logging.StreamHandler(self._stream)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    *_enrich(self._secrets),
                ],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *_render(self._fmt, self._stream),
                ],
            )
        )
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(self._level.upper())
        library_level = logging.DEBUG if self._level == "debug" else logging.WARNING
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(library_level)
        logging.captureWarnings(True)


class LogWriter:
    """A file-like sink for Alembic's own prints, so they become events instead of stray text."""

    def __init__(self, log: Log) -> None:
        self._log = log

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._log.debug("alembic_output", text=line)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

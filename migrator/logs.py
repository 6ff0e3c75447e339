"""The one place that owns output: every event goes through `Log`, rendered by structlog.

structlog's pipeline (processors below) renders every line, ours and the stdlib records of
Alembic and SQLAlchemy alike. One exception, for speed: importing structlog costs ~50 ms (its
stdlib integration imports asyncio), a third of what a whole run with nothing to do may cost.
So until the heavy libraries load (or a console is asked for), `Log` renders JSON lines itself,
with the same processors' logic and the same output, byte for byte but for the timestamp
(tests/test_logs.py holds the two side by side).
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Mapping

from migrator.settings import redact

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from typing import Any, TextIO

    EventDict = dict[str, Any]

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
CONTRACT_KEYS = ("timestamp", "level", "logger", "event")

# Alembic and SQLAlchemy narrate at INFO ("Context impl PostgresqlImpl.", "Running upgrade");
# our own events say the same with structure, so theirs only show at debug.
_LIBRARY_LOGGERS = ("alembic", "sqlalchemy")


class Redact:
    """Processor: no secret value, and no password inside a URL, survives into any field."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = secrets

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        return {key: self._clean(value) for key, value in event_dict.items()}

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


def _contract_keys_first(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """`timestamp level logger event` lead every line, so a human scanning JSON finds them."""
    head = {key: event_dict.pop(key) for key in CONTRACT_KEYS}
    return {**head, **event_dict}


def _progress(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Console only: migration events read as `[3/7] a1b2c3 add task due date ... 0.42 s`."""
    event = event_dict.get("event")
    if event in ("migration_started", "migration_finished"):
        head = f"[{event_dict.pop('step')}/{event_dict.pop('steps')}]"
        line = f"{head} {event_dict.pop('revision')} {event_dict.pop('message', '') or ''}"
        if event == "migration_finished":
            line += f" ... {event_dict.pop('duration_s'):.2f} s"
        event_dict["event"] = line.rstrip()
    elif event in _LISTS and isinstance(event_dict.get("revisions"), list):
        # One revision a line: a list of dicts printed as a Python literal is unreadable.
        event_dict["event"] = _LISTS[event](event_dict)
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
        lines.append(line + (" (head)" if revision.get("is_head") else ""))
    return "\n".join(lines)


_LISTS = {"plan": _plan_lines, "history": _history_lines}


def _drop_meta(_: Any, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


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
    ) -> None:
        self._fmt, self._level, self._secrets = fmt, level, secrets
        self._stream = stream or sys.stdout
        self._name = name
        self._structlog: Any = None
        if fmt != "json":
            self.use_structlog()

    def use_structlog(self) -> None:
        """From now on render through structlog, stdlib records (Alembic, SQLAlchemy) included."""
        if self._structlog is None:
            self._structlog = _configure_structlog(
                self._fmt, self._level, self._secrets, self._stream
            ).get_logger(self._name)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def _emit(self, level: str, event: str, fields: EventDict) -> None:
        if self._structlog is not None:
            getattr(self._structlog, level)(event, **fields)
        elif LEVELS[level] >= LEVELS[self._level]:
            # The structlog pipeline's steps, in its order (see _configure_structlog).
            event_dict = {**fields, "event": event, "level": level, "logger": self._name}
            event_dict["timestamp"] = _now_iso()
            event_dict = _contract_keys_first(
                None, level, Redact(self._secrets)(None, level, event_dict)
            )
            self._stream.write(json.dumps(event_dict, default=str) + "\n")
            self._stream.flush()


def _now_iso() -> str:
    """structlog's TimeStamper(fmt="iso", utc=True)."""
    return datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def _configure_structlog(fmt: str, level: str, secrets: tuple[str, ...], stream: TextIO) -> Any:
    """Route structlog and stdlib logging to one stream through one renderer."""
    import logging

    import structlog  # see the module docstring: loaded only when needed

    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        Redact(secrets),
    ]
    renderer: list[Any] = [_drop_meta]
    if fmt == "console":
        is_tty = bool(getattr(stream, "isatty", lambda: False)())
        renderer += [_progress, structlog.dev.ConsoleRenderer(colors=is_tty)]
    else:
        renderer += [_contract_keys_first, structlog.processors.JSONRenderer(default=str)]

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=renderer)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    library_level = logging.DEBUG if level == "debug" else logging.WARNING
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return structlog.stdlib


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

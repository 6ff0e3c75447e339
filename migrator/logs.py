"""The one place that owns output: a structlog pipeline that stdlib records also go through."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from migrator.settings import redact

# Alembic and SQLAlchemy narrate at INFO ("Context impl PostgresqlImpl.", "Running upgrade");
# our own events say the same with structure, so theirs only show at debug.
_LIBRARY_LOGGERS = ("alembic", "sqlalchemy")


class Redact:
    """Processor: no secret value, and no password inside a URL, survives into any field."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = secrets

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
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


def _progress(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Console only: migration events read as `[3/7] a1b2c3 add task due date ... 0.42 s`."""
    event = event_dict.get("event")
    if event in ("migration_started", "migration_finished"):
        head = f"[{event_dict.pop('step')}/{event_dict.pop('steps')}]"
        line = f"{head} {event_dict.pop('revision')} {event_dict.pop('message', '') or ''}"
        if event == "migration_finished":
            line += f" ... {event_dict.pop('duration_s'):.2f} s"
        event_dict["event"] = line.rstrip()
    return event_dict


def _contract_keys_first(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """`timestamp level logger event` lead every line, so a human scanning JSON finds them."""
    head = {key: event_dict.pop(key) for key in ("timestamp", "level", "logger", "event")}
    return {**head, **event_dict}


def _drop_meta(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


def configure_logging(
    *,
    fmt: str = "json",
    level: str = "info",
    secrets: tuple[str, ...] = (),
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging to one stream through one renderer."""
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        Redact(secrets),
    ]
    renderer: list[Processor]
    if fmt == "console":
        is_tty = bool(getattr(stream or sys.stdout, "isatty", lambda: False)())
        renderer = [_progress, structlog.dev.ConsoleRenderer(colors=is_tty)]
    else:
        renderer = [_contract_keys_first, structlog.processors.JSONRenderer(default=str)]

    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[_drop_meta, *renderer]
        )
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
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


class LogWriter:
    """A file-like sink for Alembic's own prints, so they become events instead of stray text."""

    def __init__(self, logger: structlog.stdlib.BoundLogger) -> None:
        self._log = logger

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._log.debug("alembic_output", text=line)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

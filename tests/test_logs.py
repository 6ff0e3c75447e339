"""The log pipeline: contract keys, stdlib records routed through it, redaction as a processor."""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest
import structlog

from migrator.logs import Redact, configure_logging, get_logger
from migrator.settings import parse_database_url, redact


@pytest.fixture
def stream():
    buffer = io.StringIO()
    yield buffer
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_structlog_and_stdlib_records_share_one_json_renderer(stream) -> None:
    configure_logging(fmt="json", level="info", stream=stream)
    get_logger("migrator").info("starting", command="upgrade")
    logging.getLogger("some.library").warning("careful: %s", "thing")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated knob", DeprecationWarning, stacklevel=1)
    first, second, third = lines(stream)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["timestamp"].endswith("Z")
    assert (first["event"], first["command"]) == ("starting", "upgrade")
    assert (second["logger"], second["level"], second["event"]) == (
        "some.library", "warning", "careful: thing",
    )  # fmt: skip
    assert third["logger"] == "py.warnings" and "deprecated knob" in third["event"]


def test_alembic_chatter_only_at_debug(stream) -> None:
    configure_logging(fmt="json", level="info", stream=stream)
    logging.getLogger("alembic.runtime.migration").info("Context impl PostgresqlImpl.")
    assert stream.getvalue() == ""
    configure_logging(fmt="json", level="debug", stream=stream)
    logging.getLogger("alembic.runtime.migration").info("Context impl PostgresqlImpl.")
    assert lines(stream)[0]["event"] == "Context impl PostgresqlImpl."


def test_level_filter(stream) -> None:
    configure_logging(fmt="json", level="warning", stream=stream)
    log = get_logger("migrator")
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_redaction_reaches_nested_values_and_stdlib_records(stream) -> None:
    secrets = parse_database_url("postgresql://app:hunter2%21x@db/app").secrets
    assert set(secrets) == {"hunter2%21x", "hunter2!x"}
    configure_logging(fmt="json", secrets=secrets, stream=stream)
    get_logger("migrator").error(
        "failed", message="auth hunter2!x failed", nested={"list": ["x hunter2%21x y"]}
    )
    logging.getLogger("sqlalchemy").error("connect to postgresql://app:hunter2!x@db/app")
    text = stream.getvalue()
    assert "hunter2" not in text
    first, second = lines(stream)
    assert first["message"] == "auth *** failed"
    assert first["nested"] == {"list": ["x *** y"]}
    assert second["event"] == "connect to postgresql://app:***@db/app"


def test_any_url_password_is_masked_even_when_unknown() -> None:
    assert redact("see mysql://root:toor@host/x now", ()) == "see mysql://root:***@host/x now"
    assert redact("no secrets here", ()) == "no secrets here"


def test_redact_processor_leaves_other_types_alone() -> None:
    processor = Redact(("s3cret",))
    event = processor(None, "info", {"event": "x s3cret", "count": 3, "flag": None})
    assert event == {"event": "x ***", "count": 3, "flag": None}


def test_console_renders_progress_lines(stream) -> None:
    configure_logging(fmt="console", stream=stream)
    get_logger("migrator").info(
        "migration_finished", step=3, steps=7, revision="a1b2c3", message="add due date",
        duration_s=0.42, direction="upgrade",
    )  # fmt: skip
    assert "[3/7] a1b2c3 add due date ... 0.42 s" in stream.getvalue()

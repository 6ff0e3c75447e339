"""The log pipeline: contract keys, stdlib records routed through it, redaction as a processor,
and the job's own events surviving whatever a project's env.py does to `logging`."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import warnings

import pytest
import structlog

from migrator.logs import Log, Redact
from migrator.redaction import redact
from migrator.urls import parse_database_url


@pytest.fixture
def stream():
    buffer = io.StringIO()
    yield buffer
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def structlog_log(**options) -> Log:
    log = Log(**options)
    log.route_stdlib()
    return log


EVENT = {
    "step": 3,
    "steps": 7,
    "revision": "a1b2c3",
    "message": "add due date hunter2!x",
    "nested": {"list": ["x", 1, None, 2.5], "url": "postgresql://u:hunter2!x@h/db"},
    "error": ValueError("boom"),
}


def test_structlog_and_stdlib_records_share_one_json_renderer(stream) -> None:
    logging.captureWarnings(False)  # undo an earlier test's capture, which pytest displaced
    structlog_log(stream=stream).info("starting", command="upgrade")
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
    assert list(second)[:4] == ["timestamp", "level", "logger", "event"]
    assert third["logger"] == "py.warnings" and "deprecated knob" in third["event"]


def test_alembic_chatter_only_at_debug(stream) -> None:
    structlog_log(level="info", stream=stream)
    logging.getLogger("alembic.runtime.migration").info("Context impl PostgresqlImpl.")
    assert stream.getvalue() == ""
    structlog_log(level="debug", stream=stream)
    logging.getLogger("alembic.runtime.migration").info("Context impl PostgresqlImpl.")
    assert lines(stream)[0]["event"] == "Context impl PostgresqlImpl."


@pytest.mark.parametrize("make", [Log, structlog_log])
def test_level_filter(stream, make) -> None:
    log = make(level="warning", stream=stream)
    log.info("quiet")
    log.warning("loud")
    log.error("louder")
    assert [line["event"] for line in lines(stream)] == ["loud", "louder"]


@pytest.mark.parametrize("make", [Log, structlog_log])
def test_redaction_reaches_nested_values(stream, make) -> None:
    secrets = parse_database_url("postgresql://app:hunter2%21x@db/app").secrets
    assert set(secrets) == {"hunter2%21x", "hunter2!x"}
    make(secrets=secrets, stream=stream).error(
        "failed", message="auth hunter2!x failed", nested={"list": ["x hunter2%21x y"]}
    )
    assert "hunter2" not in stream.getvalue()
    (event,) = lines(stream)
    assert event["message"] == "auth *** failed"
    assert event["nested"] == {"list": ["x *** y"]}


def test_stdlib_records_are_redacted_too(stream) -> None:
    structlog_log(secrets=("hunter2!x",), stream=stream)
    logging.getLogger("sqlalchemy").error("connect to postgresql://app:hunter2!x@db/app")
    assert lines(stream)[0]["event"] == "connect to postgresql://app:***@db/app"


def test_any_url_password_is_masked_even_when_unknown() -> None:
    assert redact("see mysql://root:toor@host/x now", ()) == "see mysql://root:***@host/x now"
    assert redact("no secrets here", ()) == "no secrets here"


def test_redact_processor_leaves_other_types_alone() -> None:
    processor = Redact(("s3cret",))
    event = processor(None, "info", {"event": "x", "message": "x s3cret", "count": 3, "flag": None})
    assert event == {"event": "x", "message": "x ***", "count": 3, "flag": None}


@pytest.mark.parametrize("make", [Log, structlog_log])
def test_the_jobs_own_event_names_and_command_are_never_masked(stream, make) -> None:
    make(secrets=("finished", "upgrade"), stream=stream).info(
        "finished", command="upgrade", message="upgrade finished"
    )
    (event,) = lines(stream)
    assert (event["event"], event["command"]) == ("finished", "upgrade")
    assert event["message"] == "*** ***"


def test_console_renders_progress_lines(stream) -> None:
    Log(fmt="console", stream=stream).info(
        "migration_finished", step=3, steps=7, revision="a1b2c3", message="add due date",
        duration_s=0.42, direction="upgrade",
    )  # fmt: skip
    assert "[3/7] a1b2c3 add due date ... 0.42 s" in stream.getvalue()


def test_job_events_survive_what_env_py_does_to_logging(stream, tmp_path) -> None:
    """Alembic's templates call fileConfig (disable_existing_loggers, own handlers, own levels);
    others call basicConfig, remove every handler, or raise the root level."""
    log = structlog_log(stream=stream)
    ini = tmp_path / "logging.ini"
    ini.write_text(
        "[loggers]\nkeys = root\n[handlers]\nkeys = null\n[formatters]\nkeys =\n"
        "[logger_root]\nlevel = CRITICAL\nhandlers = null\n"
        "[handler_null]\nclass = NullHandler\nargs = ()\n"
    )
    logging.config.fileConfig(ini, disable_existing_loggers=True)
    log.info("after_fileconfig")
    logging.getLogger().handlers.clear()
    logging.basicConfig(level=logging.CRITICAL, force=True, stream=io.StringIO())
    logging.disable(logging.CRITICAL)
    try:
        log.error("failed", exit_code=2)
    finally:
        logging.disable(logging.NOTSET)
    assert [line["event"] for line in lines(stream)] == ["after_fileconfig", "failed"]


def test_console_renders_plan_and_history_as_lines(stream) -> None:
    log = Log(fmt="console", stream=stream)
    log.info("plan", current=["a1b2c3"], steps=2, revisions=[
        {"revision": "b2c3d4", "down_revision": "a1b2c3", "message": "add due date",
         "direction": "upgrade"},
        {"revision": "c3d4e5", "down_revision": "b2c3d4", "message": None,
         "direction": "upgrade"},
    ])  # fmt: skip
    log.info("history", revisions=[
        {"revision": "a1b2c3", "down_revision": None, "message": "initial", "is_head": False},
        {"revision": "b2c3d4", "down_revision": "a1b2c3", "message": "due", "is_head": True},
    ])  # fmt: skip
    text = stream.getvalue()
    assert "{'" not in text and "[{" not in text, "no Python literal on a console"
    lines = [line.strip() for line in text.splitlines()]
    assert "plan: 2 step(s) from a1b2c3" in text
    assert "1. upgrade b2c3d4 add due date" in lines
    assert any(line.startswith("2. upgrade c3d4e5") for line in lines)  # then the logger name
    assert "a1b2c3 initial" in lines
    assert any(line.startswith("b2c3d4 due (head)") for line in lines)


def test_console_marks_applied_revisions_and_lists_pending_ones(stream) -> None:
    log = Log(fmt="console", stream=stream)
    log.info("history", current=["a1b2c3"], unknown=[], revisions=[
        {"revision": "a1b2c3", "message": "initial", "is_head": False, "applied": True},
        {"revision": "b2c3d4", "message": "due", "is_head": True, "applied": False},
    ])  # fmt: skip
    log.info("status", current=["a1b2c3"], heads=["b2c3d4"], unknown=[], verdict="pending",
             pending=[{"revision": "b2c3d4", "message": "add due date"}])  # fmt: skip
    text = stream.getvalue()
    assert "{'" not in text and "[{" not in text, "no Python literal on a console"
    lines = [line.strip() for line in text.splitlines()]
    assert "a1b2c3 initial (applied)" in lines
    assert any(line.startswith("b2c3d4 due (head)") for line in lines)
    assert "status: pending, at a1b2c3, 1 pending\n  b2c3d4 add due date " in text

"""The command line: parse -> run -> report. Every failure ends in the one final event."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from migrator import __version__, interrupts
from migrator.job import COMMANDS, Outcome, Request
from migrator.logs import Log
from migrator.report import report
from migrator.settings import COMPLETION_INDEX, OPTIONS, Settings, load_settings, termination_log
from migrator.urls import password_candidates


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Request, Settings]:
    """The request and settings, or UsageError; flags win over the environment."""
    request, arguments = _parse_request(argv)
    return request, _settings(arguments, environ)


def _parse_request(argv: Sequence[str]) -> tuple[Request, dict[str, Any]]:
    """The request, and the settings' flags that were given.

    A command line of one or two plain words that the registry accepts as they are (`upgrade
    head`, the one every run with nothing to do has) is read here: importing argparse and
    building the parser is ~19 M instructions, a tenth of the floor's whole run
    (bench/RESULTS.md). Every other line, and every mistake, goes to argparse, so its errors
    and its meaning stay the only ones (tests/test_cli.py compares the two on every command).
    """
    plain = _plain_request(argv)
    if plain is not None:
        return plain, {}
    from migrator.arguments import parse_request

    return parse_request(argv)


def _plain_request(argv: Sequence[str]) -> Request | None:
    if not 1 <= len(argv) <= 2 or any(not word.strip() or word[0] == "-" for word in argv):
        return None
    command = COMMANDS.get(argv[0])
    revision = argv[1] if len(argv) == 2 else None
    if command is None or (revision is None and command.revision == "required"):
        return None
    if revision is not None and command.revision is None:
        return None
    return Request(command=command.name, revision=revision or command.default)


def _settings(arguments: dict[str, Any], environ: Mapping[str, str]) -> Settings:
    values = {option.env: environ.get(option.env, "") for option in OPTIONS}
    values[COMPLETION_INDEX] = environ.get(COMPLETION_INDEX, "")  # a fleet's default shard
    values.update(arguments)
    flags = {option.env: option.flag for option in OPTIONS if option.env in arguments}
    return load_settings(values, stdout_is_tty=sys.stdout.isatty(), flags=flags)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    words = list(sys.argv[1:] if argv is None else argv)
    # When stdout carries a document (--sql's script, lint's annotations or SARIF), every line
    # of the log goes to stderr, whatever happens; until the request is known, --sql says so.
    stream: TextIO = sys.stderr if "--sql" in words else sys.stdout
    # Until the settings exist: JSON, and whatever stands where a password would.
    secrets = password_candidates(environ.get("DATABASE_URL", ""))
    log = Log(secrets=secrets, stream=stream)
    outcome = Outcome(command=next((word for word in words if word in COMMANDS), None))
    path = termination_log(environ)
    failure: BaseException | None = None
    interrupts.install()
    try:
        request, arguments = _parse_request(words)
        stream = sys.stderr if request.document_on_stdout else sys.stdout
        log = Log(secrets=secrets, stream=stream)
        outcome = Outcome(command=request.command)
        settings = _settings(arguments, environ)
        secrets, path = settings.secrets, settings.termination_log
        log = Log(fmt=settings.log_format, level=settings.log_level, secrets=secrets, stream=stream)
        _run(request, settings, log, outcome)
    except BaseException as error:  # whatever it is, it ends in the one final event
        failure = error
    finally:
        interrupts.shield()  # a late signal must not cut the final event short
    if outcome.secrets:
        secrets = (*secrets, *outcome.secrets)
        log = log.bind(secrets=secrets)
    return report(log, outcome, started, failure, termination_log=path, secrets=secrets)


def _run(request: Request, settings: Settings, log: Log, outcome: Outcome) -> None:
    log.info(
        "starting",
        command=request.command,
        revision=request.revision,
        sql=request.sql,
        version=__version__,
        database=settings.database.redacted if settings.database else None,
        alembic_config=settings.alembic_config,
        wait_timeout_s=settings.wait_timeout,
        lock_timeout_s=settings.lock_timeout,
        pid=os.getpid(),
        host=os.uname().nodename,
    )
    # Only now: the first line is out before the driver (psycopg2, a third of a run with
    # nothing to do) is even loaded.
    from migrator.commands import Job

    run = COMMANDS[request.command].function()
    run(Job(request=request, settings=settings, log=log, outcome=outcome))


def run() -> None:
    """The process entry point: run, then exit with the code.

    Every line is written and every connection closed by now, so the interpreter's teardown of
    the module graph is skipped: it costs ~12 ms of CPU, an eighth of a run with nothing to do
    (15 runs each way, `sys.exit` 91-106 ms against `os._exit` 80-93 ms median). Nothing of the
    job registers atexit handlers; coverage measures the job through its `_exit` patch
    (pyproject.toml).
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

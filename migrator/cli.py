"""Command line -> a command function -> the final report; every failure ends up there."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import NoReturn

from migrator import __version__, interrupts
from migrator.commands import COMMANDS, Job, Request
from migrator.errors import Interrupted, UsageError
from migrator.logs import Log
from migrator.outcome import Outcome
from migrator.report import report
from migrator.settings import (
    OPTIONS,
    Settings,
    load_settings,
    password_candidates,
    termination_log,
)

_COMMAND_ONLY = {"MIGRATE_AWAIT_TIMEOUT": "await-head"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake becomes a UsageError (one JSON event) instead of text on stderr."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; usage: {' '.join(self.format_usage().split()[1:])}")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    for option in OPTIONS:
        if option.env not in _COMMAND_ONLY:
            _add_option(common, option.env)
    parser = _Parser(
        prog="entrypoint.py",
        description="Wait for the database, take the migration lock, run Alembic, log JSON.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for name, revision_help in (
        ("upgrade", "target revision (default: head)"),
        ("downgrade", "target: -1, a revision id, or base"),
        ("stamp", "revision to record without running migrations"),
    ):
        command = commands.add_parser(name, parents=[common], help=f"{name} the database")
        nargs = "?" if name == "upgrade" else None
        command.add_argument("revision", nargs=nargs, default="head", help=revision_help)
        command.add_argument("--sql", action="store_true", help="print the SQL; no database")
    for name, text in (
        ("current", "report the database's revision"),
        ("heads", "report the scripts' head revisions"),
        ("history", "report every revision, oldest first"),
        ("check", "compare the models with the database (exit 7 on any difference)"),
        ("wait", "only wait until the database accepts connections"),
        ("await-head", "poll until the database is at head (exit 7 at --timeout)"),
    ):
        command = commands.add_parser(name, parents=[common], help=text)
        for env, only in _COMMAND_ONLY.items():
            if only == name:
                _add_option(command, env)
    return parser


def _add_option(parser: _Parser, env: str) -> None:
    option = next(option for option in OPTIONS if option.env == env)
    default = f" (default {option.default})" if option.default else ""
    # SUPPRESS: an absent flag must not hide the variable, nor a flag given before the command.
    parser.add_argument(
        option.flag, dest=env, default=argparse.SUPPRESS, help=f"{option.help} [{env}]{default}"
    )


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Request, Settings]:
    """The request and settings, or UsageError; flags win over the environment."""
    arguments = vars(build_parser().parse_args(argv))
    request = Request(
        command=arguments.pop("command"),
        revision=arguments.pop("revision", None),
        sql=arguments.pop("sql", False),
    )
    values = {option.env: environ.get(option.env, "") for option in OPTIONS}
    values.update(arguments)
    return request, load_settings(values, stdout_is_tty=sys.stdout.isatty())


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    words = sys.argv[1:] if argv is None else argv
    interrupts.install()
    try:
        request, settings = parse(words, environ)
    except (Exception, Interrupted) as error:
        secrets = _secrets_in(environ)
        outcome = Outcome(command=next((word for word in words if word in COMMANDS), None))
        interrupts.shield()
        path = termination_log(environ)
        return report(
            Log(secrets=secrets), outcome, started, error, termination_log=path, secrets=secrets
        )

    # --sql writes the SQL script to stdout, so the log moves to stderr there.
    log = Log(
        fmt=settings.log_format,
        level=settings.log_level,
        secrets=settings.secrets,
        stream=sys.stderr if request.sql else sys.stdout,
    )
    outcome = Outcome(command=request.command)
    failure: BaseException | None = None
    try:
        log.info(
            "starting",
            command=request.command,
            revision=request.revision,
            sql=request.sql,
            version=__version__,
            database=settings.database.redacted if settings.database else None,
            alembic_config=str(settings.alembic_config),
            wait_timeout_s=settings.wait_timeout,
            lock_timeout_s=settings.lock_timeout,
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        COMMANDS[request.command](Job(request=request, settings=settings, log=log, outcome=outcome))
    except (Exception, Interrupted) as error:
        failure = error
    interrupts.shield()  # a late signal must not cut the final event short
    return report(
        log,
        outcome,
        started,
        failure,
        termination_log=settings.termination_log,
        secrets=settings.secrets,
    )


def _secrets_in(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Best effort for errors raised before the settings exist."""
    return password_candidates(environ.get("DATABASE_URL", ""))


def run() -> None:
    """The process entry point: run, then exit with the code."""
    code = main()
    # Everything is closed and every line written: skip the interpreter's teardown of the module
    # graph, which once SQLAlchemy and Alembic are loaded costs ~60 ms for nothing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

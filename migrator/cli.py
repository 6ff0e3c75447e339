"""The command line: parse -> run -> report. Every failure ends in the one final event."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TextIO

from migrator import __version__, interrupts
from migrator.errors import UsageError
from migrator.job import COMMANDS, Outcome, Request
from migrator.logs import Log
from migrator.report import report
from migrator.settings import OPTIONS, Settings, load_settings, termination_log
from migrator.urls import password_candidates

# Variables whose flag only some commands accept: {variable: the command that takes it}.
_COMMAND_ONLY = {env: command.name for command in COMMANDS.values() for env in command.options}
# Each command's own flags, and the commands that take each.
_FLAGS = {flag.name: flag for command in COMMANDS.values() for flag in command.flags}
_FLAG_OWNERS = {
    name: [command.name for command in COMMANDS.values() if flag in command.flags]
    for name, flag in _FLAGS.items()
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """A fixed width: argparse builds a formatter for every option it adds, and finding the
    terminal's width each time imports shutil (~4 ms of a run with nothing to do)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=100)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake becomes a UsageError (one JSON event) instead of text on stderr."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; usage: {' '.join(self.format_usage().split()[1:])}")


def build_parser() -> argparse.ArgumentParser:
    """One parser, options before or after the command, built from the command registry.

    Not one subparser per command: each costs about a millisecond to build, on every run.
    """
    listing = "\n".join(f"  {name:<12} {command.summary}" for name, command in COMMANDS.items())
    parser = _Parser(
        prog="entrypoint.py",
        usage="%(prog)s [options] COMMAND [REVISION] [options]",
        description="Wait for the database, take the migration lock, run Alembic, log JSON.",
        epilog=f"commands:\n{listing}",
        formatter_class=_Formatter,
    )
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="see below")
    takes = [name for name, command in COMMANDS.items() if command.revision]
    parser.add_argument(
        "revision", nargs="?", metavar="REVISION", help=f"the target of {', '.join(takes)}"
    )
    sql = [name for name, command in COMMANDS.items() if command.sql]
    parser.add_argument(
        "--sql", action="store_true", help=f"{', '.join(sql)}: print the SQL; no database"
    )
    for flag in _FLAGS.values():
        if flag.takes_value:
            parser.add_argument(flag.flag, dest=f"flag:{flag.name}", default=None, help=flag.help)
        else:
            parser.add_argument(
                flag.flag, dest=f"flag:{flag.name}", action="store_true", help=flag.help
            )
    parser.add_argument("--version", action="version", version=__version__)
    for option in OPTIONS:
        default = f" (default {option.default})" if option.default else ""
        # SUPPRESS: an absent flag must not hide the variable.
        parser.add_argument(
            option.flag,
            dest=option.env,
            default=argparse.SUPPRESS,
            help=f"{option.help} [{option.env}]{default}",
        )
    return parser


def _request(parser: argparse.ArgumentParser, arguments: dict[str, Any]) -> Request:
    """What the command line asks for, checked against what the command accepts."""
    command = COMMANDS[arguments.pop("command")]
    name, revision, sql = command.name, arguments.pop("revision"), arguments.pop("sql")
    given = {name: arguments.pop(f"flag:{name}") for name in _FLAGS}
    given = {name: value for name, value in given.items() if value not in (None, False)}
    if revision is not None and not revision.strip():
        # `stamp "$REV"` with REV unset must not quietly mean `stamp head`.
        parser.error(f"{name}: REVISION is empty")
    if command.revision == "required" and revision is None:
        parser.error(f"{name}: the following arguments are required: REVISION")
    if command.revision is None and revision is not None:
        parser.error(f"{name}: unrecognized arguments: {revision}")
    if sql and not command.sql:
        takes = [other.name for other in COMMANDS.values() if other.sql]
        parser.error(f"{name}: --sql applies to {', '.join(takes)} only")
    for flag in given:
        if _FLAGS[flag] not in command.flags:
            owners = ", ".join(_FLAG_OWNERS[flag])
            parser.error(f"{name}: {_FLAGS[flag].flag} applies to {owners} only")
    if given.get("purge") and sql:
        parser.error("stamp: --purge needs the database, it cannot be combined with --sql")
    flags = {option.env: option.flag for option in OPTIONS}
    for env, owner in _COMMAND_ONLY.items():
        if env in arguments and name != owner:
            parser.error(f"{name}: {flags[env]} applies to {owner} only")
    return Request(
        command=name,
        revision=revision or command.default,
        sql=sql,
        purge=bool(given.pop("purge", False)),
        options=given,
    )


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Request, Settings]:
    """The request and settings, or UsageError; flags win over the environment."""
    request, arguments = _parse_request(argv)
    return request, _settings(arguments, environ)


def _parse_request(argv: Sequence[str]) -> tuple[Request, dict[str, Any]]:
    """The request, and the settings' flags that were given."""
    parser = build_parser()
    arguments = vars(parser.parse_intermixed_args(argv))
    return _request(parser, arguments), arguments


def _settings(arguments: dict[str, Any], environ: Mapping[str, str]) -> Settings:
    values = {option.env: environ.get(option.env, "") for option in OPTIONS}
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

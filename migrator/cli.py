"""Command line -> a command function -> the final report; every failure ends up there."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence

from migrator import __version__, interrupts
from migrator.errors import Interrupted, UsageError
from migrator.logs import Log
from migrator.outcome import Outcome
from migrator.records import Record
from migrator.report import report
from migrator.settings import (
    OPTIONS,
    Settings,
    load_settings,
    password_candidates,
    termination_log,
)

TYPE_CHECKING = False  # `typing` stays unimported on a run with nothing to do (records.py)
if TYPE_CHECKING:
    from typing import Any, NoReturn


class Request(Record):
    """What the command line asked for."""

    command: str
    revision: str | None = None
    sql: bool = False
    purge: bool = False  # stamp: empty the version table first (Alembic's --purge)
    lint: dict[str, str] | None = None  # lint's own options: since, format, output, pg_version


# command: (what it does, how it takes a REVISION: None, "optional" or "required")
_COMMANDS = {
    "upgrade": ("upgrade the database (REVISION default: head)", "optional"),
    "downgrade": ("downgrade the database to REVISION: -1, a revision id, or base", "required"),
    "stamp": ("record REVISION as current without running migrations", "required"),
    "current": ("report the database's revision", None),
    "heads": ("report the scripts' head revisions", None),
    "history": ("report every revision, oldest first", None),
    "check": ("compare the models with the database (exit 7 on any difference)", None),
    "wait": ("only wait until the database accepts connections", None),
    "await-head": ("poll until the database is at head (exit 7 at --timeout)", None),
    "lint": (
        "check the revisions (REVISION: a range A:B, default all) offline; exit 8",
        "optional",
    ),
}
_SQL_COMMANDS = ("upgrade", "downgrade", "stamp")
_COMMAND_ONLY = {"MIGRATE_AWAIT_TIMEOUT": ("--timeout", "await-head")}
# lint's options: flag -> help; not settings, since no other command reads them.
_LINT_OPTIONS = {
    "--since": "lint: the revisions after REV (those a pull request adds)",
    "--format": "lint: json (events only, the default), github (annotations) or sarif",
    "--output": "lint: write the report to this file instead of stdout",
    "--pg-version": "lint: the PostgreSQL version the rules assume (default 14)",
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
    """One parser, options before or after the command.

    Not one subparser per command: each costs about a millisecond to build, on every run.
    """
    commands = "\n".join(f"  {name:<12} {text}" for name, (text, _) in _COMMANDS.items())
    parser = _Parser(
        prog="entrypoint.py",
        usage="%(prog)s [options] COMMAND [REVISION] [options]",
        description="Wait for the database, take the migration lock, run Alembic, log JSON.",
        epilog=f"commands:\n{commands}",
        formatter_class=_Formatter,
    )
    parser.add_argument("command", choices=_COMMANDS, metavar="COMMAND", help="see below")
    parser.add_argument(
        "revision", nargs="?", metavar="REVISION", help="the target of upgrade, downgrade, stamp"
    )
    parser.add_argument(
        "--sql", action="store_true", help="upgrade, downgrade, stamp: print the SQL; no database"
    )
    parser.add_argument(
        "--purge",
        action="store_true",
        help="stamp: empty the version table first, even of revisions the scripts do not know",
    )
    parser.add_argument("--version", action="version", version=__version__)
    for flag, text in _LINT_OPTIONS.items():
        parser.add_argument(flag, dest=f"lint:{flag[2:]}", default=None, help=text)
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
    """What the command line asks for, checked against what each command accepts."""
    command, revision = arguments.pop("command"), arguments.pop("revision")
    sql, purge = arguments.pop("sql"), arguments.pop("purge")
    lint = {
        flag[2:]: value
        for flag in _LINT_OPTIONS
        if (value := arguments.pop(f"lint:{flag[2:]}")) is not None
    }
    if lint and command != "lint":
        parser.error(f"{command}: {', '.join(f'--{name}' for name in lint)} applies to lint only")
    takes = _COMMANDS[command][1]
    if revision is not None and not revision.strip():
        # `stamp "$REV"` with REV unset must not quietly mean `stamp head`.
        parser.error(f"{command}: REVISION is empty")
    if takes == "required" and revision is None:
        parser.error(f"{command}: the following arguments are required: REVISION")
    if takes is None and revision is not None:
        parser.error(f"{command}: unrecognized arguments: {revision}")
    if sql and command not in _SQL_COMMANDS:
        parser.error(f"{command}: --sql applies to {', '.join(_SQL_COMMANDS)} only")
    if purge and command != "stamp":
        parser.error(f"{command}: --purge applies to stamp only")
    if purge and sql:
        parser.error("stamp: --purge needs the database, it cannot be combined with --sql")
    for env, (flag, only) in _COMMAND_ONLY.items():
        if env in arguments and command != only:
            parser.error(f"{command}: {flag} applies to {only} only")
    default = "head" if takes and command != "lint" else None  # lint: every revision
    return Request(
        command=command,
        revision=revision or default,
        sql=sql,
        purge=purge,
        lint=lint if command == "lint" else None,
    )


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Request, Settings]:
    """The request and settings, or UsageError; flags win over the environment."""
    parser = build_parser()
    arguments = vars(parser.parse_intermixed_args(argv))
    request = _request(parser, arguments)
    values = {option.env: environ.get(option.env, "") for option in OPTIONS}
    values.update(arguments)
    flags = {option.env: option.flag for option in OPTIONS if option.env in arguments}
    return request, load_settings(values, stdout_is_tty=sys.stdout.isatty(), flags=flags)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    words = sys.argv[1:] if argv is None else argv
    interrupts.install()
    try:
        request, settings = parse(words, environ)
    except (Exception, Interrupted) as error:
        secrets = _secrets_in(environ)
        outcome = Outcome(command=next((word for word in words if word in _COMMANDS), None))
        interrupts.shield()
        path = termination_log(environ)
        return report(
            Log(secrets=secrets), outcome, started, error, termination_log=path, secrets=secrets
        )

    # --sql writes the SQL script to stdout, so the log moves to stderr there; so does a lint
    # report written to stdout.
    lint = request.lint or {}
    report_on_stdout = lint.get("format") in ("github", "sarif") and "output" not in lint
    log = Log(
        fmt=settings.log_format,
        level=settings.log_level,
        secrets=settings.secrets,
        stream=sys.stderr if request.sql or report_on_stdout else sys.stdout,
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
            alembic_config=settings.alembic_config,
            wait_timeout_s=settings.wait_timeout,
            lock_timeout_s=settings.lock_timeout,
            pid=os.getpid(),
            host=os.uname().nodename,
        )
        # Only now: the first line is out before the driver (psycopg2, a third of a run with
        # nothing to do) is even loaded.
        from migrator.commands import COMMANDS, Job

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

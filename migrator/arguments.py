"""The full command line, parsed with argparse from the command registry.

cli.py reads the plain command lines (`upgrade head`) itself and hands every other one here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from migrator import __version__
from migrator.errors import UsageError
from migrator.job import COMMANDS, Request
from migrator.settings import OPTIONS

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


def parse_request(argv: Sequence[str]) -> tuple[Request, dict[str, Any]]:
    """The request, and the settings' flags that were given."""
    parser = build_parser()
    arguments = vars(parser.parse_intermixed_args(argv))
    return _request(parser, arguments), arguments

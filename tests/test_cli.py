"""The command line, parsed in process: where flags may go, what each command accepts."""

from __future__ import annotations

import pytest

from migrator import cli
from migrator.arguments import parse_request
from migrator.errors import UsageError
from migrator.job import COMMANDS, Request

ENV = {"DATABASE_URL": "sqlite:///job.db", "MIGRATE_LOCK_TIMEOUT": "9"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--lock-timeout", "3", "upgrade"],
        ["upgrade", "--lock-timeout", "3"],
        ["upgrade", "head", "--lock-timeout=3"],
        ["--lock-timeout=3", "upgrade", "head"],
    ],
)
def test_flags_go_before_or_after_the_command_and_win_over_the_environment(argv) -> None:
    request, settings = cli.parse(argv, ENV)
    assert request == Request(command="upgrade", revision="head", sql=False)
    assert settings.lock_timeout == 3.0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["upgrade"], Request("upgrade", "head")),
        (["upgrade", "+2", "--sql"], Request("upgrade", "+2", True)),
        (["downgrade", "-1"], Request("downgrade", "-1")),
        (["stamp", "base"], Request("stamp", "base")),
        (["stamp", "--purge", "base"], Request("stamp", "base", purge=True)),
        (["current"], Request("current")),
        (["await-head", "--timeout", "4"], Request("await-head")),
    ],
)
def test_each_command_gets_its_revision_and_only_its_options(argv, expected) -> None:
    request, settings = cli.parse(argv, ENV)
    assert request == expected
    assert settings.lock_timeout == 9.0  # from the environment


def test_every_command_in_the_registry_has_a_function() -> None:
    for command in COMMANDS.values():
        assert callable(command.function()), command.name


def test_usage_errors_show_the_short_usage() -> None:
    with pytest.raises(UsageError) as error:
        cli.parse(["history", "head"], ENV)
    assert str(error.value).endswith("usage: entrypoint.py [options] COMMAND [REVISION] [options]")


WORDS = [*COMMANDS, "head", "base", "-1", "+2", "abc123", " ", "", "nonsense", "--sql", "-h"]


@pytest.mark.parametrize("first", WORDS)
@pytest.mark.parametrize("second", [None, *WORDS])
def test_a_plain_command_line_means_what_argparse_makes_of_it(first, second) -> None:
    """cli reads plain words itself (the no-op's speed): the same request as argparse's, and
    every line it does not take, or argparse refuses, is left to argparse."""
    argv = [first] if second is None else [first, second]
    plain = cli._plain_request(argv)
    try:
        expected = parse_request(argv)
    except (UsageError, SystemExit):
        assert plain is None
        return
    if all(word.strip() and word[0] != "-" for word in argv):
        assert (plain, {}) == expected  # every accepted plain line takes the short way
    else:
        assert plain is None

"""squawk, the PostgreSQL migration linter, run on each revision's own SQL.

The binary comes from the `squawk-cli` wheel (a pinned dependency), installed beside the
interpreter. Each revision is linted alone, so squawk sees the tables it creates as new and every
other table as an existing one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from typing import Any

from migrator.errors import ConfigError
from migrator.lint import sql
from migrator.lint.catalog import OFF_BY_DEFAULT, RULES, Finding
from migrator.lint.rendering import Rendered, Statement

TIMEOUT = 60.0  # seconds per revision; squawk takes milliseconds
_EMPTY = "/"  # squawk looks for .squawk.toml from its working directory up; / has none


def binary() -> str:
    """The squawk executable: the one installed with this interpreter first, then PATH."""
    here = os.path.join(sysconfig.get_path("scripts"), "squawk")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("squawk")
    if found is None:
        # The migration image lands here (squawk would break its size budget): point at the
        # image that has it.
        raise ConfigError(
            "lint needs the squawk binary, which the migration image does not ship: in a "
            "container, use the lint image (docker build --target lint -t migrate-job:lint .); "
            "elsewhere pip install 'migrate-job[lint]' (README: Lint, In the image)"
        )
    return found


def check(revisions: list[Rendered], pg_version: str) -> Iterator[Finding]:
    """squawk's findings on each revision's own statements (not Alembic's bookkeeping, not a
    table the same revision created)."""
    command = _command(pg_version)
    for revision in revisions:
        if revision.statements:
            yield from _findings(revision, _run(command, revision))


def _findings(revision: Rendered, found: list[dict[str, Any]]) -> Iterator[Finding]:
    for item in found:
        statement = _statement_at(revision, int(item.get("line", -1)) + 1)  # squawk counts from 0
        if statement is None or statement.on_new_table:
            continue
        name = str(item.get("rule_name"))
        said = str(item.get("message") or "")
        if item.get("help"):
            said += f" {item['help']}"
        rule = RULES.get(name)
        # Ours names the safe pattern for Alembic; squawk's own words follow for the details.
        message = f"{rule.message(statement.shape.table)}. squawk: {said}" if rule else said
        yield Finding(
            rule=name,
            revision=revision.revision,
            file=revision.path,
            line=statement.line,
            message=message,
            sql=sql.redacted(statement.text),
        )


def _command(pg_version: str) -> list[str]:
    return [
        binary(),
        "--reporter",
        "json",
        f"--pg-version={pg_version}",
        f"--exclude={','.join(OFF_BY_DEFAULT)}",
    ]


def _run(command: list[str], revision: Rendered) -> list[dict[str, Any]]:
    """One squawk process per revision, its SQL on stdin: nothing is written to disk (the image
    runs with a read-only root filesystem), and a process costs ~15 ms."""
    try:
        done = subprocess.run(
            [*command, f"--stdin-filepath={revision.revision}.sql"],
            input=revision.sql,
            cwd=_EMPTY,  # a .squawk.toml lying around must not change what the job reports
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"squawk could not run: {error}") from None
    try:
        found = json.loads(done.stdout) if done.stdout.strip() else []
    except json.JSONDecodeError:
        found = None
    # squawk exits 1 when it found something; anything else, or no JSON, is squawk failing.
    if done.returncode not in (0, 1) or not isinstance(found, list):
        detail = (done.stderr or done.stdout).strip()[:500]
        raise ConfigError(f"squawk failed (exit {done.returncode}): {detail}")
    return [item for item in found if isinstance(item, dict)]


def _statement_at(revision: Rendered, line: int) -> Statement | None:
    for statement in revision.statements:
        if statement.sql_line <= line <= statement.sql_end_line:
            return statement
    return None

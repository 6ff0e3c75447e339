"""squawk, the PostgreSQL migration linter, run once over every revision's own SQL.

The binary comes from the `squawk-cli` wheel (a pinned dependency), installed beside the
interpreter. Each revision is one file, so squawk sees the tables it creates as new and every
other table as an existing one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from typing import Any

from migrator.errors import ConfigError
from migrator.lint import sql
from migrator.lint.catalog import OFF_BY_DEFAULT, RULES, Finding
from migrator.lint.rendering import Rendered, Statement

TIMEOUT = 120.0  # seconds; squawk takes milliseconds per file


def binary() -> str:
    """The squawk executable: the one installed with this interpreter first, then PATH."""
    here = os.path.join(sysconfig.get_path("scripts"), "squawk")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("squawk")
    if found is None:
        raise ConfigError(
            "lint needs the squawk binary, from the squawk-cli package: "
            "pip install squawk-cli (the image ships it)"
        )
    return found


def check(revisions: list[Rendered], pg_version: str) -> Iterator[Finding]:
    """squawk's findings on each revision's own statements (not Alembic's bookkeeping, not a
    table the same revision created)."""
    rendered = [revision for revision in revisions if revision.statements]
    if not rendered:
        return
    with tempfile.TemporaryDirectory(prefix="migrate-job-lint-") as directory:
        files: dict[str, Rendered] = {}
        for number, revision in enumerate(rendered):
            name = f"{number:05d}_{revision.revision}.sql"
            with open(os.path.join(directory, name), "w", encoding="utf-8") as file:
                file.write(revision.sql)
            files[name] = revision
        # cwd: a .squawk.toml lying around must not change what the job reports.
        found = _run([*_command(pg_version), *files], directory)
    for item in found:
        about = files.get(os.path.basename(str(item.get("file", ""))))
        if about is None:
            continue
        statement = _statement_at(about, int(item.get("line", -1)) + 1)  # squawk counts from 0
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
            revision=about.revision,
            file=about.path,
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


def _run(command: list[str], directory: str) -> list[dict[str, Any]]:
    try:
        done = subprocess.run(
            command,
            cwd=directory,
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

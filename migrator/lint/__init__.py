"""`lint`: find the revisions that would lock production tables or break running pods.

Offline: each revision is rendered to SQL on its own (rendering.py), checked by squawk
(squawk.py) and by the Alembic-aware rules (rules.py), filtered by the revision files' reasoned
ignores (ignores.py), and reported (output.py). PostgreSQL only.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from typing import Any, TextIO

from migrator import project as gateway
from migrator.errors import ConfigError, LintFindings, ProjectError
from migrator.lint import ignores, output, rendering, rules, squawk
from migrator.lint.catalog import Finding
from migrator.logs import Log

DEFAULT_PG_VERSION = "14"  # the oldest PostgreSQL release still supported upstream
_PG_VERSION = re.compile(r"(?P<major>\d{1,2})(?:\.\d{1,2})?")


def lint(
    alembic_config: str,
    *,
    revisions: str | None = None,
    since: str | None = None,
    fmt: str = "json",
    output_path: str | None = None,
    pg_version: str | None = None,
    log: Log,
    stdout: TextIO | None = None,
) -> dict[str, Any]:
    """Lint the revisions (all, a range `A:B`, or those after `since`); the summary when no
    finding is an error, else LintFindings. `fmt` github/sarif writes its report to
    `output_path`, or to `stdout` without one."""
    started = time.monotonic()
    version = (pg_version or DEFAULT_PG_VERSION).strip()
    parsed = _PG_VERSION.fullmatch(version)
    if parsed is None:
        raise ConfigError(f"--pg-version {version!r}: expected a PostgreSQL version such as 15")
    if fmt not in output.FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(output.FORMATS)}")
    if revisions is not None and since is not None:
        raise ConfigError("lint takes a RANGE or --since REV, not both")

    report = _open(output_path)  # before the work: an unwritable path fails at once
    try:
        return _lint(
            alembic_config,
            revisions=revisions,
            since=since,
            fmt=fmt,
            version=version,
            major=int(parsed["major"]),
            log=log,
            stream=report or stdout or sys.stdout,
            started=started,
        )
    finally:
        if report is not None:
            report.close()


def _open(path: str | None) -> TextIO | None:
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")  # closed by lint()
    except OSError as error:
        raise ConfigError(f"--output {path}: cannot write the report: {error}") from None


def _lint(
    alembic_config: str,
    *,
    revisions: str | None,
    since: str | None,
    fmt: str,
    version: str,
    major: int,
    log: Log,
    stream: TextIO,
    started: float,
) -> dict[str, Any]:
    squawk.binary()  # missing: say so before any work
    project = gateway.load(alembic_config, log, rendering.OFFLINE_URL)
    selected = rendering.select(project.script, revisions, since)
    rendered = [rendering.render(project, revision) for revision in selected]

    findings: list[Finding] = []
    found_ignores: list[ignores.Ignore] = []
    for revision in rendered:
        source = _source(revision.path)
        findings.extend(rules.check(revision, source, major))
        found_ignores.extend(ignores.read(revision.revision, revision.path, source))
    findings.extend(squawk.check(rendered, version))
    findings, ignored = ignores.apply(findings, found_ignores)
    order = {revision.revision: number for number, revision in enumerate(rendered)}
    findings.sort(key=lambda f: (order.get(f.revision, 0), f.line or 0, f.rule))

    errors = [finding for finding in findings if finding.severity == "error"]
    summary: dict[str, Any] = {
        "revisions": [revision.revision for revision in rendered],
        "findings": len(errors),
        "warnings": len(findings) - len(errors),
        "ignored": len(ignored),
        "rules": dict(sorted(Counter(f.rule for f in findings).items())),
        "pg_version": version,
        "duration_s": round(time.monotonic() - started, 3),
    }
    output.ignored(log, ignored)
    output.events(log, findings)
    log.info("lint_summary", **summary)
    if fmt != "json" or stream is not sys.stdout:  # json to stdout: the events say it all
        output.write_report(fmt, findings, summary, stream)
    if errors:
        files = len({finding.file for finding in errors})
        raise LintFindings(
            f"lint found {len(errors)} problem(s) in {files} revision file(s); each "
            "lint_finding event names the rule, the line and the safe pattern",
            **{key: summary[key] for key in ("findings", "warnings", "ignored", "rules")},
        )
    return summary


def _source(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ProjectError(f"cannot read {path}: {error}", file=path) from None

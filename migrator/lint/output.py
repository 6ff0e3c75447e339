"""The findings, as JSON events (always), and as a report for CI: GitHub Actions annotations
(`--format github`) or a SARIF 2.1.0 log (`--format sarif`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, TextIO

from migrator import __version__
from migrator.lint.catalog import RULES, Finding
from migrator.lint.ignores import Ignore
from migrator.logs import Log

FORMATS = ("json", "github", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def shown(path: str) -> str:
    """A path as CI tools want it: relative to the working directory (the checkout) if inside."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def events(log: Log, findings: Sequence[Finding]) -> None:
    for finding in findings:
        fields = {**finding.as_event(), "file": shown(finding.file)}
        if finding.severity == "error":
            log.error("lint_finding", **fields)
        else:
            log.warning("lint_finding", **fields)


def ignored(log: Log, pairs: Sequence[tuple[Finding, Ignore]]) -> None:
    """What was let through, and why: a reviewer reads the reasons here."""
    for finding, ignore in pairs:
        log.info(
            "lint_ignored",
            rule=finding.rule,
            revision=finding.revision,
            file=shown(finding.file),
            line=finding.line,
            reason=ignore.reason,
            ignore_line=ignore.line,
        )


def github(findings: Sequence[Finding]) -> str:
    """One workflow command per finding: GitHub shows each on the file's line in the diff."""
    lines = []
    for finding in findings:
        level = "error" if finding.severity == "error" else "warning"
        properties = f"file={_property(shown(finding.file))}"
        if finding.line is not None:
            properties += f",line={finding.line}"
        properties += f",title={_property(f'{finding.rule} ({finding.revision})')}"
        lines.append(f"::{level} {properties}::{_data(finding.message)}")
    return "".join(f"{line}\n" for line in lines)


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    used = sorted({finding.rule for finding in findings} | set(RULES))
    rules = []
    for name in used:
        rule = RULES.get(name)
        entry: dict[str, Any] = {"id": name}
        if rule is not None:
            entry["shortDescription"] = {"text": rule.problem}
            entry["help"] = {"text": f"Safe pattern: {rule.fix}"}
        rules.append(entry)
    results = []
    for finding in findings:
        location: dict[str, Any] = {"artifactLocation": {"uri": shown(finding.file)}}
        if finding.line is not None:
            location["region"] = {"startLine": finding.line}
        results.append(
            {
                "ruleId": finding.rule,
                "ruleIndex": used.index(finding.rule),
                "level": "error" if finding.severity == "error" else "warning",
                "message": {"text": finding.message},
                "locations": [{"physicalLocation": location}],
                "properties": {"revision": finding.revision, "sql": finding.sql},
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "migrate-job lint",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def document(findings: Sequence[Finding], summary: dict[str, Any]) -> dict[str, Any]:
    """`--format json --output FILE`: the findings and the summary as one JSON document."""
    return {
        "findings": [{**f.as_event(), "file": shown(f.file)} for f in findings],
        "summary": summary,
    }


def write_report(
    fmt: str, findings: Sequence[Finding], summary: dict[str, Any], stream: TextIO
) -> None:
    if fmt == "github":
        stream.write(github(findings))
    elif fmt == "sarif":
        stream.write(json.dumps(sarif(findings), indent=2) + "\n")
    else:
        stream.write(json.dumps(document(findings, summary), indent=2) + "\n")
    stream.flush()

"""`# migrate-job: lint-ignore=RULE[,RULE...] reason` comments in a revision file.

Where the comment stands says what it covers:
- at the top level of the file (outside every function): the whole file;
- at the end of a line of code: the Python statement on that line (a `with` covers its body);
- on a line of its own inside a function: the next statement.

A finding is covered when its line falls within that statement. An ignore without a reason is
not applied and is a finding itself; one that covers nothing is reported as unused (a warning).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field

from migrator.lint.catalog import RULES, Finding

# The reason runs to the end of the comment, or to a further ` # ` (another comment after it).
_IGNORE = re.compile(
    r"#\s*migrate-job:\s*lint-ignore=(?P<rules>[\w-]+(?:,[\w-]+)*)?(?P<reason>.*?)(?:\s#\s.*)?$"
)


@dataclass
class Ignore:
    revision: str
    file: str
    line: int  # of the comment
    rules: frozenset[str]
    reason: str
    span: tuple[int, int] | None  # covered lines; None: the whole file
    used: set[str] = field(default_factory=set)

    def covers(self, finding: Finding) -> bool:
        if finding.rule not in self.rules or finding.file != self.file:
            return False
        if self.span is None:
            return True
        return finding.line is not None and self.span[0] <= finding.line <= self.span[1]


def read(revision: str, path: str, source: str) -> list[Ignore]:
    """Every lint-ignore comment in one revision file, with what it covers."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for line, text, trailing in _comments(source):
        match = _IGNORE.match(text)
        if match is None:
            continue
        rules = frozenset((match["rules"] or "").split(",")) - {""}
        span = _span(tree, line, trailing)
        found.append(Ignore(revision, path, line, rules, match["reason"].strip(), span))
    return found


def _comments(source: str) -> Iterable[tuple[int, str, bool]]:
    """(line, text, whether code precedes it on its line) for every comment."""
    code_lines: set[int] = set()
    comments = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments.append((token.start[0], token.string))
            elif token.type not in (
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENCODING,
                tokenize.ENDMARKER,
            ):
                for number in range(token.start[0], token.end[0] + 1):
                    code_lines.add(number)
    except (tokenize.TokenError, SyntaxError):
        return []
    return [(line, text, line in code_lines) for line, text in comments]


def _span(tree: ast.Module, line: int, trailing: bool) -> tuple[int, int] | None:
    functions = [
        node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    inside = next((f for f in functions if f.lineno <= line <= (f.end_lineno or f.lineno)), None)
    if inside is None:
        return None  # top level: the whole file
    if trailing:
        return _statement_on(inside, line)
    following = [
        node
        for node in ast.walk(inside)
        if isinstance(node, ast.stmt) and node is not inside and node.lineno > line
    ]
    if not following:
        return (line, line)  # nothing after it: covers nothing, and is reported unused
    first = min(following, key=lambda node: (node.lineno, -(node.end_lineno or node.lineno)))
    return (first.lineno, first.end_lineno or first.lineno)


def _statement_on(scope: ast.AST, line: int) -> tuple[int, int]:
    """The span of the innermost statement holding `line`."""
    best: tuple[int, int] = (line, line)
    for node in ast.walk(scope):
        if not isinstance(node, ast.stmt):
            continue
        start, end = node.lineno, node.end_lineno or node.lineno
        if start <= line <= end and (best == (line, line) or end - start < best[1] - best[0]):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.lineno != line:
                continue
            best = (start, end)
    return best


def apply(
    findings: list[Finding], ignores: list[Ignore]
) -> tuple[list[Finding], list[tuple[Finding, Ignore]]]:
    """The findings no reasoned ignore covers, plus the ignores' own findings; and each ignored
    finding with the ignore that covered it."""
    kept: list[Finding] = []
    ignored: list[tuple[Finding, Ignore]] = []
    valid = [ignore for ignore in ignores if ignore.reason and ignore.rules]
    for finding in findings:
        cover = next((ignore for ignore in valid if ignore.covers(finding)), None)
        if cover is None:
            kept.append(finding)
        else:
            cover.used.add(finding.rule)
            ignored.append((finding, cover))
    for ignore in ignores:
        kept.extend(_own_findings(ignore, ignore in valid))
    return kept, ignored


def _own_findings(ignore: Ignore, valid: bool) -> list[Finding]:
    revision = ignore.revision
    names = ", ".join(sorted(ignore.rules)) or "(no rule)"
    if not valid:
        rule = RULES["lint-ignore-without-reason"]
        return [Finding("lint-ignore-without-reason", revision, ignore.file, ignore.line,
                        f"{rule.message()} (lint-ignore={names})")]  # fmt: skip
    unused = sorted(ignore.rules - ignore.used)
    if not unused:
        return []
    rule = RULES["lint-ignore-unused"]
    return [
        Finding(
            "lint-ignore-unused",
            revision,
            ignore.file,
            ignore.line,
            f"{rule.message()} (lint-ignore={', '.join(unused)})",
            severity="warning",
        )
    ]

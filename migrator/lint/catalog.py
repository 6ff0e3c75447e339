"""Every rule `lint` applies, the safe pattern each message names, and the rules it leaves off.

One table, read by the checks (squawk.py, rules.py, ignores.py), the output and the README.
"""

from __future__ import annotations

from dataclasses import dataclass

EXPAND_CONTRACT = (
    "expand, then contract in a later release: the previous release's pods keep running while "
    "this one rolls out"
)


@dataclass(frozen=True)
class Rule:
    name: str
    source: str  # "migrate-job" (Alembic-aware, ours) or "squawk"
    problem: str
    fix: str  # the safe pattern

    def message(self, table: str | None = None) -> str:
        where = f" (table {table})" if table else ""
        return f"{self.problem}{where}. Safe pattern: {self.fix}"


_RULES = [
    # Ours: what only a linter that knows Alembic's transactions and revision files can tell.
    Rule(
        "needs-autocommit-block",
        "migrate-job",
        "this statement cannot run inside a transaction block, and Alembic runs the revision in "
        "one: PostgreSQL refuses it at deploy time",
        "run it inside `with op.get_context().autocommit_block():`",
    ),
    Rule(
        "autocommit-block-not-rerunnable",
        "migrate-job",
        "outside a transaction nothing rolls back: an interrupted CONCURRENTLY build leaves an "
        "INVALID index (or a half-dropped one), the revision is not recorded, and the rerun "
        "fails on it (or, with IF NOT EXISTS, silently keeps the INVALID index)",
        "drop any leftover first in the same block: "
        "op.drop_index(NAME, table_name=..., postgresql_concurrently=True, if_exists=True), "
        "then op.create_index(NAME, ..., postgresql_concurrently=True); drop with if_exists=True",
    ),
    Rule(
        "backfill-in-ddl-transaction",
        "migrate-job",
        "an UPDATE of every row of an existing table, in the same transaction as DDL on that "
        "table: the DDL's ACCESS EXCLUSIVE lock is held until the whole backfill commits, and "
        "every query on the table waits for it",
        "commit the DDL first (a separate revision, or the backfill inside "
        "`with op.get_context().autocommit_block():`), then backfill in batches "
        "(UPDATE ... WHERE id BETWEEN ...)",
    ),
    Rule(
        "missing-downgrade",
        "migrate-job",
        "the revision has no downgrade, or one that does nothing (`pass`): `downgrade` would "
        "record the revision as undone and leave its changes in place",
        "write the downgrade, or make it raise an error saying why the revision is irreversible",
    ),
    Rule(
        "render-failed",
        "migrate-job",
        "the revision could not be rendered to SQL offline, so it was not linted",
        "keep upgrade() renderable with `alembic upgrade --sql` (no reads through op.get_bind() "
        "outside `if not context.is_offline_mode()`)",
    ),
    Rule(
        "lint-ignore-without-reason",
        "migrate-job",
        "a lint-ignore comment gives no reason, so it is not applied",
        "say why the finding is safe here: `# migrate-job: lint-ignore=RULE the reason`",
    ),
    Rule(
        "lint-ignore-unused",
        "migrate-job",
        "a lint-ignore comment matches no finding: the revision changed, or it sits on the wrong "
        "statement",
        "remove it, or move it onto the statement it excuses",
    ),
    # squawk's, with the safe pattern named for Alembic.
    Rule(
        "require-concurrent-index-creation",
        "squawk",
        "CREATE INDEX on an existing table blocks every write to it for the whole build",
        "op.create_index(..., postgresql_concurrently=True) inside "
        "`with op.get_context().autocommit_block():`, after dropping an INVALID leftover "
        "(op.drop_index(..., postgresql_concurrently=True, if_exists=True))",
    ),
    Rule(
        "require-concurrent-index-deletion",
        "squawk",
        "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table: reads and writes wait",
        "op.drop_index(..., postgresql_concurrently=True, if_exists=True) inside "
        "`with op.get_context().autocommit_block():`",
    ),
    Rule(
        "adding-required-field",
        "squawk",
        "ADD COLUMN ... NOT NULL without a default fails on a table that has rows, and the "
        "previous release's INSERTs fail once it exists",
        "add it nullable or with a constant server_default, backfill, then enforce NOT NULL "
        "(CHECK ... NOT VALID, VALIDATE, SET NOT NULL)",
    ),
    Rule(
        "adding-field-with-default",
        "squawk",
        "ADD COLUMN with a volatile default (or a generated column) rewrites the whole table "
        "under an ACCESS EXCLUSIVE lock",
        "add the column without the default, set the default with a second ALTER, backfill "
        "existing rows in batches",
    ),
    Rule(
        "adding-not-nullable-field",
        "squawk",
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
        "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it in a later transaction, "
        "then SET NOT NULL (PostgreSQL 12+ uses the validated check and skips the scan), then "
        "drop the check",
    ),
    Rule(
        "changing-column-type",
        "squawk",
        "ALTER COLUMN TYPE rewrites the table under an ACCESS EXCLUSIVE lock (unless PostgreSQL "
        "can prove the new type binary-compatible) and breaks pods reading the old type",
        f"add a new column, write both, backfill, switch readers, drop the old column: "
        f"{EXPAND_CONTRACT}",
    ),
    Rule(
        "adding-foreign-key-constraint",
        "squawk",
        "a foreign key added without NOT VALID scans the table while locking both tables "
        "against writes",
        "op.create_foreign_key(..., postgresql_not_valid=True), then "
        "ALTER TABLE ... VALIDATE CONSTRAINT in a later transaction",
    ),
    Rule(
        "constraint-missing-not-valid",
        "squawk",
        "a constraint added without NOT VALID (or validated in the transaction that added it) "
        "scans the table while holding a lock that blocks reads or writes",
        "add it NOT VALID (postgresql_not_valid=True), then ALTER TABLE ... VALIDATE "
        "CONSTRAINT in a later transaction",
    ),
    Rule(
        "ban-drop-column",
        "squawk",
        "DROP COLUMN breaks pods still running the previous release, which select it",
        f"stop reading and writing the column in one release, drop it in the next: "
        f"{EXPAND_CONTRACT}",
    ),
    Rule(
        "renaming-column",
        "squawk",
        "RENAME COLUMN breaks pods still running the previous release",
        f"add the new column, write both, backfill, switch readers, drop the old one: "
        f"{EXPAND_CONTRACT}",
    ),
    Rule(
        "renaming-table",
        "squawk",
        "RENAME TABLE breaks pods still running the previous release",
        f"create the new table (or a view under the new name), switch readers, drop the old "
        f"name: {EXPAND_CONTRACT}",
    ),
    Rule(
        "ban-drop-table",
        "squawk",
        "DROP TABLE breaks pods still running the previous release",
        f"stop using the table in one release, drop it in the next: {EXPAND_CONTRACT}",
    ),
]
RULES: dict[str, Rule] = {rule.name: rule for rule in _RULES}

# squawk rules `lint` turns off, and why: each is satisfied by the job at run time, replaced by
# an Alembic-aware rule above, or judges a table's design rather than whether a deploy locks or
# breaks anything.
OFF_BY_DEFAULT: dict[str, str] = {
    "require-lock-timeout": "the job sets lock_timeout for every revision "
    "(MIGRATE_DDL_LOCK_TIMEOUT, default 5 s) and retries a revision that hit it",
    "require-statement-timeout": "the job sets statement_timeout for the migration session from "
    "MIGRATE_STATEMENT_TIMEOUT: set the limit there, not in each revision",
    "prefer-robust-stmts": "the job runs each revision in one transaction, rolled back whole on "
    "failure, so a rerun starts clean; the part outside it (autocommit_block) is checked by "
    "autocommit-block-not-rerunnable",
    "ban-concurrent-index-creation-in-transaction": "replaced by needs-autocommit-block, which "
    "knows Alembic's transactions and names the fix",
    "transaction-nesting": "Alembic writes the BEGIN and COMMIT of each revision itself",
    "ban-drop-constraint": "loosening a constraint breaks no running pod, and dropping the "
    "helper CHECK is the last step of the safe SET NOT NULL pattern",
    "prefer-bigint-over-int": "a design choice for new tables, not a deploy hazard",
    "prefer-bigint-over-smallint": "a design choice for new tables, not a deploy hazard",
    "prefer-identity": "a design choice for new tables, not a deploy hazard",
    "prefer-text-field": "a design choice for new tables, not a deploy hazard",
    "prefer-timestamptz": "a design choice for new tables, not a deploy hazard",
    "ban-char-field": "a design choice for new tables, not a deploy hazard",
}


@dataclass(frozen=True)
class Finding:
    """One problem in one revision; `line` is in the revision file, where it can be found."""

    rule: str
    revision: str
    file: str
    line: int | None
    message: str
    sql: str | None = None  # the offending statement, literals masked
    severity: str = "error"

    def as_event(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "revision": self.revision,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "sql": self.sql,
        }

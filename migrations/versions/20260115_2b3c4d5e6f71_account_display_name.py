"""accounts.display_name, backfilled from the email address

Revision ID: 2b3c4d5e6f71
Revises: 1a2b3c4d5e60
Create Date: 2026-01-15 09:00:00

The column arrives nullable, existing rows are backfilled, then it becomes NOT NULL: the
expand-then-contract order keeps the revision safe on a table that already has rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2b3c4d5e6f71"
down_revision: str | Sequence[str] | None = "1a2b3c4d5e60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

accounts = sa.table("accounts", sa.column("email", sa.String), sa.column("display_name", sa.String))


def upgrade() -> None:
    op.add_column("accounts", sa.Column("display_name", sa.String(length=200), nullable=True))
    op.execute(
        accounts.update()
        .where(accounts.c.display_name.is_(None))
        .values(display_name=sa.func.substr(accounts.c.email, 1, 200))
    )
    # migrate-job: lint-ignore=adding-not-nullable-field accounts holds a handful of rows in the example application, so the scan under ACCESS EXCLUSIVE lasts milliseconds; on a large table, add CHECK (display_name IS NOT NULL) NOT VALID and VALIDATE it in an earlier revision, then SET NOT NULL
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("display_name", existing_type=sa.String(length=200), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("display_name")

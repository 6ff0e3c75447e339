"""rename comments.text to comments.body

Revision ID: 4d5e6f7a8b93
Revises: 3c4d5e6f7a82
Create Date: 2026-03-01 09:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4d5e6f7a8b93"
down_revision: str | Sequence[str] | None = "3c4d5e6f7a82"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # migrate-job: lint-ignore=renaming-column the example application has no pods of an earlier release running to break; a served application adds comments.body, writes both, and drops text a release later
    with op.batch_alter_table("comments") as batch:
        # existing_nullable: MySQL renames with CHANGE COLUMN, which restates the whole column;
        # without it the column would lose its NOT NULL there.
        batch.alter_column(
            "text", new_column_name="body", existing_type=sa.Text(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("comments") as batch:
        batch.alter_column(
            "body", new_column_name="text", existing_type=sa.Text(), existing_nullable=False
        )

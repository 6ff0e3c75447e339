"""A file-wide ignore (top level), two rules at once."""

import sqlalchemy as sa
from alembic import op

revision = "ignore_file"
down_revision = "c0base"
branch_labels = None
depends_on = None


# migrate-job: lint-ignore=ban-drop-column,renaming-column the 3.0 release dropped every reader of these columns


def upgrade():
    op.drop_column("users", "name")
    op.alter_column("orders", "total", new_column_name="amount")


def downgrade():
    op.alter_column("orders", "amount", new_column_name="total")
    op.add_column("users", sa.Column("name", sa.Text(), nullable=True))

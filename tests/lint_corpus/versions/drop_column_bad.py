"""DROP COLUMN, RENAME COLUMN, RENAME TABLE: each breaks the pods of the previous release."""

import sqlalchemy as sa
from alembic import op

revision = "drop_column_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_column("users", "name")  # expect: ban-drop-column
    op.alter_column("orders", "total", new_column_name="amount")  # expect: renaming-column
    op.rename_table("orders", "purchases")  # expect: renaming-table


def downgrade():
    op.rename_table("purchases", "orders")
    op.alter_column("orders", "amount", new_column_name="total")
    op.add_column("users", sa.Column("name", sa.Text(), nullable=True))

"""Existing tables for every other revision; created, indexed, constrained and backfilled in the
same revision, which is clean: a new table has no rows and no readers."""

import sqlalchemy as sa
from alembic import op

revision = "c0base"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
    )
    op.create_index("ix_users_name", "users", ["name"])
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=True),
    )
    op.create_index("ix_orders_user_id", "orders", ["user_id"])
    op.add_column("orders", sa.Column("note", sa.Text(), nullable=False))
    op.alter_column("orders", "total", nullable=False)
    op.create_foreign_key("fk_orders_user_id", "orders", "users", ["user_id"], ["id"])
    op.execute("UPDATE orders SET note = 'none'")


def downgrade():
    op.drop_table("orders")
    op.drop_table("users")

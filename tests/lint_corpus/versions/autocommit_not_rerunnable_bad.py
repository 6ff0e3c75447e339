"""An autocommit block that a rerun after an interruption fails on."""

import sqlalchemy as sa
from alembic import op

revision = "autocommit_not_rerunnable_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    with op.get_context().autocommit_block():
        op.create_index("ix_users_email", "users", ["email"], postgresql_concurrently=True)  # expect: autocommit-block-not-rerunnable
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_total ON orders (total)")  # expect: autocommit-block-not-rerunnable
        op.drop_index("ix_users_name", table_name="users", postgresql_concurrently=True)  # expect: autocommit-block-not-rerunnable


def downgrade():
    with op.get_context().autocommit_block():
        op.drop_index("ix_orders_total", table_name="orders", postgresql_concurrently=True, if_exists=True)
        op.drop_index("ix_users_email", table_name="users", postgresql_concurrently=True, if_exists=True)

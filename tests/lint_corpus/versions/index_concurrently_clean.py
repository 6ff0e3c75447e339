"""Twin of index_existing_bad, drop_index_bad, cic_outside_block_bad and autocommit_not_rerunnable_bad: CONCURRENTLY, in an autocommit block, an INVALID leftover dropped first."""

import sqlalchemy as sa
from alembic import op

revision = "index_concurrently_clean"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    with op.get_context().autocommit_block():
        op.drop_index("ix_users_email", table_name="users", postgresql_concurrently=True, if_exists=True)
        op.create_index("ix_users_email", "users", ["email"], postgresql_concurrently=True)
        op.drop_index("ix_users_name", table_name="users", postgresql_concurrently=True, if_exists=True)


def downgrade():
    with op.get_context().autocommit_block():
        op.drop_index("ix_users_email", table_name="users", postgresql_concurrently=True, if_exists=True)

"""CREATE INDEX CONCURRENTLY in the revision's transaction."""

import sqlalchemy as sa
from alembic import op

revision = "cic_outside_block_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_users_email", "users", ["email"], postgresql_concurrently=True)  # expect: needs-autocommit-block


def downgrade():
    op.drop_index("ix_users_email", table_name="users")

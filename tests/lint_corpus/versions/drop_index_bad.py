"""A plain DROP INDEX on an existing table."""

import sqlalchemy as sa
from alembic import op

revision = "drop_index_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_users_name", table_name="users")  # expect: require-concurrent-index-deletion


def downgrade():
    op.create_index("ix_users_name", "users", ["name"])

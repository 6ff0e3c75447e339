"""A plain index on an existing table."""

import sqlalchemy as sa
from alembic import op

revision = "index_existing_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_users_email", "users", ["email"])  # expect: require-concurrent-index-creation


def downgrade():
    op.drop_index("ix_users_email", table_name="users")

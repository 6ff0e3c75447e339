"""Twin of required_column_bad: NOT NULL with a constant default (no rewrite on PostgreSQL 11+)."""

import sqlalchemy as sa
from alembic import op

revision = "required_column_clean"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("plan", sa.Text(), nullable=False, server_default="free"))


def downgrade():
    op.drop_column("users", "plan")

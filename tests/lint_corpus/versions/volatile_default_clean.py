"""Twin of volatile_default_bad: the column first, then its default (new rows only)."""

import sqlalchemy as sa
from alembic import op

revision = "volatile_default_clean"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("token", sa.Uuid(), nullable=True))
    op.alter_column("users", "token", server_default=sa.text("gen_random_uuid()"))


def downgrade():
    op.drop_column("users", "token")

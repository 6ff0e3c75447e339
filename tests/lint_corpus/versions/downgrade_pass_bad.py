"""A downgrade that does nothing."""

import sqlalchemy as sa
from alembic import op

revision = "downgrade_pass_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("bio", sa.Text(), nullable=True))


def downgrade():
    """Nothing."""
    pass  # expect: missing-downgrade

"""No downgrade at all."""

import sqlalchemy as sa
from alembic import op

revision = "downgrade_missing_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None

# expect-file: missing-downgrade


def upgrade():
    op.add_column("users", sa.Column("bio", sa.Text(), nullable=True))

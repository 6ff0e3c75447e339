"""ADD COLUMN NOT NULL without a default on an existing table."""

import sqlalchemy as sa
from alembic import op

revision = "required_column_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("plan", sa.Text(), nullable=False))  # expect: adding-required-field


def downgrade():
    op.drop_column("users", "plan")

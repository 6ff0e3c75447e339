"""SET NOT NULL straight away on an existing table."""

import sqlalchemy as sa
from alembic import op

revision = "set_not_null_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("users", "name", existing_type=sa.Text(), nullable=False)  # expect: adding-not-nullable-field


def downgrade():
    op.alter_column("users", "name", existing_type=sa.Text(), nullable=True)

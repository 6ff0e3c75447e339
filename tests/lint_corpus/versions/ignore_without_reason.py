"""An ignore without a reason: not applied, and a finding itself."""

import sqlalchemy as sa
from alembic import op

revision = "ignore_without_reason"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_column("users", "name")  # migrate-job: lint-ignore=ban-drop-column  # expect: ban-drop-column, lint-ignore-without-reason


def downgrade():
    op.add_column("users", sa.Column("name", sa.Text(), nullable=True))

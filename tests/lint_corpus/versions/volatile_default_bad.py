"""ADD COLUMN with a volatile default: a table rewrite."""

import sqlalchemy as sa
from alembic import op

revision = "volatile_default_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("token", sa.Uuid(), server_default=sa.text("gen_random_uuid()")))  # expect: adding-field-with-default


def downgrade():
    op.drop_column("users", "token")

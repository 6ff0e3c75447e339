"""Twin of column_type_bad: expand with a new column of the new type."""

import sqlalchemy as sa
from alembic import op

revision = "column_type_clean"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("orders", sa.Column("total_cents", sa.BigInteger(), nullable=True))


def downgrade():
    op.drop_column("orders", "total_cents")

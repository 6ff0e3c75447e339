"""ALTER COLUMN TYPE that rewrites the table."""

import sqlalchemy as sa
from alembic import op

revision = "column_type_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("orders", "total", type_=sa.BigInteger(), existing_type=sa.Integer())  # expect: changing-column-type


def downgrade():
    op.alter_column("orders", "total", type_=sa.Integer(), existing_type=sa.BigInteger())

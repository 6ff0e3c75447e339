"""DROP TABLE of a table the previous release still reads."""

import sqlalchemy as sa
from alembic import op

revision = "drop_table_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_table("orders")  # expect: ban-drop-table


def downgrade():
    op.create_table("orders", sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True))

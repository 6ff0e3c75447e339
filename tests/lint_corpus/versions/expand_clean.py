"""Twin of drop_column_bad (expand): the new names arrive beside the old ones."""

import sqlalchemy as sa
from alembic import op

revision = "expand_clean"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("orders", sa.Column("amount", sa.Integer(), nullable=True))
    op.create_table("purchases", sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True))


def downgrade():
    op.drop_table("purchases")
    op.drop_column("orders", "amount")

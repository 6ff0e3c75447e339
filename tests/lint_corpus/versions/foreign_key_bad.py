"""A foreign key added to an existing table without NOT VALID."""

import sqlalchemy as sa
from alembic import op

revision = "foreign_key_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("orders", sa.Column("buyer_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key("fk_orders_buyer_id", "orders", "users", ["buyer_id"], ["id"])  # expect: adding-foreign-key-constraint, constraint-missing-not-valid


def downgrade():
    op.drop_column("orders", "buyer_id")

"""A merge revision, rendered from both its parents: orders is an existing table."""

import sqlalchemy as sa
from alembic import op

revision = "merge_index_bad"
down_revision = ("expand_clean", "column_type_clean")
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_orders_amount", "orders", ["amount"])  # expect: require-concurrent-index-creation


def downgrade():
    op.drop_index("ix_orders_amount", table_name="orders")

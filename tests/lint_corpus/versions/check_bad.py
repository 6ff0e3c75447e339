"""A CHECK constraint added to an existing table without NOT VALID."""

import sqlalchemy as sa
from alembic import op

revision = "check_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.create_check_constraint("ck_orders_total", "orders", "total >= 0")  # expect: constraint-missing-not-valid


def downgrade():
    op.drop_constraint("ck_orders_total", "orders", type_="check")

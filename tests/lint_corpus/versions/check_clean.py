"""Twin of check_bad: NOT VALID (VALIDATE follows in a later transaction)."""

import sqlalchemy as sa
from alembic import op

revision = "check_clean"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.create_check_constraint("ck_orders_total", "orders", "total >= 0", postgresql_not_valid=True)


def downgrade():
    op.drop_constraint("ck_orders_total", "orders", type_="check")

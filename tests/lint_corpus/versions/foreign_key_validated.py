"""Twin of foreign_key_bad, step 2: VALIDATE in a later transaction."""

import sqlalchemy as sa
from alembic import op

revision = "foreign_key_validated"
down_revision = "foreign_key_not_valid"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_buyer_id")


def downgrade():
    raise NotImplementedError("a validated constraint stays valid: nothing to undo")

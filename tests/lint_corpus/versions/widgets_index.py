"""An index on the table an earlier revision created: an existing table now."""

import sqlalchemy as sa
from alembic import op

revision = "widgets_index"
down_revision = "widgets_create"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_widgets_id_kind", "widgets", ["id", "kind"])  # expect: require-concurrent-index-creation


def downgrade():
    op.drop_index("ix_widgets_id_kind", table_name="widgets")

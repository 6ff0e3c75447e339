"""A table created and indexed in the same revision: clean."""

import sqlalchemy as sa
from alembic import op

revision = "widgets_create"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "widgets",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=True),
    )
    op.create_index("ix_widgets_kind", "widgets", ["kind"])


def downgrade():
    op.drop_table("widgets")

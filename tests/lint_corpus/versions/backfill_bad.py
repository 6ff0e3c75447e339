"""A backfill of every row in the transaction that altered the table."""

import sqlalchemy as sa
from alembic import op

revision = "backfill_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("nickname", sa.Text(), nullable=True))
    op.execute("UPDATE users SET nickname = name")  # expect: backfill-in-ddl-transaction


def downgrade():
    op.drop_column("users", "nickname")

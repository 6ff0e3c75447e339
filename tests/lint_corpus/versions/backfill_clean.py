"""Twin of backfill_bad: the column committed first, the backfill in batches outside the DDL's transaction."""

import sqlalchemy as sa
from alembic import op

revision = "backfill_clean"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("nickname", sa.Text(), nullable=True))
    op.execute("UPDATE users SET nickname = 'root' WHERE id = 1")  # one row: no long lock
    with op.get_context().autocommit_block():
        op.execute("UPDATE users SET nickname = name WHERE id BETWEEN 1 AND 10000")
        op.execute("UPDATE users SET nickname = name")


def downgrade():
    op.drop_column("users", "nickname")

"""Reads through the connection, which offline mode does not have."""

import sqlalchemy as sa
from alembic import op

revision = "render_failed_bad"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM users")).scalar()  # expect: render-failed
    if count:
        op.add_column("users", sa.Column("bio", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("users", "bio")

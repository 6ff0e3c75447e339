"""Twin of set_not_null_bad, step 2: VALIDATE, then SET NOT NULL (no scan), then the helper check goes."""

import sqlalchemy as sa
from alembic import op

revision = "set_not_null_validated"
down_revision = "set_not_null_check"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_users_name_not_null")
    op.alter_column("users", "name", existing_type=sa.Text(), nullable=False)
    op.drop_constraint("ck_users_name_not_null", "users", type_="check")


def downgrade():
    op.alter_column("users", "name", existing_type=sa.Text(), nullable=True)

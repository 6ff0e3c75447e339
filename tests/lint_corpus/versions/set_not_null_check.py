"""Twin of set_not_null_bad, step 1: CHECK (name IS NOT NULL) NOT VALID."""

import sqlalchemy as sa
from alembic import op

revision = "set_not_null_check"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    op.create_check_constraint("ck_users_name_not_null", "users", "name IS NOT NULL", postgresql_not_valid=True)


def downgrade():
    op.drop_constraint("ck_users_name_not_null", "users", type_="check")

"""Twin of drop_column_bad (contract, a release later): the drop, with a reasoned ignore."""

import sqlalchemy as sa
from alembic import op

revision = "contract_ignored"
down_revision = "c0base"
branch_labels = None
depends_on = None


def upgrade():
    # migrate-job: lint-ignore=ban-drop-column no release since 2.3 reads users.name (expand shipped in 2.3)
    op.drop_column("users", "name")


def downgrade():
    op.add_column("users", sa.Column("name", sa.Text(), nullable=True))

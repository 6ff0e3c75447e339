"""index tasks by project and status (the board view's query)

Revision ID: 3c4d5e6f7a82
Revises: 2b3c4d5e6f71
Create Date: 2026-02-01 09:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "3c4d5e6f7a82"
down_revision: str | Sequence[str] | None = "2b3c4d5e6f71"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # migrate-job: lint-ignore=require-concurrent-index-creation tasks is small in the example application, so writes wait milliseconds; on a busy table, build it CONCURRENTLY in an autocommit_block as 5e6f7a8b9ca4 does
    op.create_index(op.f("ix_tasks_project_id_status"), "tasks", ["project_id", "status"])


def downgrade() -> None:
    if op.get_context().dialect.name == "mysql":
        # InnoDB serves the tasks.project_id foreign key with this index (it dropped its own
        # when this one was made) and refuses to drop it (error 1553): give it one back first.
        op.create_index("ix_tasks_project_id", "tasks", ["project_id"])
    op.drop_index(op.f("ix_tasks_project_id_status"), table_name="tasks")

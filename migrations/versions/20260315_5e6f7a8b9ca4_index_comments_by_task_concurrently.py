"""index comments by task, built without blocking writes

Revision ID: 5e6f7a8b9ca4
Revises: 4d5e6f7a8b93
Create Date: 2026-03-15 09:00:00

CREATE INDEX CONCURRENTLY cannot run inside a transaction, so on PostgreSQL it runs in Alembic's
autocommit_block(). The runner's advisory lock is a session lock, so it still covers this, and
runners waiting for it poll without holding a transaction open, which CONCURRENTLY would wait for.
A build interrupted halfway leaves an INVALID index behind: drop it first, so a rerun repairs it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5e6f7a8b9ca4"
down_revision: str | Sequence[str] | None = "4d5e6f7a8b93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_comments_task_id"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        # On MySQL, InnoDB then drops the index it made for the foreign key by itself.
        op.create_index(INDEX, "comments", ["task_id"])
        return
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="comments", postgresql_concurrently=True, if_exists=True)
        op.create_index(INDEX, "comments", ["task_id"], postgresql_concurrently=True)


def downgrade() -> None:
    if op.get_context().dialect.name == "mysql":
        # InnoDB refuses to drop the index its foreign key uses (error 1553): hand it back the
        # index it had made itself, in the same statement.
        op.execute(f"ALTER TABLE comments ADD INDEX task_id (task_id), DROP INDEX {INDEX}")
        return
    if op.get_context().dialect.name != "postgresql":
        op.drop_index(INDEX, table_name="comments")
        return
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="comments", postgresql_concurrently=True, if_exists=True)

"""The lint corpus's env.py: Alembic's generic template, offline part only (lint needs no
database)."""

from alembic import context

config = context.config

if not context.is_offline_mode():
    raise SystemExit("the lint corpus is rendered offline only")
context.configure(
    url=config.get_main_option("sqlalchemy.url"),
    literal_binds=True,
    dialect_opts={"paramstyle": "named"},
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()

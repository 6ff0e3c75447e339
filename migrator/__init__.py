"""A database migration job: wait for the database, take the lock, run Alembic, report."""

__version__ = "0.1.0"

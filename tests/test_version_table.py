"""A version table of the project's own naming (alembic.ini's `version_table` and
`version_table_schema`): Alembic writes it, the lock is named after it, the fast no-op reads it,
whatever quoting its name needs."""

from __future__ import annotations

from pathlib import Path

from migrator.backends.postgresql import lock_key
from tests.conftest import HEAD, REVISIONS, Database, job_env, run_job

SCHEMA, TABLE = "Ops-Schema", "Migrations-Log"  # mixed case and a dash: both need quoting
LOCK = f"alembic:{SCHEMA}.{TABLE}"


def test_a_custom_version_table_names_the_lock_and_is_read_by_the_fast_path(
    db: Database, project: Path
) -> None:
    ini = project / "alembic.ini"
    ini.write_text(
        ini.read_text().replace(
            "version_table = alembic_version",
            f"version_table = {TABLE}\nversion_table_schema = {SCHEMA}",
        )
    )
    db.query(f'CREATE SCHEMA "{SCHEMA}"')
    env = job_env(db.url, ALEMBIC_CONFIG=str(ini))

    holder = db.cluster.connect(db.name)
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (lock_key(LOCK),))
    try:
        blocked = run_job("upgrade", env={**env, "MIGRATE_LOCK_TIMEOUT": "1"})
    finally:
        holder.close()
    assert blocked.code == 4, "the lock's key is the custom table's: " + blocked.stdout
    assert blocked.named("lock_waiting")[0]["lock"] == LOCK

    applied = run_job("upgrade", env=env)
    assert applied.code == 0, applied.stdout
    assert applied.one("lock_acquired")["lock"] == LOCK
    assert applied.final["applied"] == len(REVISIONS)
    assert db.query(f'SELECT version_num FROM "{SCHEMA}"."{TABLE}"') == [(HEAD,)]
    assert db.query("SELECT to_regclass('public.alembic_version')") == [(None,)]

    # Read with the driver alone, before any lock: the same table, quoted as it must be.
    again = run_job("upgrade", env=env)
    assert again.code == 0, again.stdout
    assert [e["event"] for e in again.events] == [
        "starting",
        "database_ready",
        "nothing_to_do",
        "finished",
    ]
    assert again.one("nothing_to_do")["current"] == [HEAD]
    assert run_job("current", env=env).one("current")["current"] == [HEAD]

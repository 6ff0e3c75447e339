"""MySQL backend on a real Galera node (MariaDB Cluster): a private single-node cluster.

GET_LOCK holds on one node only there, so the job refuses every command that would change the
database (exit 2, before the lock and before any change) and keeps the read-only ones working.
The node is real: the galera-4 provider loaded, wsrep_on=ON, the cluster primary and synced.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from pymysql.constants import CLIENT

from migrator.backends.mysql import lock_key
from tests.conftest import HEAD, REVISIONS, MySQLDatabase, job_env, run_job, run_raw
from tests.test_fast_path import HEAVY, run_traced

LOCK = "alembic:alembic_version"  # the default lock name


def _is_a_galera_node(gdb: MySQLDatabase) -> None:
    """What the tests below rely on: the server really is a synced member of a cluster."""
    assert gdb.query("SELECT @@global.wsrep_on, @@global.wsrep_provider != 'none'") == [(1, 1)]
    assert gdb.query("SHOW STATUS LIKE 'wsrep_cluster_status'") == [
        ("wsrep_cluster_status", "Primary")
    ]
    assert gdb.query("SHOW STATUS LIKE 'wsrep_local_state_comment'") == [
        ("wsrep_local_state_comment", "Synced")
    ]


@pytest.mark.parametrize(
    "command",
    [("upgrade", "head"), ("upgrade", REVISIONS[0]), ("downgrade", "base"), ("stamp", "head"),
     ("resolve",)],
)  # fmt: skip
def test_a_command_that_would_change_a_galera_node_is_refused_before_any_change(
    gdb: MySQLDatabase, command: tuple[str, ...]
) -> None:
    _is_a_galera_node(gdb)
    result = run_job(*command, env=job_env(gdb.url), timeout=60)
    assert result.code == 2, result.stdout
    failed = result.one("failed")
    assert failed is result.final, "the failed event is the last line"
    message = failed["message"]
    assert "Galera" in message and "wsrep_on=ON" in message, message
    assert "GET_LOCK" in message and "one node only" in message  # why
    assert "--sql" in message and "one place at a time" in message  # what to do instead
    assert failed["wsrep_on"] is True
    # Refused before the lock: never taken, so nothing to release and nothing left held.
    assert result.named("lock_acquired") == []
    assert gdb.query("SELECT IS_USED_LOCK(%s)", lock_key(LOCK)) == [(None,)]
    assert gdb.tables() == set(), "nothing migrated: no version table, no application table"
    password = gdb.server.password
    for secret in (password, quote(password, safe="")):
        assert secret not in result.stdout + result.stderr


def test_the_read_only_commands_work_on_a_galera_node(gdb: MySQLDatabase) -> None:
    """current, status, history and `upgrade --sql` take no lock and change nothing: a read is
    as good on one node as on another, so they answer as on any server."""
    _is_a_galera_node(gdb)
    env = job_env(gdb.url)
    current = run_job("current", env=env)
    assert current.code == 0, current.stdout
    reported = current.one("current")
    assert (reported["current"], reported["at_head"]) == ([], False)

    status = run_job("status", env=env)
    assert status.code == 7, status.stdout  # pending: the verdict, as on any server
    assert "`upgrade head` refuses to: the server is a Galera" in status.final["message"]
    reported = status.one("status")
    assert reported["verdict"] == "pending"
    assert [step["revision"] for step in reported["pending"]] == REVISIONS

    history = run_job("history", env=env).one("history")
    assert [entry["applied"] for entry in history["revisions"]] == [False] * len(REVISIONS)

    sql = run_raw("upgrade", "--sql", env=env)  # what the refusal points to
    assert sql.returncode == 0, sql.stderr
    assert "CREATE TABLE alembic_version" in sql.stdout and "CREATE TABLE tasks" in sql.stdout
    assert gdb.tables() == set()


def test_an_upgrade_with_nothing_to_do_passes_on_a_galera_node(
    gdb: MySQLDatabase, tmp_path: Path
) -> None:
    """Once the migrations were applied from one place (the refusal's advice), a deploy's
    `upgrade head` finds nothing to do: the fast path (the driver alone, one query, the heads
    record; no lock) exits 0 there as on any server. The secrets come as files, as a deploy
    mounts them: the URL without its password, and the password."""
    script = run_raw("upgrade", "--sql", env=job_env(gdb.url))
    assert script.returncode == 0, script.stderr
    # Applied as a DBA would: the whole script, one client, one node.
    connection = gdb.server.connect(gdb.name, client_flag=CLIENT.MULTI_STATEMENTS)
    try:
        with connection.cursor() as cursor:
            cursor.execute(script.stdout)
            while cursor.nextset():
                pass
    finally:
        connection.close()
    assert gdb.version() == [HEAD]

    password = gdb.server.password
    (tmp_path / "url").write_text(gdb.url.replace(":" + quote(password, safe="") + "@", "@"))
    (tmp_path / "password").write_text(password + "\n")
    env = job_env(
        None,
        DATABASE_URL_FILE=str(tmp_path / "url"),
        DATABASE_PASSWORD_FILE=str(tmp_path / "password"),
    )
    assert password not in (tmp_path / "url").read_text()
    code, events, modules = run_traced("upgrade", "head", env=env)
    assert code == 0, events
    assert [event["current"] for event in events if event["event"] == "nothing_to_do"] == [[HEAD]]
    assert not [event for event in events if event["event"] == "lock_acquired"]
    assert "pymysql" in modules and not modules & HEAVY, sorted(modules & HEAVY)
    assert password not in json.dumps(events)

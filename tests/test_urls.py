"""Which URLs the job accepts, what it makes of them, and which it refuses before anything runs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psycopg2.extensions
import pytest

from migrator.errors import ConfigError
from migrator.urls import LIBPQ_PARAMETERS, parse_database_url
from tests.conftest import HEAD, Database, job_env, run_job, run_raw
from tests.pgcluster import ADMIN


def assert_refused(result, *fragments: str) -> None:
    assert result.code == 2, result.stdout + result.stderr
    assert result.final["event"] == "failed" and result.final["error"] == "ConfigError"
    for fragment in fragments:
        assert fragment in result.final["message"], result.final["message"]
    assert not result.named("database_unavailable"), "refused before any connection attempt"


def libpq_environment(db: Database) -> dict[str, str]:
    """Everything libpq would need to reach `db` on its own, were the URL to leave it a gap."""
    return {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(db.cluster.port),
        "PGUSER": ADMIN,
        "PGPASSWORD": db.cluster.password,
        "PGDATABASE": db.name,
    }


@pytest.mark.parametrize(
    ("url", "missing"),
    [
        ("postgresql://", ["no host", "no database name"]),
        ("postgresql://@/", ["no host", "no database name"]),
        ("postgresql://:@:/", ["no host", "no database name"]),
        ("postgres:///", ["no host", "no database name"]),
        ("postgresql://127.0.0.1", ["no database name"]),
        ("postgresql:///app", ["no host"]),
        ("postgresql:///?host=/tmp", ["no database name"]),
    ],
)
def test_a_url_that_names_no_server_or_database_is_refused(
    db: Database, url: str, missing: list[str]
) -> None:
    env = job_env(url, **libpq_environment(db))  # PGHOST, PGDATABASE, ... must not fill gaps
    result = run_job("upgrade", env=env)
    assert_refused(result, *missing, "never falls back to PGHOST, PGDATABASE")
    if len(missing) == 1:
        assert "and no" not in result.final["message"]
    assert db.tables() == set(), "no database that nobody named may be migrated"


def test_a_socket_directory_in_the_query_names_the_server(db: Database) -> None:
    secret = quote(db.cluster.password, safe="")
    url = f"postgresql://{ADMIN}:{secret}@/{db.name}?host={db.cluster.root}&port={db.cluster.port}"
    result = run_job("upgrade", env=job_env(url))
    assert result.code == 0, result.stdout
    assert db.version() == [HEAD]


@pytest.mark.parametrize("command", ["upgrade", "downgrade base", "stamp head"])
@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
def test_an_in_memory_database_is_never_changed(command: str, url: str) -> None:
    result = run_job(*command.split(), env=job_env(url))
    assert_refused(result, "in-memory", "sqlite:///app.db", "only --sql needs no database")
    assert not result.named("plan") and not result.named("migration_started")
    # Refused up front: never connected, never locked (there is no file to lock beside).
    assert [e["event"] for e in result.events] == ["starting", "failed"]
    assert result.final["lock_wait_s"] is None


def test_sql_rendering_needs_no_database_so_sqlite_memory_is_fine_there() -> None:
    # The first revision only: the example's later ones use batch mode, which on SQLite needs a
    # live database to reflect, whatever the URL.
    done = run_raw("upgrade", "--sql", "base:1a2b3c4d5e60", env=job_env("sqlite://"))
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE accounts" in done.stdout
    assert "'1a2b3c4d5e60'" in done.stdout


@pytest.mark.parametrize(
    ("scheme", "query", "normalised_query"),
    [
        ("postgresql", "", ""),
        ("postgres", "", ""),
        ("postgresql+psycopg2", "", ""),
        (
            "postgresql+psycopg",
            "?prepare_threshold=0&application_name=web",
            "?application_name=web",
        ),
        (
            "postgresql+asyncpg",
            "?ssl=disable&prepared_statement_cache_size=0&async_fallback=true",
            "?sslmode=disable",
        ),
        ("postgresql+asyncpg", "?ssl=prefer", "?sslmode=prefer"),
    ],
)
def test_an_applications_url_reaches_the_same_server_through_psycopg2(
    db: Database, scheme: str, query: str, normalised_query: str
) -> None:
    url = db.cluster.url(db.name, scheme=scheme) + query
    result = run_job("upgrade", env=job_env(url))
    assert result.code == 0, result.stdout
    port = db.cluster.port
    expected = f"postgresql+psycopg2://{ADMIN}:***@127.0.0.1:{port}/{db.name}{normalised_query}"
    assert result.one("starting")["database"] == expected
    assert db.version() == [HEAD]


@pytest.mark.parametrize(
    ("query", "fragments"),
    [
        ("?statement_cache_size=0", ["'statement_cache_size'", "psycopg2 has no statement cache"]),
        ("?command_timeout=60", ["'command_timeout'", "MIGRATE_STATEMENT_TIMEOUT"]),
        ("?server_settings=x", ["'server_settings'", "not one libpq"]),
        ("?ssl=1", ["ssl='1'", "sslmode=", "verify-full"]),
        ("?sslmode=disable&ssl=require", ["ssl/sslmode twice"]),
        ("?application_name", ["'application_name' has no value"]),
    ],
)
def test_a_parameter_libpq_would_reject_is_refused_by_name(
    db: Database, query: str, fragments: list[str]
) -> None:
    result = run_job(
        "upgrade", env=job_env(db.cluster.url(db.name, scheme="postgresql+asyncpg") + query)
    )
    assert_refused(result, *fragments)
    assert db.cluster.password not in result.stdout
    assert db.tables() == set()


def test_every_parameter_the_job_passes_on_is_one_the_shipped_libpq_knows() -> None:
    for name in sorted(LIBPQ_PARAMETERS):
        psycopg2.extensions.parse_dsn(f"postgresql://h/db?{name}=1")  # raises on an unknown one


def test_a_password_in_the_query_string_is_used_and_never_printed(
    db: Database, tmp_path: Path
) -> None:
    role, password = f"{db.name}_owner", "S3cret!-in-the-query"
    db.query(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    db.query(f"ALTER DATABASE {db.name} OWNER TO {role}")  # may create in schema public
    message = tmp_path / "termination-log"
    base = f"postgresql://{role}@127.0.0.1:{db.cluster.port}"
    url = f"{base}/{db.name}?password={quote(password)}"
    result = run_job("upgrade", env=job_env(url, MIGRATE_TERMINATION_LOG=str(message)))
    assert result.code == 0, result.stdout
    assert result.one("starting")["database"] == f"{base}/{db.name}?password=***".replace(
        "postgresql://", "postgresql+psycopg2://"
    )
    assert db.version() == [HEAD]
    texts = [result.stdout, message.read_text()]
    # Failures, whose messages carry the driver's words and the URL's pieces.
    for bad in (f"{base}/no_such_db?password={quote(password)}", f"{url}&sslmode=require"):
        env = job_env(bad, MIGRATE_TERMINATION_LOG=str(message), MIGRATE_WAIT_TIMEOUT="1")
        failed = run_job("upgrade", env=env)
        assert failed.code in (2, 3), failed.stdout
        texts += [failed.stdout, message.read_text()]
    for text in texts:
        assert password not in text and quote(password) not in text


def test_a_password_equal_to_the_user_name_garbles_nothing(db: Database, tmp_path: Path) -> None:
    """The Docker image's habit: user, password and database all "postgres"."""
    db.query(
        "DO $$ BEGIN CREATE ROLE postgres LOGIN PASSWORD 'postgres';"
        " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    db.query(f"ALTER DATABASE {db.name} OWNER TO postgres")
    message = tmp_path / "termination-log"
    url = f"postgresql://postgres:postgres@127.0.0.1:{db.cluster.port}/{db.name}"
    result = run_job("upgrade", env=job_env(url, MIGRATE_TERMINATION_LOG=str(message)))
    assert result.code == 0, result.stdout
    assert result.one("starting")["database"] == (
        f"postgresql+psycopg2://postgres:***@127.0.0.1:{db.cluster.port}/{db.name}"
    )
    assert result.final["event"] == "finished" and result.final["command"] == "upgrade"
    assert "***" not in result.stdout.replace("postgres:***@", "")
    assert message.read_text().startswith("finished exit=0 command=upgrade")


@pytest.mark.parametrize("scheme", ["mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql"])
def test_a_mysql_url_becomes_pymysql_with_its_password_masked(scheme: str) -> None:
    database = parse_database_url(f"{scheme}://app:p%40ss@db:3307/shop?charset=utf8mb4")
    assert database.url == "mysql+pymysql://app:p%40ss@db:3307/shop?charset=utf8mb4"
    assert database.redacted == "mysql+pymysql://app:***@db:3307/shop?charset=utf8mb4"
    assert database.dialect == "mysql"
    assert set(database.secrets) == {"p%40ss", "p@ss"}


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://app:pw@db/shop?password=hunter22", "'password'"),
        ("mysql://app:pw@/shop", "host"),
        ("mysql://app:pw@db/", "database name"),
    ],
)
def test_a_mysql_url_that_names_too_little_or_too_much_is_refused(url: str, named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_database_url(url)
    assert named in str(refused.value)
    assert "hunter22" not in str(refused.value)

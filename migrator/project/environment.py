"""The seam between the job and a project's own env.py, whatever that env.py does.

The job owns Alembic's `EnvironmentContext` (as alembic.command does) and so every call env.py
makes through `alembic.context`. What the job promises is enforced there, once, for any env.py
written for plain Alembic:

- the migrations run on the job's locked connection, whatever connection (or URL) env.py passes
  to `configure()`; a connection env.py opened itself must reach the same database, with the same
  search_path, or the run is refused before any change;
- one transaction per revision, unless the project sets `transaction_per_migration = false`;
- several databases at once (the multidb template) are refused before any change;
- Alembic's own report of the heads after each step (`on_version_apply`) is kept, so that the job
  can verify afterwards that the locked database shows them.

`hand_over` gives env.py the job's URL where the templates look for one (`sqlalchemy.url` and
`DATABASE_URL`), and makes any other postgresql:// URL env.py reads load the driver the image
ships.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from alembic import context as alembic_context
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from migrator.errors import ProjectError
from migrator.logs import Log
from migrator.redaction import redact

MULTIDB = (
    "env.py migrates several databases in one run (Alembic's multidb template): the job locks and "
    "verifies one database per run. Run one job per database, each with its own DATABASE_URL and "
    "an env.py (or alembic.ini section, `-n`) that migrates just that one."
)


def hand_over(config: Config, url: str) -> None:
    """Tell env.py the job's URL where Alembic's templates and common env.py files read one."""
    # configparser interpolates '%': a percent-encoded password must be escaped.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # An env.py that reads the variable gets the URL with the driver the image ships (a plain
    # postgresql:// would mean psycopg 3 to SQLAlchemy 2.1, which the image does not carry).
    os.environ["DATABASE_URL"] = url
    prefer_shipped_driver()


def prefer_shipped_driver() -> None:
    """`postgresql://` and `postgres://` mean psycopg2 in this process, unless psycopg 3 is there.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which the image does not ship, and
    refuses `postgres://`; an env.py reading its own variable gets whatever the application uses.
    SQLAlchemy's dialect registry is the documented way to say which module a name loads.
    """
    import importlib.util

    from sqlalchemy.dialects import registry

    if importlib.util.find_spec("psycopg") is None:
        for name in ("postgresql", "postgres"):
            registry.register(name, "sqlalchemy.dialects.postgresql.psycopg2", "PGDialect_psycopg2")


def per_migration(config: Config) -> bool:
    """One transaction per revision unless the project opts out in alembic.ini/pyproject.toml."""
    value = config.get_alembic_option("transaction_per_migration")
    return str(value).strip().lower() not in ("false", "0", "no", "off")


def refuse_multidb(config: Config) -> None:
    """The multidb template names its databases in the main section; it fails before any change."""
    if config.get_main_option("databases"):
        raise ProjectError(MULTIDB, setting="databases")


class JobEnvironment(EnvironmentContext):
    """An EnvironmentContext that runs whatever env.py configures on the job's connection."""

    def __init__(
        self,
        config: Config,
        script: ScriptDirectory,
        *,
        connection: Connection | None,
        per_migration: bool = True,
        log: Log | None = None,
        secrets: tuple[str, ...] = (),
        on_step: Callable[..., None] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(config, script, **kw)
        self.on_step = on_step  # after each step, in its transaction (the run history's row)
        self.job_connection = connection
        self.log = log
        self.per_migration = per_migration
        self.secrets = secrets
        self.adapted: list[str] = []
        self.configured = False
        self.version_options: dict[str, Any] = {}
        self.heads_after: list[str] | None = None  # Alembic's heads after the last step

    def configure(  # type: ignore[override]  # every option Alembic's has, passed on as given
        self,
        connection: Connection | None = None,
        *,
        url: Any = None,
        dialect_name: str | None = None,
        dialect_opts: dict[str, Any] | None = None,
        transaction_per_migration: bool = False,
        upgrade_token: str = "upgrades",  # noqa: S107 - Alembic's default, not a password
        downgrade_token: str = "downgrades",  # noqa: S107
        on_version_apply: Any = None,
        **kw: Any,
    ) -> None:
        if self.configured or (upgrade_token, downgrade_token) != ("upgrades", "downgrades"):
            raise ProjectError(MULTIDB)
        self.configured = True
        self.version_options = {
            key: kw[key] for key in ("version_table", "version_table_schema") if key in kw
        }
        if self.is_offline_mode() or self.job_connection is None:
            super().configure(
                connection=connection,
                url=url,
                dialect_name=dialect_name,
                dialect_opts=dialect_opts,
                transaction_per_migration=transaction_per_migration,
                on_version_apply=on_version_apply,
                **kw,
            )
            return
        self._adopt(connection, transaction_per_migration)
        if self.adapted and self.log is not None:
            self.log.info("env_adapted", changes=self.adapted, **self.version_options)
        super().configure(
            connection=self.job_connection,
            transaction_per_migration=self.per_migration,
            on_version_apply=_both(on_version_apply, self._applied),
            **kw,
        )

    def run_migrations(self, **kw: Any) -> None:
        if kw:  # arguments for upgrade(): the multidb template's engine_name
            raise ProjectError(MULTIDB, arguments=sorted(kw))
        super().run_migrations()

    def current_heads(self) -> list[str]:
        """The version table on the job's connection, as env.py configured it, committed state."""
        assert self.job_connection is not None
        connection = self.job_connection
        if connection.in_transaction():
            connection.rollback()  # only what is committed counts (see running.verify)
        context = MigrationContext.configure(connection=connection, opts=self.version_options)
        heads = sorted(context.get_current_heads())
        connection.rollback()
        return heads

    def _adopt(self, theirs: Connection | None, single: bool) -> None:
        """Decide what to say about env.py's own connection, or refuse it."""
        if theirs is None:
            self.adapted.append(
                "env.py configured a URL, not a connection: the migrations run on the job's "
                "locked connection"
            )
        elif theirs is not self.job_connection:
            self._same_database(theirs)
            self.adapted.append(
                "env.py opened its own connection to the same database: the migrations run on "
                "the job's locked connection, and env.py's stays idle"
            )
        if not single and self.per_migration:
            self.adapted.append(
                "env.py asked for one transaction for the whole run: the job commits each "
                "revision on its own (set transaction_per_migration = false in alembic.ini to "
                "keep one transaction)"
            )

    def _same_database(self, theirs: Connection) -> None:
        assert self.job_connection is not None
        ours, found = _identity(self.job_connection), _identity(theirs)
        if ours == found:
            return
        where = redact(theirs.engine.url.render_as_string(hide_password=True), self.secrets)
        raise ProjectError(
            f"env.py opened its own connection ({where}) and it does not reach the database "
            "the job locked (DATABASE_URL), or it changed session settings there "
            f"(search_path {found[-1]!r}, the job's {ours[-1]!r}): the job will not migrate one "
            "database while holding another's lock. Let env.py build its engine from "
            "config.get_main_option('sqlalchemy.url') or DATABASE_URL, which the job sets, and "
            "put session settings in the URL (options=-csearch_path%3D...) or in a revision.",
            env_py_database=where,
        )

    def _applied(self, *, heads: Sequence[str], **kw: Any) -> None:
        self.heads_after = sorted(heads)
        if self.on_step is not None:
            self.on_step(heads=heads, **kw)


# What alembic/context.py does for EnvironmentContext: `alembic.context` (what env.py imports)
# proxies its attributes, `context.config` among them, for this class too.
JobEnvironment.create_module_class_proxy(vars(alembic_context), vars(alembic_context))


def _both(given: Any, ours: Callable[..., None]) -> Callable[..., None]:
    """env.py's on_version_apply callback(s), then ours."""
    callbacks = [] if given is None else list(given) if isinstance(given, list | tuple) else [given]

    def call(**kw: Any) -> None:
        for callback in [*callbacks, ours]:
            callback(**kw)

    return call


def _identity(connection: Connection) -> tuple[Any, ...]:
    """What names a database session's target: server, database, and the schema search path."""
    was_open = connection.in_transaction()
    try:
        if connection.dialect.name == "postgresql":
            row = connection.exec_driver_sql(
                "SELECT pg_postmaster_start_time(), current_database(),"
                " current_setting('search_path')"
            ).one()
            identity: tuple[Any, ...] = ("postgresql", *row)
        elif connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("PRAGMA database_list").all()
            files = [os.path.realpath(row[2]) if row[2] else "" for row in rows if row[1] == "main"]
            identity = ("sqlite", *files, "")
        else:
            identity = (connection.dialect.name, "")
    except Exception as error:  # their connection cannot even answer: not ours, say so
        identity = ("unknown", error.__class__.__name__, "")
    if not was_open and connection.in_transaction():
        connection.rollback()  # no idle transaction left behind on either side
    return identity

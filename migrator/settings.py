"""Environment variables and flags, parsed and validated once into one frozen value."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

from migrator.errors import ConfigError
from migrator.urls import QUERY_SECRET, DatabaseURL, parse_database_url

if TYPE_CHECKING:  # loaded only for a fleet: a run with nothing to do never needs them
    from migrator.fleet.sharding import Shard
    from migrator.fleet.targets import Target

# Paths are plain strings on the path a run with nothing to do takes: pathlib costs ~2.5 ms there.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")
HISTORY_MODES = ("on", "off")
VERIFY_MODES = ("warn", "strict")
AHEAD_MODES = ("accept", "error", "assume")
ON_ERROR = ("continue", "stop")
# The variables only fleet-upgrade reads (and whose flags only it accepts).
FLEET_OPTIONS = (
    "MIGRATE_TARGETS_FILE",
    "MIGRATE_TARGETS_QUERY",
    "MIGRATE_TARGETS_URL",
    "MIGRATE_TARGETS_URL_FILE",
    "MIGRATE_PARALLEL",
    "MIGRATE_ON_ERROR",
    "MIGRATE_CANARY",
    "MIGRATE_SHARD_INDEX",
    "MIGRATE_SHARD_COUNT",
)
# Kubernetes sets it in each pod of an Indexed Job: the default of MIGRATE_SHARD_INDEX.
COMPLETION_INDEX = "JOB_COMPLETION_INDEX"


class Option(NamedTuple):
    """One setting: its variable, its flag, and how it reads."""

    env: str
    flag: str
    help: str
    default: str | None = None


OPTIONS = (
    Option("DATABASE_URL", "--database-url", "SQLAlchemy URL of the database"),
    Option("DATABASE_URL_FILE", "--database-url-file", "file holding the database URL"),
    Option("DATABASE_PASSWORD_FILE", "--database-password-file", "file holding the password"),
    Option("ALEMBIC_CONFIG", "--alembic-config", "path to alembic.ini"),
    Option("MIGRATE_WAIT_TIMEOUT", "--wait-timeout", "seconds to wait for the database", "60"),
    Option("MIGRATE_CONNECT_TIMEOUT", "--connect-timeout", "seconds per connection attempt", "5"),
    Option("MIGRATE_LOCK_TIMEOUT", "--lock-timeout", "seconds to wait for the lock", "300"),
    Option("MIGRATE_LOCK_NAME", "--lock-name", "name hashed into the advisory lock key"),
    Option("MIGRATE_AWAIT_TIMEOUT", "--timeout", "seconds await-head waits for head", "300"),
    Option("MIGRATE_DDL_LOCK_TIMEOUT", "--ddl-lock-timeout", "seconds DDL waits for a table", "5"),
    Option("MIGRATE_STATEMENT_TIMEOUT", "--statement-timeout", "seconds a statement may run", "0"),
    Option("MIGRATE_DDL_RETRIES", "--ddl-retries", "retries after a DDL lock timeout", "3"),
    Option("MIGRATE_TERMINATION_LOG", "--termination-log", "file for a one-line summary, or off"),
    Option("MIGRATE_LOG_FORMAT", "--log-format", "json, console or auto", "auto"),
    Option("MIGRATE_LOG_LEVEL", "--log-level", "debug, info, warning or error", "info"),
    Option("MIGRATE_HISTORY", "--history", "on or off: record runs in migrate_job", "on"),
    Option("MIGRATE_VERIFY", "--verify", "warn or strict: applied revision files edited", "warn"),
    Option(
        "MIGRATE_DATABASE_AHEAD", "--database-ahead", "accept, error or assume: db ahead", "accept"
    ),
    Option("MIGRATE_TARGETS_FILE", "--targets-file", "fleet-upgrade: JSON or YAML file of targets"),
    Option("MIGRATE_TARGETS_QUERY", "--targets-query", "fleet-upgrade: SQL listing the targets"),
    Option(
        "MIGRATE_TARGETS_URL", "--targets-url", "fleet-upgrade: the query's database (DATABASE_URL)"
    ),
    Option("MIGRATE_TARGETS_URL_FILE", "--targets-url-file", "file holding MIGRATE_TARGETS_URL"),
    Option("MIGRATE_PARALLEL", "--parallel", "fleet-upgrade: targets at once", "4"),
    Option("MIGRATE_ON_ERROR", "--on-error", "fleet-upgrade: continue or stop", "continue"),
    Option(
        "MIGRATE_CANARY", "--canary", "fleet-upgrade: the first K targets, or a group, first", "0"
    ),
    Option(
        "MIGRATE_SHARD_INDEX", "--shard-index", f"fleet-upgrade: this shard (or {COMPLETION_INDEX})"
    ),
    Option("MIGRATE_SHARD_COUNT", "--shard-count", "fleet-upgrade: how many shards"),
)


class Settings(NamedTuple):
    database: DatabaseURL | None
    alembic_config: str
    wait_timeout: float
    connect_timeout: float
    lock_timeout: float
    lock_name: str | None
    await_timeout: float
    ddl_lock_timeout: float
    statement_timeout: float
    ddl_retries: int
    termination_log: str | None
    log_format: str
    log_level: str
    history: str = "on"  # record runs and lineage in the migrate_job schema (history.py), or off
    verify: str = "warn"  # an applied revision file edited since: warn, or strict (exit 2)
    database_ahead: str = "accept"  # ahead of the image: accept proven, error, or assume unproven
    # fleet-upgrade: None unless MIGRATE_TARGETS_FILE is set.
    targets: tuple[Target, ...] | None = None
    parallel: int = 4
    on_error: str = "continue"
    canary: int | str = 0  # the first K targets, or the targets of the group of that name
    shard: Shard | None = None
    # fleet-upgrade: the targets from this query instead, run on `catalog` when the fleet starts
    # (it needs the database, which settings never touch).
    targets_query: str | None = None
    catalog: DatabaseURL | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        own = self.database.secrets if self.database else ()
        catalog = self.catalog.secrets if self.catalog else ()
        fleet = [secret for target in self.targets or () for secret in target.database.secrets]
        return (*own, *catalog, *fleet)

    @property
    def fleet_source(self) -> str | None:
        """The variable that names a fleet's targets, if one does."""
        if self.targets is not None:
            return "MIGRATE_TARGETS_FILE"
        return "MIGRATE_TARGETS_QUERY" if self.targets_query is not None else None

    def require_database(self) -> DatabaseURL:
        if self.database is None:
            raise ConfigError(
                "DATABASE_URL is not set: set DATABASE_URL or DATABASE_URL_FILE "
                "(no default database is ever assumed)"
            )
        return self.database


def load_settings(
    values: Mapping[str, str],
    *,
    stdout_is_tty: bool = False,
    flags: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from variables (flags already merged over the environment).

    `flags` maps a variable to the flag that set it: an error names what the user typed.
    """
    given = flags or {}

    def get(name: str) -> str | None:
        return _value(values, name)

    def seconds(name: str, *, positive: bool = False) -> float:
        return _seconds(get(name), given.get(name, name), positive=positive)

    def choice(name: str, allowed: tuple[str, ...]) -> str:
        return _choice(get(name), given.get(name, name), allowed)

    def number(name: str, low: int, high: int) -> int:
        return _whole(get(name), given.get(name, name), low, high)

    database = database_from(values, flags=given)
    targets = _targets(values, given, database)
    query, catalog = _targets_query(values, given, database, file_given=targets is not None)
    log_format = choice("MIGRATE_LOG_FORMAT", LOG_FORMATS)
    if log_format == "auto":
        log_format = "console" if stdout_is_tty else "json"
    return Settings(
        database=database,
        alembic_config=_alembic_config(
            get("ALEMBIC_CONFIG"), given.get("ALEMBIC_CONFIG", "ALEMBIC_CONFIG")
        ),
        wait_timeout=seconds("MIGRATE_WAIT_TIMEOUT"),
        connect_timeout=seconds("MIGRATE_CONNECT_TIMEOUT", positive=True),
        lock_timeout=seconds("MIGRATE_LOCK_TIMEOUT"),
        lock_name=get("MIGRATE_LOCK_NAME"),
        await_timeout=seconds("MIGRATE_AWAIT_TIMEOUT"),
        ddl_lock_timeout=seconds("MIGRATE_DDL_LOCK_TIMEOUT"),
        statement_timeout=seconds("MIGRATE_STATEMENT_TIMEOUT"),
        ddl_retries=_count(
            get("MIGRATE_DDL_RETRIES"), given.get("MIGRATE_DDL_RETRIES", "MIGRATE_DDL_RETRIES")
        ),
        termination_log=termination_log(values),
        log_format=log_format,
        log_level=choice("MIGRATE_LOG_LEVEL", LOG_LEVELS),
        history=choice("MIGRATE_HISTORY", HISTORY_MODES),
        verify=choice("MIGRATE_VERIFY", VERIFY_MODES),
        database_ahead=choice("MIGRATE_DATABASE_AHEAD", AHEAD_MODES),
        targets=targets,
        parallel=number("MIGRATE_PARALLEL", 1, 100),
        on_error=choice("MIGRATE_ON_ERROR", ON_ERROR),
        canary=_canary(get("MIGRATE_CANARY"), given.get("MIGRATE_CANARY", "MIGRATE_CANARY")),
        # Only a fleet is split, and only its settings may refuse JOB_COMPLETION_INDEX.
        shard=_shard(values, given) if targets is not None or query else None,
        targets_query=query,
        catalog=catalog,
    )


def _targets(
    values: Mapping[str, str], given: Mapping[str, str], database: DatabaseURL | None
) -> tuple[Target, ...] | None:
    """fleet-upgrade's targets, from MIGRATE_TARGETS_FILE; None when it is not set."""
    path = _value(values, "MIGRATE_TARGETS_FILE")
    if path is None:
        return None
    from migrator.fleet.targets import load_targets

    return load_targets(path, given.get("MIGRATE_TARGETS_FILE", "MIGRATE_TARGETS_FILE"), database)


def _targets_query(
    values: Mapping[str, str],
    given: Mapping[str, str],
    database: DatabaseURL | None,
    *,
    file_given: bool,
) -> tuple[str | None, DatabaseURL | None]:
    """MIGRATE_TARGETS_QUERY, and the database it runs on: MIGRATE_TARGETS_URL (or its _FILE),
    else DATABASE_URL."""
    query = _value(values, "MIGRATE_TARGETS_QUERY")
    query_name = given.get("MIGRATE_TARGETS_QUERY", "MIGRATE_TARGETS_QUERY")
    catalog = database_from(
        values,
        flags=given,
        names=("MIGRATE_TARGETS_URL", "MIGRATE_TARGETS_URL_FILE", None),
    )
    if query is None:
        if catalog is not None:
            # A catalog with no query to run on it is a setting that would be ignored.
            raise ConfigError(
                f"MIGRATE_TARGETS_QUERY is not set, and {catalog.source} names only the "
                "database that query runs on: set the query, or unset the catalog"
            )
        return None, None
    if file_given:
        file_name = given.get("MIGRATE_TARGETS_FILE", "MIGRATE_TARGETS_FILE")
        raise ConfigError(f"{file_name} and {query_name} are both set: set only one")
    catalog = catalog or database
    if catalog is None:
        raise ConfigError(
            f"{query_name} needs the database it runs on: set MIGRATE_TARGETS_URL (or "
            "MIGRATE_TARGETS_URL_FILE), or DATABASE_URL"
        )
    return query, catalog


def _canary(raw: str | None, name: str) -> int | str:
    """A count (the first K targets), or the name of a group."""
    value = (raw or "").strip()
    if re.fullmatch(r"[0-9]+", value):
        return _whole(value, name, 0, 100000)
    from migrator.fleet.targets import GROUP

    if not GROUP.fullmatch(value):
        raise ConfigError(
            f"{_shown(name, raw)} must be a whole number from 0 to 100000, or the name of a "
            "group of targets"
        )
    return value


def _shard(values: Mapping[str, str], given: Mapping[str, str]) -> Shard:
    """This pod's share of the targets: both the index and the count, or neither (all)."""
    from migrator.fleet.sharding import Shard

    count_name = given.get("MIGRATE_SHARD_COUNT", "MIGRATE_SHARD_COUNT")
    index_name = given.get("MIGRATE_SHARD_INDEX", "MIGRATE_SHARD_INDEX")
    raw_count, raw_index = (
        _value(values, "MIGRATE_SHARD_COUNT"),
        _value(values, "MIGRATE_SHARD_INDEX"),
    )
    if raw_index is None and values.get(COMPLETION_INDEX, "").strip():
        index_name, raw_index = COMPLETION_INDEX, values[COMPLETION_INDEX].strip()
    if raw_index is None and raw_count is None:
        return Shard()
    if raw_count is None:
        # Guessing a count would run one pod's share in another, or none at all.
        raise ConfigError(
            f"{_shown(index_name, raw_index)} is set but MIGRATE_SHARD_COUNT is not: set it to "
            "the Job's completions (the chart does)"
        )
    count = _whole(raw_count, count_name, 1, 100000)
    if raw_index is None:
        raise ConfigError(
            f"{_shown(count_name, raw_count)} is set but no shard index: set "
            f"MIGRATE_SHARD_INDEX (an Indexed Job sets {COMPLETION_INDEX})"
        )
    index = _whole(raw_index, index_name, 0, 99999)
    if index >= count:
        raise ConfigError(f"{_shown(index_name, raw_index)} must be below the shard count {count}")
    return Shard(number=index, total=count)


_DEFAULTS = {option.env: option.default for option in OPTIONS}


def _value(values: Mapping[str, str], name: str) -> str | None:
    """A set, non-blank value, else the default; blank counts as unset (as in compose files)."""
    value = values.get(name, "").strip()
    return value or _DEFAULTS[name]


def _shown(name: str, raw: str | None) -> str:
    """A setting as the user wrote it: `--wait-timeout '-5'` or `MIGRATE_WAIT_TIMEOUT='-5'`."""
    return f"{name} {raw!r}" if name.startswith("--") else f"{name}={raw!r}"


def _seconds(raw: str | None, name: str, *, positive: bool = False) -> float:
    try:
        value = float(raw or "")
    except ValueError:
        raise ConfigError(f"{_shown(name, raw)} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        expected = "greater than 0" if positive else "0 or more"
        raise ConfigError(f"{_shown(name, raw)} must be a finite number of seconds, {expected}")
    return value


def _count(raw: str | None, name: str) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", raw or "") or int(raw or "") > 100:
        raise ConfigError(f"{_shown(name, raw)} must be a whole number from 0 to 100")
    return int(raw or "")


def _whole(raw: str | None, name: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", raw or "") or not low <= int(raw or "") <= high:
        raise ConfigError(f"{_shown(name, raw)} must be a whole number from {low} to {high}")
    return int(raw or "")


def termination_log(values: Mapping[str, str]) -> str | None:
    """Where Kubernetes reads the container's termination message, if anywhere."""
    raw = _value(values, "MIGRATE_TERMINATION_LOG")
    if raw is None:
        default = "/dev/termination-log"
        return default if os.path.exists(default) and os.access(default, os.W_OK) else None
    return None if raw.lower() in ("off", "none", "-") else raw


def _choice(raw: str | None, name: str, allowed: tuple[str, ...]) -> str:
    value = (raw or "").lower()
    if value not in allowed:
        raise ConfigError(f"{_shown(name, raw)} is not one of: {', '.join(allowed)}")
    return value


def _alembic_config(raw: str | None, name: str = "ALEMBIC_CONFIG") -> str:
    """ALEMBIC_CONFIG; else alembic.ini in the working directory, as for Alembic's CLI (the
    runner pip-installed into an application's image); else the one beside the runner (this
    repository and its image)."""
    if raw:
        if os.path.isdir(raw):
            raise ConfigError(f"{name}: {raw!r} is a directory, not alembic.ini")
        if not os.path.isfile(raw):
            raise ConfigError(f"{name}: no file at {raw!r}")
        return raw
    for path in (os.path.abspath("alembic.ini"), os.path.join(PROJECT_ROOT, "alembic.ini")):
        if os.path.isfile(path):
            return path
    raise ConfigError(
        f"{name} is not set and there is no alembic.ini in the working directory "
        f"({os.getcwd()!r}): set ALEMBIC_CONFIG to your project's alembic.ini or pyproject.toml"
    )


_DATABASE = ("DATABASE_URL", "DATABASE_URL_FILE", "DATABASE_PASSWORD_FILE")


def database_from(
    values: Mapping[str, str],
    *,
    flags: Mapping[str, str] | None = None,
    names: tuple[str, str, str | None] = _DATABASE,
) -> DatabaseURL | None:
    """The database named by DATABASE_URL or DATABASE_URL_FILE (+ DATABASE_PASSWORD_FILE), or
    by the variables `names` (url, url file, password file or None) in their place."""
    given = flags or {}
    url_var, file_var, password_var = names
    url_name = given.get(url_var, url_var)
    file_name = given.get(file_var, file_var)
    password_name = given.get(password_var, password_var) if password_var else ""
    url, url_file = _value(values, url_var), _value(values, file_var)
    if url and url_file:
        raise ConfigError(f"{url_name} and {file_name} are both set: set only one")
    source = url_name
    if url_file:
        url = _read_secret_file(url_file, file_name)
        source = f"the URL in {file_name}"
    if not url:
        return None
    password_file = _value(values, password_var) if password_var else None
    if password_file:
        url = _with_password(
            url, _read_secret_file(password_file, password_name), source, password_name
        )
    return parse_database_url(url, source=source)


def _with_password(url: str, password: str, source: str, password_name: str) -> str:
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not sep or not at or not userinfo:
        raise ConfigError(f"{password_name} needs a user in {source} (user@host)")
    if ":" in userinfo or QUERY_SECRET.search(rest):
        raise ConfigError(
            f"{source} already has a password and {password_name} is set: set only one"
        )
    return f"{scheme}://{userinfo}:{quote(password, safe='')}@{host}{slash}{path}"


def _read_secret_file(path: str, name: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            content = file.read().strip()
    except (OSError, ValueError) as error:  # ValueError: undecodable, or a NUL in the path
        raise ConfigError(f"{name}: cannot read {path!r}: {error.__class__.__name__}") from None
    if not content:
        raise ConfigError(f"{name}: {path!r} is empty")
    return content

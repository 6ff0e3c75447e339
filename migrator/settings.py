"""Environment variables and flags, parsed and validated once into one frozen value."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from migrator.errors import ConfigError
from migrator.records import Record

# Paths are plain strings on the path a run with nothing to do takes: pathlib costs ~2.5 ms there.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")

# Our lock and our engine options are written for these two; anything else is refused up front
# rather than half-working.
_SCHEMES = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "postgresql+psycopg2": "postgresql+psycopg2",
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}


# Records are Records (records.py), not dataclasses, throughout the path a run with nothing to do
# takes: importing dataclasses (it imports inspect) and building a frozen dataclass cost ~20 ms.
class Option(Record):
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
)


class DatabaseURL(Record):
    """A database URL with the driver made explicit, and what must never be logged."""

    url: str
    dialect: str
    redacted: str
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"DatabaseURL({self.redacted!r})"


class Settings(Record):
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

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.database.secrets if self.database else ()

    def require_database(self) -> DatabaseURL:
        if self.database is None:
            raise ConfigError(
                "DATABASE_URL is not set: set DATABASE_URL or DATABASE_URL_FILE "
                "(no default database is ever assumed)"
            )
        return self.database


def load_settings(values: Mapping[str, str], *, stdout_is_tty: bool = False) -> Settings:
    """Build the settings from variables (flags already merged over the environment)."""

    def get(name: str) -> str | None:
        return _value(values, name)

    log_format = _choice(get("MIGRATE_LOG_FORMAT"), "MIGRATE_LOG_FORMAT", LOG_FORMATS)
    if log_format == "auto":
        log_format = "console" if stdout_is_tty else "json"
    return Settings(
        database=database_from(values),
        alembic_config=_alembic_config(get("ALEMBIC_CONFIG")),
        wait_timeout=_seconds(get("MIGRATE_WAIT_TIMEOUT"), "MIGRATE_WAIT_TIMEOUT"),
        connect_timeout=_seconds(
            get("MIGRATE_CONNECT_TIMEOUT"), "MIGRATE_CONNECT_TIMEOUT", positive=True
        ),
        lock_timeout=_seconds(get("MIGRATE_LOCK_TIMEOUT"), "MIGRATE_LOCK_TIMEOUT"),
        lock_name=get("MIGRATE_LOCK_NAME"),
        await_timeout=_seconds(get("MIGRATE_AWAIT_TIMEOUT"), "MIGRATE_AWAIT_TIMEOUT"),
        ddl_lock_timeout=_seconds(get("MIGRATE_DDL_LOCK_TIMEOUT"), "MIGRATE_DDL_LOCK_TIMEOUT"),
        statement_timeout=_seconds(get("MIGRATE_STATEMENT_TIMEOUT"), "MIGRATE_STATEMENT_TIMEOUT"),
        ddl_retries=_count(get("MIGRATE_DDL_RETRIES"), "MIGRATE_DDL_RETRIES"),
        termination_log=termination_log(values),
        log_format=log_format,
        log_level=_choice(get("MIGRATE_LOG_LEVEL"), "MIGRATE_LOG_LEVEL", LOG_LEVELS),
    )


_DEFAULTS = {option.env: option.default for option in OPTIONS}


def _value(values: Mapping[str, str], name: str) -> str | None:
    """A set, non-blank value, else the default; blank counts as unset (as in compose files)."""
    value = values.get(name, "").strip()
    return value or _DEFAULTS[name]


def _seconds(raw: str | None, name: str, *, positive: bool = False) -> float:
    try:
        value = float(raw or "")
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        expected = "greater than 0" if positive else "0 or more"
        raise ConfigError(f"{name}={raw!r} must be a finite number of seconds, {expected}")
    return value


def _count(raw: str | None, name: str) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", raw or "") or int(raw or "") > 100:
        raise ConfigError(f"{name}={raw!r} must be a whole number from 0 to 100")
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
        raise ConfigError(f"{name}={raw!r} is not one of: {', '.join(allowed)}")
    return value


def _alembic_config(raw: str | None) -> str:
    path = raw or os.path.join(PROJECT_ROOT, "alembic.ini")
    if os.path.isdir(path):
        raise ConfigError(f"ALEMBIC_CONFIG: {path!r} is a directory, not alembic.ini")
    if not os.path.isfile(path):
        raise ConfigError(f"ALEMBIC_CONFIG: no file at {path!r}")
    return path


def database_from(values: Mapping[str, str]) -> DatabaseURL | None:
    """The database named by DATABASE_URL or DATABASE_URL_FILE (+ DATABASE_PASSWORD_FILE)."""
    url, url_file = _value(values, "DATABASE_URL"), _value(values, "DATABASE_URL_FILE")
    if url and url_file:
        raise ConfigError("DATABASE_URL and DATABASE_URL_FILE are both set: set only one")
    if url_file:
        url = _read_secret_file(url_file, "DATABASE_URL_FILE")
    if not url:
        return None
    password_file = _value(values, "DATABASE_PASSWORD_FILE")
    if password_file:
        url = _with_password(url, _read_secret_file(password_file, "DATABASE_PASSWORD_FILE"))
    return parse_database_url(url)


def _with_password(url: str, password: str) -> str:
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not sep or not at or not userinfo:
        raise ConfigError("DATABASE_PASSWORD_FILE needs a user in DATABASE_URL (user@host)")
    if ":" in userinfo:
        raise ConfigError(
            "DATABASE_URL already has a password and DATABASE_PASSWORD_FILE is set: set only one"
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


def parse_database_url(url: str) -> DatabaseURL:
    """Normalise the driver and find the password, without importing SQLAlchemy."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            "DATABASE_URL is not a URL: expected postgresql://user:password@host:port/dbname "
            "or sqlite:///path/to/file.db"
        )
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise ConfigError(
            f"DATABASE_URL scheme {scheme!r} is not supported: use postgresql:// (psycopg2) "
            "or sqlite://"
        )
    normalised = f"{driver}://{rest}"
    try:
        parts = urlsplit(normalised)
        password = parts.password
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        # Not the parser's own words: they quote the piece it choked on, which may be the
        # password itself.
        raise ConfigError(
            "DATABASE_URL is malformed: expected scheme://user:password@host:port/dbname with "
            "a numeric port; percent-encode '/', '?', '#' and '@' inside the password"
        ) from None
    secrets = _secret_forms(password)
    return DatabaseURL(
        url=normalised,
        dialect=driver.split("+")[0],
        redacted=_without_password(parts) if password else normalised,
        secrets=secrets,
    )


# Shorter values are still masked inside URLs, but not in free text: masking every "pw" or "a"
# in every message would make the log unreadable while protecting nothing guessable.
MIN_SECRET_LENGTH = 4


def password_candidates(url: str) -> tuple[str, ...]:
    """Whatever stands where a password would, even in a URL too broken to parse."""
    _, _, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    _, colon, password = userinfo.partition(":")
    return _secret_forms(password) if at and colon else ()


def _secret_forms(password: str | None) -> tuple[str, ...]:
    if not password:
        return ()
    forms = {password, unquote(password)}
    return tuple(sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True))


def _without_password(parts: SplitResult) -> str:
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?=@)")


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Remove known secret values, and any password written inside a URL."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _URL_PASSWORD.sub(r"\g<head>***", text)

"""Environment variables and flags, parsed and validated once into one frozen value."""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping
from urllib.parse import SplitResult, quote, unquote, urlsplit

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
    # An application's async or psycopg 3 URL names the same server: the image ships psycopg2.
    "postgresql+psycopg": "postgresql+psycopg2",
    "postgresql+asyncpg": "postgresql+psycopg2",
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}


# Records are Records (records.py), not dataclasses, throughout the path a run with nothing to do
# takes: importing dataclasses (it imports inspect) and building a frozen dataclass cost ~20 ms.
# The shape of a URL in the job's own messages: never masked (a real URL cannot contain it:
# "port" is not a port number).
URL_HINT = "postgresql://user:password@host:port/dbname"


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
    source: str = "DATABASE_URL"  # where it came from, as messages name it

    def __repr__(self) -> str:
        return f"DatabaseURL({self.redacted!r})"

    @property
    def sqlite_file(self) -> str | None:
        """The file behind a SQLite URL; None for a private in-memory database."""
        if self.dialect != "sqlite":
            return None
        path = self.url.split("://", 1)[1].removeprefix("/").split("?")[0]
        return None if path in ("", ":memory:") else path

    @property
    def in_memory(self) -> bool:
        """A private SQLite database that vanishes with the process (`sqlite://`)."""
        return self.dialect == "sqlite" and self.sqlite_file is None


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

    log_format = choice("MIGRATE_LOG_FORMAT", LOG_FORMATS)
    if log_format == "auto":
        log_format = "console" if stdout_is_tty else "json"
    return Settings(
        database=database_from(values, flags=given),
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
    )


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


def database_from(
    values: Mapping[str, str], *, flags: Mapping[str, str] | None = None
) -> DatabaseURL | None:
    """The database named by DATABASE_URL or DATABASE_URL_FILE (+ DATABASE_PASSWORD_FILE)."""
    given = flags or {}
    url_name = given.get("DATABASE_URL", "DATABASE_URL")
    file_name = given.get("DATABASE_URL_FILE", "DATABASE_URL_FILE")
    password_name = given.get("DATABASE_PASSWORD_FILE", "DATABASE_PASSWORD_FILE")
    url, url_file = _value(values, "DATABASE_URL"), _value(values, "DATABASE_URL_FILE")
    if url and url_file:
        raise ConfigError(f"{url_name} and {file_name} are both set: set only one")
    source = url_name
    if url_file:
        url = _read_secret_file(url_file, file_name)
        source = f"the URL in {file_name}"
    if not url:
        return None
    password_file = _value(values, "DATABASE_PASSWORD_FILE")
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
    if ":" in userinfo or _QUERY_SECRET.search(rest):
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


def parse_database_url(url: str, *, source: str = "DATABASE_URL") -> DatabaseURL:
    """Normalise the driver and find the password, without importing SQLAlchemy.

    `source` is where the URL came from, as errors name it (a variable, a flag or a file).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"{source} is not a URL: expected postgresql://user:password@host:port/dbname "
            "or sqlite:///path/to/file.db"
        )
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise ConfigError(
            f"{source} scheme {scheme!r} is not supported: use postgresql:// (psycopg2) "
            "or sqlite://"
        )
    if driver == "sqlite":
        return _sqlite_url(rest, source)
    return _postgresql_url(rest, source)


def _postgresql_url(rest: str, source: str) -> DatabaseURL:
    """A libpq URL for psycopg2 that names its server and database, and where its secrets are."""
    normalised = f"postgresql+psycopg2://{rest}"
    try:
        parts = urlsplit(normalised)
        password = parts.password
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        # Not the parser's own words: they quote the piece it choked on, which may be the
        # password itself.
        raise ConfigError(
            f"{source} is malformed: expected scheme://user:password@host:port/dbname with "
            "a numeric port; percent-encode '/', '?', '#' and '@' inside the password"
        ) from None
    query = _libpq_query(parts.query, source)
    given = {unquote(key): unquote(value) for key, value in query}
    missing = []
    if not (parts.hostname or given.get("host") or given.get("hostaddr")):
        missing.append("host (nor a socket directory: ?host=/path)")
    if not (unquote(parts.path.lstrip("/")) or given.get("dbname")):
        missing.append("database name")
    if missing:
        # libpq would fill the gaps from PGHOST, PGDATABASE, the local socket and the OS user:
        # a database nobody named.
        raise ConfigError(
            f"{source} names no {' and no '.join(missing)}: expected {URL_HINT}; the job never "
            "falls back to PGHOST, PGDATABASE or the local socket"
        )
    secrets = _secret_forms(password)
    for key, value in query:
        if unquote(key) in SECRET_PARAMETERS:
            secrets += _secret_forms(value)
    parts = parts._replace(query="&".join(f"{key}={value}" for key, value in query))
    masked = parts._replace(
        query="&".join(
            f"{key}={'***' if unquote(key) in SECRET_PARAMETERS and value else value}"
            for key, value in query
        )
    )
    if password:
        userinfo, _, hostinfo = masked.netloc.rpartition("@")
        masked = masked._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostinfo}")
    return DatabaseURL(
        url=_unsplit(parts),
        dialect="postgresql",
        redacted=_unsplit(masked),
        secrets=tuple(sorted(set(secrets), key=len, reverse=True)),
        source=source,
    )


# What libpq (17, the version psycopg2's wheel ships) accepts in a URL's query; anything else it
# refuses with "invalid URI query parameter", or a driver's name for it should be translated.
LIBPQ_PARAMETERS = frozenset((
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "require_auth",
    "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode", "requiressl",
    "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode",
    "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "krbsrvname", "gsslib", "gssdelegation", "service",
    "target_session_attrs", "load_balance_hosts",
))  # fmt: skip
# Parameters whose value is a secret (the later ones arrive with libpq 18).
SECRET_PARAMETERS = frozenset(
    ("password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key")
)
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Tuning of a client-side cache that psycopg2 does not have (asyncpg's, psycopg 3's, SQLAlchemy's
# async adaptation): nothing to translate, nothing lost for a migration.
_CLIENT_ONLY = frozenset(("prepared_statement_cache_size", "prepare_threshold", "async_fallback"))
# Known parameters of other drivers that the job has its own setting for.
_INSTEAD = {
    "command_timeout": "the job's statement timeout is MIGRATE_STATEMENT_TIMEOUT",
    "timeout": "the job's connect timeout is MIGRATE_CONNECT_TIMEOUT",
    "statement_cache_size": "psycopg2 has no statement cache",
}


def _libpq_query(query: str, source: str) -> list[tuple[str, str]]:
    """The query as libpq will read it: asyncpg's `ssl` becomes `sslmode`, client-side cache
    settings are dropped, anything libpq would refuse is refused here, by name."""
    kept: list[tuple[str, str]] = []
    for item in query.split("&") if query else ():
        key, equals, value = item.partition("=")
        name = unquote(key)
        if not equals:
            raise ConfigError(f"{source}: query parameter {name!r} has no value (name=value)")
        if name in _CLIENT_ONLY:
            continue
        if name == "ssl":
            mode = unquote(value).lower()
            if mode not in (*_SSLMODES, "true"):
                raise ConfigError(
                    f"{source}: ssl={mode!r} is not a TLS mode libpq knows: write sslmode= one "
                    f"of {', '.join(_SSLMODES)}"
                )
            # asyncpg's values are libpq's sslmode values; "true" is libpq's own alias.
            key, value = "sslmode", "require" if mode == "true" else mode
            name = "sslmode"
        if name not in LIBPQ_PARAMETERS:
            instead = f" ({_INSTEAD[name]})" if name in _INSTEAD else ""
            raise ConfigError(
                f"{source}: query parameter {name!r} is not one libpq (psycopg2's library) "
                f"understands{instead}; remove it. Accepted: libpq's connection parameters, "
                "asyncpg's ssl=, and the client-side cache settings, which are ignored"
            )
        if name == "sslmode":
            earlier = [v for k, v in kept if unquote(k) == "sslmode"]
            if earlier and unquote(earlier[0]) != unquote(value):
                raise ConfigError(f"{source} sets ssl/sslmode twice, differently: set it once")
            if earlier:
                continue
        kept.append((key, value))
    return kept


def _sqlite_url(rest: str, source: str) -> DatabaseURL:
    """A SQLite URL names a file after the third slash; anything between the second and the
    third is a host, which SQLAlchemy refuses (after the job would have created the file)."""
    authority, _, path = rest.partition("/")
    if authority:
        where = authority.partition("?")[0]
        # Echoed only when it cannot be a password: "sqlite://user:pw@x" is not repeated.
        named = f" ({where!r})" if not any(c in where for c in ":@") else ""
        suggestion = f"sqlite:///{where}/{path}".rstrip("/") if named else "sqlite:///demo.db"
        raise ConfigError(
            f"{source} names a host{named} after sqlite://, not a file: SQLAlchemy reads "
            "sqlite://NAME as a host and refuses it. A file relative to the working directory "
            f"takes three slashes ({suggestion}), an absolute path four (sqlite:////data/app.db)"
        )
    url = f"sqlite://{rest}"
    return DatabaseURL(url=url, dialect="sqlite", redacted=url, secrets=(), source=source)


# Shorter values are still masked inside URLs, but not in free text: masking every "pw" or "a"
# in every message would make the log unreadable while protecting nothing guessable.
MIN_SECRET_LENGTH = 4


def password_candidates(url: str) -> tuple[str, ...]:
    """Whatever stands where a password would, even in a URL too broken to parse."""
    _, _, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    _, colon, password = userinfo.partition(":")
    found = _secret_forms(password) if at and colon else ()
    for match in _QUERY_SECRET.finditer(rest):
        found += _secret_forms(match["value"])
    return found


def _secret_forms(password: str | None) -> tuple[str, ...]:
    if not password:
        return ()
    forms = {password, unquote(password)}
    return tuple(sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True))


def _unsplit(parts: SplitResult) -> str:
    """urlunsplit, but keeping `//` before an empty host (`postgresql:///app?host=/socket`)."""
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}{fragment}"


_SECRET_KEYS = "|".join(sorted(SECRET_PARAMETERS, key=len, reverse=True))
# A secret parameter in a URL's query: libpq takes `?password=` as it takes `user:password@`.
_QUERY_PARAMETER = re.compile(r"[?&](?P<key>[^=&#\s]*)=?(?P<value>[^&#\s]*)")
_SECRET_KEY = re.compile(_SECRET_KEYS, re.IGNORECASE)
_QUERY_SECRET = re.compile(rf"[?&](?:{_SECRET_KEYS})=(?P<value>[^&#\s]*)", re.IGNORECASE)
# The same in libpq's key/value form (`host=db password='x y'`), and PGPASSWORD=.
_KEYWORD_SECRET = re.compile(
    rf"\b(?:pg)?(?:{_SECRET_KEYS})\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|[^\s'\"]+)", re.IGNORECASE
)
# The job's own texts shaped like a URL with a password, never masked (see URL_HINT).
_FIXED_TEXT = (URL_HINT, "scheme://user:password@host:port/dbname")
_SPAN = re.compile(
    "(?P<fixed>"
    + "|".join(map(re.escape, _FIXED_TEXT))
    + ")"
    + r"|(?P<url>[a-zA-Z][\w+.-]*://[^\s\"'<>`]*)"
)
# A URL's pieces. The password runs to the last "@": an unencoded "@" or "/" in it must not
# leave its tail in view.
_URL_PARTS = re.compile(
    r"(?P<scheme>[^:]*)://(?:(?P<user>[^:/@?#]*)(?::(?P<password>.*))?@)?"
    r"(?P<host>[^/?#]*)(?P<path>/[^?#]*)?(?P<rest>.*)",
    re.DOTALL,
)
_WORD = re.compile(r"\w")


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Mask passwords by structure, and known secret values where they stand as a whole token.

    Structure: the password of any `scheme://user:password@`, a `password=` (or `sslpassword=`)
    in a URL's query or in libpq's key/value form. Known values (`secrets`) are masked as whole
    tokens only, and never inside a URL's scheme, user, host or path, nor inside the job's own
    fixed texts: a password "postgres" leaves `postgresql+psycopg2://postgres:***@db/postgres`
    readable, while the password slot itself is masked whatever it holds.
    """
    if "://" not in text and "=" not in text and not any(s in text for s in secrets):
        return text  # the common case, on every field of every event
    masks: list[tuple[int, int]] = []
    kept: list[tuple[int, int]] = []  # where a known value is not a secret but a name
    free = 0
    for span in _SPAN.finditer(text):
        _mask_keywords(text, free, span.start(), masks)
        free = span.end()
        if span["fixed"]:
            kept.append(span.span())
        else:
            _mask_url(span.start(), span["url"], masks, kept)
    _mask_keywords(text, free, len(text), masks)
    pattern = _whole_tokens(secrets)
    if pattern is not None:
        for match in pattern.finditer(text):
            start, end = match.span()
            if not any(a <= start and end <= b for a, b in kept):
                masks.append((start, end))
    return _masked(text, masks)


def _mask_keywords(text: str, start: int, end: int, masks: list[tuple[int, int]]) -> None:
    for match in _KEYWORD_SECRET.finditer(text, start, end):
        masks.append(match.span("value"))


def _mask_url(
    offset: int, url: str, masks: list[tuple[int, int]], kept: list[tuple[int, int]]
) -> None:
    parts = _URL_PARTS.match(url)
    if parts is None:  # unreachable: every piece is optional
        return
    for name in ("scheme", "user", "host", "path"):
        if parts[name]:
            kept.append((offset + parts.start(name), offset + parts.end(name)))
    if parts["password"]:
        masks.append((offset + parts.start("password"), offset + parts.end("password")))
    for match in _QUERY_PARAMETER.finditer(url, parts.start("rest")):
        value = (offset + match.start("value"), offset + match.end("value"))
        # The query is structure too: its keys, and the values that are not secrets, are names.
        kept.append((offset + match.start("key"), offset + match.end("key")))
        if _SECRET_KEY.fullmatch(match["key"]):
            if match["value"]:
                masks.append(value)
        else:
            kept.append(value)


@functools.lru_cache(maxsize=16)
def _whole_tokens(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """The secrets as whole tokens: "postgres" matches alone, not inside "postgresql"."""
    tokens = []
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            head = r"(?<!\w)" if _WORD.match(secret[0]) else ""
            tail = r"(?!\w)" if _WORD.match(secret[-1]) else ""
            tokens.append(head + re.escape(secret) + tail)
    return re.compile("|".join(tokens)) if tokens else None


def _masked(text: str, masks: list[tuple[int, int]]) -> str:
    """`text` with each masked stretch (overlapping ones merged) replaced by one `***`."""
    out, done = [], 0
    for start, end in sorted(masks):
        if start >= done:
            out += [text[done:start], "***"]
        done = max(done, end)
    out.append(text[done:])
    return "".join(out)

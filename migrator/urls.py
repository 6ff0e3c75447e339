"""Database URLs: the driver made explicit, the server and database named, the secrets found.

Parsed by hand, without SQLAlchemy's URL object: a run with nothing to do never loads SQLAlchemy.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

from migrator.errors import ConfigError

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
    # MariaDB speaks MySQL's protocol; PyMySQL (pure Python, no C build) serves both.
    "mysql": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
}

# The shape of a URL in the job's own messages: never masked (a real URL cannot contain it:
# "port" is not a port number).
URL_HINT = "postgresql://user:password@host:port/dbname"


class DatabaseURL(NamedTuple):
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


def parse_database_url(url: str, *, source: str = "DATABASE_URL") -> DatabaseURL:
    """Normalise the driver and find the password, without importing SQLAlchemy.

    `source` is where the URL came from, as errors name it (a variable, a flag or a file).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"{source} is not a URL: expected postgresql://user:password@host:port/dbname, "
            "mysql://user:password@host:port/dbname or sqlite:///path/to/file.db"
        )
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise ConfigError(
            f"{source} scheme {scheme!r} is not supported: use postgresql:// (psycopg2), "
            "mysql:// or mariadb:// (PyMySQL), or sqlite://"
        )
    if driver == "sqlite":
        return _sqlite_url(rest, source)
    if driver == "mysql+pymysql":
        return _mysql_url(rest, source)
    return _postgresql_url(rest, source)


def _postgresql_url(rest: str, source: str) -> DatabaseURL:
    """A libpq URL for psycopg2 that names its server and database, and where its secrets are."""
    parts = _split(f"postgresql+psycopg2://{rest}", source)
    password = parts.password
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
    return _database_url(parts, query, "postgresql", secrets, source)


def _split(url: str, source: str) -> SplitResult:
    """The URL's parts, or a ConfigError that never quotes the URL."""
    try:
        parts = urlsplit(url)
        _ = parts.password, parts.port  # the port raises when it is not a number
    except ValueError:
        # Not the parser's own words: they quote the piece it choked on, which may be the
        # password itself.
        raise ConfigError(
            f"{source} is malformed: expected scheme://user:password@host:port/dbname with "
            "a numeric port; percent-encode '/', '?', '#' and '@' inside the password"
        ) from None
    return parts


def _database_url(
    parts: SplitResult,
    query: list[tuple[str, str]],
    dialect: str,
    secrets: tuple[str, ...],
    source: str,
) -> DatabaseURL:
    """The URL with its kept query, and its masked twin for messages."""
    parts = parts._replace(query="&".join(f"{key}={value}" for key, value in query))
    masked = parts._replace(
        query="&".join(
            f"{key}={'***' if unquote(key) in SECRET_PARAMETERS and value else value}"
            for key, value in query
        )
    )
    if parts.password:
        userinfo, _, hostinfo = masked.netloc.rpartition("@")
        masked = masked._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostinfo}")
    return DatabaseURL(
        url=_unsplit(parts),
        dialect=dialect,
        redacted=_unsplit(masked),
        secrets=tuple(sorted(set(secrets), key=len, reverse=True)),
        source=source,
    )


# What the job passes on to PyMySQL from a MySQL URL's query (SQLAlchemy's mysql+pymysql
# dialect reads the same names); anything else is refused by name rather than half-applied.
MYSQL_PARAMETERS = frozenset(
    ("charset", "unix_socket", "ssl_ca", "ssl_cert", "ssl_key", "ssl_check_hostname")
)


def _mysql_url(rest: str, source: str) -> DatabaseURL:
    """A PyMySQL URL that names its server and database, and where its password is."""
    parts = _split(f"mysql+pymysql://{rest}", source)
    query = []
    for item in parts.query.split("&") if parts.query else ():
        key, equals, value = item.partition("=")
        if not equals or unquote(key) not in MYSQL_PARAMETERS:
            raise ConfigError(
                f"{source}: query parameter {unquote(key)!r} is not one the job passes to "
                f"PyMySQL: use name=value, one of {', '.join(sorted(MYSQL_PARAMETERS))}"
            )
        query.append((key, value))
    missing = []
    if not (parts.hostname or any(unquote(key) == "unix_socket" for key, _ in query)):
        missing.append("host (nor ?unix_socket=)")
    if not unquote(parts.path.lstrip("/")):
        missing.append("database name")
    if missing:
        # The driver would pick localhost and no database: a server and database nobody named.
        raise ConfigError(
            f"{source} names no {' and no '.join(missing)}: expected "
            "mysql://user:password@host:port/dbname"
        )
    return _database_url(parts, query, "mysql", _secret_forms(parts.password), source)


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
    for match in QUERY_SECRET.finditer(rest):
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
QUERY_SECRET = re.compile(rf"[?&](?:{_SECRET_KEYS})=(?P<value>[^&#\s]*)", re.IGNORECASE)

"""Configuration parsing and URL handling, including property-based checks."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from migrator.errors import ConfigError
from migrator.redaction import redact
from migrator.settings import OPTIONS, load_settings
from migrator.urls import MIN_SECRET_LENGTH, URL_HINT, parse_database_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql+psycopg2://u@h:5433/db", "postgresql+psycopg2://u@h:5433/db"),
        ("sqlite:///rel.db", "sqlite:///rel.db"),
        ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
    ],
)
def test_urls_are_normalised_to_the_shipped_drivers(url: str, expected: str) -> None:
    assert parse_database_url(url).url == expected


def test_defaults() -> None:
    settings_ = load_settings({"DATABASE_URL": "sqlite:///x.db"})
    assert (settings_.wait_timeout, settings_.connect_timeout, settings_.lock_timeout) == (
        60, 5, 300,
    )  # fmt: skip
    assert settings_.log_format == "json" and settings_.log_level == "info"
    assert settings_.lock_name is None
    assert load_settings({}).database is None


def test_auto_log_format_follows_the_terminal() -> None:
    assert load_settings({}, stdout_is_tty=True).log_format == "console"
    assert load_settings({}, stdout_is_tty=False).log_format == "json"


def test_decimal_seconds_are_accepted() -> None:
    assert load_settings({"MIGRATE_LOCK_TIMEOUT": "2.5"}).lock_timeout == 2.5


def test_redacted_url_and_repr_hide_the_password() -> None:
    database = parse_database_url("postgresql://app:pa%3Ass@db:5432/app")
    assert database.redacted == "postgresql+psycopg2://app:***@db:5432/app"
    assert "pa" not in repr(database).replace("postgresql", "")


env_values = st.one_of(st.text(max_size=30), st.sampled_from(["", "1", "-1", "0", "1e9", "nan"]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([o.env for o in OPTIONS]), env_values))
def test_any_environment_gives_settings_or_a_config_error(values: dict[str, str]) -> None:
    try:
        load_settings(values)
    except ConfigError as error:
        assert str(error)


password_chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))


users = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
hosts = st.sampled_from(["db", "127.0.0.1", "db.internal.example"])


@settings(max_examples=300, deadline=None)
@given(user=users, password=st.text(alphabet=password_chars, min_size=4, max_size=24), host=hosts)
def test_a_password_never_survives_redaction(user: str, password: str, host: str) -> None:
    url = f"postgresql://{user}:{quote(password, safe='')}@{host}:5432/app"
    database = parse_database_url(url)
    expected = f"postgresql+psycopg2://{user}:***@{host}:5432/app"
    assert database.redacted == expected
    # What the log processor emits: the password's slot masked, nothing else touched (a
    # password equal to the user name leaves the user name readable).
    assert redact(database.redacted, database.secrets) == expected
    # A password that is one of the message's own words is rightly masked there too.
    assume(password not in {"error", "for", "at", "and", "again"})
    message = f"error for {password!s} at {url} and again {quote(password, safe='')}"
    assert redact(message, database.secrets) == (
        f"error for *** at postgresql://{user}:***@{host}:5432/app and again ***"
    )


def libpq_quoted(value: str) -> str:
    """libpq's key/value quoting: single quotes, with backslash escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@settings(max_examples=300, deadline=None)
@given(
    user=users,
    password=st.text(alphabet=password_chars, min_size=1, max_size=24),
    host=hosts,
    key=st.sampled_from(["password", "sslpassword"]),
    before=st.sampled_from(["", "sslmode=disable&", "application_name=web&"]),
    after=st.sampled_from(["", "&connect_timeout=3"]),
)
def test_a_password_in_the_query_never_survives_redaction(
    user: str, password: str, host: str, key: str, before: str, after: str
) -> None:
    query = f"?{before}{key}={quote(password, safe='')}{after}"
    url = f"postgresql://{user}@{host}:5432/app{query}"
    database = parse_database_url(url)
    expected = f"postgresql+psycopg2://{user}@{host}:5432/app?{before}{key}=***{after}"
    assert database.redacted == expected
    assert redact(database.redacted, database.secrets) == expected
    # Unknown to the processor (an error raised before the settings exist): by structure alone,
    # up to the next space (an unencoded "S3cret!" keeps its "!" inside the mask).
    plain = expected.replace("postgresql+psycopg2://", "postgresql://")
    assert redact(f"cannot use {url} at all", ()) == f"cannot use {plain} at all"
    # libpq's key/value form, as a driver's message may quote it.
    dsn = f"host={host} user={user} {key}={libpq_quoted(password)} dbname=app"
    assert redact(dsn, ()) == f"host={host} user={user} {key}=*** dbname=app"
    # A password that is the message's own word ("failed") is rightly masked there too.
    if len(password) >= MIN_SECRET_LENGTH and password != "failed":
        message = f"failed: {password} ({quote(password, safe='')})"
        assert redact(message, database.secrets) == "failed: *** (***)"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_url_text_parses_or_is_a_config_error(text: str) -> None:
    try:
        parse_database_url(text)
    except ConfigError as error:
        assert "DATABASE_URL" in str(error)


@settings(max_examples=300, deadline=None)
@given(password=st.text(alphabet=password_chars, min_size=4, max_size=24))
def test_a_malformed_url_error_never_quotes_the_password(password: str) -> None:
    try:
        parse_database_url(f"postgresql://app:{password}@db:5432/app")  # not percent-encoded
    except ConfigError as error:
        assert password not in str(error)


@pytest.mark.parametrize(
    ("url", "text", "expected"),
    [
        # A password equal to the user name, to the database, to the driver's name.
        (
            "postgresql://postgres:postgres@db:5432/postgres",
            "postgresql+psycopg2://postgres:***@db:5432/postgres",
            "postgresql+psycopg2://postgres:***@db:5432/postgres",
        ),
        ("postgresql://app:psycopg2@db/app", "postgresql+psycopg2://app:***@db/app", None),
        (
            "postgresql://app:postgres@db/app",
            "role postgres: FATAL for postgres",
            "role ***: FATAL for ***",
        ),
        # The job's own hints keep their words, whatever the password.
        ("postgresql://user:password@db/app", f"expected {URL_HINT}", None),
        ("postgresql://app:dbname@db/app", f"expected {URL_HINT} or x", None),
        ("postgresql://app:upgrade@db/app", "upgrade: REVISION is empty", "***: REVISION is empty"),
    ],
)
def test_redaction_leaves_what_is_not_a_secret(url: str, text: str, expected: str | None) -> None:
    assert redact(text, parse_database_url(url).secrets) == (text if expected is None else expected)


@pytest.mark.parametrize("password", ["application_name", "web", "sslmode"])
def test_a_password_equal_to_a_query_key_or_value_masks_only_itself(password: str) -> None:
    """Found by hypothesis in CI: the query's keys and plain values are structure, not secrets."""
    url = f"postgresql://u@db:5432/app?application_name=web&sslmode=disable&password={password}"
    database = parse_database_url(url)
    expected = (
        "postgresql+psycopg2://u@db:5432/app?application_name=web&sslmode=disable&password=***"
    )
    assert redact(database.redacted, database.secrets) == expected

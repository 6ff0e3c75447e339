"""Configuration parsing and URL handling, including property-based checks."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.errors import ConfigError
from migrator.settings import OPTIONS, load_settings, parse_database_url, redact


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


@settings(max_examples=300, deadline=None)
@given(
    user=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    password=st.text(alphabet=password_chars, min_size=4, max_size=24),
    host=st.sampled_from(["db", "127.0.0.1", "db.internal.example"]),
)
def test_a_password_never_survives_redaction(user: str, password: str, host: str) -> None:
    url = f"postgresql://{user}:{quote(password, safe='')}@{host}:5432/app"
    database = parse_database_url(url)
    assert database.redacted.endswith(f"{user}:***@{host}:5432/app")
    logged = redact(database.redacted, database.secrets)  # what the log processor emits
    assert password not in logged and quote(password, safe="") not in logged
    message = f"error for {password!s} at {url} and again {quote(password, safe='')}"
    cleaned = redact(message, database.secrets)
    assert password not in cleaned
    assert quote(password, safe="") not in cleaned


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

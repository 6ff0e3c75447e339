"""The targets: a list of `{"name", "url"}`, `{"name", "url_file"}` (a database per tenant) or
`{"name", "schema"}` (a schema per tenant, in DATABASE_URL's database), each optionally with a
`"group"` (a named canary group), checked strictly; read from a JSON or YAML file here, or from
a catalog query's rows (registry.py), both through `check_targets`.

A schema target is DATABASE_URL with the schema as its whole search_path (libpq's `options`), so
that its version table and its migrations' unqualified names land in that schema, for any
env.py that uses the URL the job hands it.

Every mistake is a ConfigError (exit 2) naming the entry by its position and name, never by its
URL: a URL may carry a password, and the message is printed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from migrator.errors import ConfigError
from migrator.urls import DatabaseURL, parse_database_url

# Names stand in events, lock waits and shard assignments: plain words keep them readable and
# unambiguous in every log viewer (no spaces, quotes or control characters).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
# A group's name starts with a letter: MIGRATE_CANARY=3 is a count, never a group.
GROUP = re.compile(r"[A-Za-z][A-Za-z0-9_.:@-]{0,127}")
_WHERE = ("url", "url_file", "schema")
_KEYS = ("name", "group", *_WHERE)
# Only these are read as YAML (and only then is PyYAML imported); any other name is JSON, as
# before YAML was accepted, so no existing file changes meaning.
YAML_SUFFIXES = (".yaml", ".yml")
# A schema name that needs no quoting anywhere: in search_path, in SQL, in a lock name.
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class Target(NamedTuple):
    """One database of the fleet: its name and its URL (raw, as a DATABASE_URL would be)."""

    name: str
    url: str
    database: DatabaseURL
    schema: str | None = None  # a schema target: the schema in DATABASE_URL's database
    group: str | None = None  # a named canary group (MIGRATE_CANARY=<group>)


def load_targets(
    path: str, name: str = "MIGRATE_TARGETS_FILE", base: DatabaseURL | None = None
) -> tuple[Target, ...]:
    """The targets in the file at `path` (YAML if it ends in .yaml or .yml, else JSON), in the
    file's order; ConfigError on any mistake.

    `base` is DATABASE_URL, the database of the schema targets."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, ValueError) as error:
        raise ConfigError(f"{name}: cannot read {path!r}: {error.__class__.__name__}") from None
    is_yaml = path.lower().endswith(YAML_SUFFIXES)
    entries = _yaml(text, name, path) if is_yaml else _json(text, name, path)
    if not isinstance(entries, list) or not entries:
        kind = "YAML" if is_yaml else "JSON"
        raise ConfigError(f"{name}: {path!r} must hold a non-empty {kind} list of targets")
    return check_targets(entries, name, base)


def check_targets(
    entries: Sequence[Any], name: str, base: DatabaseURL | None, item: str = "target"
) -> tuple[Target, ...]:
    """`entries` (a file's list, or a query's rows as dicts) as targets, checked; `item` is
    what a message calls one ("target 3", "row 3")."""
    targets: list[Target] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        target = _target(entry, f"{name}: {item} {number}", base)
        if target.name in seen:
            raise ConfigError(f"{name}: {item} {number}: the name {target.name!r} is taken")
        seen.add(target.name)
        targets.append(target)
    return tuple(targets)


def _json(text: str, name: str, path: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        # The position only: the text around it may be a password.
        where = f"line {error.lineno}" if isinstance(error, json.JSONDecodeError) else "the text"
        raise ConfigError(
            f"{name}: {path!r} is not valid JSON (at {where}); a YAML file must end in .yaml "
            "or .yml"
        ) from None


def _yaml(text: str, name: str, path: str) -> Any:
    import yaml  # only for a YAML file: no other run pays for it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        # The line only: PyYAML's message quotes the text around the mistake.
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "the text"
        raise ConfigError(f"{name}: {path!r} is not valid YAML (at {where})") from None


def _target(entry: Any, where: str, base: DatabaseURL | None) -> Target:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not an object with a name and a url")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: name must be 1-128 letters, digits or _.:@- (starting with a letter or "
            "digit)"
        )
    where = f"{where} ({name})"
    unknown = sorted(map(str, set(entry) - set(_KEYS)))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    given = [key for key in _WHERE if key in entry]
    if len(given) != 1:
        raise ConfigError(f"{where}: needs exactly one of url, url_file, schema")
    (key,) = given
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    group = entry.get("group")
    if group is not None and (not isinstance(group, str) or not GROUP.fullmatch(group)):
        raise ConfigError(
            f"{where}: group must be 1-128 letters, digits or _.:@- (starting with a letter)"
        )
    if key == "schema":
        return _schema_target(name, value, where, base)._replace(group=group)
    url = value.strip() if key == "url" else _read_url_file(value, where)
    source = f"the url of {where}" if key == "url" else f"the URL in {where}'s url_file"
    database = parse_database_url(url, source=source)
    return Target(name=name, url=url, database=database, group=group)


def _read_url_file(path: str, where: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            content = file.read().strip()
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"{where}: cannot read url_file {path!r}: {error.__class__.__name__}"
        ) from None
    if not content:
        raise ConfigError(f"{where}: url_file {path!r} is empty")
    return content


def _schema_target(name: str, schema: str, where: str, base: DatabaseURL | None) -> Target:
    if not _SCHEMA.fullmatch(schema):
        raise ConfigError(
            f"{where}: schema must be a plain lowercase name (a-z, 0-9, _; at most 63)"
        )
    if base is None:
        raise ConfigError(f"{where}: a schema target needs DATABASE_URL, the database it is in")
    if base.dialect != "postgresql":
        raise ConfigError(f"{where}: schema targets need a PostgreSQL DATABASE_URL")
    parts = urlsplit(base.url)
    if any(item.partition("=")[0] == "options" for item in parts.query.split("&")):
        raise ConfigError(
            f"{where}: DATABASE_URL already sets options; a schema target sets its search_path "
            "there"
        )
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    url = urlunsplit(parts._replace(query=query))
    database = parse_database_url(url, source=f"DATABASE_URL for {where}")
    return Target(name=name, url=url, database=database, schema=schema)

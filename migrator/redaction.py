"""Redaction: no password survives into any line the job writes, wherever the user put it."""

from __future__ import annotations

import functools
import re

from migrator.urls import SECRET_PARAMETERS, URL_HINT

_SECRET_KEYS = "|".join(sorted(SECRET_PARAMETERS, key=len, reverse=True))
# A URL's query parameters; libpq takes `?password=` as it takes `user:password@`.
_QUERY_PARAMETER = re.compile(r"[?&](?P<key>[^=&#\s]*)=?(?P<value>[^&#\s]*)")
_SECRET_KEY = re.compile(_SECRET_KEYS, re.IGNORECASE)
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

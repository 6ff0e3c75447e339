"""Wait until the database accepts a connection: which failures heal, and for how long we try."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from migrator.database import ConnectFailed
from migrator.errors import DatabaseRejected, DatabaseUnavailable
from migrator.logs import Log

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from typing import Any

    from tenacity import RetryCallState

    from migrator.database import Raw

# libpq reports connection failures as text without an SQLSTATE, so the verdict reads the text.
# Whatever is not known to be permanent is retried until the deadline: a wrong verdict there
# costs a wait, while a wrong "permanent" would fail a deploy that would have healed. So these
# stay transient on purpose: an unknown host name (DNS converges while a Kubernetes Service or
# pod comes up), connection refused or reset, the server starting or shutting down, too many
# clients, `target_session_attrs` not met yet (a failover in progress), a GSSAPI credential
# cache not there yet (a kinit sidecar), and TLS EOFs (a network blip looks the same).
# A pattern, compiled by `re` at first use: most runs never fail to connect.
_PERMANENT = "|".join(
    (
        # credentials, names, access rules
        r"password authentication failed|authentication failed|no password supplied"
        r"|fe_sendauth|database \".*\" does not exist|role \".*\" does not exist"
        r"|no pg_hba\.conf entry|permission denied for database|requirepeer"
        r"|authentication method requirement",
        # the URL or its options: the same text on every attempt
        r"invalid dsn|invalid connection option|invalid integer value|invalid port number"
        r"|invalid \"?\w+\"? value|invalid uri|invalid percent-encoded|could not match \d+"
        r"|invalid ssl protocol version range|weak sslmode|host name must be specified"
        r"|unable to open database file|unsupported frontend protocol",
        # server-side settings passed in `options`
        r"unrecognized configuration parameter|invalid value for parameter",
        # TLS asked for and not possible, or refused: the server's setup, not its state
        r"server does not support ssl|ssl was required|ssl not in use|channel binding"
        r"|server doesn't support gssapi encryption",
        # certificates and keys, ours or the server's (mounted files exist before the start)
        r"certificate verify failed|does not match host name|root certificate file"
        r"|certificate file|private key|ssl certificate|server did not request an ssl"
        r"|alert (unknown ca|bad certificate|certificate|unsupported certificate"
        r"|protocol version|handshake failure|access denied|decrypt error)",
    )
)


def until(timeout: float, wait: Callable[[RetryCallState], float]) -> Callable[..., float]:
    """`wait`, shortened so that the last attempt falls right on the deadline.

    With stop_after_delay this gives "keep trying for exactly `timeout`": never giving up early
    (stop_before_delay would) and never sleeping far past the deadline.
    """

    def capped(state: RetryCallState) -> float:
        return max(0.0, min(wait(state), timeout - (state.seconds_since_start or 0.0)))

    return capped


def describe(error: BaseException) -> str:
    """One line of the driver's own message, without SQLAlchemy's wrapping around it."""
    inner = getattr(error, "orig", None) or error
    return " ".join(str(inner).split()) or inner.__class__.__name__


def heals(error: BaseException) -> bool:
    """Whether waiting could make this connection failure go away."""
    return isinstance(error, ConnectFailed) and not re.search(_PERMANENT, str(error), re.I)


def replaying(first: Any, attempt: Callable[[], Any]) -> Callable[[], Any]:
    """`attempt`, except that its first call replays an outcome we already have.

    The first try runs before tenacity is even imported (most runs need no second one, and
    importing tenacity costs ~20 ms); when it fails, tenacity takes over and counts that try as
    its attempt 1, so every attempt is still logged and paced by the same policy.
    """
    pending = [first]

    def call() -> Any:
        if pending:
            outcome = pending.pop()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return attempt()

    return call


def wait_for_database(connect: Callable[[], Raw], timeout: float, log: Log) -> Raw:
    """A live connection, or DatabaseUnavailable once `timeout` seconds have passed."""
    started = time.monotonic()
    try:
        raw, attempts = connect(), 1
    except ConnectFailed as error:
        if not heals(error):
            raise DatabaseRejected(f"cannot connect, and waiting will not help: {error}") from None
        raw, attempts = _keep_trying(replaying(error, connect), timeout, log, started)
    log.info("database_ready", attempts=attempts, waited_s=round(time.monotonic() - started, 3))
    return raw


def _keep_trying(
    connect: Callable[[], Raw], timeout: float, log: Log, started: float
) -> tuple[Raw, int]:
    from tenacity import (
        RetryError,
        Retrying,
        retry_if_exception,
        stop_after_delay,
        wait_random_exponential,
    )

    def report_attempt(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "database_unavailable",
            attempt=state.attempt_number,
            error=describe(error) if error else None,
            retry_in_s=round(state.upcoming_sleep, 3),
            elapsed_s=round(time.monotonic() - started, 3),
        )

    # Full-jitter exponential backoff (many pods must not retry in step), capped at one second
    # so that a database coming up is noticed quickly.
    backoff = wait_random_exponential(multiplier=0.1, max=1.0, min=0.05)
    remaining = timeout - (time.monotonic() - started)
    retrying = Retrying(
        stop=stop_after_delay(remaining),
        wait=until(remaining, backoff),
        retry=retry_if_exception(heals),
        before_sleep=report_attempt,
    )
    try:
        raw = retrying(connect)
    except RetryError as exhausted:
        last = exhausted.last_attempt.exception()
        raise DatabaseUnavailable(
            f"database not reachable after {exhausted.last_attempt.attempt_number} attempts "
            f"in {time.monotonic() - started:.1f} s (MIGRATE_WAIT_TIMEOUT={timeout:g}): "
            f"{describe(last) if last else 'no answer'}"
        ) from None
    except ConnectFailed as error:
        raise DatabaseRejected(f"cannot connect, and waiting will not help: {error}") from None
    return raw, int(retrying.statistics.get("attempt_number", 1))

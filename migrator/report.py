"""The final event, `finished` or `failed`, its exit code, and the termination message."""

from __future__ import annotations

import time
from typing import Any

from migrator.errors import ExitCode, Interrupted, MigrateError, exit_code_for
from migrator.job import Outcome
from migrator.logs import Log
from migrator.redaction import redact


def report(
    log: Log,
    outcome: Outcome,
    started: float,
    error: BaseException | None,
    *,
    termination_log: str | None,
    secrets: tuple[str, ...],
) -> int:
    """The final event: `finished` or `failed`, with everything an operator needs."""
    code = ExitCode.OK if error is None else exit_code_for(error)
    fields: dict[str, Any] = {
        "command": outcome.command,
        "exit_code": int(code),
        "revisions_before": outcome.revisions_before,
        "revisions_after": outcome.revisions_after,
        "applied": outcome.applied,
        "lock_wait_s": outcome.lock_wait_s,
        "duration_s": round(time.monotonic() - started, 3),
    }
    # The termination message is written first: a warning that it could not be must come
    # before the final event, which is the last line by contract.
    if error is None:
        _write_termination_message(log, termination_log, secrets, "finished", fields)
        log.info("finished", **fields)
        return code
    fields.update(error=error.__class__.__name__, message=str(error))
    if isinstance(error, MigrateError | Interrupted):
        fields.update({key: value for key, value in error.details.items() if key not in fields})
    if isinstance(error, Interrupted):
        log.warning("interrupted", signal=error.signal_name, running=outcome.running)
    elif not isinstance(error, MigrateError):
        # A bug: keep the traceback, as a field of the JSON event rather than raw text.
        import traceback  # only here: it imports tokenize and linecache, ~5 ms of every run

        fields.update(traceback=traceback.format_exception(error))
    _write_termination_message(log, termination_log, secrets, "failed", fields)
    log.error("failed", **fields)
    return code


def _write_termination_message(
    log: Log, path: str | None, secrets: tuple[str, ...], event: str, fields: dict[str, Any]
) -> None:
    """One line that `kubectl describe pod` shows as the container's termination message."""
    if path is None:
        return
    # Only what may carry a secret is redacted: the job's own words stay as they are.
    revisions = redact(str(fields["revisions_after"]), secrets)
    summary = f"{event} exit={fields['exit_code']} command={fields['command']}"
    summary += f" applied={fields['applied']} revisions={revisions}"
    if event == "failed":
        summary += f" error={fields['error']}: {redact(fields['message'], secrets)}"
    try:
        # Kubernetes keeps at most 4096 bytes of it.
        with open(path, "wb") as file:
            file.write(summary.encode()[:4096])
    except OSError as error:
        log.warning("termination_log_unwritable", path=path, error=str(error))

"""The one failure boundary: the driver's, Alembic's and the OS's errors, in the job's terms.

As httpx's `map_httpcore_exceptions` does it: one context manager, `translated`, wraps every
place where the job meets a lower layer, and one table, `RULES`, says what each error means.
The first rule that recognises an error names it; what no rule recognises stays as it is and
ends as exit 1, a bug in the job. The job's own errors pass through untouched.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from migrator import interrupts
from migrator.account import Failure, account_text, numbered, rolled_back_text
from migrator.backends import Backend, ConnectFailed, Raw
from migrator.errors import (
    DatabaseRejected,
    DatabaseUnavailable,
    DDLTimeout,
    Interrupted,
    MigrateError,
    MigrationFailed,
    ProjectError,
    RevisionError,
)

_JOB_DIR = os.path.dirname(os.path.abspath(__file__))


def _nothing() -> Any:
    return None


class Scene(NamedTuple):
    """What the job was doing when an error came: what the rules need to name it."""

    backend: Backend | None = None
    raw: Raw = None  # the connection in use
    running: Callable[[], dict[str, Any] | None] = _nothing  # the revision in flight
    scripts: str | None = None  # the project's script directory
    reading: str | None = None  # the project file being read
    # The statements of the revision in flight, where DDL does not roll back (account.py).
    account: Callable[[], Failure | None] = _nothing


def describe(error: BaseException) -> str:
    """One line of the driver's own message, without SQLAlchemy's wrapping around it."""
    inner = getattr(error, "orig", None) or error
    return " ".join(str(inner).split()) or inner.__class__.__name__


@contextmanager
def translated(scene: Scene) -> Iterator[None]:
    """Errors of the body, named by the first rule that recognises them."""
    try:
        yield
    except (MigrateError, Interrupted, GeneratorExit):
        raise
    except BaseException as error:  # a revision's sys.exit() or KeyboardInterrupt too
        for rule in RULES:
            named = rule(error, scene)
            if named is not None:
                raise named from None
        raise


def _interrupted(error: BaseException, _: Scene) -> BaseException | None:
    # The statement failed because the watcher cancelled it: we were asked to stop.
    signum = interrupts.received()
    return None if signum is None else Interrupted(signum)


def _cannot_connect(error: BaseException, _: Scene) -> BaseException | None:
    if isinstance(error, ConnectFailed) and not error.heals:
        return DatabaseRejected(f"cannot connect, and waiting will not help: {error}")
    return None


def _account(scene: Scene) -> Failure | None:
    """The statements of the failed revision, where the server does not roll its DDL back."""
    if scene.backend is None or scene.backend.transactional_ddl:
        return None
    return scene.account()


def _ddl_timeout(error: BaseException, scene: Scene) -> BaseException | None:
    running = scene.running()
    kind = scene.backend.classify(error) if scene.backend else None
    if running is None or kind not in ("lock_timeout", "statement_timeout"):
        return None
    revision = running["revision"]
    failure = _account(scene)
    held = ": another transaction holds a lock on a table it changes"
    cause = "hit lock_timeout" if kind == "lock_timeout" else "ran past MIGRATE_STATEMENT_TIMEOUT"
    if failure is None:
        message = f"revision {revision} {cause} and was rolled back"
        message, details = message + (held if kind == "lock_timeout" else ""), {}
    else:  # MySQL: "revision X failed at statement N; statements 1-(N-1) were committed ..."
        message = f"{account_text(revision, failure)}; it {cause}"
        message += held if kind == "lock_timeout" else ""
        details = failure.details
    return DDLTimeout(
        message,
        kind=kind,
        revision=revision,
        direction=running["direction"],
        down_revision=running["down_revision"],
        **details,
    )


def _connection_lost(error: BaseException, scene: Scene) -> BaseException | None:
    invalidated = getattr(error, "connection_invalidated", False)
    gone = scene.backend is not None and scene.raw is not None and scene.backend.lost(scene.raw)
    if not (invalidated or gone):
        return None
    running = scene.running()
    if running is None:
        return DatabaseUnavailable(f"lost the database connection: {describe(error)}")
    revision = running["revision"]
    failure = _account(scene)
    if failure is None:
        return DatabaseUnavailable(
            f"lost the database connection while running {revision}: {describe(error)}; "
            "the server rolled back the open transaction, rerun to continue"
        )
    # MySQL: what completed is committed, and the statement in flight may have completed on
    # the server after the connection went: the job cannot tell.
    done = failure.committed
    ran = f"statements 1-{len(done)} of it had completed, committed by MySQL: {numbered(done)}"
    if len(done) == 1:
        ran = f"statement 1 of it had completed, committed by MySQL: {numbered(done)}"
    elif not done:
        ran = "nothing of it was committed" if failure.rolled_back else "none of it had completed"
    ran += rolled_back_text(failure)
    flight = (
        f"; statement {failure.failed_statement} was running and may or may not have completed"
        if failure.failed_statement is not None
        else ""
    )
    return DatabaseUnavailable(
        f"lost the database connection while running {revision}: {describe(error)}; {ran}"
        f"{flight}; check the schema before rerunning",
        revision=revision,
        direction=running["direction"],
        **failure.details,
    )


def _revision_failed(error: BaseException, scene: Scene) -> BaseException | None:
    running = scene.running()
    if running is None:
        return None
    revision, direction = running["revision"], running["direction"]
    failure = _account(scene)
    cause = f"{error.__class__.__name__}: {describe(error)}"
    if failure is None:
        message, details = f"revision {revision} ({direction}) failed and was rolled back", {}
    else:  # "revision X failed at statement N; statements 1-(N-1) were committed by MySQL..."
        message = f"{account_text(revision, failure)}; the error ({direction})"
        details = {**failure.details, "cause": error.__class__.__name__}
    return MigrationFailed(
        f"{message}: {cause}",
        revision=revision,
        down_revision=running["down_revision"],
        direction=direction,
        **details,
    )


def _alembic_revision(error: BaseException, scene: Scene) -> BaseException | None:
    """Alembic's revision errors, in our terms; several heads say what would be accepted."""
    if "alembic" not in sys.modules:  # Alembic cannot have raised it
        return None
    from alembic.script.revision import MultipleHeads
    from alembic.script.revision import RevisionError as AlembicRevisionError
    from alembic.util import CommandError

    if isinstance(error, MultipleHeads):
        heads = list(error.heads)
        return RevisionError(
            f"{error.argument!r} is ambiguous: the scripts have several heads "
            f"({', '.join(heads)}); name one revision, use <branch>@head, or merge them with "
            "`alembic merge heads`",
            heads=heads,
        )
    if isinstance(error, CommandError | AlembicRevisionError):
        prefix = "cannot load the migration scripts: " if scene.reading else ""
        return RevisionError(f"{prefix}{error}")
    if isinstance(error, KeyError) and scene.reading:
        return RevisionError(
            f"cannot load the migration scripts: a revision names {error.args[0]!r} as its "
            "down_revision, and no file defines it"
        )
    return None


def _unreadable(error: BaseException, scene: Scene) -> BaseException | None:  # noqa: PLR0911 - a table
    """alembic.ini, or a script it leads to, that cannot be read or loaded: the user's to fix.

    Otherwise a typo in a revision file or an unreadable ini ends as exit 1 ("a bug in the
    job") with a traceback, and the chart retries what can never succeed.
    """
    path = scene.reading
    if path is None:
        return None
    if isinstance(error, configparser.Error):
        # The first line says what is wrong; the rest quotes the file's line.
        what = str(error).splitlines()[0].rstrip(".")
        line = getattr(error, "lineno", None)
        where = f" (line {line})" if line else ""
        return ProjectError(f"{path} is not a valid ini file: {what}{where}")
    if isinstance(error, UnicodeDecodeError):
        return ProjectError(f"{path} is not UTF-8 text")
    if isinstance(error, OSError):
        return ProjectError(f"cannot read {error.filename or path}: {error.strerror}")
    if isinstance(error, SyntaxError):
        return ProjectError(
            f"cannot load {error.filename}: {error.__class__.__name__} at line {error.lineno}: "
            f"{error.msg}"
        )
    if isinstance(error, ImportError):
        return ProjectError(
            f"cannot load {_loading_file(error)}: {error.__class__.__name__}: {error}"
        )
    return None


def _project_code(error: BaseException, scene: Scene) -> BaseException | None:
    culprit = _project_file(error, scene.scripts)
    if culprit is None:
        return None
    return ProjectError(
        f"{os.path.basename(culprit)} failed before any revision ran: "
        f"{error.__class__.__name__}: {describe(error)}",
        file=culprit,
    )


def _refused(error: BaseException, scene: Scene) -> BaseException | None:
    if scene.backend is not None and scene.backend.classify(error) == "refused":
        return DatabaseRejected(f"the database refused a query: {describe(error)}")
    return None


# Most specific first: a signal explains any error after it; a revision in flight explains the
# rest of a run's errors, unless the connection itself went away.
RULES: tuple[Callable[[BaseException, Scene], BaseException | None], ...] = (
    _interrupted,
    _cannot_connect,
    _ddl_timeout,
    _connection_lost,
    _revision_failed,
    _alembic_revision,
    _unreadable,
    _project_code,
    _refused,
)


def _project_file(error: BaseException, scripts: str | None) -> str | None:
    """The project file (env.py, a revision) that raised `error`, if the project's code did.

    The deepest frame that is either the job's or the project's decides: an error raised in
    SQLAlchemy on env.py's behalf is the project's to fix; one raised under the job's own code is
    a bug in the job, and stays exit 1.
    """
    if scripts is None:
        return None
    import traceback  # only on the way out of a failure: ~5 ms of every run otherwise

    scripts = os.path.abspath(scripts)
    owner: str | None = None
    for frame, _ in traceback.walk_tb(error.__traceback__):
        path = os.path.abspath(frame.f_code.co_filename)
        if path.startswith(scripts + os.sep):
            owner = path
        elif path.startswith(_JOB_DIR + os.sep):
            owner = None
    return owner


def _loading_file(error: BaseException) -> str:
    """The script whose import raised: the outermost module-level frame of the traceback."""
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "<module>":
            return f"{code.co_filename}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return "a migration script"

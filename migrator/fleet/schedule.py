"""The order and the concurrency of a fleet run: at most `parallel` targets at once, the canary
group first, and on a failure either go on (the default: one broken tenant must not hold the
others back) or start no more targets.

The targets run on threads of this process, but a thread only waits: the work that needs
Alembic runs in a child process of the job (target.py says why). On SIGTERM or SIGINT the
children are told to stop (each rolls back and releases its lock, as a single run does), and
the run waits for them so that the report can say how each ended.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import NamedTuple

from migrator import interrupts
from migrator.errors import Interrupted
from migrator.fleet.targets import Target

MIGRATED, AT_HEAD, FAILED, SKIPPED = "migrated", "at_head", "failed", "skipped"
STATES = (MIGRATED, AT_HEAD, FAILED, SKIPPED)


class Result(NamedTuple):
    """How one target ended."""

    name: str
    state: str  # one of STATES
    exit_code: int | None = None  # None: skipped
    applied: int = 0
    duration_s: float = 0.0


class Plan(NamedTuple):
    """How to run the targets."""

    parallel: int
    canary: int = 0  # the first `canary` targets first; the rest only if they all succeeded
    stop_on_error: bool = False


class Children:
    """The child processes of the targets in flight: one stop reaches them all, and none starts
    after it. Shared by the worker threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, subprocess.Popen[str]] = {}
        self._started: set[str] = set()  # frozen once stopping: whom a stop must wait for
        self._stopping: int | None = None

    def start(
        self, name: str, spawn: Callable[[], subprocess.Popen[str]]
    ) -> subprocess.Popen[str] | None:
        """`spawn()`'s child, registered under `name`; None once the run is stopping."""
        with self._lock:
            if self._stopping is not None:
                return None
            child = spawn()
            self._live[name] = child
            self._started.add(name)
            return child

    def ended(self, name: str) -> None:
        with self._lock:
            self._live.pop(name, None)

    def stop(self, signum: int) -> None:
        """Pass the signal on to every child in flight; start no more."""
        with self._lock:
            self._stopping = signum
            for child in self._live.values():
                child.send_signal(signum)

    def started(self, name: str) -> bool:
        with self._lock:
            return name in self._started


def run_targets(
    targets: Sequence[Target],
    migrate: Callable[[Target], Result],
    plan: Plan,
    children: Children,
) -> tuple[list[Result], Interrupted | None]:
    """Every target's result, in the targets' order, and the signal that stopped the run, if
    one did; a target that was never started is SKIPPED."""
    results: dict[str, Result] = {}
    groups = [targets[: plan.canary], targets[plan.canary :]] if plan.canary else [targets]
    pool = ThreadPoolExecutor(max_workers=plan.parallel, thread_name_prefix="target")
    running: dict[Future[Result], Target] = {}
    stopped: Interrupted | None = None
    try:
        for number, group in enumerate(groups):
            failed = any(result.state == FAILED for result in results.values())
            if failed and (number > 0 or plan.stop_on_error):
                break  # the canary group failed, or the run stops at the first failure
            _run_group(pool, group, migrate=migrate, plan=plan, results=results, running=running)
    except Interrupted as signal:
        stopped = signal
        children.stop(signal.signum)
        _settle(running, children, results)
    finally:
        # Threads still waiting for a database hold no lock and change nothing: not waited for.
        pool.shutdown(wait=False, cancel_futures=True)
    ordered = [results.get(target.name) or Result(target.name, SKIPPED) for target in targets]
    return ordered, stopped


def _run_group(
    pool: ThreadPoolExecutor,
    group: Sequence[Target],
    *,
    migrate: Callable[[Target], Result],
    plan: Plan,
    results: dict[str, Result],
    running: dict[Future[Result], Target],
) -> None:
    queue = list(reversed(group))
    while queue or running:
        failed = any(result.state == FAILED for result in results.values())
        while queue and len(running) < plan.parallel and not (failed and plan.stop_on_error):
            target = queue.pop()
            running[pool.submit(migrate, target)] = target
        if not running:
            return
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            target = running.pop(future)
            results[target.name] = future.result()


def _settle(
    running: dict[Future[Result], Target], children: Children, results: dict[str, Result]
) -> None:
    """After a signal: wait for the targets whose child was started (each rolls back and
    releases its lock), and record how they ended."""
    interrupts.shield()  # a second signal must not cut this wait short
    waiting = {future for future, target in running.items() if children.started(target.name)}
    wait(waiting)
    for future, target in running.items():
        if future.done() and not future.cancelled():
            results[target.name] = future.result()

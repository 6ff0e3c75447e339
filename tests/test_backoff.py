"""The one retry policy: full jitter within a doubling ceiling, and never past the deadline."""

from __future__ import annotations

import itertools
import time

from migrator.backoff import Backoff


def test_pauses_stay_within_a_ceiling_that_doubles_up_to_its_cap() -> None:
    policy = Backoff(low=0.01, start=0.1, ceiling=1.0)
    for _ in range(50):
        pauses = list(itertools.islice(policy.pauses(), 8))
        highs = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
        assert all(0.01 <= pause <= high for pause, high in zip(pauses, highs, strict=True))
    # Jitter: many pods starting together must not retry in step.
    assert len({round(next(policy.pauses()), 6) for _ in range(20)}) > 10


def test_pauses_are_cut_to_end_on_the_deadline_and_stop_after_it() -> None:
    policy = Backoff(low=5.0, start=10.0, ceiling=10.0)
    deadline = time.monotonic() + 0.2
    pauses = policy.pauses(deadline)
    first = next(pauses)
    assert first <= 0.2, "a pause never runs past the deadline"
    time.sleep(max(0.0, deadline - time.monotonic()))
    assert next(pauses, None) is None, "no pause once the deadline has passed"


def test_a_policy_without_deadline_goes_on() -> None:
    assert len(list(itertools.islice(Backoff(0.0, 0.5, 10.0).pauses(), 100))) == 100

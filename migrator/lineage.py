"""Whether a database whose revision the scripts do not know is ahead of them: a proof, or why not.

The run history records each applied revision with its down_revisions (history.py). From the
database's heads, walking those edges down must reach every one of the image's heads: then the
database descends from what this image would make it, and an older image (a `helm rollback`, an
old pod rescheduled) has nothing to do. Anything short of that (a revision with no recorded
parents, a branch that misses the image's head) is no proof, and the job says which link failed.
Pure: the caller reads the edges; the scripts' own edges join in where the scripts are loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from graphlib import TopologicalSorter
from typing import NamedTuple

Edges = Mapping[str, Sequence[str]]  # revision -> its down_revisions (() for a first revision)
Known = Callable[[str], Sequence[str] | None]  # the scripts' down_revisions, None: not theirs


class Verdict(NamedTuple):
    """`proven`: every image head lies below the database's heads. `ahead`: the revisions between,
    oldest first. `reason`: why it is not proven."""

    proven: bool
    ahead: list[str]
    reason: str | None = None


def ahead_of(
    database: Sequence[str],
    image: Sequence[str],
    recorded: Edges,
    known: Known = lambda _: None,
) -> Verdict:
    """Whether `database` (its heads) descends from every one of `image`'s heads.

    `known(revision)` gives the scripts' down_revisions of a revision they contain, or None;
    a revision the scripts know that is not an image head is not walked past: it is below or
    beside the image's heads, never between them and the database's.
    """
    heads = set(image)
    parents: dict[str, tuple[str, ...]] = {}
    reached: set[str] = set()
    missing: list[str] = []
    todo = [revision for revision in database if revision not in heads]
    reached.update(revision for revision in database if revision in heads)
    while todo:
        revision = todo.pop()
        if revision in parents:
            continue
        if known(revision) is not None:
            parents[revision] = ()  # the scripts' own territory: not between
            continue
        if revision not in recorded:
            parents[revision] = ()
            missing.append(revision)
            continue
        parents[revision] = tuple(recorded[revision])
        for parent in parents[revision]:
            if parent in heads:
                reached.add(parent)
            else:
                todo.append(parent)
    if not reached >= heads:
        return Verdict(False, [], _why_not(heads - reached, missing))
    # Oldest first: a revision after its parents; only those with an image head below them.
    order = TopologicalSorter({r: [p for p in ps if p in parents] for r, ps in parents.items()})
    above: dict[str, bool] = {}
    for revision in order.static_order():
        above[revision] = any(p in heads or above.get(p, False) for p in parents[revision])
    return Verdict(True, [revision for revision, is_above in above.items() if is_above])


def _why_not(unreached: set[str], missing: list[str]) -> str:
    heads = ", ".join(sorted(unreached))
    if missing:
        return (
            f"the run history records no parents for {', '.join(sorted(missing))} (applied "
            "before the history existed, by a job without it, or its migrate_job schema was "
            "dropped), so it cannot show that the database descends from this image's head "
            f"{heads}"
        )
    return (
        f"the recorded lineage of the database's revisions does not reach this image's head "
        f"{heads}: the database is on another branch, not ahead"
    )

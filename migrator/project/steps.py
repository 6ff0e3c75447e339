"""Which steps a command takes from the database's heads, computed as Alembic computes them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from alembic.runtime.migration import MigrationStep, StampStep
from alembic.script import ScriptDirectory
from alembic.script.revision import MultipleHeads, RangeNotAncestorError
from alembic.script.revision import RevisionError as AlembicRevisionError
from alembic.util import CommandError

from migrator.errors import RevisionError
from migrator.failures import Scene, translated
from migrator.project.loading import Project


def plan(script: ScriptDirectory, kind: str, target: str, heads: tuple[str, ...]) -> list[Any]:
    """The steps `kind` takes from `heads` to `target`: what alembic.command would run.

    Upgrades and downgrades walk the revision map through its public `iterate_revisions`, as
    ScriptDirectory does for alembic.command. A stamp's steps (which branches move where) have
    no public entry point: Alembic's own command.stamp calls `_stamp_revs`, and so does this,
    in this one place, rather than re-deriving its branch logic.
    """
    try:
        if kind == "upgrade":
            revisions = reversed(list(script.iterate_revisions(target, heads, implicit_base=True)))
            return [MigrationStep.upgrade_from_script(script.revision_map, r) for r in revisions]
        if kind == "downgrade":
            revisions = script.iterate_revisions(heads, target, select_for_downgrade=True)
            return [MigrationStep.downgrade_from_script(script.revision_map, r) for r in revisions]
    except RangeNotAncestorError:
        current = ", ".join(heads) or "base"
        raise RevisionError(
            f"{target} is not a valid {kind} target from the database's current revision "
            f"({current})",
            revision=target,
        ) from None
    return list(script._stamp_revs(target, heads))


_RELATIVE = re.compile(r"[+-]\d+$")


_BACKWARDS = {"upgrade": "-", "downgrade": "+"}
_OPPOSITE = {"upgrade": "downgrade", "downgrade": "upgrade"}


def validate_target(project: Project, target: str, kind: str = "upgrade") -> None:
    """Refuse an unknown revision, an ambiguous `head`, or a step the wrong way (`upgrade -1`)
    before waiting for anything."""
    with translated(Scene(scripts=project.script.dir)):
        _validate(project, target, kind)


def _validate(project: Project, target: str, kind: str) -> None:
    if kind in _BACKWARDS and re.fullmatch(rf"\{_BACKWARDS[kind]}\d+", target.strip()):
        # Alembic would only say so once the lock is held ("didn't produce 1 migrations").
        steps, end = ("+N", "head") if kind == "upgrade" else ("-N", "base")
        raise RevisionError(
            f"{kind} {target} goes the wrong way: {kind} takes a revision id, {end}, or {steps} "
            f"steps; to go that way, run `{_OPPOSITE[kind]} {target.strip()}`",
            revision=target,
        )
    for part in target.split(":"):
        if not part or _RELATIVE.search(part):
            continue  # relative steps are resolved against the database later
        try:
            project.script.revision_map.get_revisions(part)
        except MultipleHeads:
            raise  # the failure boundary says what is accepted
        except (CommandError, AlembicRevisionError) as error:
            raise RevisionError(
                f"{error}; accepted: a revision id listed by `history` (or a unique prefix of "
                "one), head, heads, base, <branch>@head, or a relative step such as +1 / -1; "
                f"this image's head: {', '.join(project.heads)}",
                revision=part,
            ) from None


def step_info(step: MigrationStep) -> dict[str, Any]:
    if isinstance(step, StampStep):
        direction = "stamp"
    else:
        direction = "upgrade" if step.is_upgrade else "downgrade"
    new, old = step.to_revisions_no_deps, step.from_revisions_no_deps
    if direction == "downgrade":
        new, old = old, new
    return {
        "revision": ",".join(new) or "base",
        "down_revision": ",".join(old) or None,
        "message": step.doc,
        "direction": direction,
    }


def refuse_unknown(project: Project, heads: Iterable[str]) -> None:
    unknown = unknown_revisions(project, heads)
    if unknown:
        raise RevisionError(
            f"the database's version table holds {', '.join(unknown)}, which this image's "
            "migrations do not contain: either the database was migrated by a newer image "
            "(deploy that image), or the version table was edited; to repair, find the "
            "revision the schema really matches and run `stamp --purge <revision>`",
            unknown=unknown,
        )


def unknown_revisions(project: Project, heads: Iterable[str]) -> list[str]:
    """The database's revisions that the scripts do not contain, in the order given."""
    return [head for head in heads if not _known(project, head)]


def pending(project: Project, current: Iterable[str], target: str) -> list[dict[str, Any]]:
    """What `upgrade target` would apply from `current`, in the order it would apply them."""
    with translated(Scene(scripts=project.script.dir)):
        return [step_info(step) for step in plan(project.script, "upgrade", target, tuple(current))]


def applied(project: Project, current: Iterable[str]) -> set[str]:
    """The revisions applied in a database at `current`: each of them and all their ancestors
    (dependencies included, as Alembic applies those first)."""
    heads = tuple(current)
    if not heads:
        return set()
    with translated(Scene(scripts=project.script.dir)):
        return {
            revision.revision
            for revision in project.script.iterate_revisions(heads, "base")
            if revision is not None
        }


def _known(project: Project, revision: str) -> bool:
    try:
        return project.script.revision_map.get_revision(revision) is not None
    except (AlembicRevisionError, CommandError):
        return False

"""Which targets are this pod's: a hash of each target's name, so the split does not change
when the list is reordered or another pod reads it in another order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from migrator.digest import sha256
from migrator.fleet.targets import Target


class Shard(NamedTuple):
    """This pod's share: shard `number` (0-based, an Indexed Job's completion index) of `total`."""

    number: int = 0
    total: int = 1


def shard_of(name: str, count: int) -> int:
    """The shard a target belongs to: the first 8 bytes of its name's SHA-256, modulo `count`."""
    return int.from_bytes(sha256(name.encode()).digest()[:8], "big") % count


def select(targets: Sequence[Target], shard: Shard) -> list[Target]:
    """The targets of `shard`, in their order in the list."""
    return [target for target in targets if shard_of(target.name, shard.total) == shard.number]

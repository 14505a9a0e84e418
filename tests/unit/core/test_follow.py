"""The alias follower's write fence and poll, with a fake shared collection and reindex.

The real thing (processes on a real Qdrant server) is tests/integration/test_reindex_replicas.py.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from understanding.core.follow import AliasFollower
from understanding.domain import Unavailable
from understanding.sinks.store import Handover, SharedCollection

ALIAS = "understanding"


@dataclass
class Collection:
    """What a process sees of a shared collection: its handover mark and where the alias points."""

    collection: str
    world: dict[str, Any]
    mark: Handover | None = None
    reads: int = 0

    def handover(self) -> Handover | None:
        self.reads += 1
        hook = self.world.get("on_read")
        if hook is not None:
            hook(self)
        return self.mark

    def begin_handover(self, to: str, until: float) -> None:
        self.mark = Handover(to, until)

    def end_handover(self) -> None:
        self.mark = None

    def alias_points_at(self, alias: str) -> str | None:
        return str(self.world["alias"])

    def recorded_model_path(self) -> str:
        return ""


@dataclass
class Unit:
    store: Collection

    @property
    def collection(self) -> str:
        return self.store.collection


@dataclass
class Switch:
    current: Unit


@dataclass
class Reindex:
    switch: Switch
    world: dict[str, Any]
    running: bool = False
    switches: bool = True
    followed: list[str] = field(default_factory=list)

    async def follow(self, collection: str) -> bool:
        self.followed.append(collection)
        if not self.switches or self.switch.current.collection == collection:
            return False
        self.switch.current = Unit(Collection(collection, self.world))
        return True


def setup(**reindex: Any) -> tuple[AliasFollower, Collection, Reindex, dict[str, Any]]:
    world: dict[str, Any] = {"alias": "old"}
    old = Collection("old", world)
    assert isinstance(old, SharedCollection)
    switch = Switch(Unit(old))
    fake = Reindex(switch, world, **reindex)
    follower = AliasFollower(switch=switch, reindex=fake, alias=ALIAS, poll_s=0.01)  # type: ignore[arg-type]
    return follower, old, fake, world


async def test_a_write_with_no_handover_stands() -> None:
    follower, old, reindex, _ = setup()
    assert not await follower.written(old)  # type: ignore[arg-type]
    assert reindex.followed == [] and old.reads == 1


async def test_a_write_after_the_mark_waits_for_the_alias_then_is_made_again_in_the_new_collection() -> None:
    follower, old, reindex, world = setup()
    old.begin_handover("new", time.time() + 60)

    def alias_moves_on_the_third_read(c: Collection) -> None:
        if c.reads >= 3:
            world["alias"] = "new"

    world["on_read"] = alias_moves_on_the_third_read
    assert await follower.written(old)  # type: ignore[arg-type]
    assert reindex.followed == ["new"] and reindex.switch.current.collection == "new"
    # A second write that went to the old collection before the switch is made again too,
    # though this process switched already.
    assert await follower.written(old)  # type: ignore[arg-type]
    assert reindex.followed == ["new"]


async def test_a_failed_reindex_clears_its_mark_and_the_write_stands() -> None:
    follower, old, reindex, world = setup()
    old.begin_handover("new", time.time() + 60)
    world["on_read"] = lambda c: c.end_handover() if c.reads >= 3 else None
    assert not await follower.written(old)  # type: ignore[arg-type]
    assert reindex.followed == []


async def test_a_mark_past_its_lease_is_ignored() -> None:
    follower, old, reindex, _ = setup()
    old.begin_handover("new", time.time() - 60)  # the reindexer died after marking
    assert not await follower.written(old)  # type: ignore[arg-type]
    assert reindex.followed == []


async def test_a_process_that_cannot_switch_fails_the_write_as_unavailable() -> None:
    follower, old, reindex, world = setup(switches=False)
    old.begin_handover("new", time.time() + 60)
    world["alias"] = "new"
    with pytest.raises(Unavailable, match="moved to 'new'"):
        await follower.written(old)  # type: ignore[arg-type]


async def test_the_poll_follows_the_alias_unless_a_local_reindex_decides() -> None:
    follower, _, reindex, world = setup(running=True)
    world["alias"] = "new"
    assert not await follower.check()
    assert reindex.followed == []
    reindex.running = False
    await follower.start()
    try:
        deadline = time.monotonic() + 30
        while reindex.switch.current.collection != "new" and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await follower.stop()
    assert reindex.switch.current.collection == "new" and reindex.followed[:1] == ["new"]


async def test_a_write_that_meets_this_process_own_reindex_waits_for_its_swap() -> None:
    follower, old, reindex, world = setup(running=True)
    old.begin_handover("new", time.time() + 60)
    world["alias"] = "new"  # moved by this process's reindex, which has not swapped yet

    async def the_reindex_swaps() -> None:
        await asyncio.sleep(0.3)
        reindex.switch.current = Unit(Collection("new", world))
        reindex.running = False

    swap = asyncio.create_task(the_reindex_swaps())
    assert await follower.written(old)  # type: ignore[arg-type]  # made again in the new collection
    await swap
    assert reindex.followed == []  # the reindex switched this process, not the follower

"""``ActorSystem`` (``actors.system``): spawning and naming, mailbox limits by kind, lookup,
stop and shutdown, and the counts it keeps (dead letters, unhandled, dropped, live actors,
mailbox depths). Message handling itself is the kernel's (test_kernel.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass

import pytest

from actors.actor import Actor
from actors.errors import ActorNameTaken
from actors.system import ActorSystem


@dataclass(frozen=True, slots=True)
class Hold:
    pass


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class SpawnChild:
    name: str | None = None
    kind: type[Actor] | None = None


class Worker(Actor):
    def __init__(self, label: str = "", *, extra: int = 0) -> None:
        self.label = label
        self.extra = extra
        self.gate = asyncio.Event()
        self.stopped_order: list[str] | None = None

    async def on_hold(self, msg: Hold) -> None:
        await self.gate.wait()

    def on_ping(self, msg: Ping) -> tuple[str, int]:
        return self.label, self.extra

    def on_spawn_child(self, msg: SpawnChild) -> object:
        return self.spawn(msg.kind or Worker, "child", name=msg.name)


class Limited(Worker):
    max_mailbox = 3


class Quiet(Actor):
    pass


# -- spawning and names ----------------------------------------------------------------------


async def test_spawn_builds_the_actor_with_its_arguments_and_numbers_its_name() -> None:
    async with ActorSystem() as system:
        a = system.spawn(Worker, "a", extra=2)
        b = system.spawn(Quiet)
        assert await a.ask(Ping()) == ("a", 2)
        assert a.name == "Worker-1" and b.name == "Quiet-2"  # one counter for all kinds
        assert a._cell.parent is None


async def test_names_are_unique_among_live_actors_and_freed_when_they_stop() -> None:
    async with ActorSystem() as system:
        first = system.spawn(Worker, name="w")
        with pytest.raises(ActorNameTaken, match="an actor named 'w' is already alive"):
            system.spawn(Worker, name="w")
        assert system.lookup("w") == first
        await system.stop(first)
        assert not first.alive and system.lookup("w") is None
        second = system.spawn(Worker, name="w")
        assert system.lookup("w") == second != first


async def test_a_refused_name_builds_no_actor() -> None:
    built: list[str] = []

    class Counted(Actor):
        def __init__(self) -> None:
            built.append("x")

    async with ActorSystem() as system:
        system.spawn(Counted, name="c")
        with pytest.raises(ActorNameTaken):
            system.spawn(Counted, name="c")
        assert built == ["x"] and system.actor_count == 1


async def test_lookup_of_an_unknown_name_is_none() -> None:
    async with ActorSystem() as system:
        system.spawn(Worker)  # unnamed actors are not looked up by their generated name
        assert system.lookup("nobody") is None
        assert system.lookup("Worker-1") is None


async def test_children_are_counted_under_their_parent_and_named_too() -> None:
    async with ActorSystem() as system:
        parent = system.spawn(Worker)
        child = await parent.ask(SpawnChild("kid"))
        grandchild = await child.ask(SpawnChild())
        assert system.actor_count == 3
        assert system.lookup("kid") == child
        assert child._cell.parent is parent._cell and grandchild._cell.parent is child._cell
        await system.stop(child)  # and its own child
        assert not grandchild.alive and system.actor_count == 1
        assert system.lookup("kid") is None


# -- mailbox limits ----------------------------------------------------------------------------


def test_mailbox_limit_by_kind_overrides_the_class_and_zero_means_unbounded() -> None:
    assert ActorSystem(mailbox_limits={"Worker": 1}).mailbox_limit(Worker) == 1
    plain = ActorSystem()
    assert plain.mailbox_limit(Worker) is None
    assert plain.mailbox_limit(Limited) == 3
    limits = ActorSystem(mailbox_limits={"Worker": 5, "Limited": 0})
    assert limits.mailbox_limit(Worker) == 5
    assert limits.mailbox_limit(Limited) is None
    assert limits.mailbox_limit(Quiet) is None


async def test_a_full_mailbox_drops_and_counts_by_kind(caplog: pytest.LogCaptureFixture) -> None:
    async with ActorSystem(mailbox_limits={"Worker": 2}) as system:
        ref = system.spawn(Worker)
        ref.tell(Hold())
        await asyncio.sleep(0)  # started, holding: the next messages queue
        for _ in range(4):
            ref.tell(Ping())
        assert system.dropped == {"Worker": 2}
        assert ref.mailbox_depth == 2
    assert caplog.text.count("mailbox of Worker full: dropped Ping") == 2


# -- stopping --------------------------------------------------------------------------------


async def test_shutdown_stops_every_actor_refuses_spawns_and_may_run_twice() -> None:
    system = ActorSystem("game")
    async with system:
        refs = [system.spawn(Worker) for _ in range(3)]
        child = await refs[0].ask(SpawnChild())
        refs[1].tell(Hold())
        await asyncio.sleep(0)
    assert not any(r.alive for r in [*refs, child])
    assert system.actor_count == 0
    with pytest.raises(RuntimeError, match="actor system game is shut down"):
        system.spawn(Worker)
    await system.shutdown()


async def test_the_loop_is_the_running_one() -> None:
    system = ActorSystem()
    assert system.name == "system"
    assert system.loop is asyncio.get_running_loop()
    await system.shutdown()


# -- counts ------------------------------------------------------------------------------------


async def test_dead_letters_and_unhandled_messages_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.system")
    async with ActorSystem() as system:
        quiet = system.spawn(Quiet, name="q")
        quiet.tell(Ping())
        quiet.tell(Hold())
        await asyncio.sleep(0)
        assert system.unhandled_messages == 2
        await system.stop(quiet)
        quiet.tell(Ping())
        quiet.tell(Hold())
        assert system.dead_letters == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "actors.system"]
    assert messages == [
        "q has no receiver for Ping",
        "q has no receiver for Hold",
        "dead letter to q: Ping",
        "dead letter to q: Hold",
    ]


async def test_a_dropped_message_is_logged_with_its_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ActorSystem(mailbox_limits={"Worker": 1}) as system:
        ref = system.spawn(Worker)
        ref.tell(Hold())
        await asyncio.sleep(0)
        ref.tell(Ping())
        ref.tell(Ping())
    messages = [r.getMessage() for r in caplog.records if r.name == "actors.system"]
    assert messages == ["mailbox of Worker full: dropped Ping"]


SPAWNER = contextvars.ContextVar("SPAWNER", default="none")


class ReadsContext(Actor):
    def __init__(self) -> None:
        self.seen = ""

    def started(self) -> None:
        self.seen = SPAWNER.get()

    def on_ping(self, msg: Ping) -> str:
        return self.seen


async def test_an_actor_starts_outside_its_spawners_context() -> None:
    async with ActorSystem() as system:
        token = SPAWNER.set("the spawner's request")
        try:
            ref = system.spawn(ReadsContext)
        finally:
            SPAWNER.reset(token)
        assert await ref.ask(Ping()) == "none"


async def test_mailbox_depths_sum_by_kind_with_every_live_kind_present() -> None:
    async with ActorSystem() as system:
        busy = [system.spawn(Worker) for _ in range(2)]
        idle = system.spawn(Quiet)
        for ref in busy:
            ref.tell(Hold())
        await asyncio.sleep(0)
        child = await system.spawn(Worker).ask(SpawnChild(kind=Limited))  # counted too
        child.tell(Hold())
        await asyncio.sleep(0)
        busy[0].tell(Ping())
        busy[0].tell(Ping())
        busy[1].tell(Ping())
        child.tell(Ping())
        assert system.mailbox_depths() == {"Worker": 3, "Quiet": 0, "Limited": 1}
        assert idle.mailbox_depth == 0
        assert system.actor_count == 5
        for ref in [*busy, child]:
            ref._cell.actor.gate.set()  # type: ignore[attr-defined]
            await ref.ask(Ping())
        assert system.mailbox_depths() == {"Worker": 0, "Quiet": 0, "Limited": 0}

"""The actor kernel: spawn, tell/ask, ordering, async receivers, errors, timers, stopping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from actors.actor import Actor
from actors.errors import ActorNameTaken, ActorStopped, AskTimeout, MailboxFull, UnhandledMessage
from actors.system import ActorSystem


@dataclass(frozen=True, slots=True)
class Join:
    name: str


@dataclass(frozen=True, slots=True)
class Members:
    pass


@dataclass(frozen=True, slots=True)
class Boom:
    pass


@dataclass(frozen=True, slots=True)
class Slow:
    seconds: float
    tag: str


@dataclass(frozen=True, slots=True)
class Tick:
    pass


class Room(Actor):
    def __init__(self) -> None:
        self.members: list[str] = []
        self.log: list[str] = []

    def on_join(self, msg: Join) -> list[str]:
        self.members.append(msg.name)
        return list(self.members)

    def on_members(self, msg: Members) -> list[str]:
        return list(self.members)

    def on_boom(self, msg: Boom) -> None:
        raise ValueError("boom")

    async def on_slow(self, msg: Slow) -> str:
        self.log.append(f"start {msg.tag}")
        await asyncio.sleep(msg.seconds)
        self.log.append(f"end {msg.tag}")
        return msg.tag


class ReentrantRoom(Room):
    reentrant = True


async def test_ask_returns_the_receivers_value() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        assert await room.ask(Join("a")) == ["a"]
        assert await room.ask(Join("b")) == ["a", "b"]


async def test_tells_are_handled_in_order() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        for i in range(1000):
            room.tell(Join(str(i)))
        assert await room.ask(Members()) == [str(i) for i in range(1000)]


async def test_receiver_error_reaches_asker_and_actor_keeps_running() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        with pytest.raises(ValueError, match="boom"):
            await room.ask(Boom())
        room.tell(Boom())  # logged, not fatal
        assert await room.ask(Join("a")) == ["a"]


async def test_unknown_message_type_is_a_typed_error() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        with pytest.raises(UnhandledMessage):
            await room.ask("not a message")
        assert system.unhandled_messages == 1


async def test_message_subclass_dispatches_to_base_receiver() -> None:
    @dataclass(frozen=True, slots=True)
    class VipJoin(Join):
        pass

    async with ActorSystem() as system:
        room = system.spawn(Room)
        assert await room.ask(VipJoin("v")) == ["v"]


async def test_async_receivers_take_one_message_at_a_time() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Room, name="room")
        first = asyncio.ensure_future(ref.ask(Slow(0.02, "a")))
        second = asyncio.ensure_future(ref.ask(Slow(0.0, "b")))
        assert await asyncio.wait_for(asyncio.gather(first, second), 2) == ["a", "b"]
        room = ref._cell.actor
        assert isinstance(room, Room)
        assert room.log == ["start a", "end a", "start b", "end b"]


async def test_reentrant_actor_interleaves_async_receivers() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(ReentrantRoom)
        first = asyncio.ensure_future(ref.ask(Slow(0.05, "a")))
        second = asyncio.ensure_future(ref.ask(Slow(0.0, "b")))
        assert await asyncio.wait_for(second, 2) == "b"
        assert await asyncio.wait_for(first, 2) == "a"
        room = ref._cell.actor
        assert isinstance(room, Room)
        assert room.log[:2] == ["start a", "start b"]


async def test_ask_times_out_with_typed_error() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        with pytest.raises(AskTimeout):
            await room.ask(Slow(5, "x"), timeout=0.05)


async def test_stopped_actor_counts_dead_letters_and_fails_asks() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        await room.ask(Join("a"))
        await system.stop(room)
        assert not room.alive
        room.tell(Join("b"))
        assert system.dead_letters == 1
        with pytest.raises(ActorStopped):
            await room.ask(Join("c"))


async def test_stop_fails_the_in_flight_ask() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        pending = asyncio.ensure_future(room.ask(Slow(5, "x")))
        queued = asyncio.ensure_future(room.ask(Join("y")))
        await asyncio.sleep(0)  # let the ask reach the mailbox; not synchronisation on timing
        await asyncio.wait_for(system.stop(room), 2)
        with pytest.raises(ActorStopped):
            await asyncio.wait_for(pending, 2)
        with pytest.raises(ActorStopped):
            await asyncio.wait_for(queued, 2)


async def test_names_are_unique_and_lookup_finds_live_actors() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room, name="lobby")
        assert system.lookup("lobby") == room
        with pytest.raises(ActorNameTaken):
            system.spawn(Room, name="lobby")
        await system.stop(room)
        assert system.lookup("lobby") is None
        system.spawn(Room, name="lobby")  # the name is free again


class Parent(Actor):
    def __init__(self, stopped: list[str]) -> None:
        self.stopped_log = stopped

    def started(self) -> None:
        self.child = self.spawn(Child, self.stopped_log)

    def on_members(self, msg: Members) -> object:
        return self.child

    def stopped(self) -> None:
        self.stopped_log.append("parent")


class Child(Room):
    def __init__(self, stopped: list[str]) -> None:
        super().__init__()
        self.stopped_log = stopped

    def stopped(self) -> None:
        self.stopped_log.append("child")


async def test_stopping_a_parent_stops_its_children_first() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        parent = system.spawn(Parent, log)
        child = await parent.ask(Members())
        assert await child.ask(Join("a")) == ["a"]
        assert system.actor_count == 2
        await system.stop(parent)
        assert log == ["child", "parent"]
        assert not child.alive
        assert system.actor_count == 0


class Counter(Actor):
    def __init__(self, fired: asyncio.Queue[str]) -> None:
        self.fired = fired

    def started(self) -> None:
        self.after(0.01, Join("once"))
        self.every(0.01, Tick())
        self.ticks = 0

    def on_join(self, msg: Join) -> None:
        self.fired.put_nowait(msg.name)

    def on_tick(self, msg: Tick) -> None:
        self.ticks += 1
        self.fired.put_nowait(f"tick{self.ticks}")


async def test_timers_fire_and_are_cancelled_on_stop() -> None:
    fired: asyncio.Queue[str] = asyncio.Queue()
    async with ActorSystem() as system:
        ref = system.spawn(Counter, fired)
        seen = {await asyncio.wait_for(fired.get(), 2) for _ in range(4)}
        assert "once" in seen and "tick3" in seen
        await system.stop(ref)
        assert not ref._cell.timers


class CrashOnStart(Actor):
    async def started(self) -> None:
        raise RuntimeError("no")

    def on_join(self, msg: Join) -> str:
        return "never"


async def test_crash_in_started_stops_the_actor() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(CrashOnStart)
        with pytest.raises(ActorStopped):
            await ref.ask(Join("a"), timeout=2)
        assert not ref.alive


class Tiny(Room):
    max_mailbox = 2

    def __init__(self) -> None:
        super().__init__()
        self.two_joined = asyncio.Event()

    def on_join(self, msg: Join) -> list[str]:
        members = super().on_join(msg)
        if len(members) == 2:
            self.two_joined.set()
        return members


async def test_mailbox_limit_drops_and_counts() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Tiny)
        ref.tell(Join("1"))
        ref.tell(Join("2"))
        with pytest.raises(MailboxFull):
            await ref.ask(Join("3"))
        assert system.dropped["Tiny"] == 1
        tiny = ref._cell.actor
        assert isinstance(tiny, Tiny)
        await asyncio.wait_for(tiny.two_joined.wait(), 2)
        assert await ref.ask(Members()) == ["1", "2"]


async def test_shutdown_refuses_new_actors() -> None:
    system = ActorSystem()
    async with system:
        system.spawn(Room)
    with pytest.raises(RuntimeError):
        system.spawn(Room)


async def test_request_reply_callback_is_called_once() -> None:
    results: list[object] = []
    done = asyncio.Event()

    def reply(result: object, error: BaseException | None) -> None:
        results.append(error or result)
        done.set()

    async with ActorSystem() as system:
        room = system.spawn(Room)
        room.request(Join("a"), reply)
        await asyncio.wait_for(done.wait(), 2)
        assert results == [["a"]]


class Picky(Room):
    """Keeps "vip" joins even when its mailbox is full."""

    def overflowed(self, message: object) -> bool:
        return isinstance(message, Join) and message.name == "vip"


async def test_mailbox_limits_by_kind_and_overflowed_hook() -> None:
    async with ActorSystem(mailbox_limits={"Picky": 1, "Tiny": 0}) as system:
        assert system.mailbox_limit(Tiny) is None  # 0 lifts the class's own limit
        assert system.mailbox_limit(Room) is None
        picky = system.spawn(Picky)
        picky.tell(Join("a"))
        picky.tell(Join("b"))  # full: dropped
        picky.tell(Join("vip"))  # full, but the actor keeps it
        assert system.dropped["Picky"] == 1
        queued = [message for message, _ in picky._cell.mailbox]
        assert queued == [Join("a"), Join("vip")]

"""The actor kernel: spawn, tell/ask, ordering, async receivers, errors, timers, stopping."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

from actors.actor import Actor
from actors.dispatch import TimerTick, dispatch_table
from actors.errors import (
    ActorNameTaken,
    ActorStopped,
    AskedItself,
    AskTimeout,
    MailboxFull,
    UnhandledMessage,
)
from actors.kernel import DRAIN_BATCH, ActorRef, Timer
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


async def test_crash_in_started_stops_the_actor_and_its_askers_learn_why() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(CrashOnStart)
        with pytest.raises(ActorStopped) as caught:
            await ref.ask(Join("a"), timeout=2)
        assert not ref.alive
        assert str(caught.value).endswith("stopped: its started() raised RuntimeError: no")
        assert isinstance(caught.value.__cause__, RuntimeError)
        with pytest.raises(ActorStopped, match=r"is stopped: its started\(\) raised") as late:
            await ref.ask(Join("b"), timeout=2)  # asked after it stopped: the same story
        assert isinstance(late.value.__cause__, RuntimeError)


class CrashOnStartSync(Actor):
    def started(self) -> None:
        raise KeyError("app")

    def on_join(self, msg: Join) -> str:
        return "never"


async def test_a_synchronous_started_that_raises_is_told_to_askers_too() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(CrashOnStartSync)
        with pytest.raises(ActorStopped, match=r"raised KeyError: 'app'") as caught:
            await ref.ask(Join("a"), timeout=2)
        assert isinstance(caught.value.__cause__, KeyError)


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


class TimedPicky(Picky):
    def started(self) -> None:
        self.clock = self.every(3600, Join("vip"))


class Unprepared(Actor):
    """Its timer's message has no receiver."""

    def started(self) -> None:
        self.after(0, Join("nobody"))


async def test_a_timer_s_message_meets_the_hooks_and_counters_as_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Timer messages travel wrapped (to be dropped when cancelled); ``overflowed``, the
    dropped and unhandled counters and their log lines see the message, not the wrapper."""
    async with ActorSystem(mailbox_limits={"TimedPicky": 1}) as system:
        picky = system.spawn(TimedPicky)
        actor = await until_started(picky)
        picky.tell(Join("a"))  # the mailbox is full now
        actor.clock._fire()  # the timer fires: overflowed is asked about Join("vip"): kept
        picky.tell(Join("b"))  # dropped
        assert system.dropped["TimedPicky"] == 1
        await until(lambda: list(actor.members) == ["a", "vip"])
        system.spawn(Unprepared)
        await until(lambda: system.unhandled_messages == 1)
        assert "Unprepared-2 has no receiver for Join" in caplog.messages[-1]


async def test_a_timer_s_messages_left_at_a_stop_are_dead_letters_as_themselves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.system")
    async with ActorSystem() as system:
        picky = system.spawn(TimedPicky)
        actor = await until_started(picky)
        picky.tell(Join("a"))
        actor.clock._fire()  # queued behind Join("a")
        await system.stop(picky)
        assert system.dead_letters == 2
        letters = [m for m in caplog.messages if m.startswith("dead letter to")]
        assert letters == [f"dead letter to {picky.name}: Join"] * 2
        assert TimerTick not in dispatch_table(TimedPicky).message_classes()


async def until_started(ref: ActorRef) -> Any:
    await until(lambda: not ref._cell.pending_start)
    return actor_of(ref)


# -- rules pinned by mutation testing (tests/README.md) -------------------------------------


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a few hundred turns at most)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def actor_of(ref: ActorRef) -> Any:
    return ref._cell.actor


def logged(caplog: pytest.LogCaptureFixture, message: str) -> logging.LogRecord:
    """The one record whose formatted message is ``message``."""
    (record,) = [r for r in caplog.records if r.getMessage() == message]
    return record


async def test_ref_repr_equality_and_hash() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room, name="lobby")
        other = system.spawn(Room)
        assert repr(room) == "<ActorRef lobby alive>"
        same = ActorRef(room._cell)
        assert same == room and hash(same) == hash(room)
        assert room != other and hash(room) != hash(other)
        assert room != "lobby"
        await room.stop()
        assert repr(room) == "<ActorRef lobby stopped>"


class Recorder(Actor):
    def __init__(self, seen: asyncio.Queue[str]) -> None:
        self.seen = seen

    def on_join(self, msg: Join) -> None:
        self.seen.put_nowait(msg.name)


async def test_timers_say_whether_they_are_cancelled() -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, seen)
        actor = actor_of(ref)
        once = actor.after(0.01, Join("once"))
        assert once.cancelled is False and once in ref._cell.timers
        assert await asyncio.wait_for(seen.get(), 2) == "once"
        assert once.cancelled is True and once not in ref._cell.timers
        every = actor.every(0.01, Join("tick"))
        assert await asyncio.wait_for(seen.get(), 2) == "tick"
        every.cancel()
        assert every.cancelled is True and every not in ref._cell.timers
        dropped = actor.after(0.01, Join("cancelled"))
        dropped.cancel()
        assert dropped.cancelled is True
        actor.after(0.03, Join("later"))
        assert await asyncio.wait_for(seen.get(), 2) == "later"


@dataclass(frozen=True)
class Move:
    pass


@dataclass(frozen=True)
class TurnTimeout:
    pass


class Turns(Actor):
    """A turn with a timeout; a move cancels it after awaiting something (a save, say)."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.saved = asyncio.Event()
        self.timer: Timer | None = None

    def started(self) -> None:
        self.timer = self.after(0, TurnTimeout())

    async def on_move(self, msg: Move) -> None:
        await self.saved.wait()
        assert self.timer is not None
        self.timer.cancel()
        self.log.append("move")

    def on_turn_timeout(self, msg: TurnTimeout) -> None:
        self.log.append("timeout")

    def on_members(self, msg: Members) -> list[str]:
        return self.log


async def test_a_cancelled_timer_s_message_already_in_the_mailbox_is_dropped() -> None:
    """The move's turn awaits; meanwhile the timeout fires and waits in the mailbox; the
    move then cancels it. It used to arrive all the same, and end the next player's turn."""
    async with ActorSystem() as system:
        ref = system.spawn(Turns)
        actor = actor_of(ref)
        ref.tell(Move())
        await until(lambda: actor.timer is not None and actor.timer.cancelled)  # it fired
        assert ref._cell.mailbox  # and waits behind the move
        actor.saved.set()
        assert await ref.ask(Members()) == ["move"]


async def test_a_timer_not_cancelled_still_delivers_what_waits_in_the_mailbox() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Turns)
        actor = actor_of(ref)
        actor.saved.set()
        await until(lambda: actor.timer is not None and actor.timer.cancelled)
        assert await ref.ask(Members()) == ["timeout"]


async def test_stopping_a_child_alone_detaches_it_from_its_parent() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        parent = system.spawn(Parent, log)
        child = await parent.ask(Members())
        await child.stop()
        assert log == ["child"]
        assert system.actor_count == 1
        assert not parent._cell.children


async def test_messages_to_a_stopped_actor_say_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.system")
    async with ActorSystem() as system:
        room = system.spawn(Room, name="room")
        await room.stop()
        room.tell(Join("late"))
        assert logged(caplog, "dead letter to room: Join")
        with pytest.raises(ActorStopped) as info:
            await room.ask(Members())
        assert str(info.value) == "actor room is stopped"


@pytest.mark.parametrize("kind", [Room, ReentrantRoom])
async def test_stop_tells_each_asker_what_was_cut_short(
    kind: type[Room], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.system")
    async with ActorSystem() as system:
        room = system.spawn(kind, name="room")
        running = asyncio.ensure_future(room.ask(Slow(5, "x")))
        await until(lambda: actor_of(room).log == ["start x"])
        queued = asyncio.ensure_future(room.ask(Members()))
        if kind is Room:  # one message at a time: the second waits in the mailbox
            await until(lambda: room.mailbox_depth == 1)
        else:  # reentrant: answered while the first is still running
            assert await queued == []
        await room.stop()
        with pytest.raises(ActorStopped) as info:
            await running
        assert str(info.value) == "actor room stopped while handling Slow(seconds=5, tag='x')"
        if kind is Room:
            with pytest.raises(ActorStopped) as info:
                await queued
            assert str(info.value) == "actor room stopped"
            assert logged(caplog, "dead letter to room: Members")


async def test_mailbox_full_names_the_actor_and_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Tiny, name="tiny")
        ref.tell(Join("1"))
        ref.tell(Join("2"))
        with pytest.raises(MailboxFull) as info:
            await ref.ask(Members())
        assert str(info.value) == "mailbox of tiny is full (2)"
        assert logged(caplog, "mailbox of Tiny full: dropped Members").levelno == logging.WARNING


class Lenient(Room):
    """Answers messages it has no receiver for."""

    def unhandled(self, message: object) -> object:
        return ("ignored", message)


async def test_unhandled_messages(caplog: pytest.LogCaptureFixture) -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room, name="room")
        with pytest.raises(UnhandledMessage) as info:
            await room.ask("text")
        assert str(info.value) == "Room has no receiver for <class 'str'>"
        assert logged(caplog, "room has no receiver for str").levelno == logging.WARNING
        lenient = system.spawn(Lenient)
        assert await lenient.ask("text") == ("ignored", "text")
        lenient.tell("again")  # a tell has no one to answer; nothing is counted
        assert await lenient.ask(Join("a")) == ["a"]
        assert system.unhandled_messages == 1


async def test_a_failing_or_unhandled_message_does_not_end_the_batch() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        await room.ask(Members())  # started and idle
        room.tell(Boom())
        room.tell("no receiver")
        room.tell(Join("a"))
        await asyncio.sleep(0)  # one drain handles all three
        assert actor_of(room).members == ["a"]


class Deferring(Actor):
    """A sync receiver that returns a coroutine: the kernel runs it like an async one."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def on_slow(self, msg: Slow) -> Coroutine[Any, Any, str]:
        return self._later(msg)

    async def _later(self, msg: Slow) -> str:
        self.log.append(f"start {msg.tag}")
        await asyncio.sleep(msg.seconds)
        self.log.append(f"end {msg.tag}")
        return msg.tag


async def test_a_sync_receiver_returning_a_coroutine_runs_as_a_task() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Deferring)
        first = asyncio.ensure_future(ref.ask(Slow(0.02, "a")))
        second = asyncio.ensure_future(ref.ask(Slow(0, "b")))
        assert await asyncio.wait_for(asyncio.gather(first, second), 2) == ["a", "b"]
        assert actor_of(ref).log == ["start a", "end a", "start b", "end b"]


async def test_a_message_sent_while_an_async_receiver_runs_waits_its_turn() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        first = asyncio.ensure_future(room.ask(Slow(0.05, "a")))
        await until(lambda: actor_of(room).log == ["start a"])
        second = asyncio.ensure_future(room.ask(Slow(0, "b")))
        assert await asyncio.wait_for(asyncio.gather(first, second), 2) == ["a", "b"]
        assert actor_of(room).log == ["start a", "end a", "start b", "end b"]


class Fatal(BaseException):
    """Not an Exception: the kernel hands it to the asker as it is."""


@dataclass(frozen=True, slots=True)
class Crash:
    fatal: bool = False


class AsyncFailer(Actor):
    async def on_crash(self, msg: Crash) -> None:
        await asyncio.sleep(0)
        if msg.fatal:
            raise Fatal()
        raise ValueError("async boom")


class ReentrantFailer(AsyncFailer):
    reentrant = True


@pytest.mark.parametrize("kind", [AsyncFailer, ReentrantFailer])
async def test_async_receiver_failures(
    kind: type[AsyncFailer], caplog: pytest.LogCaptureFixture
) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(kind, name="failer")
        with pytest.raises(ValueError, match="async boom"):
            await ref.ask(Crash(), timeout=2)
        with pytest.raises(Fatal):
            await ref.ask(Crash(fatal=True), timeout=2)
        ref.tell(Crash())
        await until(lambda: bool(caplog.records))
        record = logged(caplog, "actor failer failed handling Crash")
        assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
        assert ref.alive
        assert not ref._cell.tasks  # finished receivers are forgotten


async def test_a_failing_tell_is_logged_with_its_error(caplog: pytest.LogCaptureFixture) -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room, name="room")
        room.tell(Boom())
        assert await room.ask(Members()) == []
        record = logged(caplog, "actor room failed handling Boom")
        assert record.exc_info is not None and str(record.exc_info[1]) == "boom"


class CrashSyncStart(Actor):
    def started(self) -> None:
        raise RuntimeError("no")


@pytest.mark.parametrize("kind", [CrashSyncStart, CrashOnStart])
async def test_a_crash_in_started_is_logged(
    kind: type[Actor], caplog: pytest.LogCaptureFixture
) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(kind, name="crasher")
        with pytest.raises(ActorStopped):
            await ref.ask(Join("a"), timeout=2)
        record = logged(caplog, "actor crasher crashed in started(); stopping it")
        assert record.exc_info is not None and str(record.exc_info[1]) == "no"


class BadStop(Room):
    def stopped(self) -> None:
        raise RuntimeError("in stopped")


async def test_a_failure_in_stopped_is_logged_and_the_actor_still_terminates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(BadStop, name="bad")
        await ref.ask(Members())
        await asyncio.wait_for(ref.stop(), 2)
        record = logged(caplog, "actor bad failed in stopped()")
        assert record.exc_info is not None and str(record.exc_info[1]) == "in stopped"
        assert system.actor_count == 0


class SlowStart(Actor):
    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.log: list[str] = []

    async def started(self) -> None:
        self.log.append("starting")
        await self.gate.wait()
        self.log.append("started")

    def on_join(self, msg: Join) -> list[str]:
        self.log.append(msg.name)
        return list(self.log)


async def test_an_async_started_holds_every_message_until_it_finishes() -> None:
    gate = asyncio.Event()
    async with ActorSystem() as system:
        ref = system.spawn(SlowStart, gate)
        await until(lambda: actor_of(ref).log == ["starting"])
        answer = asyncio.ensure_future(ref.ask(Join("a"), timeout=2))
        for _ in range(20):
            await asyncio.sleep(0)
        assert actor_of(ref).log == ["starting"]
        gate.set()
        assert await answer == ["starting", "started", "a"]
        assert await ref.ask(Join("b"), timeout=2) == ["starting", "started", "a", "b"]


class Starter(Actor):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def started(self) -> None:
        self.log.append("started")

    def stopped(self) -> None:
        self.log.append("stopped")


async def test_an_actor_stopped_before_its_first_turn_never_starts() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ref = system.spawn(Starter, log)
        await ref.stop()
        for _ in range(5):
            await asyncio.sleep(0)  # the drain scheduled at spawn runs, and does nothing
    assert log == ["stopped"]


class Cleaner(Actor):
    """Cleans up when cancelled: at once for tag "quick", after a short await otherwise."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def on_slow(self, msg: Slow) -> None:
        self.log.append(f"running {msg.tag}")
        try:
            await asyncio.sleep(msg.seconds)
        except asyncio.CancelledError:
            if msg.tag != "quick":
                await asyncio.sleep(0.01)
            self.log.append(f"cleaned up {msg.tag}")
            raise


class ReentrantCleaner(Cleaner):
    reentrant = True


async def test_stop_waits_for_cancelled_receivers_to_unwind() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Cleaner)
        ref.tell(Slow(5, "x"))
        cleaner = actor_of(ref)  # a terminated cell lets go of its actor
        await until(lambda: cleaner.log == ["running x"])
        await asyncio.wait_for(ref.stop(), 2)
        assert cleaner.log == ["running x", "cleaned up x"]


async def test_stop_waits_for_every_running_receiver_not_the_first_to_end() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(ReentrantCleaner)
        ref.tell(Slow(5, "quick"))
        ref.tell(Slow(5, "slow"))
        cleaner = actor_of(ref)
        await until(lambda: len(cleaner.log) == 2)
        await asyncio.wait_for(ref.stop(), 2)
        assert sorted(cleaner.log[2:]) == ["cleaned up quick", "cleaned up slow"]


@pytest.mark.looptime
async def test_ask_times_out_after_five_seconds_by_default() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room, name="room")
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(AskTimeout) as info:
            await room.ask(Slow(60, "x"))
        assert loop.time() - start == pytest.approx(5.0)
        assert str(info.value) == "room did not answer Slow in 5.0s"


async def test_ask_without_timeout() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        assert await room.ask(Join("a"), timeout=None) == ["a"]
        await room.stop()
        with pytest.raises(ActorStopped):
            await room.ask(Join("b"), timeout=None)


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


class Reader(Actor):
    def on_members(self, msg: Members) -> str:
        return VAR.get()


async def test_the_senders_context_variables_do_not_reach_the_receiver() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Reader)
        assert await ref.ask(Members()) == "unset"  # started and idle
        token = VAR.set("sender")
        try:
            assert await ref.ask(Members()) == "unset"
        finally:
            VAR.reset(token)


async def test_run_task_is_owned_by_the_actor() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Room)
        await ref.ask(Members())
        actor = actor_of(ref)

        async def work(value: str) -> str:
            await asyncio.sleep(0)
            return value

        task = actor.run_task(work("done"))
        assert task in ref._cell.tasks
        assert await task == "done"
        assert task not in ref._cell.tasks
        long = actor.run_task(asyncio.sleep(60))
        await ref.stop()
        assert long.cancelled()


async def test_the_kernel_raises_nothing_into_the_event_loop() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        async with ActorSystem() as system:
            room = system.spawn(Room)
            for i in range(3):
                room.tell(Join(str(i)))
            assert await room.ask(Members()) == ["0", "1", "2"]
            for _ in range(5):
                await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert errors == []


class CountingLoop:
    """The real loop, counting the drains the kernel schedules with ``call_soon``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.drains = 0

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        self.drains += 1
        return self._loop.call_soon(callback, *args, context=context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


async def test_one_drain_is_scheduled_per_idle_to_busy_turn() -> None:
    # The module's promise: a tell to an idle actor schedules one drain; more tells before it
    # runs, or while an async receiver runs, schedule nothing more.
    async with ActorSystem() as system:
        room = system.spawn(Room)
        await room.ask(Members())  # started and idle
        counting = CountingLoop(room._cell.loop)
        room._cell.loop = counting  # type: ignore[assignment]

        async def drained() -> int:
            await until(lambda: room.mailbox_depth == 0 and not room._cell.scheduled)
            for _ in range(5):
                await asyncio.sleep(0)
            count, counting.drains = counting.drains, 0
            return count

        for i in range(3):
            room.tell(Join(str(i)))
        assert await drained() == 1
        for _ in range(DRAIN_BATCH):  # exactly one batch: one drain
            room.tell(Members())
        assert await drained() == 1
        for _ in range(DRAIN_BATCH + 1):  # one more: the drain yields and schedules another
            room.tell(Members())
        assert await drained() == 2
        slow = asyncio.ensure_future(room.ask(Slow(0.02, "a")))
        await until(lambda: actor_of(room).log[-1:] == ["start a"])
        room.tell(Join("x"))  # busy: queued, no drain
        room.tell(Join("y"))
        assert counting.drains == 1
        assert await slow == "a"
        assert await drained() == 2  # the end of the receiver resumes the mailbox
        assert await room.ask(Slow(0, "b")) == "b"
        assert await drained() == 1  # ...and schedules nothing when it is empty


# -- tell_now: an idle actor takes the message in the sender's stack ---------------------------


class Journal(Actor):
    """Logs what it handles; ``Join("echo:x")`` makes it tell_now itself ``Join("x")``."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.awaiting = asyncio.Event()
        """Set while ``on_slow`` awaits."""

    def on_join(self, msg: Join) -> None:
        self.log.append(msg.name)
        if msg.name.startswith("echo:"):
            self.ref.tell_now(Join(msg.name.removeprefix("echo:")))
            self.log.append(f"after {msg.name}")

    def on_boom(self, msg: Boom) -> None:
        raise ValueError("boom from tell_now")

    def on_members(self, msg: Members) -> list[str]:
        return [*self.log, VAR.get()]

    async def on_slow(self, msg: Slow) -> None:
        self.log.append(f"start {msg.tag}")
        self.awaiting.set()
        await asyncio.sleep(msg.seconds)
        self.awaiting.clear()
        self.log.append(f"end {msg.tag}")


async def started_journal(system: ActorSystem) -> tuple[ActorRef, Journal]:
    ref = system.spawn(Journal)
    await ref.ask(Members())  # started, idle
    actor = ref._cell.actor
    assert isinstance(actor, Journal)
    return ref, actor


async def test_tell_now_to_an_idle_actor_is_handled_before_it_returns() -> None:
    async with ActorSystem() as system:
        ref, actor = await started_journal(system)
        ref.tell_now(Join("a"))
        assert actor.log == ["a"]
        ref.tell(Join("b"))
        assert actor.log == ["a"]  # a plain tell waits for the drain
        assert await ref.ask(Members()) == ["a", "b", "unset"]


async def test_tell_now_queues_behind_messages_already_waiting() -> None:
    async with ActorSystem() as system:
        ref, actor = await started_journal(system)
        ref.tell(Join("first"))
        ref.tell_now(Join("second"))
        assert actor.log == []
        assert await ref.ask(Members()) == ["first", "second", "unset"]


async def test_tell_now_waits_for_an_awaiting_turn() -> None:
    async with ActorSystem() as system:
        ref, actor = await started_journal(system)
        slow = asyncio.ensure_future(ref.ask(Slow(0.01, "s")))
        await actor.awaiting.wait()
        ref.tell_now(Join("during"))
        assert actor.log == ["start s"]
        await slow
        assert await ref.ask(Members()) == ["start s", "end s", "during", "unset"]


async def test_tell_now_from_the_actors_own_turn_is_queued_not_nested() -> None:
    async with ActorSystem() as system:
        ref, actor = await started_journal(system)
        ref.tell_now(Join("echo:x"))  # inline turn that tell_nows itself
        assert actor.log == ["echo:x", "after echo:x"]  # x waits for this turn to end
        assert await ref.ask(Members()) == ["echo:x", "after echo:x", "x", "unset"]


async def test_tell_now_from_another_actors_turn_is_queued() -> None:
    class Forwarder(Actor):
        def __init__(self, target: ActorRef) -> None:
            self.target = target

        def on_join(self, msg: Join) -> bool:
            self.target.tell_now(msg)
            return bool(journal.log)  # what the target had done by then

    async with ActorSystem() as system:
        ref, journal = await started_journal(system)
        forwarder = system.spawn(Forwarder, ref)
        assert await forwarder.ask(Join("via")) is False  # turns never nest
        assert await ref.ask(Members()) == ["via", "unset"]


async def test_tell_now_before_the_first_turn_runs_started_first() -> None:
    class Greeter(Journal):
        def started(self) -> None:
            self.log.append("started")

    async with ActorSystem() as system:
        ref = system.spawn(Greeter)
        ref.tell_now(Join("early"))
        assert await ref.ask(Members()) == ["started", "early", "unset"]


async def test_tell_now_failures_are_logged_and_the_actor_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ActorSystem() as system:
        ref, actor = await started_journal(system)
        with caplog.at_level(logging.ERROR, logger="actors.kernel"):
            ref.tell_now(Boom())
        assert "failed handling Boom" in caplog.text
        assert "boom from tell_now" in caplog.text
        ref.tell_now(Join("after"))
        assert actor.log == ["after"]


async def test_tell_now_runs_the_receiver_in_the_kernel_context_not_the_senders() -> None:
    async with ActorSystem() as system:
        ref, _ = await started_journal(system)
        token = VAR.set("sender")
        try:
            ref.tell_now(Join("a"))
            assert await ref.ask(Members()) == ["a", "unset"]
        finally:
            VAR.reset(token)


async def test_tell_now_with_an_async_receiver_takes_the_mailbox() -> None:
    async with ActorSystem() as system:
        ref, actor = await started_journal(system)
        ref.tell_now(Slow(0.0, "s"))
        assert actor.log == []  # an async receiver is a turn of its own, via the drain
        assert await ref.ask(Members()) == ["start s", "end s", "unset"]


async def test_tell_now_to_a_stopped_actor_is_a_dead_letter() -> None:
    async with ActorSystem() as system:
        ref, actor = await started_journal(system)
        await ref.stop()
        ref.tell_now(Join("late"))
        assert actor.log == []
        assert system.dead_letters == 1


@dataclass(frozen=True, slots=True)
class AskMyself:
    timeout: float | None


@dataclass(frozen=True, slots=True)
class Answer:
    pass


class SelfAsker(Actor):
    async def on_ask_myself(self, msg: AskMyself) -> str:
        return str(await self.ref.ask(Answer(), timeout=msg.timeout))

    def on_answer(self, msg: Answer) -> str:
        return "answered"


@pytest.mark.parametrize("timeout", [None, 5.0])
async def test_an_actor_asking_itself_in_its_turn_fails_at_once(timeout: float | None) -> None:
    """Its answer waits for the turn that awaits it: without a timeout the actor hung for
    good, with one it failed with an AskTimeout that did not say why, after the timeout."""
    async with ActorSystem() as system:
        ref = system.spawn(SelfAsker)
        with pytest.raises(AskedItself, match="SelfAsker-1 asked itself for Answer"):
            await asyncio.wait_for(ref.ask(AskMyself(timeout), timeout=None), 1)
        assert await ref.ask(Answer()) == "answered"  # and it goes on

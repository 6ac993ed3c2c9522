"""The ``Actor`` base class (``actors.actor``): what a subclass gets from it.

Its identity (``ref``, ``system``, ``name``), its default hooks (``started``, ``unhandled``,
``overflowed``) and its services (``spawn``, ``after``, ``every``, ``run_task``, ``stop``),
each seen from the actor's side. The kernel's own rules (mailbox order, ask errors, reentrancy)
are in test_kernel.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from actors.actor import Actor
from actors.errors import ActorStopped, UnhandledMessage
from actors.kernel import ActorRef, Timer
from actors.system import ActorSystem


@dataclass(frozen=True, slots=True)
class Who:
    pass


@dataclass(frozen=True, slots=True)
class Tick:
    n: int = 0


@dataclass(frozen=True, slots=True)
class Spawn:
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    seconds: float
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class StopMe:
    pass


@dataclass(frozen=True, slots=True)
class RunTask:
    pass


class Probe(Actor):
    """Records what it sees of itself and of the messages its services deliver."""

    def __init__(self, tag: str = "", *, note: str = "") -> None:
        self.tag = tag
        self.note = note
        self.ticks: list[int] = []
        self.tick_event = asyncio.Event()
        self.timer: Timer | None = None
        self.child: ActorRef | None = None
        self.task: asyncio.Task[Any] | None = None
        self.task_gate = asyncio.Event()
        self.task_cancelled = False
        self.stopped_calls = 0

    def on_who(self, msg: Who) -> tuple[ActorRef, ActorSystem, str, str, str]:
        return self.ref, self.system, self.name, self.tag, self.note

    def on_tick(self, msg: Tick) -> None:
        self.ticks.append(msg.n)
        self.tick_event.set()

    def on_spawn(self, msg: Spawn) -> ActorRef:
        self.child = self.spawn(Probe, "child", name=msg.name, note="kw")
        return self.child

    def on_schedule(self, msg: Schedule) -> Timer:
        if msg.repeat:
            self.timer = self.every(msg.seconds, Tick(len(self.ticks)))
        else:
            self.timer = self.after(msg.seconds, Tick(42))
        return self.timer

    def on_cancel(self, msg: Cancel) -> None:
        assert self.timer is not None
        self.timer.cancel()

    def on_stop_me(self, msg: StopMe) -> str:
        self.stop()
        return "stopping"

    def on_run_task(self, msg: RunTask) -> asyncio.Task[Any]:
        async def background() -> str:
            try:
                await self.task_gate.wait()
            except asyncio.CancelledError:
                self.task_cancelled = True
                raise
            return "done"

        self.task = self.run_task(background())
        return self.task

    def stopped(self) -> None:
        self.stopped_calls += 1


# -- identity -------------------------------------------------------------------------------


async def test_an_actor_knows_its_ref_system_and_generated_name() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Probe, "a", note="b")
        me, its_system, name, tag, note = await ref.ask(Who())
        assert me == ref and its_system is system
        assert name == ref.name and name.startswith("Probe-")
        assert (tag, note) == ("a", "b")  # spawn passes *args and **kw to the class


async def test_a_named_actor_has_its_name() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Probe, name="probe")
        assert (await ref.ask(Who()))[2] == "probe"


def test_the_class_defaults() -> None:
    assert Actor.reentrant is False
    assert Actor.max_mailbox is None


# -- default hooks --------------------------------------------------------------------------


def test_the_default_hooks_do_nothing() -> None:
    actor = Actor()
    assert actor.started() is None
    assert actor.stopped() is None
    assert actor.overflowed(Tick()) is False


def test_the_default_unhandled_raises_a_typed_error_naming_class_and_message() -> None:
    with pytest.raises(UnhandledMessage, match=r"Probe has no receiver for .*\.Tick'>"):
        Probe().unhandled(Tick())


class Fallback(Actor):
    def unhandled(self, message: object) -> Any:
        return f"fallback for {type(message).__name__}"


async def test_an_overridden_unhandled_answers_every_undeclared_message() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Fallback)
        assert await ref.ask(Tick()) == "fallback for Tick"
        assert system.unhandled_messages == 0


async def test_without_a_receiver_the_asker_gets_unhandled_message() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Actor)
        with pytest.raises(UnhandledMessage, match="Actor has no receiver"):
            await ref.ask(Tick())


class Gate(Actor):
    max_mailbox = 1

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.open = asyncio.Event()
        self.expected = 0
        self.all_seen = asyncio.Event()

    async def on_tick(self, msg: Tick) -> None:
        await self.open.wait()
        self.seen.append(msg.n)
        if len(self.seen) == self.expected:
            self.all_seen.set()


class KeepsEverything(Gate):
    def overflowed(self, message: object) -> bool:
        return True


@pytest.mark.parametrize(("kind", "kept"), [(Gate, [0, 1]), (KeepsEverything, [0, 1, 2, 3])])
async def test_overflowed_decides_whether_a_message_over_the_limit_is_kept(
    kind: type[Gate], kept: list[int]
) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(kind)
        for n in range(4):
            ref.tell(Tick(n))
            await asyncio.sleep(0)  # the first message is taken before the others arrive
        actor = ref._cell.actor
        assert isinstance(actor, Gate)
        actor.expected = len(kept)
        actor.open.set()
        await asyncio.wait_for(actor.all_seen.wait(), 5)
        assert actor.seen == kept
        assert system.dropped[kind.__name__] == 4 - len(kept)
        actor.expected += 1
        actor.all_seen.clear()
        ref.tell(Tick(99))  # the mailbox has room again
        await asyncio.wait_for(actor.all_seen.wait(), 5)
        assert actor.seen == [*kept, 99]


# -- services -------------------------------------------------------------------------------


async def test_a_spawned_child_gets_its_arguments_and_stops_with_its_parent() -> None:
    async with ActorSystem() as system:
        parent = system.spawn(Probe)
        child = await parent.ask(Spawn(name="kid"))
        assert system.lookup("kid") == child
        _, _, name, tag, note = await child.ask(Who())
        assert (name, tag, note) == ("kid", "child", "kw")
        assert system.actor_count == 2
        await parent.stop()
        assert not child.alive
        assert system.lookup("kid") is None


@pytest.mark.looptime
async def test_after_delivers_once_to_the_actor_itself() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Probe)
        actor = ref._cell.actor
        assert isinstance(actor, Probe)
        timer = await ref.ask(Schedule(10.0))
        assert timer in ref._cell.timers
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(actor.tick_event.wait(), 60)
        assert loop.time() - start == pytest.approx(10.0)
        assert actor.ticks == [42]
        assert timer.cancelled and timer not in ref._cell.timers
        await asyncio.sleep(100)
        assert actor.ticks == [42]


@pytest.mark.looptime
async def test_every_repeats_until_cancelled() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Probe)
        actor = ref._cell.actor
        assert isinstance(actor, Probe)
        timer = await ref.ask(Schedule(1.0, repeat=True))
        await asyncio.sleep(3.5)
        assert actor.ticks == [0, 0, 0]  # the same message each time
        await ref.ask(Cancel())
        assert timer.cancelled and not ref._cell.timers
        await asyncio.sleep(10)
        assert len(actor.ticks) == 3


@pytest.mark.looptime
async def test_timers_are_cancelled_when_the_actor_stops() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Probe)
        once = await ref.ask(Schedule(5.0))
        repeating = await ref.ask(Schedule(1.0, repeat=True))
        await ref.stop()
        assert once.cancelled and repeating.cancelled
        await asyncio.sleep(20)
        assert system.dead_letters == 0  # nothing fired at the stopped actor


async def test_run_task_runs_the_coroutine_and_cancels_it_when_the_actor_stops() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Probe)
        actor = ref._cell.actor
        assert isinstance(actor, Probe)
        task = await ref.ask(RunTask())
        actor.task_gate.set()
        assert await asyncio.wait_for(task, 5) == "done"

        actor.task_gate.clear()
        task = await ref.ask(RunTask())
        await asyncio.sleep(0)  # the task starts waiting on the gate
        await ref.stop()
        assert task.cancelled() and actor.task_cancelled


async def test_stop_ends_the_actor_after_the_current_message() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Probe)
        actor = ref._cell.actor
        assert isinstance(actor, Probe)
        await ref.ask(Who())  # started
        ref.tell(StopMe())
        ref.tell(Tick(1))  # queued behind the stop: a dead letter
        await ref._cell.wait_terminated()
        assert not ref.alive
        assert actor.ticks == [] and actor.stopped_calls == 1
        assert system.dead_letters == 1
        with pytest.raises(ActorStopped):
            await ref.ask(Who())


class Unannotated(Actor):
    def on_tick(self, msg):  # the mistake under test: no annotation
        return "tick"

    def on_other(self, msg: Any) -> None: ...


async def test_a_receiver_whose_message_is_not_annotated_with_a_class_is_named() -> None:
    """Receivers are found by their message parameter's annotation: an ``on_tick`` left
    unannotated (or annotated ``Any``) is no receiver, and the error named the message only,
    so its author looked for a typo in the method's name."""
    with pytest.raises(UnhandledMessage, match=r"Unannotated has no receiver for") as error:
        Unannotated().unhandled(Tick())
    assert "on_other, on_tick" in str(error.value)
    assert "annotated with a class" in str(error.value)
    with pytest.raises(UnhandledMessage) as plain:
        Probe().unhandled(Tick())
    assert "annotated" not in str(plain.value)

"""Sampled metrics: mailbox depths by actor kind, dropped messages, dead letters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from actors.actor import Actor
from actors.app import App
from actors.kernel import ActorRef
from actors.metrics.names import ACTOR_DROPPED_MESSAGES, DEAD_LETTERS, MAILBOX_DEPTH
from actors.system import ActorSystem
from tests.actors.metrics.recorder import Call, Recorder, is_


@dataclass(frozen=True, slots=True)
class Block:
    gate: asyncio.Event


@dataclass(frozen=True, slots=True)
class Ping:
    pass


class Stuck(Actor):
    """Blocks on ``Block`` until its gate opens, so later messages pile up."""

    max_mailbox = 3

    def __init__(self) -> None:
        self.started_blocking = asyncio.Event()

    async def on_block(self, msg: Block) -> None:
        self.started_blocking.set()
        await msg.gate.wait()

    def on_ping(self, msg: Ping) -> None:
        pass

    def spawn_stuck_child(self) -> None:
        self.spawn(Stuck)


async def blocked(system: ActorSystem, gate: asyncio.Event) -> tuple[Stuck, ActorRef]:
    ref = system.spawn(Stuck)
    ref.tell(Block(gate))
    actor = ref._cell.actor
    assert isinstance(actor, Stuck)
    await asyncio.wait_for(actor.started_blocking.wait(), 5)
    return actor, ref


async def test_mailbox_depths_sum_live_actors_by_class_children_included() -> None:
    gate = asyncio.Event()
    async with ActorSystem() as system:
        actor, ref = await blocked(system, gate)
        actor.spawn_stuck_child()
        for _ in range(2):
            ref.tell(Ping())
        assert system.mailbox_depths() == {"Stuck": 2}
        gate.set()


async def test_sampler_reports_depth_drops_and_dead_letters() -> None:
    recorder = Recorder()
    app = App(server_type="s", metrics_period=0.02)
    app.add_metrics_reporter(recorder)
    gate = asyncio.Event()
    async with app:
        await recorder.wait_for(is_("count", DEAD_LETTERS))  # reported at 0 from the start
        _, ref = await blocked(app.system, gate)
        for _ in range(5):
            ref.tell(Ping())  # 3 queued, 2 dropped
        await recorder.next(lambda c: c == _depth("Stuck", 3.0))
        dropped = await recorder.wait_for(is_("count", ACTOR_DROPPED_MESSAGES, kind="Stuck"))
        assert dropped.value == 2.0

        mark = len(recorder.calls)
        await ref.stop()  # the 3 queued become dead letters
        dead = await recorder.wait_for(lambda c: c.metric == DEAD_LETTERS and c.value > 0)
        assert (dead.method, dead.value) == ("count", 3.0)
        # The kind is gone: its gauge is brought back to 0 rather than left at 3.
        await recorder.wait_for(lambda c: c == _depth("Stuck", 0.0), since=mark)
        gate.set()
    totals = sum(c.value for c in recorder.find(is_("count", DEAD_LETTERS)))
    assert totals == 3.0


def _depth(kind: str, value: float) -> Call:
    return Call("gauge", MAILBOX_DEPTH, {"kind": kind}, value)

"""A closed connection's session, session actor and connection are freed at once, by
reference counting: no cycle keeps them for the garbage collector (which, for a session that
lived long enough to reach the oldest generation, may not look at them for a long time)."""

from __future__ import annotations

import weakref
from typing import Any

from actors.actor import Actor
from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.system import ActorSystem
from actors.testing import TestClient
from tests.cycles import collector_off, left_per_extra_run
from tests.reliability.support import until


class Probe:
    """Put in a session's data: freed when the session is (a session takes no weak ref)."""


class Keeper(Handler):
    """Keeps a weak reference to a probe in each session it serves, and to its actor."""

    service = "keep"

    def __init__(self) -> None:
        self.sessions: list[weakref.ref[Probe]] = []
        self.actors: list[weakref.ref[Any]] = []

    @handler
    def me(self, session: Session, body: Any) -> dict[str, int]:
        probe = session.data["probe"] = Probe()
        self.sessions.append(weakref.ref(probe))
        self.actors.append(weakref.ref(session.ref._cell.actor))
        return {"id": session.id}


async def test_a_closed_sessions_objects_are_freed_without_the_collector() -> None:
    app = App(server_type="connector", server_id="c-1")
    app.register(Keeper)
    test = TestClient(app)
    async with test:
        keeper = app.handler_ref("keep")._cell.actor
        assert isinstance(keeper, Keeper)
        with collector_off():
            client = await test.connect()
            await client.request("keep.me", {})
            session, actor = keeper.sessions[0], keeper.actors[0]
            assert session() is not None and actor() is not None
            await client.close()
            await until(lambda: session() is None and actor() is None)


async def test_a_connection_leaves_nothing_in_cycles() -> None:
    """Not even the actor's cell and its address (which refer to each other while the actor
    lives): a closed connection's objects are all freed by reference counting."""
    app = App(server_type="connector", server_id="c-1")
    app.register(Keeper)
    test = TestClient(app)
    async with test:

        async def connections(count: int) -> None:
            for _ in range(count):
                client = await test.connect()
                await client.request("keep.me", {})
                await client.close()
            await until(lambda: len(app.sessions) == 1)  # the first client's, still open

        assert await left_per_extra_run(connections) < 0.5


class Holder(Actor):
    def __init__(self) -> None:
        self.payload = bytearray(1 << 16)

    def on_ping(self, msg: str) -> str:
        return msg


async def test_a_stopped_actor_is_let_go_by_its_cell() -> None:
    """Its address still answers as a stopped actor's does; the actor itself is gone."""
    async with ActorSystem() as system:
        with collector_off():
            ref = system.spawn(Holder)
            actor = weakref.ref(ref._cell.actor)
            await ref.stop()
            assert actor() is None
            assert not ref.alive
            ref.tell("late")  # a dead letter, not an error


async def test_a_terminated_cell_and_its_address_are_freed_together() -> None:
    """Nobody holding the address: the cell goes with the actor, without the collector."""
    async with ActorSystem() as system:
        with collector_off():
            ref = system.spawn(Holder)
            mailbox = weakref.ref(ref._cell.mailbox)  # a cell takes no weak reference
            await ref.stop()
            del ref
            await until(lambda: mailbox() is None)  # once the loop ran the stop's last drain


async def test_a_held_address_outlives_its_actor_and_a_new_one_equals_it() -> None:
    """The actor, still held after its stop, hands out an address equal to the old one;
    both take dead letters."""
    async with ActorSystem() as system:
        ref = system.spawn(Holder)
        actor = ref._cell.actor
        await ref.stop()
        again = actor.ref
        assert again == ref and hash(again) == hash(ref)
        assert not again.alive
        before = system.dead_letters
        again.tell("late")
        ref.tell("later")
        assert system.dead_letters == before + 2

"""The concurrency contract, standalone: concurrent across sessions, in order per session.

No timing is asserted: concurrency is shown by handlers that can only finish once all of them
are running at once, order by a journal of when each message ran.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.app import App
from actors.errors import BadRequest
from actors.handler import Handler, handler
from actors.session import Session, SessionClosed
from actors.system import ActorSystem
from actors.testing import serve
from samples.chat.room import ChatRoom, CountMembers, Join, MemberLeft, Say
from tests.actors.concurrency_support import (
    Journal,
    Other,
    Send,
    Steps,
    assert_in_order_per_session,
    send_all,
)


class Gate(Handler):
    """``gate.enter``: answered only once ``expected`` requests are inside at the same time.

    Run one at a time, the first request would wait forever (and the test time out)."""

    service = "gate"

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.inside = 0
        self.all_in = asyncio.Event()

    @handler
    async def enter(self, session: Session) -> dict[str, int]:
        self.inside += 1
        if self.inside == self.expected:
            self.all_in.set()
        await self.all_in.wait()
        return {"inside": self.inside}


@pytest.mark.parametrize("clients", [8, 50])
async def test_a_handler_that_awaits_never_holds_other_sessions(clients: int) -> None:
    app = App(server_type="game")
    app.register(Gate, clients)
    async with serve(app) as server:
        connected = [await server.connect(request_timeout=10) for _ in range(clients)]
        answers = await asyncio.gather(*(c.request("gate.enter") for c in connected))
    assert answers == [{"inside": clients}] * clients


async def test_one_sessions_messages_wait_for_each_other_while_others_run() -> None:
    """Ann's second message waits for her slow first one; Bob is served meanwhile."""
    app = App(server_type="game")
    app.register(Gate, 2)  # needs two sessions inside at once
    app.register(Steps, [])
    async with serve(app) as server:
        ann, bob = await server.connect(), await server.connect()
        first = asyncio.ensure_future(ann.request("gate.enter"))
        second = asyncio.ensure_future(ann.request("steps.quick", {"n": 1}))
        assert await bob.request("steps.quick", {"n": 2}) == {"n": 2}
        assert not first.done() and not second.done()  # Ann's quick waits behind her gate
        assert await bob.request("gate.enter") == {"inside": 2}
        assert await first == {"inside": 2}
        assert await second == {"n": 1}


SENDS = st.builds(
    Send,
    route=st.sampled_from(["steps.quick", "steps.slow", "other.quick", "other.slow"]),
    notify=st.booleans(),
    spins=st.integers(0, 5),
    delay=st.sampled_from([0.0, 0.0, 0.001, 0.003]),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequences=st.lists(st.lists(SENDS, min_size=1, max_size=12), min_size=1, max_size=4))
async def test_per_session_order_holds_under_random_delays(sequences: list[list[Send]]) -> None:
    journal: Journal = []
    app = App(server_type="game")
    app.register(Steps, journal)
    app.register(Other, journal)
    async with serve(app) as server:
        clients = [await server.connect() for _ in sequences]
        sent_lists = await asyncio.gather(
            *(
                send_all(c, seq, 1000 * k, "steps.quick")
                for k, (c, seq) in enumerate(zip(clients, sequences, strict=True))
            )
        )
    # Session ids follow connection order (1, 2, ...); each client's numbers start at 1000*k.
    ids = sorted({sid for sid, _, _ in journal})
    sent = {sid: sent_lists[k] for k, sid in enumerate(ids)}
    assert_in_order_per_session(journal, sent, ids)


# -- a stateful room is an actor ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Op:
    uid: str
    join: bool


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.builds(Op, st.sampled_from("abcdefgh"), st.booleans()), max_size=60))
async def test_room_actor_state_is_consistent_under_concurrent_joins_and_leaves(
    ops: list[Op],
) -> None:
    pushes: list[tuple[str, Any, list[str]]] = []
    async with ActorSystem() as system:
        room = system.spawn(ChatRoom, lambda route, b, uids: pushes.append((route, b, uids)))

        async def one(op: Op) -> None:
            if op.join:
                with contextlib.suppress(SessionClosed):  # it left before: refused
                    await room.ask(Join(op.uid, op.uid.upper()))
            else:
                room.tell(MemberLeft(op.uid))

        await asyncio.gather(*(one(op) for op in ops))  # all at once
        count = await room.ask(CountMembers())
    # Replay the operations one at a time, in the order the room received them. A leave
    # before the join (the join still on its way) makes the room refuse that join.
    members: dict[str, str] = {}
    gone: set[str] = set()
    expected: list[tuple[str, Any, list[str]]] = []
    for op in ops:
        if op.join:
            if op.uid in gone:
                gone.discard(op.uid)
                continue
            expected.append(("onNewUser", {"name": op.uid.upper()}, list(members)))
            members[op.uid] = op.uid.upper()
        elif op.uid in members:
            name = members.pop(op.uid)
            expected.append(("onUserLeft", {"name": name}, list(members)))
        else:
            gone.add(op.uid)
    assert pushes == expected
    assert count == len(members)


async def test_room_actor_refuses_a_stranger_and_never_pushes_to_non_members() -> None:
    pushes: list[tuple[str, Any, list[str]]] = []
    async with ActorSystem() as system:
        room = system.spawn(ChatRoom, lambda route, b, uids: pushes.append((route, b, uids)))
        await room.ask(Join("1", "ann"))
        with pytest.raises(BadRequest):
            await room.ask(Say("2", "hi"))
        await room.ask(Say("1", "hi"))
    assert pushes[-1] == ("onMessage", {"name": "ann", "content": "hi"}, ["1"])


# -- handlers are started before they serve -------------------------------------------------


class SlowStart(Handler):
    """``started`` awaits (say, a database): no request may reach ``ready`` before it ends."""

    service = "slowstart"

    def __init__(self, entered: asyncio.Event, gate: asyncio.Event) -> None:
        self.entered = entered
        self.gate = gate
        self.loaded = False

    async def started(self) -> None:
        self.entered.set()
        await self.gate.wait()
        self.loaded = True

    @handler
    def ready(self, session: Session) -> dict[str, bool]:
        return {"loaded": self.loaded}


async def test_the_app_serves_only_once_every_handler_has_started() -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    app = App(server_type="game")
    app.register(SlowStart, entered, gate)
    serving = serve(app)
    starting = asyncio.ensure_future(serving.__aenter__())
    await entered.wait()
    # The start-up must not finish while the hook waits. A bound is the behaviour here: were
    # it not waiting, it would finish (listeners open) well within this time.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(starting), 0.5)
    gate.set()
    server = await starting
    try:
        client = await server.connect()
        assert await client.request("slowstart.ready") == {"loaded": True}
    finally:
        await serving.__aexit__(None, None, None)


class BrokenStart(Handler):
    service = "broken"

    def started(self) -> None:
        raise RuntimeError("no database")

    @handler
    def ping(self, session: Session) -> dict[str, bool]:
        return {"pong": True}


async def test_a_handler_failing_in_started_stops_the_start_up_with_its_name() -> None:
    app = App(server_type="game")
    app.register(BrokenStart)
    app.listen_tcp("127.0.0.1", 0)
    with pytest.raises(RuntimeError, match="handler:broken failed in started"):
        await app.start()

"""A session's pipelined messages see the session as the previous one left it
(``actors.cluster.carry``), in a whole cluster in memory.

A frontend sends a session's next message to the same backend service before the previous
one is answered. Sent one after the other, ``login`` (which binds) then ``whoami`` must see
the uid, and a ``push_to_front`` must reach the next message, exactly as when each waits
for the previous answer (and as on a standalone server). The same tests over NATS are in
``tests/cluster/test_concurrency.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.cluster.backend_session import BackendSession
from actors.cluster.carry import SessionCarry
from actors.cluster.codec import PIPELINED_KEY, SYS, RpcRequest
from actors.handler import Handler, handler
from actors.invocation import Sequencer
from actors.session import Session
from actors.testing import MemoryCluster, TestClient, cluster_app


class Account(Handler):
    service = "account"

    @handler
    async def login(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await session.bind(body["uid"])
        return {"uid": session.uid}

    @handler
    async def add(self, session: BackendSession, body: dict[str, Any]) -> dict[str, Any]:
        items = [*session.get("items", []), body["item"]]
        session.set("items", items)
        await session.push_to_front()
        session.set("after_push", True)  # on this copy only: never pushed
        return {"items": items}

    @handler
    def whoami(self, session: Session) -> dict[str, Any]:
        return {"uid": session.uid, "data": session.data}


async def test_a_pipelined_message_sees_the_previous_ones_bind() -> None:
    network = MemoryCluster()
    room = cluster_app(network, "room", frontend=False)
    room.register(Account)
    async with room, TestClient(cluster_app(network, "connector")) as client:
        login = client.request("room.account.login", {"uid": "ann"})
        whoami = client.request("room.account.whoami")  # sent before login's answer
        assert await asyncio.gather(login, whoami) == [
            {"uid": "ann"},
            {"uid": "ann", "data": {}},
        ]


async def test_pipelined_pushes_to_front_build_on_each_other() -> None:
    network = MemoryCluster()
    room = cluster_app(network, "room", frontend=False)
    room.register(Account)
    async with room, TestClient(cluster_app(network, "connector")) as client:
        answers = await asyncio.gather(
            *(client.request("room.account.add", {"item": i}) for i in range(3)),
            client.request("room.account.whoami"),
        )
        assert answers == [
            {"items": [0]},
            {"items": [0, 1]},
            {"items": [0, 1, 2]},
            {"uid": None, "data": {"items": [0, 1, 2]}},  # what was pushed, nothing else
        ]
        # The frontend's own session agrees with what the backend handed on.
        assert await client.request("room.account.whoami") == answers[-1]
        bridge = room.cluster.bridge if room.cluster is not None else None
        assert bridge is not None
        carry = bridge._cell.actor.carry  # type: ignore[union-attr]
        assert len(carry) == 0  # nothing kept once the session has no message there


async def test_sent_one_after_the_other_the_frontends_session_is_taken() -> None:
    """Not pipelined (each waits for the previous answer): the request carries the
    frontend's session, which a change made elsewhere meanwhile is part of."""
    network = MemoryCluster()
    room = cluster_app(network, "room", frontend=False)
    room.register(Account)
    connector = cluster_app(network, "connector")
    async with room, TestClient(connector) as client:
        await client.request("room.account.add", {"item": "a"})
        (front,) = list(connector.sessions)
        front.set("items", ["changed on the frontend"])
        assert await client.request("room.account.whoami") == {
            "uid": None,
            "data": {"items": ["changed on the frontend"]},
        }


class Copy:
    """What :class:`SessionCarry` reads and writes of a backend session."""

    def __init__(self, uid: str | None = None, changed: bool = False) -> None:
        self.uid = uid
        self.data: dict[str, Any] = {}
        self.front_changed = changed

    @property
    def front_state(self) -> tuple[str | None, dict[str, Any]]:
        return self.uid, self.data

    def take_front_state(self, uid: str | None, data: dict[str, Any]) -> None:
        self.uid, self.data = uid, dict(data)


def test_a_record_lives_while_its_session_has_messages_in_the_sequencer() -> None:
    sequencer = Sequencer()
    carry = SessionCarry(sequencer)
    finishes: list[Any] = []
    sequencer.submit("s", finishes.append)  # runs, holds the key until finished
    sequencer.submit("s", finishes.append)  # waits behind it
    carry.finish("s", Copy("ann", changed=True), finishes[0])  # type: ignore[arg-type]
    assert len(carry) == 1  # the second message runs now, with the record
    sent_after_the_answer, pipelined = Copy(), Copy()
    carry.resume("s", sent_after_the_answer, RpcRequest(SYS, "r.s.m", b""))  # type: ignore[arg-type]
    assert sent_after_the_answer.uid is None  # its own session, fresher, is kept
    carry.resume("s", pipelined, RpcRequest(SYS, "r.s.m", b"", metadata={PIPELINED_KEY: True}))  # type: ignore[arg-type]
    assert pipelined.uid == "ann"
    carry.finish("s", None, finishes[1])  # refused before its handler: None
    assert len(carry) == 0 and "s" not in sequencer


def test_a_session_without_a_record_finishes_while_another_holds_one() -> None:
    """The record of one session (its lane busy) was taken for a sign that every finishing
    session had one: the other's finish raised KeyError (a session event closing it, a
    message that pushed nothing), out of the answer's path."""
    sequencer = Sequencer()
    carry = SessionCarry(sequencer)
    finishes: list[Any] = []
    sequencer.submit("a", finishes.append)
    sequencer.submit("a", finishes.append)  # "a" stays busy after its first message
    carry.finish("a", Copy("ann", changed=True), finishes[0])  # type: ignore[arg-type]
    sequencer.submit("b", finishes.append)
    carry.finish("b", Copy(), finishes[2])  # type: ignore[arg-type]
    assert len(carry) == 1 and "b" not in sequencer  # "a"'s record kept, "b" done
    carry.finish("a", None, finishes[1])
    assert len(carry) == 0

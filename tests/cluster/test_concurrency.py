"""The concurrency contract across the cluster, against real nats-server and etcd.

* Per-session order holds across a forwarded hop, with random handler delays, two room
  servers and random routing (a property test; the servers run in this process).
* A stateful room never stalls: two members leaving together, and join/leave churn, never
  hold a steady member's requests (the sample servers, each in its own process).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import TestServer, serve
from tests.actors.cluster.test_carry import Account
from tests.actors.concurrency_support import Journal, Other, Send, Step, Steps, send_all
from tests.bench.wire import HANDSHAKE_PACKET, request_packet, route_dictionary
from tests.cluster.harness import Node, start_node
from tests.cluster.test_cluster import connect
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.client import Client
from transport.handshake import decode_handshake_response
from transport.message import Message, MessageType, decode_message
from transport.packet import HANDSHAKE_ACK_PACKET, PacketDecoder, PacketType

STEADY_TIMEOUT = 3.0
"""How long the steady member's requests may take. The servers' RPC timeout is set far
above it (20 s): a request held behind an RPC that waits for its timeout fails this bound.
The bound is the behaviour under test, with a wide margin over a normal answer (ms)."""

SLOW_RPC = {"PITAYA_RPC_TIMEOUT": "20"}


def cluster_options(nats: NatsServer, etcd: EtcdServer) -> dict[str, Any]:
    """In-process cluster servers on the test's NATS and etcd."""
    return {
        "mode": "cluster",
        "nats_url": nats.url,
        "etcd_endpoints": etcd.endpoint,
        "etcd_lease_ttl": 5,
    }


@asynccontextmanager
async def two_rooms(
    nats: NatsServer, etcd: EtcdServer, journal: Journal
) -> AsyncIterator[TestServer]:
    common = cluster_options(nats, etcd)
    rooms = []
    for i in (1, 2):
        room = App(server_type="room", server_id=f"room-{i}", **common)
        room.register(Steps, journal)
        room.register(Other, journal)
        rooms.append(room)
    connector = App(server_type="connector", server_id="connector-1", **common)
    async with rooms[0], rooms[1], serve(connector) as server:
        cluster = connector.cluster
        assert cluster is not None
        # etcd's watch announces the rooms a little after they register (a bounded poll).
        await until(lambda: len(cluster.discovery.servers("room")) == 2)
        yield server


FORWARDED = st.builds(
    Send,
    route=st.sampled_from(
        ["room.steps.quick", "room.steps.slow", "room.other.quick", "room.other.slow"]
    ),
    notify=st.booleans(),
    spins=st.integers(0, 3),
    delay=st.sampled_from([0.0, 0.001, 0.004]),
)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequences=st.lists(st.lists(FORWARDED, min_size=2, max_size=10), min_size=1, max_size=3))
async def test_per_session_order_holds_across_a_forwarded_hop(
    sequences: list[list[Send]], nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    journal: Journal = []
    async with two_rooms(nats_server, etcd_server, journal) as server:
        clients = [await server.connect(request_timeout=10) for _ in sequences]
        sent_lists = await asyncio.gather(
            *(
                send_all(c, seq, 1000 * k, "room.steps.quick")
                for k, (c, seq) in enumerate(zip(clients, sequences, strict=True))
            )
        )
    # A backend session has its frontend session's id; each client's numbers start at 1000*k.
    for numbers in sent_lists:
        session_ids = {sid for sid, n, _ in journal if n == numbers[0]}
        assert len(session_ids) == 1
        (session_id,) = session_ids
        events = [(n, what) for sid, n, what in journal if sid == session_id]
        assert events == [(n, what) for n in numbers for what in ("start", "end")]


async def test_pipelined_messages_see_the_session_as_the_previous_one_left_it(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    """Over NATS a session's messages to one service are pipelined; each must still see the
    previous one's bind and push_to_front."""
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Account)
    connector = App(server_type="connector", server_id="connector-1", **common)
    async with room, serve(connector) as server:
        cluster = connector.cluster
        assert cluster is not None
        await until(lambda: len(cluster.discovery.servers("room")) == 1)
        client = await server.connect()
        answers = await asyncio.gather(
            client.request("room.account.login", {"uid": "ann"}),
            *(client.request("room.account.add", {"item": i}) for i in range(3)),
            client.request("room.account.whoami"),
        )
    assert answers == [
        {"uid": "ann"},
        {"items": [0]},
        {"items": [0, 1]},
        {"items": [0, 1, 2]},
        {"uid": "ann", "data": {"items": [0, 1, 2]}},
    ]


# -- a stateful room never stalls (the sample servers) -------------------------------------


async def chat_member(connector: Node, name: str) -> Client:
    client = await connect(connector)
    reply = await client.request("room.room.join", {"name": name})
    assert reply["result"] == "success"
    return client


async def test_two_members_leaving_together_never_stall_the_room(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    await start_node(nodes, "room", "room-1", nats_server, etcd_server, **SLOW_RPC)
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server, **SLOW_RPC)
    steady = await chat_member(connector, "steady")
    pushes = steady.pushes()
    leaving = [await chat_member(connector, name) for name in ("ann", "bob")]
    await asyncio.gather(*(c.close() for c in leaving))  # at the same moment
    reply = await steady.request("room.room.message", {"content": "hi"}, timeout=STEADY_TIMEOUT)
    assert reply == {"result": "success"}
    # The leaves and the message may reach the steady member in either order.
    seen: list[tuple[str, Any]] = []

    async def until_all_seen() -> None:
        while len(seen) < 3:
            push = await anext(pushes)
            if push.route in ("onUserLeft", "onMessage"):
                seen.append((push.route, push.body))

    await asyncio.wait_for(until_all_seen(), 10)
    assert sorted(seen, key=repr) == sorted(
        [
            ("onUserLeft", {"name": "ann"}),
            ("onUserLeft", {"name": "bob"}),
            ("onMessage", {"name": "steady", "content": "hi"}),
        ],
        key=repr,
    )


async def test_join_and_leave_churn_never_stalls_a_steady_member(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    await start_node(nodes, "room", "room-1", nats_server, etcd_server, **SLOW_RPC)
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server, **SLOW_RPC)
    steady = await chat_member(connector, "steady")
    churning = True
    answered = 0

    async def keep_talking() -> None:
        nonlocal answered
        while churning:
            reply = await steady.request(
                "room.room.message", {"content": str(answered)}, timeout=STEADY_TIMEOUT
            )
            assert reply == {"result": "success"}
            answered += 1

    talker = asyncio.ensure_future(keep_talking())
    for wave in range(3):  # 15 join, then all leave at once, three times
        members = await asyncio.gather(*(chat_member(connector, f"w{wave}-{i}") for i in range(15)))
        await asyncio.gather(*(m.close() for m in members))
    churning = False
    await talker  # raises if any request of the steady member failed or took too long
    assert answered > 0
    members = await steady.request("connector.entry.info", timeout=STEADY_TIMEOUT)
    assert members["room"]["members"] >= 1


# -- what a backend handler sends its client, in order -------------------------------------


class Announcer(Handler):
    """Pushes to its caller, then answers (synchronously, or after an await)."""

    service = "announcer"

    @handler
    def now(self, session: Session, body: Step) -> dict[str, int]:
        session.push("onAnnounced", {"n": body.n})
        return {"n": body.n}

    @handler
    async def later(self, session: Session, body: Step) -> dict[str, int]:
        await asyncio.sleep(0)
        session.push("onAnnounced", {"n": body.n})
        return {"n": body.n}


async def data_messages(reader: asyncio.StreamReader, decoder: PacketDecoder) -> list[Message]:
    """The DATA messages of the next read."""
    chunk = await asyncio.wait_for(reader.read(65536), 5)
    assert chunk, "the connector closed the connection"
    return [decode_message(p.body) for p in decoder.feed(chunk) if p.type == PacketType.DATA]


async def test_a_backend_handlers_push_reaches_the_client_before_its_answer(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    # Over NATS the push (a control to the frontend) and the answer arrive in that order;
    # the frontend must not let the answer overtake it (as a local handler's never does).
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", **common)
    room.register(Announcer)
    connector = App(server_type="connector", server_id="connector-1", **common)
    async with room, serve(connector):
        cluster = connector.cluster
        assert cluster is not None
        await until(lambda: len(cluster.discovery.servers("room")) == 1)
        reader, writer = await asyncio.open_connection(*connector.address("tcp"))
        decoder = PacketDecoder()
        writer.write(HANDSHAKE_PACKET)
        handshake: list[Any] = []
        while not handshake:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            handshake = [p for p in decoder.feed(chunk) if p.type == PacketType.HANDSHAKE]
        routes = route_dictionary(decode_handshake_response(handshake[0].body))
        writer.write(HANDSHAKE_ACK_PACKET)
        try:
            for n in range(100):
                route = "room.announcer.now" if n % 2 else "room.announcer.later"
                writer.write(request_packet(1, route, {"n": n}, routes))
                received: list[Message] = []
                while len(received) < 2:
                    received += await data_messages(reader, decoder)
                assert [m.type for m in received] == [MessageType.PUSH, MessageType.RESPONSE]
                assert received[0].route == "onAnnounced"
        finally:
            writer.close()

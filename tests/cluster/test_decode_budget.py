"""Issue 18.1 on a backend: bodies forwarded by a frontend are decoded within the backend
loop's decode budget (``actors.turns``, used by ``actors.cluster.bridge``), so clients whose
bodies are costly to decode cannot keep the backend's other sessions waiting.

Real nats-server and etcd; the connector is its own process (``tests.cluster.node``), the room
runs in this process so the test can read its budget's bookkeeping. The bystander's worst
latency before and after comes from ``python -m tests.bench.bench_attack --scenario cluster``
(and ``cluster-unbudgeted``).
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

import pytest

from actors.app import App
from actors.cluster import bridge
from actors.handler import Handler, handler
from actors.session import Session
from actors.turns import SMALL_BODY, turns_for
from tests.cluster.harness import Node, both_transports, start_node
from tests.rawclient import RawClient
from tests.services import EtcdServer, NatsServer
from transport.client import Client
from transport.message import MessageType, decode_message
from transport.packet import PacketType, encode_packet

LARGE = 1_000_000
"""Bytes of a large body: within the message and NATS payload limits, ~20 ms to decode."""

BODIES = 10
"""Large bodies each attacker pipelines, followed by one small request."""


@dataclass
class Bulk:
    tag: int
    content: list[int]


class Bulks(Handler):
    """``room.bulk.take``: records which session's body (by tag) was handed over in which turn
    of the loop's decode budget; ``room.bulk.ping`` (a small body) records the bystander."""

    service = "bulk"

    def __init__(self, seen: list[tuple[str, int, int, int]]) -> None:
        self.seen = seen

    @handler
    def take(self, session: Session, body: Bulk) -> dict[str, int]:
        turn = turns_for(asyncio.get_running_loop()).turn
        self.seen.append(("take", session.id, body.tag, turn))
        return {"tag": body.tag}

    @handler
    def ping(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(("ping", session.id, 0, 0))
        return body


def large(tag: int) -> bytes:
    head = f'{{"tag":{tag},"content":['
    return (head + ",".join(["0"] * ((LARGE - len(head) - 2) // 2)) + "]}").encode()


def request(route: str, data: bytes, message_id: int, *, compress: bool = False) -> bytes:
    flag = (0x10 if compress else 0) | MessageType.REQUEST << 1
    head = bytes([flag, message_id, len(route)]) + route.encode()
    return encode_packet(PacketType.DATA, head + (zlib.compress(data, 9) if compress else data))


async def answers(raw: RawClient, count: int) -> list[tuple[int, bool]]:
    """The next ``count`` responses: (message id, error flag) of each, in arrival order."""
    found: list[tuple[int, bool]] = []
    while len(found) < count:
        packet = await raw.read_packet(timeout=60)
        if packet.type is PacketType.DATA:
            message = decode_message(packet.body)
            found.append((message.id, message.error))
    return found


class Bystander:
    """Another session: ``room.bulk.ping`` every 5 ms; its worst latency and failures."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.worst = 0.0
        self.served = 0
        self.failed: list[BaseException] = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        n = 0
        while True:
            n += 1
            start = time.perf_counter()
            try:
                assert await self.client.request("room.bulk.ping", {"n": n}, timeout=10) == {"n": n}
                self.served += 1
            except Exception as exc:
                self.failed.append(exc)
            self.worst = max(self.worst, time.perf_counter() - start)
            await asyncio.sleep(0.005)  # pacing, as a client would

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def room_app(nats: NatsServer, etcd: EtcdServer, transport: str, seen: list[Any]) -> App:
    room = App(
        server_type="room",
        server_id="room-1",
        frontend=False,
        mode="cluster",
        nats_url=nats.url,
        etcd_endpoints=etcd.endpoint,
        rpc_transport=transport,
        etcd_lease_ttl=2,
    )
    room.register(Bulks, seen)
    if transport == "grpc":  # as the connector process does (tests.cluster.node)
        from actors.modules.binding_storage import BindingStorage

        room.register_module(BindingStorage(room), "binding_storage")
    return room


@dataclass
class Attack:
    """What two attackers and a bystander saw (:func:`attack`)."""

    answers: list[list[tuple[int, bool]]]
    seen: list[tuple[str, int, int, int]]
    bystander: Bystander


async def attack(transport: str, nats: NatsServer, etcd: EtcdServer, nodes: list[Node]) -> Attack:
    """Two clients each pipeline 10 bodies of 1 MB (JSON numbers, ~20 ms each to decode)
    and a small request (tag 99) to a room through a connector process, while a third
    client pings the room; the room runs here."""
    seen: list[tuple[str, int, int, int]] = []
    attacks = [
        b"".join(request("room.bulk.take", large(tag), tag, compress=True) for tag in tags)
        + request("room.bulk.take", json.dumps({"tag": 99, "content": []}).encode(), 99)
        for tags in (range(1, BODIES + 1), range(1, BODIES + 1))
    ]
    assert all(len(large(tag)) > SMALL_BODY for tag in range(1, BODIES + 1))
    async with room_app(nats, etcd, transport, seen):
        # A long RPC timeout: the attackers' bodies wait their turns on the room.
        connector = await start_node(nodes, "connector", "c-1", nats, etcd, PITAYA_RPC_TIMEOUT="30")
        await connector.wait_for_log("server added room-1", timeout=20)
        port = connector.ports["tcp"]
        bystander = Bystander(await Client.connect("127.0.0.1", port))
        raws = [await RawClient.connect("127.0.0.1", port) for _ in attacks]
        for raw in raws:
            await raw.handshake()
        try:
            for raw, data in zip(raws, attacks, strict=True):
                await raw.send(data)
            got = [await answers(raw, BODIES + 1) for raw in raws]
        finally:
            await bystander.stop()
            for raw in raws:
                await raw.close()
            await bystander.client.close()
    return Attack(got, seen, bystander)


def check_bystander(seen: list[tuple[str, int, int, int]], bystander: Bystander) -> None:
    """The bystander was served throughout, also between the attackers' bodies."""
    kinds = [kind for kind, *_ in seen]
    first, last = kinds.index("take"), len(kinds) - 1 - kinds[::-1].index("take")
    assert "ping" in kinds[first:last], "no ping handled while the large bodies were"
    assert not bystander.failed, bystander.failed[:3]
    assert bystander.served > 0
    assert bystander.worst < 2.0, f"bystander waited {bystander.worst:.3f}s"


@both_transports
async def test_large_forwarded_bodies_take_turns_and_the_others_are_served(
    rpc_transport: str, nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    """Each large body is handed over in a turn of its own, each attacker's messages are
    handled in the order sent (its small request waits behind its large ones), and the
    bystander is answered throughout."""
    result = await attack(rpc_transport, nats_server, etcd_server, nodes)
    # Every attacker's requests were answered, successfully, in order.
    for answered in result.answers:
        assert answered == [(i, False) for i in range(1, BODIES + 1)] + [(99, False)]
    takes = [(sid, tag, turn) for kind, sid, tag, turn in result.seen if kind == "take"]
    sessions = sorted({sid for sid, _, _ in takes})
    assert len(sessions) == 2
    for sid in sessions:  # per session: in order, the small request after the large ones
        assert [tag for s, tag, _ in takes if s == sid] == [*range(1, BODIES + 1), 99]
    # One large body per turn of the room's decode budget, whatever its session.
    large_turns = [turn for _, tag, turn in takes if tag != 99]
    assert len(set(large_turns)) == len(large_turns) == 2 * BODIES, large_turns
    check_bystander(result.seen, result.bystander)


async def test_bodies_past_the_waiting_bound_are_refused_and_the_rest_served_in_order(
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    nodes: list[Node],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With room for 3 bodies waiting (``MAX_WAITING_BYTES``), the bodies past it are
    answered PIT-429 at once; the others, and each attacker's small request, are handled in
    the order sent; the bystander is served throughout."""
    monkeypatch.setattr(bridge, "MAX_WAITING_BYTES", 3 * LARGE)
    result = await attack(rpc_transport, nats_server, etcd_server, nodes)
    refused = [mid for answered in result.answers for mid, error in answered if error]
    assert refused, "no body was refused"
    assert 99 not in refused
    takes = [(sid, tag) for kind, sid, tag, _ in result.seen if kind == "take"]
    for answered in result.answers:
        assert [mid for mid, _ in answered] == [*range(1, BODIES + 1), 99]  # answered in order
    for sid in {sid for sid, _ in takes}:
        tags = [tag for s, tag in takes if s == sid]
        assert tags == sorted(tags) and tags[-1] == 99
    assert len(takes) == 2 * (BODIES + 1) - len(refused)
    check_bystander(result.seen, result.bystander)

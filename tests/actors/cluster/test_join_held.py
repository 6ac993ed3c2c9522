"""A server's RPC subject is served before its registration in discovery (peers that see
the entry must reach it), but what arrives until discovery grants the id waits: a second
server started with a live server's id must run none of that server's requests."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref

import pytest

from actors.app import App
from actors.cluster.codec import USER, RpcRequest, encode_request, read_answer
from actors.cluster.discovery import DuplicateServerId, ServerInfo
from actors.cluster.join_gate import MAX_HELD_BYTES, MAX_HELD_INBOUND
from actors.cluster.memory import MemoryCluster, MemoryDiscovery, MemoryRpc
from actors.cluster.rpc import REQUEST, DeliverInbound, RpcPair, ServerIdTaken
from actors.errors import UnhandledMessage
from actors.handler import Remote, handler
from actors.session import Session
from actors.system import ActorSystem
from tests.reliability.support import until

hits: list[str] = []


class Tally(Remote):
    service = "tally"

    @handler
    def hit(self, caller: Session | None) -> bytes:
        hits.append("hit")
        return b"ok"


class RequestOnSubscribe(MemoryRpc):
    """Its subject gets a request the moment it is served (a request for the id's holder)."""

    def __init__(self, network: MemoryCluster) -> None:
        super().__init__(network)
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def start(self, me: ServerInfo, deliver: DeliverInbound) -> None:
        await super().start(me, deliver)
        request = RpcRequest(USER, "room.tally.hit", b"")
        deliver(REQUEST, encode_request(request, "c-1", "connector", 5.0), self.answer.set_result)


class Registering(MemoryDiscovery):
    """Registers (or refuses the id) once the request above had its chance to run."""

    def __init__(self, network: MemoryCluster, refuse: bool) -> None:
        super().__init__(network)
        self.refuse = refuse
        self.system: ActorSystem | None = None

    async def start(self, me: ServerInfo) -> None:
        assert self.system is not None
        bridge = self.system.lookup("rpc-bridge")
        assert bridge is not None
        with contextlib.suppress(UnhandledMessage):  # a round trip: its mailbox is done
            await bridge.ask(object(), timeout=5)
        if self.refuse:
            raise DuplicateServerId(f"server id {me.id!r} is already registered")
        await super().start(me)


@pytest.mark.parametrize("refused", [True, False])
async def test_a_request_that_arrives_while_the_server_registers_waits_for_its_id(
    refused: bool,
) -> None:
    hits.clear()
    network = MemoryCluster()
    rpc = RequestOnSubscribe(network)
    discovery = Registering(network, refuse=refused)
    room = remote_room(discovery, rpc)
    if refused:
        with pytest.raises(ServerIdTaken):
            await room.start()
        assert hits == [] and not rpc.answer.done()  # the holder of the id answers it
        return
    async with room:  # registered: handled then, and answered
        assert read_answer(await asyncio.wait_for(rpc.answer, 5)) == b"ok"
        assert hits == ["hit"]


class FloodOnSubscribe(MemoryRpc):
    """Its subject gets ``count`` requests of ``size`` bytes each the moment it is served
    (one bytes object: the test itself holds no more than one)."""

    def __init__(self, network: MemoryCluster, count: int, size: int) -> None:
        super().__init__(network)
        self.count = count
        self.size = size
        self.deliver: DeliverInbound | None = None

    async def start(self, me: ServerInfo, deliver: DeliverInbound) -> None:
        await super().start(me, deliver)
        self.deliver = deliver
        data = encoded(self.size)
        for _ in range(self.count):
            deliver(REQUEST, data, None)


class Counting(Registering):
    """Registers (or refuses), noting how many inbound messages were dropped by then."""

    def __init__(self, network: MemoryCluster, refuse: bool) -> None:
        super().__init__(network, refuse)
        self.app: App | None = None
        self.dropped_then = -1

    async def start(self, me: ServerInfo) -> None:
        assert self.app is not None and self.app.cluster is not None
        self.dropped_then = self.app.cluster.dropped_messages
        await super().start(me)


def flooded(count: int, size: int, refuse: bool = False) -> tuple[App, FloodOnSubscribe, Counting]:
    network = MemoryCluster()
    rpc = FloodOnSubscribe(network, count, size)
    discovery = Counting(network, refuse=refuse)
    room = remote_room(discovery, rpc)
    discovery.app = room
    return room, rpc, discovery


def remote_room(discovery: Registering, rpc: MemoryRpc) -> App:
    """``room-1`` serving :class:`Tally` as a remote, on ``discovery`` and ``rpc``."""
    room = App(
        server_type="room",
        server_id="room-1",
        mode="cluster",
        frontend=False,
        discovery=discovery,
        rpc=RpcPair(rpc, rpc),
    )
    discovery.system = room.system
    room.register_remote(Tally)
    return room


def encoded(size: int) -> bytes:
    return encode_request(RpcRequest(USER, "room.tally.hit", b"x" * size), "c-1", "connector", 5.0)


@pytest.mark.parametrize(("count", "size"), [(MAX_HELD_INBOUND + 3, 10), (80, 1024 * 1024)])
async def test_what_is_held_is_bounded_and_what_is_dropped_is_counted(
    count: int, size: int
) -> None:
    """Held messages were bounded by their number only (10,000 of up to NATS's max payload
    each: gigabytes), and those past it were dropped unanswered without a trace (Pitaya's
    ``rpc_server_dropped_messages`` counts them)."""
    hits.clear()
    held = min(MAX_HELD_INBOUND, MAX_HELD_BYTES // len(encoded(size)))
    assert held < count
    room, _, discovery = flooded(count, size)
    async with room:
        assert discovery.dropped_then == count - held
        await until(lambda: len(hits) == held, timeout=30)


async def test_what_arrives_after_a_refusal_is_not_kept() -> None:
    """Refused its id, the server closes its connection, which delivers what was pending
    (NATS drains): that was appended to a list its RPC server kept for good."""
    room, rpc, _ = flooded(1, 10, refuse=True)
    with pytest.raises(ServerIdTaken):
        await room.start()
    assert rpc.deliver is not None

    class Answer:
        def __call__(self, data: bytes) -> None:
            raise AssertionError("answered a request for the id's holder")

    answer = Answer()
    kept = weakref.ref(answer)
    rpc.deliver(REQUEST, encoded(0), answer)
    del answer
    gc.collect()
    assert kept() is None

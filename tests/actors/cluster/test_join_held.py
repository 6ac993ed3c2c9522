"""A server's RPC subject is served before its registration in discovery (peers that see
the entry must reach it), but what arrives until discovery grants the id waits: a second
server started with a live server's id must run none of that server's requests."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from actors.app import App
from actors.cluster.codec import USER, RpcRequest, encode_request, read_answer
from actors.cluster.discovery import DuplicateServerId, ServerInfo
from actors.cluster.memory import MemoryCluster, MemoryDiscovery, MemoryRpc
from actors.cluster.rpc import REQUEST, DeliverInbound, RpcPair, ServerIdTaken
from actors.errors import UnhandledMessage
from actors.handler import Remote, handler
from actors.session import Session
from actors.system import ActorSystem

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
    if refused:
        with pytest.raises(ServerIdTaken):
            await room.start()
        assert hits == [] and not rpc.answer.done()  # the holder of the id answers it
        return
    async with room:  # registered: handled then, and answered
        assert read_answer(await asyncio.wait_for(rpc.answer, 5)) == b"ok"
        assert hits == ["hit"]

"""Fast failover in one process: a backend that dies without leaving discovery (its RPC
server stops; discovery still lists it, as etcd does until the lease expires) is skipped at
once, and what provably reached nobody is sent to another backend; see
``actors.cluster.router`` and ``actors.cluster.outbound``. With real processes and SIGKILL:
``tests/cluster/test_failover.py``."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import grpc
import pytest

from actors.app import App
from actors.cluster.discovery import ServerInfo
from actors.cluster.grpc_rpc import _pitaya_error
from actors.cluster.memory import MemoryRpc
from actors.cluster.rpc import ServerUnreachable
from actors.errors import PitayaError, RpcTimeout
from actors.handler import Handler, Remote, handler
from actors.session import Session
from tests.actors.cluster.test_in_memory_cluster import Net, cluster
from transport.client import RequestError
from transport.grpc_rpc import GrpcCallError


class Runs(Handler):
    """``room.runs.*``: counts how often each request id ran, on every room server."""

    service = "runs"

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts

    @handler
    def count(self, session: Session, body: dict[str, Any]) -> dict[str, str]:
        self.counts[body["id"]] += 1
        return {"server_id": self.app.server_id}

    @handler
    def tally(self, session: Session, body: dict[str, Any]) -> None:
        self.counts[body["id"]] += 1


class RunsRemote(Remote):
    service = "runsremote"

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts

    @handler
    def count(self, caller: Session | None, body: dict[str, Any]) -> dict[str, str]:
        self.counts[body["id"]] += 1
        return {"server_id": self.app.server_id}


def counting(counts: Counter[str]) -> Any:
    def setup(room: App) -> None:
        room.register(Runs, counts)
        room.register_remote(RunsRemote, counts)

    return setup


async def kill(net: Net, index: int) -> MemoryRpc:
    """Room ``index`` stops receiving, but discovery still lists it (a SIGKILL before the
    lease expires)."""
    rpc = net.rooms[index].cluster.rpc_server  # type: ignore[union-attr]
    assert isinstance(rpc, MemoryRpc)
    await rpc.stop()
    assert {s.id for s in net.connectors[0].cluster.discovery.servers("room")} == {  # type: ignore[union-attr]
        "room-1",
        "room-2",
    }
    return rpc


async def test_requests_and_notifies_go_to_the_live_backend_and_none_runs_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts: Counter[str] = Counter()
    caplog.set_level(logging.INFO, logger="actors.cluster.router")
    async with cluster(rooms=2, room_setup=counting(counts)) as net:
        client = await net.client()
        await kill(net, 0)
        served: Counter[str] = Counter()
        for i in range(40):
            answer = await client.request("room.runs.count", {"id": f"r{i}"})
            served[answer["server_id"]] += 1
            await client.notify("room.runs.tally", {"id": f"n{i}"})
        await client.request("room.runs.count", {"id": "last"})  # after the notifies
        assert served == {"room-2": 40}
        assert set(counts.values()) == {1} and len(counts) == 81
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warnings == [
            "[c-1] server room-1 (room) is unreachable (nobody receives its requests): "
            "not chosen for 3s, then tried again"
        ]


async def test_a_user_rpc_by_route_goes_elsewhere_and_one_by_id_fails_at_once() -> None:
    counts: Counter[str] = Counter()
    async with cluster(rooms=2, room_setup=counting(counts)) as net:
        await kill(net, 0)
        connector = net.connectors[0]
        for i in range(20):
            answer = await connector.rpc("room.runsremote.count", {"id": f"u{i}"})
            assert answer == {"server_id": "room-2"}
        with pytest.raises(ServerUnreachable) as caught:
            await connector.rpc_to("room-1", "room.runsremote.count", {"id": "by-id"})
        error = caught.value
        assert isinstance(error, PitayaError) and error.code == "PIT-408"
        assert "server room-1 (room) is unreachable" in error.msg
        assert set(counts.values()) == {1} and len(counts) == 20


async def test_with_every_backend_gone_a_request_fails_at_once_and_is_not_repeated() -> None:
    counts: Counter[str] = Counter()
    async with cluster(rooms=2, room_setup=counting(counts)) as net:
        client = await net.client()
        await kill(net, 0)
        await kill(net, 1)
        for i in range(3):
            with pytest.raises(Exception) as caught:
                await client.request("room.runs.count", {"id": f"x{i}"})
            assert getattr(caught.value, "code", None) == "PIT-408"
        with pytest.raises(ServerUnreachable):
            await net.connectors[0].rpc("room.runsremote.count", {"id": "u"})
        assert not counts


async def test_a_backend_back_on_its_subject_is_chosen_again_after_its_probation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts: Counter[str] = Counter()
    seen: list[list[str]] = []  # the candidates of each choice, by id

    def in_turn(session: Session | None, route: str, servers: list[ServerInfo]) -> ServerInfo:
        """Round robin over the candidates by id: room-1 is chosen first (and refused), and
        both are chosen once room-1 is back, whatever the seed."""
        ordered = sorted(servers, key=lambda s: s.id)
        seen.append([s.id for s in ordered])
        return ordered[(len(seen) - 1) % len(ordered)]

    def setup(connector: App) -> None:
        connector.add_route("room", in_turn)

    caplog.set_level(logging.INFO, logger="actors.cluster.router")
    async with cluster(rooms=2, room_setup=counting(counts), connector_setup=setup) as net:
        client = await net.client()
        rpc = await kill(net, 0)
        assert (await client.request("room.runs.count", {"id": "a"}))["server_id"] == "room-2"
        assert (await client.request("room.runs.count", {"id": "b"}))["server_id"] == "room-2"
        # 'a': room-1 chosen and refused, then resent to room-2; 'b': room-1 on probation.
        assert seen == [["room-1", "room-2"], ["room-2"], ["room-2"]]
        assert rpc.me is not None and rpc._deliver is not None
        await rpc.start(rpc.me, rpc._deliver)  # it serves again
        router = net.connectors[0].cluster.router  # type: ignore[union-attr]
        assert set(router.probation) == {"room-1"}
        router.probation["room-1"] = router.clock()  # the probation is over
        served = Counter(
            [
                (await client.request("room.runs.count", {"id": f"c{i}"}))["server_id"]
                for i in range(60)
            ]
        )
        assert served == {"room-1": 30, "room-2": 30}
        assert router.probation == {}
        infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
        assert infos == ["[c-1] server room-1 (room) answers again: chosen again"]
        assert set(counts.values()) == {1} and len(counts) == 62


class Hangs(Handler):
    """``room.hangs.wait``: counts, then answers too late (a backend that took the request
    and died, or is stuck)."""

    service = "hangs"

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts

    @handler
    async def wait(self, session: Session, body: dict[str, Any]) -> dict[str, str]:
        self.counts[body["id"]] += 1
        await asyncio.sleep(0.2)
        return {}


async def test_a_timeout_is_never_sent_elsewhere() -> None:
    counts: Counter[str] = Counter()

    def setup(room: App) -> None:
        room.register(Hangs, counts)

    async with cluster(rooms=2, room_setup=setup, rpc_timeout=0.05) as net:
        for i in range(6):
            client = await net.client()  # a session each: one session's requests queue
            with pytest.raises(RequestError) as caught:
                await client.request("room.hangs.wait", {"id": f"t{i}"})
            assert caught.value.code == "PIT-408"
        assert counts == Counter({f"t{i}": 1 for i in range(6)})  # each ran once, where sent
        assert net.connectors[0].cluster.router.probation == {}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("details", "unreachable"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
            "Failed to connect to remote host: Connection refused",
            True,
        ),
        ("Stream removed (Socket closed)", False),  # the peer died mid-call: may have run it
        ("Socket closed", False),
    ],
)
def test_grpc_unavailable_is_unreachable_only_when_no_connection_was_made(
    details: str, unreachable: bool
) -> None:
    error = _pitaya_error(
        GrpcCallError(grpc.StatusCode.UNAVAILABLE, details, "127.0.0.1:1"), room_info()
    )
    assert isinstance(error, RpcTimeout) and error.code == "PIT-408"
    assert isinstance(error, ServerUnreachable) is unreachable
    assert "room-1" in error.msg


def room_info() -> ServerInfo:
    return ServerInfo(id="room-1", type="room", hostname="h")


def pinned_to_room_1(session: Session | None, route: str, servers: list[ServerInfo]) -> ServerInfo:
    """A router that pins every request to room-1 (a match lives there) and refuses the
    rest, as a game's router refuses a player who is in no match."""
    for server in servers:
        if server.id == "room-1":
            return server
    raise PitayaError("PIT-404", "your match's server is not in discovery")


@pytest.mark.parametrize(
    ("refusal", "code"),
    [(PitayaError("PIT-404", "in no match"), "PIT-404"), (RuntimeError("a bug"), "PIT-500")],
)
async def test_a_custom_router_that_refuses_another_server_answers_the_request(
    refusal: Exception, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Asked for another server after its choice proved unreachable, a custom router that
    raised left the request unanswered for good (its error escaped from the answer
    callback and was logged as the NATS pipe's): the client waited for its own timeout.
    The router declining is as if no other server were left: PIT-408, at once."""
    counts: Counter[str] = Counter()

    def pinned(session: Session | None, route: str, servers: list[ServerInfo]) -> ServerInfo:
        if any(s.id == "room-1" for s in servers):
            return pinned_to_room_1(session, route, servers)
        raise refusal

    def setup(connector: App) -> None:
        connector.add_route("room", pinned)

    async with cluster(rooms=2, room_setup=counting(counts), connector_setup=setup) as net:
        client = await net.client(request_timeout=2)
        await kill(net, 0)
        with pytest.raises(RequestError) as caught:  # room-1 chosen, and refused
            await client.request("room.runs.count", {"id": "a"})
        assert caught.value.code == "PIT-408"
        assert "server room-1 (room) is unreachable" in caught.value.msg
        with pytest.raises(RequestError) as caught:  # room-1 on probation: the router refuses
            await client.request("room.runs.count", {"id": "b"})
        assert caught.value.code == code
        assert not counts
        assert await client.request("connector.entry.me") is not None  # the session serves
    answered_by_the_pipe = [r for r in caplog.records if "answer function failed" in r.message]
    assert answered_by_the_pipe == []


async def test_a_user_rpc_whose_custom_router_refuses_another_server_fails_as_unreachable() -> None:
    counts: Counter[str] = Counter()

    def setup(connector: App) -> None:
        connector.add_route("room", pinned_to_room_1)

    async with cluster(rooms=2, room_setup=counting(counts), connector_setup=setup) as net:
        await kill(net, 0)
        with pytest.raises(ServerUnreachable):
            await net.connectors[0].rpc("room.runsremote.count", {"id": "u"})
        assert not counts

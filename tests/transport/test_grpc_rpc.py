"""The gRPC byte pipe on 127.0.0.1: Go Pitaya's protos.Pitaya service, calls, ordered
notifies, failures as status codes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import pytest

from transport.grpc_rpc import (
    KICK_USER,
    PUSH_TO_USER,
    SESSION_BIND_REMOTE,
    GrpcBindError,
    GrpcCallError,
    GrpcChannel,
    GrpcListener,
    GrpcRefused,
)


class Peer:
    """A listener that echoes calls (slowly for ``b"slow..."``) and records notifies."""

    def __init__(self) -> None:
        self.notifies: list[bytes] = []
        self.got = asyncio.Event()
        self.slow_calls: list[bytes] = []
        self.slow_call_arrived = asyncio.Event()
        self.listener = GrpcListener("127.0.0.1", 0, on_call=self.echo, on_notify=self.record)

    async def echo(self, data: bytes) -> bytes:
        if data.startswith(b"slow"):
            self.slow_calls.append(data)
            self.slow_call_arrived.set()
            await asyncio.sleep(0.5)
        return data[::-1]

    async def slow_call_reached(self, data: bytes) -> None:
        while data not in self.slow_calls:
            self.slow_call_arrived.clear()
            await asyncio.wait_for(self.slow_call_arrived.wait(), 5)

    def record(self, data: bytes) -> None:
        self.notifies.append(data)
        self.got.set()

    async def received(self, count: int) -> list[bytes]:
        while len(self.notifies) < count:
            self.got.clear()
            await asyncio.wait_for(self.got.wait(), 5)
        return self.notifies


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server = Peer()
    await server.listener.start()
    try:
        yield server
    finally:
        await server.listener.stop(None)


async def test_calls_and_notifies_in_order(peer: Peer) -> None:
    channel = GrpcChannel(f"127.0.0.1:{peer.listener.port}")
    assert await channel.call(b"abc", timeout=5) == b"cba"
    # Many calls at once (more than gRPC's default pending-call limit lets through).
    replies = await asyncio.gather(*(channel.call(b"%d" % i, timeout=10) for i in range(2000)))
    assert replies == [(b"%d" % i)[::-1] for i in range(2000)]
    for i in range(500):
        channel.notify(b"%d" % i)
    assert await peer.received(500) == [b"%d" % i for i in range(500)]
    await channel.close(wait_idle=1)


async def test_a_slow_peer_misses_the_deadline_and_close_waits_for_calls(peer: Peer) -> None:
    channel = GrpcChannel(f"127.0.0.1:{peer.listener.port}")
    with pytest.raises(GrpcCallError) as info:
        await channel.call(b"slow", timeout=0.1)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    pending = asyncio.ensure_future(channel.call(b"slow-2", timeout=5))
    await peer.slow_call_reached(b"slow-2")  # in flight: the peer is handling it
    assert not channel.idle
    await channel.close(wait_idle=5)  # returns once the call in flight is answered
    assert pending.done() and pending.result() == b"2-wols"


async def test_a_dead_peer_is_unavailable_and_a_restarted_one_is_reached_again() -> None:
    peer = Peer()
    port = await peer.listener.start()
    channel = GrpcChannel(f"127.0.0.1:{port}")
    channel.notify(b"before")
    await peer.received(1)
    await peer.listener.stop(None)
    with pytest.raises(GrpcCallError) as info:
        await channel.call(b"x", timeout=2)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    again = Peer()
    again.listener.port = port
    await again.listener.start()
    try:

        async def reached() -> None:
            while True:
                try:
                    await channel.call(b"x", timeout=1)
                    return
                except GrpcCallError:
                    await asyncio.sleep(0.1)  # the channel's reconnect backoff is short

        await asyncio.wait_for(reached(), 10)
        channel.notify(b"after")  # on a new stream: the old one ended with the old peer
        assert await again.received(1) == [b"after"]
    finally:
        await channel.close()
        await again.listener.stop(None)


async def test_a_taken_port_is_an_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = GrpcListener(
            "127.0.0.1", taken.getsockname()[1], on_call=Peer().echo, on_notify=print
        )
        with pytest.raises(GrpcBindError, match="cannot listen"):
            await listener.start()
        assert not listener.serving


async def test_the_service_is_go_pitayas_protos_pitaya() -> None:
    """A client generated from pitaya.proto (as Go Pitaya's is) calls our listener: the
    service and method names are Go's, the bytes go through untouched."""
    from transport.protos import pitaya_pb2 as pb
    from transport.protos import pitaya_pb2_grpc

    seen: list[tuple[str, bytes]] = []

    async def answer(data: bytes) -> bytes:
        seen.append(("Call", data))
        return bytes(pb.Response(data=b"pong").SerializeToString())

    async def method(name: str, data: bytes) -> bytes:
        seen.append((name, data))
        if name == KICK_USER:
            return bytes(pb.KickAnswer(kicked=True).SerializeToString())
        return bytes(pb.Response(data=b"ack").SerializeToString())

    listener = GrpcListener("127.0.0.1", 0, on_call=answer, on_notify=print, on_method=method)
    port = await listener.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pitaya_pb2_grpc.PitayaStub(channel)
            request = pb.Request(msg=pb.Msg(route="room.room.join"))
            assert (await stub.Call(request)).data == b"pong"
            push = pb.Push(route="onMsg", uid="ann", data=b"{}")
            assert (await stub.PushToUser(push)).data == b"ack"
            assert (await stub.KickUser(pb.KickMsg(userId="ann"))).kicked is True
            bind = pb.BindMsg(uid="ann", fid="c-1")
            assert (await stub.SessionBindRemote(bind)).data == b"ack"
    finally:
        await listener.stop(None)
    assert seen == [
        ("Call", request.SerializeToString()),
        (PUSH_TO_USER, push.SerializeToString()),
        (KICK_USER, pb.KickMsg(userId="ann").SerializeToString()),
        (SESSION_BIND_REMOTE, bind.SerializeToString()),
    ]


async def test_a_refused_call_is_a_grpc_error_as_gos() -> None:
    async def method(name: str, data: bytes) -> bytes:
        raise GrpcRefused("session not found")

    listener = GrpcListener("127.0.0.1", 0, on_call=Peer().echo, on_notify=print, on_method=method)
    port = await listener.start()
    channel = GrpcChannel(f"127.0.0.1:{port}")
    try:
        with pytest.raises(GrpcCallError) as info:
            await channel.invoke(PUSH_TO_USER, b"", timeout=5)
        assert (info.value.code, info.value.details) == (
            grpc.StatusCode.UNKNOWN,
            "session not found",
        )
    finally:
        await channel.close()
        await listener.stop(None)


async def test_a_listener_without_user_methods_answers_unimplemented(peer: Peer) -> None:
    channel = GrpcChannel(f"127.0.0.1:{peer.listener.port}")
    try:
        with pytest.raises(GrpcCallError) as info:
            await channel.invoke(KICK_USER, b"", timeout=5)
        assert info.value.code == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await channel.close()


async def test_notifies_to_a_peer_that_takes_nothing_are_bounded_and_then_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that accepts the connection and then reads nothing (hung, or cut off without
    a reset) held every notify queued for it, without bound, until it left discovery."""
    import transport.grpc_rpc as module
    from tests.reliability.support import until

    monkeypatch.setattr(module, "MAX_QUEUED_NOTIFIES", 5, raising=False)
    monkeypatch.setattr(module, "NOTIFY_WRITE_TIMEOUT", 0.3, raising=False)
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepted; never a byte of HTTP/2 back

    hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    channel = GrpcChannel(f"127.0.0.1:{port}")
    try:
        for n in range(8):
            channel.notify(b"n%d" % n)
        # Five wait (none is written before this task yields): the three past them are
        # lost at once.
        assert channel.lost_notifies == 3
        # Then the write times out, and what waited behind it is given up too.
        await until(lambda: channel.lost_notifies == 8 and channel.idle)
    finally:
        await channel.close()
        for writer in held:
            writer.close()
        hole.close()

"""Every configurable limit, hit through a running App over real sockets.

Each test checks three things: the offender gets a clear answer (an error response or a
close), the limit is counted, and a well-behaved client on the same server is unaffected.
(The handshake timeout, heartbeat timeout and ``max_pending_requests`` are hit in
``tests/actors/test_app.py``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest

from actors.config import Config
from actors.metrics.names import EXCEEDED_RATE_LIMITING
from actors.ratelimit import TokenBucket
from actors.session import SendFrame
from actors.testing import TestServer, serve
from tests.actors.metrics.recorder import Recorder
from tests.rawclient import RawClient
from tests.reliability.support import make_app, probe, until
from transport.client import Client, RequestError, RequestTimeout
from transport.errors import ConnectionClosed
from transport.message import Message, MessageType, decode_message, encode_message
from transport.packet import PacketType, encode_packet


async def session_id(client: Client) -> int:
    return int((await client.request("probe.me"))["id"])


async def assert_serving(server: TestServer, client: Client) -> None:
    assert await client.request("echo.echo", {"still": "here"}) == {"still": "here"}
    assert not client.closed


# -- packet and route sizes -----------------------------------------------------------------


async def test_oversized_packet_closes_only_that_connection(websocket: bool) -> None:
    app = make_app(max_packet_size=1024)
    async with serve(app) as server:
        good = await server.connect(websocket=websocket)
        bad = await server.connect(websocket=websocket, use_route_dict=False)
        # flag + id + route length + "echo.echo" = 12 bytes, the JSON string 2 more.
        fits = "a" * (1024 - 12 - 2)
        body = json.dumps(fits).encode()
        assert len(encode_message(Message(MessageType.REQUEST, 1, "echo.echo", body))) == 1024
        assert await bad.request("echo.echo", fits) == fits  # exactly at the limit: served
        with pytest.raises(ConnectionClosed):
            await bad.request("echo.echo", fits + "a")
        await bad.wait_closed(timeout=5)
        await until(lambda: len(app.sessions) == 1)
        await assert_serving(server, good)


async def test_huge_length_field_is_refused_before_the_body_arrives() -> None:
    async with serve(make_app(max_packet_size=1024)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake()
        # Only the header of a 16 MiB packet: the server must not wait for the body.
        await raw.send(bytes([PacketType.DATA, 0xFF, 0xFF, 0xFF]))
        assert all(p.type is not PacketType.DATA for p in await raw.read_until_closed(5))
        await raw.close()


async def test_too_long_route_closes_the_connection(websocket: bool) -> None:
    app = make_app(max_route_length=16)
    async with serve(app) as server:
        good = await server.connect(websocket=websocket)
        bad = await server.connect(websocket=websocket, use_route_dict=False)
        with pytest.raises(RequestError) as info:
            await bad.request("x" * 16)  # at the limit: routed (and not found)
        assert info.value.code == "PIT-404"
        with pytest.raises(ConnectionClosed):
            await bad.request("x" * 17)
        await bad.wait_closed(timeout=5)
        await until(lambda: len(app.sessions) == 1)
        await assert_serving(server, good)


# -- connections ----------------------------------------------------------------------------


async def test_max_connections_refuses_at_accept_and_counts(websocket: bool) -> None:
    app = make_app(max_connections=2)
    async with serve(app) as server:
        first = await server.connect(websocket=websocket)
        second = await server.connect(websocket=websocket)
        with pytest.raises((ConnectionClosed, OSError)):
            await server.connect(websocket=websocket)
        assert app.stats.refused_connections == 1
        assert app.connection_count == 2
        await assert_serving(server, second)
        await first.close()
        await until(lambda: app.connection_count == 1)
        third = await server.connect(websocket=websocket)  # room again
        await assert_serving(server, third)
        assert app.stats.refused_connections == 1


async def test_slow_reader_is_disconnected_counted_and_others_unaffected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="transport")
    app = make_app(max_write_buffer=64 * 1024)
    async with serve(app) as server:
        good = await server.connect()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up quickly
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, app.address("tcp"))
        reader, writer = await asyncio.open_connection(sock=sock)
        slow = RawClient(reader, writer)
        await slow.handshake()
        me = await slow.request("probe.me", b"")
        slow_session = app.sessions.get(json.loads(me.data)["id"])
        assert slow_session is not None
        frame = SendFrame(app.encode_push_packet("onFlood", b'"' + b"x" * 65536 + b'"'))

        async def flood() -> None:
            # One 64 KiB push per loop iteration until the server gives the reader up.
            while app.sessions.get(slow_session.id) is not None:
                slow_session.ref.tell(frame)
                await asyncio.sleep(0)

        flooding = asyncio.ensure_future(flood())
        await assert_serving(server, good)  # served while the flood is on
        await asyncio.wait_for(flooding, 10)
        assert sum(a.stats.slow_reader_disconnects for a in app.acceptors) == 1
        await assert_serving(server, good)
        await slow.close()
    # Several servers may share one log: the line says which one gave the reader up.
    [line] = [r for r in caplog.records if "does not read" in r.getMessage()]
    assert getattr(line, "server_id", None) == app.server_id
    assert line.getMessage().startswith(f"[{app.server_id}] tcp peer ")


async def test_a_websocket_peer_s_bad_request_is_logged_with_its_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="transport.websocket")
    app = make_app()
    async with serve(app):
        reader, writer = await asyncio.open_connection(*app.address("ws"))
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await reader.read()  # the server answers 400 and closes
        writer.close()
    [line] = [r for r in caplog.records if "invalid HTTP request" in r.getMessage()]
    assert getattr(line, "server_id", None) == app.server_id


# -- unfinished packets, all clients together ----------------------------------------------


def echo_packet(size: int, message_id: int = 1) -> bytes:
    """A whole DATA packet of an ``echo.echo`` request whose body is ``size`` bytes."""
    body = encode_message(Message(MessageType.REQUEST, message_id, "echo.echo", b'""'))
    padding = size - len(body)
    body = encode_message(
        Message(MessageType.REQUEST, message_id, "echo.echo", json.dumps("a" * padding).encode())
    )
    assert len(body) == size
    return encode_packet(PacketType.DATA, body)


async def test_unfinished_packets_past_the_server_budget_drop_the_largest_holder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """300 clients each holding most of a 1 MiB packet held 300 MB: ``max_partial_bytes``
    bounds all of them together. Over it the client holding the most goes (here not the one
    whose bytes crossed the limit); the others, and their packets, are kept."""
    app = make_app(max_packet_size=49_000, max_partial_bytes=100_000)
    async with serve(app) as server:
        good = await server.connect()
        clients = []
        for _ in range(3):
            raw = await RawClient.connect(*app.address("tcp"))
            await raw.handshake()
            clients.append(raw)
        hoarder, finisher, third = clients
        hoarded, finished = echo_packet(45_000), echo_packet(45_000, message_id=99)
        await hoarder.send(hoarded[:40_000])
        await finisher.send(finished[:20_000])
        await third.send(echo_packet(30_000)[:30_000])
        await until(lambda: app.partial_budget.held == 90_000)
        with caplog.at_level(logging.WARNING, logger="actors.app"):
            await finisher.send(finished[20_000:35_000])  # 105,000 held: over
            assert await hoarder.read_until_closed() == []
        assert app.partial_budget.dropped == 1
        await until(lambda: app.partial_budget.held == 65_000)
        (line,) = [r.getMessage() for r in caplog.records if "max_partial_bytes" in r.getMessage()]
        assert "over max_partial_bytes (100000)" in line
        assert "which held 40000" in line
        await finisher.send(finished[35_000:])
        echoed = decode_message((await finisher.read_packet()).body)
        assert (echoed.id, echoed.data) == (99, decode_message(finished[4:]).data)
        answer = await finisher.request("echo.echo", b'"after"')
        assert answer.data == b'"after"'
        await until(lambda: app.partial_budget.held == 30_000)
        await assert_serving(server, good)
        await third.close()
        await finisher.close()
        await until(lambda: app.partial_budget.held == 0)


# -- mailboxes ------------------------------------------------------------------------------


async def test_session_mailbox_limit_from_config_disconnects_and_counts() -> None:
    app = make_app(mailbox_limits={"SessionActor": 8})
    async with serve(app) as server:
        good = await server.connect()
        victim = await server.connect()
        session = app.sessions.get(await session_id(victim))
        assert session is not None
        frame = SendFrame(app.encode_push_packet("onSpam", b"1"))
        for _ in range(20):  # all in one go: nothing drains in between
            session.ref.tell(frame)
        assert app.system.dropped["SessionActor"] == 12
        assert app.stats.mailbox_overflows == 1
        await victim.wait_closed(timeout=5)
        # The teardown got through the full mailbox: nothing leaks.
        await until(lambda: len(app.sessions) == 1 and app.connection_count == 1)
        await assert_serving(server, good)


async def test_server_limit_on_running_handlers_answers_429_and_recovers() -> None:
    app = make_app(max_concurrent_handlers=2)
    async with serve(app) as server:
        holders = [await server.connect() for _ in range(2)]
        held = [asyncio.ensure_future(c.request("probe.hold")) for c in holders]
        await until(lambda: app.invoker.running == 2)
        late = await server.connect()
        with pytest.raises(RequestError) as info:
            await late.request("probe.hold")
        assert info.value.code == "PIT-429"
        # A synchronous route never waits, so it is served even at the limit.
        assert await late.request("probe.me") == {"id": await session_id(late)}
        probe(app).release.set()
        assert [await asyncio.wait_for(h, 5) for h in held] == [{"held": "done"}] * 2
        assert app.invoker.running == 0
        assert await late.request("probe.hold") == {"held": "done"}


# -- rate limiting --------------------------------------------------------------------------


async def test_rate_limit_drops_and_counts_but_ignores_heartbeats() -> None:
    recorder = Recorder()
    app = make_app(
        rate_limit_enabled=True,
        rate_limit_packets=5,
        rate_limit_interval=60.0,  # no refill to speak of during the test
        heartbeat_interval=0.02,
    )
    app.add_metrics_reporter(recorder)
    async with serve(app) as server:
        client = await server.connect(request_timeout=0.5)
        # The client heartbeats every 20 ms: well over 5 packets, none of them counted.
        await until(lambda: client.heartbeats_received >= 10)
        replies = await asyncio.gather(
            *(client.request("echo.echo", i) for i in range(8)), return_exceptions=True
        )
        assert replies[:5] == [0, 1, 2, 3, 4]
        assert all(isinstance(r, RequestTimeout) for r in replies[5:])  # dropped, like Pitaya
        assert app.stats.rate_limited == 3
        counted = recorder.find(lambda c: c.metric == EXCEEDED_RATE_LIMITING)
        assert sum(c.value for c in counted) == 3
        other = await server.connect()  # the limit is per connection
        await assert_serving(server, other)


async def test_rate_limit_error_action_answers_pit_429(websocket: bool) -> None:
    app = make_app(
        rate_limit_enabled=True,
        rate_limit_packets=3,
        rate_limit_interval=60.0,
        rate_limit_action="error",
    )
    async with serve(app) as server:
        client = await server.connect(websocket=websocket)
        await client.notify("echo.count", {})  # a notify spends a token too
        assert await client.request("echo.echo", 1) == 1
        assert await client.request("echo.echo", 2) == 2
        with pytest.raises(RequestError) as info:
            await client.request("echo.echo", 3)
        assert (info.value.code, info.value.msg) == ("PIT-429", "rate limit exceeded")
        await client.notify("echo.count", {})  # over the limit: dropped, counted
        await until(lambda: app.stats.rate_limited == 2)
        assert not client.closed


async def test_rate_limit_refills_over_time() -> None:
    app = make_app(
        rate_limit_enabled=True,
        rate_limit_packets=2,
        rate_limit_interval=0.2,
        rate_limit_action="error",
    )
    async with serve(app) as server:
        client = await server.connect()
        results = await asyncio.gather(
            *(client.request("echo.echo", i) for i in range(3)), return_exceptions=True
        )
        assert results[:2] == [0, 1] and isinstance(results[2], RequestError)

        async def served() -> Any:
            while True:
                try:
                    return await client.request("echo.echo", "again")
                except RequestError:
                    await asyncio.sleep(0.02)

        assert await asyncio.wait_for(served(), 5) == "again"


def test_token_bucket_burst_then_steady_rate() -> None:
    bucket = TokenBucket(3, 1.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.2)  # 0.6 of a token
    assert bucket.take(100.34)  # 1.02 tokens
    assert not bucket.take(100.34)
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]  # capped at 3


# -- configuration --------------------------------------------------------------------------


def test_limits_from_the_environment() -> None:
    config = Config.from_env(
        {
            "PITAYA_MAILBOX_LIMITS": "SessionActor=100, Room=0",
            "PITAYA_RATE_LIMIT_ENABLED": "yes",
            "PITAYA_RATE_LIMIT_PACKETS": "50",
            "PITAYA_RATE_LIMIT_ACTION": "error",
        }
    )
    assert config.mailbox_limits == {"SessionActor": 100, "Room": 0}
    assert (config.rate_limit_enabled, config.rate_limit_packets) == (True, 50)
    assert config.rate_limit_action == "error"
    with pytest.raises(ValueError, match="PITAYA_MAILBOX_LIMITS"):
        Config.from_env({"PITAYA_MAILBOX_LIMITS": "SessionActor"})


async def test_bad_rate_limit_action_fails_the_start() -> None:
    app = make_app(rate_limit_action="block")
    with pytest.raises(ValueError, match="rate_limit_action"):
        await app.start()
    await app.stop()


async def test_mailbox_limit_zero_removes_the_class_default() -> None:
    from actors.sessions.actor import SessionActor

    assert make_app().system.mailbox_limit(SessionActor) == 4096
    assert make_app(mailbox_limits={"SessionActor": 0}).system.mailbox_limit(SessionActor) is None


async def test_unfinished_websocket_upgrade_times_out() -> None:
    async with serve(make_app(handshake_timeout=0.1)) as server:
        reader, writer = await asyncio.open_connection(*server.app.address("ws"))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert server.app.connection_count == 0

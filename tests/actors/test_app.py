"""A standalone server through real sockets, TCP and WebSocket, with the Python client."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import pytest

from actors.app import App
from actors.errors import PitayaError
from actors.handler import Handler, Remote, handler
from actors.session import Session
from actors.testing import serve
from samples.echo.server import Echo
from tests.rawclient import RawClient
from tests.reliability.support import until
from transport.client import Client, HandshakeRejected, RequestError
from transport.errors import ConnectionClosed
from transport.handshake import HandshakeRequest
from transport.packet import PacketType


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float
    tag: str


class Game(Handler):
    service = "game"

    def __init__(self) -> None:
        self.order: list[str] = []
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    @handler
    def boom(self, session: Session) -> dict[str, str]:
        raise RuntimeError("the dragon ate it")

    @handler
    def forbidden(self, session: Session) -> dict[str, str]:
        raise PitayaError("PIT-403", "not your turn", {"turn": "b"})

    @handler
    def nothing(self, session: Session) -> dict[str, str]:
        return None  # type: ignore[return-value]

    @handler
    def only_notify(self, session: Session, body: Any) -> None:
        pass

    @handler
    async def delayed(self, session: Session, body: Delay) -> dict[str, str]:
        await asyncio.sleep(body.seconds)
        self.order.append(body.tag)
        return {"tag": body.tag}

    @handler
    async def hold(self, session: Session) -> dict[str, str]:
        self.holding.set()
        await self.release.wait()
        return {"held": "done"}

    @handler
    def kick_me(self, session: Session) -> dict[str, str]:
        session.kick()
        return {"kicked": "yes"}


def make_app(**options: Any) -> App:
    app = App(server_type="test", **options)
    app.register(Echo)
    app.register(Game)
    return app


async def test_request_response_over_tcp_and_websocket(websocket: bool) -> None:
    async with serve(make_app()) as server:
        client = await server.connect(websocket=websocket)
        assert await client.request("echo.echo", {"a": [1, 2]}) == {"a": [1, 2]}
        assert await client.request("echo.hello", {"name": "ann"}) == {"greeting": "hello, ann"}
        # the server-type-prefixed form of the same route
        assert await client.request("test.echo.echo", "x") == "x"


async def test_notify_has_no_response_and_handler_can_push(websocket: bool) -> None:
    async with serve(make_app()) as server:
        client = await server.connect(websocket=websocket)
        pushes = client.pushes()
        await client.notify("echo.count", {})
        push = await asyncio.wait_for(anext(pushes), 5)
        assert (push.route, push.body) == ("onCount", {"total": 1})
        assert await client.request("echo.total") == {"total": 1}


async def test_unknown_route_is_pit_404(websocket: bool) -> None:
    async with serve(make_app()) as server:
        client = await server.connect(websocket=websocket)
        with pytest.raises(RequestError) as info:
            await client.request("nope.nothing", {})
        assert info.value.code == "PIT-404"
        assert info.value.msg == "pitaya/handler: nope.nothing not found"  # as Go's handler
        assert info.value.metadata == {"route": "nope.nothing"}
        with pytest.raises(RequestError) as info:
            await client.request("other.echo.echo", {})  # another server type's route
        assert info.value.code == "PIT-404"
        assert info.value.msg == "pitaya/handler: other.echo.echo not found"


async def test_bad_payloads_are_pit_400_and_session_stays_usable() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        with pytest.raises(RequestError) as info:
            await client.request("echo.hello", {"nom": "x"})
        assert info.value.code == "PIT-400"
        with pytest.raises(RequestError) as info:
            await client.request("echo.hello", ["not", "an", "object"])
        assert info.value.code == "PIT-400"
        with pytest.raises(RequestError) as info:
            await client.request("echo.hello", {"name": 3})
        assert info.value.code == "PIT-400"
        raw = await client.request_raw("echo.hello", b"{not json")
        assert raw.error
        assert await client.request("echo.echo", 1) == 1


async def test_handler_errors_map_to_pitaya_codes() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        with pytest.raises(RequestError) as info:
            await client.request("game.boom")
        assert info.value.code == "PIT-500"
        assert "dragon" in info.value.msg
        with pytest.raises(RequestError) as info:
            await client.request("game.forbidden")
        assert (info.value.code, info.value.msg, info.value.metadata) == (
            "PIT-403",
            "not your turn",
            {"turn": "b"},
        )
        with pytest.raises(RequestError) as info:
            await client.request("game.nothing")
        assert (info.value.code, info.value.msg) == ("PIT-000", "reply must not be null")
        with pytest.raises(RequestError) as info:
            await client.request("game.only_notify", {})
        assert info.value.code == "PIT-400"
        assert await client.request("echo.echo", "still here") == "still here"


async def test_one_clients_messages_are_handled_in_order() -> None:
    app = make_app()
    async with serve(app) as server:
        client = await server.connect()
        replies = await asyncio.gather(
            client.request("game.delayed", {"seconds": 0.03, "tag": "first"}),
            client.request("game.delayed", {"seconds": 0.0, "tag": "second"}),
            client.request("game.delayed", {"seconds": 0.01, "tag": "third"}),
        )
        assert [r["tag"] for r in replies] == ["first", "second", "third"]
        game = app.handler_instance("game")
        assert isinstance(game, Game)
        assert game.order == ["first", "second", "third"]


async def test_hundred_concurrent_clients(websocket: bool) -> None:
    async with serve(make_app()) as server:
        clients = await asyncio.gather(*(server.connect(websocket=websocket) for _ in range(100)))

        async def talk(i: int, client: Client) -> list[Any]:
            return [await client.request("echo.echo", {"c": i, "n": n}) for n in range(5)]

        results = await asyncio.gather(*(talk(i, c) for i, c in enumerate(clients)))
        for i, replies in enumerate(results):
            assert replies == [{"c": i, "n": n} for n in range(5)]
        assert len(server.app.sessions) == 100


async def test_packet_sent_one_byte_at_a_time() -> None:
    async with serve(make_app()) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake(byte_by_byte=True)
        response = await raw.request("echo.echo", b'{"slow":true}', byte_by_byte=True)
        assert response.data == b'{"slow":true}'
        await raw.close()


async def test_heartbeat_timeout_closes_a_silent_client() -> None:
    async with serve(make_app(heartbeat_interval=0.05)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        response = await raw.handshake()
        assert response.heartbeat == 0.05
        # The server sends heartbeats, the client never answers: closed after 2 x interval.
        packets = await raw.read_until_closed(timeout=5)
        assert PacketType.HEARTBEAT in [p.type for p in packets]
        await asyncio.wait_for(server.app.connections.zero.wait(), 5)
        assert len(server.app.sessions) == 0


async def test_a_client_trickling_a_packet_is_silent_for_the_heartbeat() -> None:
    """Only whole packets keep a client alive (Pitaya's rule): a client sending the rest of
    a large packet a byte at a time would otherwise hold its connection, and the part of the
    packet it sent, for ever."""
    async with serve(make_app(heartbeat_interval=0.05)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake()
        raw.writer.write(bytes([PacketType.DATA]) + (1000).to_bytes(3))  # 1,000 bytes announced

        async def trickle() -> None:
            while True:  # a byte every fifth of the interval: well within any byte timeout
                raw.writer.write(b"x")
                await raw.writer.drain()
                await asyncio.sleep(0.01)

        trickling = asyncio.create_task(trickle())
        try:
            with contextlib.suppress(ConnectionError):  # reset: it was writing as it closed
                await raw.read_until_closed(timeout=5)
            await asyncio.wait_for(server.app.connections.zero.wait(), 5)
        finally:
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await trickling
        assert len(server.app.sessions) == 0


async def test_heartbeating_client_stays_connected() -> None:
    async with serve(make_app(heartbeat_interval=0.05)) as server:
        client = await server.connect()
        # Let time pass (this is the property under test, not synchronisation): well over
        # the 2 x interval timeout, the client answers heartbeats and stays connected.
        await asyncio.sleep(0.4)
        assert client.heartbeats_received >= 3
        assert not client.closed
        assert await client.request("echo.echo", "alive") == "alive"


async def test_data_before_handshake_ack_closes_the_connection() -> None:
    async with serve(make_app()) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake(ack=False)
        await raw.send_request("echo.echo", b"1")
        packets = await raw.read_until_closed(timeout=5)
        assert all(p.type is not PacketType.DATA for p in packets)


async def test_handshake_timeout_closes_the_connection() -> None:
    async with serve(make_app(handshake_timeout=0.05)) as server:
        raw = await RawClient.connect(*server.app.address("tcp"))
        assert await raw.read_until_closed(timeout=5) == []
        assert raw.writer.is_closing()  # ours too, not left to the collector


async def test_kick_sends_a_kick_packet_then_closes(websocket: bool) -> None:
    async with serve(make_app()) as server:
        client = await server.connect(websocket=websocket)
        # The kick is ordered before the response, so the request sees the connection end.
        with pytest.raises(ConnectionClosed):
            await client.request("game.kick_me")
        await client.wait_closed(timeout=5)
        assert client.kicked


async def test_handshake_validator_rejects_with_400() -> None:
    app = make_app()

    def require_version(handshake: HandshakeRequest) -> None:
        if handshake.client_version < "2":
            raise ValueError("client too old, update to 2.x")

    app.add_handshake_validator("version", require_version)
    async with serve(app) as server:
        with pytest.raises(HandshakeRejected) as info:
            await server.connect(handshake_sys={"clientVersion": "1.0"})
        assert info.value.code == 400
        client = await server.connect(handshake_sys={"clientVersion": "2.1"})
        assert await client.request("echo.echo", 2) == 2


async def test_too_many_pending_requests_get_an_error() -> None:
    app = make_app(max_pending_requests=2)
    async with serve(app) as server:
        client = await server.connect()
        held = asyncio.ensure_future(client.request("game.hold"))
        queued = [asyncio.ensure_future(client.request("echo.echo", i)) for i in range(3)]
        done, _ = await asyncio.wait(queued, timeout=5, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if t.exception() is not None]
        assert len(failed) == 1
        error = failed[0].exception()
        assert isinstance(error, RequestError) and error.code == "PIT-429"
        game = app.handler_instance("game")
        assert isinstance(game, Game)
        game.release.set()
        assert await asyncio.wait_for(held, 5) == {"held": "done"}
        assert sorted(await asyncio.gather(*(t for t in queued if t not in failed))) == [0, 1]


async def holding(app: App, client: Client) -> tuple[asyncio.Future[Any], Game]:
    """``client``'s ``game.hold`` request, once its handler holds (until ``release``)."""
    held = asyncio.ensure_future(client.request("game.hold"))
    game = app.handler_instance("game")
    assert isinstance(game, Game)
    await asyncio.wait_for(game.holding.wait(), 5)
    return held, game


async def test_graceful_stop_finishes_in_flight_requests_then_kicks() -> None:
    app = make_app()
    async with serve(app) as server:
        client = await server.connect()
        held, game = await holding(app, client)
        stopping = asyncio.ensure_future(app.stop())
        game.release.set()
        assert await asyncio.wait_for(held, 5) == {"held": "done"}
        await asyncio.wait_for(stopping, 10)
        await client.wait_closed(timeout=5)
        assert client.kicked
    with pytest.raises((ConnectionError, OSError)):
        await Client.connect(*app.address("tcp"), timeout=1)


async def test_a_request_cancelled_by_the_stop_is_answered_before_the_kick() -> None:
    """Past shutdown_timeout the handler is cancelled and answered PIT-500: the kick was
    sent at once, before that answer, so the client never had it."""
    app = make_app(shutdown_timeout=0.2)
    async with serve(app) as server:
        client = await server.connect()
        held, _ = await holding(app, client)  # never released
        await asyncio.wait_for(app.stop(), 10)
        with pytest.raises(RequestError) as caught:
            await asyncio.wait_for(held, 5)
        assert (caught.value.code, caught.value.msg) == (
            "PIT-500",
            "handler cancelled (server stopping)",
        )
        await client.wait_closed(timeout=5)
        assert client.kicked


async def test_a_stop_lets_close_callbacks_finish_within_the_shutdown_timeout() -> None:
    """A close callback saving a player's state took longer than a fixed 2 s: the actor
    system's shutdown cancelled it, and the save was lost with the server's stop."""
    app = make_app(shutdown_timeout=10)
    saved: list[int] = []

    async def save(session: Session) -> None:
        await asyncio.sleep(2.5)  # a slow database, not a synchronisation
        saved.append(session.id)

    app.on_session_close(save)
    async with serve(app) as server:
        client = await server.connect()
        assert await client.request("echo.echo", {"x": 1}) == {"x": 1}
        await asyncio.wait_for(app.stop(), 15)
        assert saved == [1]
        await client.wait_closed(timeout=5)


async def test_a_stop_waits_for_the_requests_queued_behind_a_running_one() -> None:
    """Received before the stop, they waited for their turn (the client's order): the stop
    counted only the running one and kicked the client with them unanswered."""
    app = make_app(shutdown_timeout=30)
    async with serve(app) as server:
        client = await server.connect()
        held, game = await holding(app, client)
        queued = [
            asyncio.ensure_future(client.request("game.delayed", {"seconds": 0, "tag": str(i)}))
            for i in range(3)
        ]
        [session] = app.sessions
        actor = session.ref._cell.actor
        await until(lambda: len(actor.pending) == 3)
        stopping = asyncio.ensure_future(app.stop())
        await until(lambda: not actor.admitting)
        game.release.set()
        assert await asyncio.wait_for(held, 5) == {"held": "done"}
        assert await asyncio.wait_for(asyncio.gather(*queued), 5) == [
            {"tag": str(i)} for i in range(3)
        ]
        await asyncio.wait_for(stopping, 10)
        assert app.requests_in_flight.count == 0


async def test_a_client_gone_with_requests_waiting_leaves_none_counted_in_flight() -> None:
    app = make_app()
    async with serve(app) as server:
        client = await server.connect()
        held, game = await holding(app, client)
        sent = [held]
        for i in range(2):
            body = {"seconds": 0, "tag": str(i)}
            sent.append(asyncio.ensure_future(client.request("game.delayed", body)))
        [session] = app.sessions
        actor = session.ref._cell.actor
        await until(lambda: len(actor.pending) == 2)
        await client.close()
        await until(lambda: app.connection_count == 0)
        game.release.set()
        await until(lambda: app.requests_in_flight.count == 0)  # else a stop waits it out
        await asyncio.gather(*sent, return_exceptions=True)  # closed: none answered


async def test_once_stopping_new_requests_are_refused_so_the_stop_need_not_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that kept sending used to keep the server's count of requests in flight
    above zero until shutdown_timeout, and have its handlers cancelled halfway."""
    app = make_app(shutdown_timeout=30)
    async with serve(app) as server:
        holder, other = await server.connect(), await server.connect()
        held, game = await holding(app, holder)
        stopping = asyncio.ensure_future(app.stop())
        actors = [session.ref._cell.actor for session in app.sessions]
        await until(lambda: not any(actor.admitting for actor in actors))
        with pytest.raises(RequestError) as refused:
            await other.request("echo.echo", 1)
        assert (refused.value.code, refused.value.msg) == ("PIT-500", "server shutting down")
        await other.notify("echo.echo", 2)  # dropped, counted
        await until(lambda: app.stats.dropped_notifies == 1)
        game.release.set()
        assert await asyncio.wait_for(held, 5) == {"held": "done"}
        await asyncio.wait_for(stopping, 10)
    assert not [m for m in caplog.messages if "still in flight" in m]


async def test_a_stop_by_code_ends_serve_forever_too() -> None:
    """app.stop() from a handler, a module or a test stopped the server and left
    serve_forever (App.run's loop) waiting for a signal that would never come."""
    app = make_app()
    app.listen_tcp("127.0.0.1", 0)
    serving = asyncio.ensure_future(app.serve_forever())
    await until(app.ready_now)
    await app.stop()
    await asyncio.wait_for(serving, 5)


async def test_a_stop_by_code_skips_the_drain_and_serve_forever_waits_for_it() -> None:
    app = make_app(drain_sessions=True, drain_timeout=60, shutdown_timeout=30)
    app.listen_tcp("127.0.0.1", 0)
    serving = asyncio.ensure_future(app.serve_forever())
    await until(app.ready_now)
    client = await Client.connect(*app.address("tcp"))
    held, game = await holding(app, client)
    stopping = asyncio.ensure_future(app.stop())
    await until(lambda: app._lifecycle.stopping)
    await asyncio.sleep(0.05)
    assert not serving.done()  # the stop under way holds it
    assert not app._lifecycle.draining  # connected clients are not waited for
    game.release.set()
    assert await asyncio.wait_for(held, 5) == {"held": "done"}
    await asyncio.wait_for(stopping, 10)
    await asyncio.wait_for(serving, 5)


async def test_request_on_a_closed_client_raises() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        await client.close()
        with pytest.raises(ConnectionClosed):
            await client.request("echo.echo", 1)


async def test_order_holds_across_handler_actors_while_pipelining_within_one() -> None:
    app = make_app()
    async with serve(app) as server:
        client = await server.connect()
        done: list[str] = []

        async def call(route: str, body: Any, tag: str) -> None:
            await client.request(route, body)
            done.append(tag)

        # Two messages for the slow game actor, then one for the echo actor: the echo must
        # wait for both (another actor), although it would be answered at once.
        await asyncio.gather(
            call("game.delayed", {"seconds": 0.05, "tag": "a"}, "slow-1"),
            call("game.delayed", {"seconds": 0.0, "tag": "b"}, "slow-2"),
            call("echo.echo", "x", "echo"),
        )
        assert done == ["slow-1", "slow-2", "echo"]


class Scores(Remote):
    @handler
    def top(self, session: Session) -> list[str]:
        return []


async def test_handler_ref_and_instance_name_the_serving_handler_or_remote() -> None:
    app = App(server_type="chat")
    app.register(Game)
    app.register_remote(Scores)
    with pytest.raises(KeyError, match="no service 'game' yet: handlers and remotes are spawned"):
        app.handler_instance("game")
    with pytest.raises(KeyError, match="no service 'game' yet"):
        app.handler_ref("game")
    async with serve(app):
        game = app.handler_instance("game")
        assert isinstance(game, Game)
        assert isinstance(app.handler_instance("scores"), Scores)
        assert app.handler_ref("game") == game.ref
        with pytest.warns(DeprecationWarning, match="handler_ref"):
            assert app.handler("game") == game.ref
        with pytest.raises(KeyError, match=r"no handler or remote serves 'nope' here \(served: "):
            app.handler_instance("nope")
        with pytest.raises(KeyError, match="no handler or remote serves 'nope'"):
            app.handler_ref("nope")

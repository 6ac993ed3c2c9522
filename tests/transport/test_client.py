"""The asyncio client against a tiny in-test server built from ServerConnection.

The server lives here (not in transport/) so these tests depend only on the sans-I/O layer.
Nothing sleeps to synchronise: tests wait on events with timeouts.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from websockets.asyncio.server import ServerConnection as WsServerConnection
from websockets.asyncio.server import serve as ws_serve

from transport.client import (
    Client,
    HandshakeRejected,
    Push,
    PushTimeout,
    RequestError,
    RequestTimeout,
)
from transport.connection import (
    HandshakeReceived,
    HeartbeatReceived,
    MessageReceived,
    ServerConnection,
)
from transport.errorbody import PIT_404, PIT_504, ErrorBody
from transport.errors import ConnectionClosed, ProtocolError
from transport.handshake import HandshakeRequest
from transport.message import Message, MessageType, RouteDictionary
from transport.serializers import JsonSerializer, MsgpackSerializer

SSLContext = ssl_module.SSLContext
CLOSE = None  # an action meaning "close the connection" in FakeServer's output


class FakeServer:
    """Accepts clients over TCP or WebSocket and plays a few scripted routes.

    ``test.echo`` answers with the request data; ``test.fail`` with a PIT-404 error;
    ``test.silent`` never answers; ``test.push`` answers ``{}`` then pushes the request data
    on ``test.onPush``; ``test.kick`` kicks; ``test.close`` drops the connection. A notify on
    ``test.notify`` is pushed back on ``test.onNotify``.
    """

    def __init__(
        self,
        *,
        heartbeat: float = 30.0,
        routes: RouteDictionary | None = None,
        serializer: str = "json",
        reject: int | None = None,
        answer_heartbeats: bool = True,
        answer_handshake: bool = True,
    ) -> None:
        self.heartbeat = heartbeat
        self.routes = routes
        self.serializer = serializer
        self.reject = reject
        self.answer_heartbeats = answer_heartbeats
        self.answer_handshake = answer_handshake
        self.handshakes: list[HandshakeRequest] = []
        self.messages: list[Message] = []
        self.heartbeat_times: list[float] = []
        self.protocol_errors: list[ProtocolError] = []
        self.disconnects = 0
        self._event = asyncio.Event()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.port = 0

    def _changed(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, predicate: Callable[[], bool], timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._event.wait()

    def on_data(self, conn: ServerConnection, data: bytes) -> list[bytes | None]:
        """The bytes to write in answer to ``data`` (None: close the connection)."""
        out: list[bytes | None] = []
        try:
            events = conn.receive_data(data)
        except ProtocolError as exc:
            self.protocol_errors.append(exc)
            self._changed()
            return [CLOSE]
        for event in events:
            if isinstance(event, HandshakeReceived):
                self.handshakes.append(event.request)
                if self.reject is not None:
                    out += [conn.reject_handshake(self.reject, "go away"), CLOSE]
                elif self.answer_handshake:
                    out.append(
                        conn.accept_handshake(
                            heartbeat=self.heartbeat, routes=self.routes, serializer=self.serializer
                        )
                    )
            elif isinstance(event, HeartbeatReceived):
                self.heartbeat_times.append(asyncio.get_running_loop().time())
                if self.answer_heartbeats:
                    out.append(conn.heartbeat())
            elif isinstance(event, MessageReceived):
                self.messages.append(event.message)
                out += self.on_message(conn, event.message)
        self._changed()
        return out

    def on_message(self, conn: ServerConnection, msg: Message) -> list[bytes | None]:
        def respond(data: bytes, error: bool = False) -> bytes:
            return conn.encode(Message(MessageType.RESPONSE, msg.id, data=data, error=error))

        def push(route: str, data: bytes) -> bytes:
            return conn.encode(Message(MessageType.PUSH, route=route, data=data))

        if msg.route == "test.echo":
            return [respond(msg.data)]
        if msg.route == "test.fail":
            body = ErrorBody(PIT_404, "route not found", {"route": msg.route})
            return [respond(JsonSerializer().marshal(body.to_value()), error=True)]
        if msg.route == "test.push":
            return [respond(b"{}"), push("test.onPush", msg.data)]
        if msg.route == "test.notify":
            return [push("test.onNotify", msg.data)]
        if msg.route == "test.kick":
            return [conn.kick(), CLOSE]
        if msg.route == "test.close":
            return [CLOSE]
        return []  # test.silent and anything else: no answer

    async def start_tcp(self, ssl: SSLContext | None = None) -> None:
        server = await asyncio.start_server(self._serve_tcp, "127.0.0.1", 0, ssl=ssl)
        self.port = server.sockets[0].getsockname()[1]

        async def close() -> None:
            server.close()
            await server.wait_closed()

        self._closers.append(close)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConnection()
        self._closers.append(self._closer(writer))
        try:
            while data := await reader.read(65536):
                for item in self.on_data(conn, data):
                    if item is CLOSE:
                        return
                    writer.write(item)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.disconnects += 1
            self._changed()

    @staticmethod
    def _closer(writer: asyncio.StreamWriter) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            writer.close()

        return close

    async def start_websocket(self, ssl: SSLContext | None = None) -> None:
        server = await ws_serve(self._serve_ws, "127.0.0.1", 0, compression=None, ssl=ssl)
        self.port = server.sockets[0].getsockname()[1] if server.sockets else 0
        self.ws_paths: list[str] = []

        async def close() -> None:
            server.close()
            await server.wait_closed()

        self._closers.append(close)

    async def _serve_ws(self, ws: WsServerConnection) -> None:
        self.ws_paths.append(ws.request.path if ws.request else "")
        conn = ServerConnection()
        try:
            async for frame in ws:
                assert isinstance(frame, bytes)
                for item in self.on_data(conn, frame):
                    if item is CLOSE:
                        return
                    await ws.send(item)
        finally:
            self.disconnects += 1
            self._changed()

    async def aclose(self) -> None:
        for close in reversed(self._closers):
            await close()


ServerFactory = Callable[..., Awaitable[FakeServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[FakeServer] = []

    async def make(
        websocket: bool = False, ssl: SSLContext | None = None, **options: Any
    ) -> FakeServer:
        server = FakeServer(**options)
        await (server.start_websocket(ssl) if websocket else server.start_tcp(ssl))
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.aclose()


@pytest.fixture
async def server(make_server: ServerFactory) -> FakeServer:
    return await make_server()


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[Client]:
    client = await Client.connect("127.0.0.1", server.port, timeout=2.0)
    yield client
    await client.close()


async def test_request_response(client: Client, server: FakeServer) -> None:
    assert await client.request("test.echo", {"name": "a"}) == {"name": "a"}
    assert await client.request("test.echo", [1, "é"]) == [1, "é"]
    assert await client.request("test.echo") is None
    assert [m.id for m in server.messages] == [1, 2, 3]
    assert server.messages[2].data == b"null"


async def test_handshake_sends_pitaya_sys_fields(make_server: ServerFactory) -> None:
    server = await make_server()
    async with await Client.connect(
        "127.0.0.1",
        server.port,
        handshake_sys={"clientVersion": "9.9"},
        handshake_user={"token": "t"},
    ) as client:
        assert client.handshake_response.heartbeat == 30
        assert client.handshake_response.serializer == "json"
    (handshake,) = server.handshakes
    assert handshake.platform == "python"
    assert handshake.lib_version
    assert handshake.client_version == "9.9"
    assert handshake.user == {"token": "t"}


@pytest.mark.parametrize("use_route_dict", [True, False])
async def test_route_dictionary(make_server: ServerFactory, use_route_dict: bool) -> None:
    routes = RouteDictionary.from_routes(["test.echo", "test.push", "test.onPush"])
    server = await make_server(routes=routes)
    async with await Client.connect(
        "127.0.0.1", server.port, use_route_dict=use_route_dict
    ) as client:
        assert client.handshake_response.routes == routes.as_dict()
        assert await client.request("test.echo", 1) == 1
        assert await client.request("test.push", 2) == {}
        push = await anext(aiter(client.pushes()))
        assert push == Push("test.onPush", 2)


async def test_error_response(client: Client) -> None:
    with pytest.raises(RequestError) as info:
        await client.request("test.fail", {})
    assert info.value.code == PIT_404
    assert info.value.msg == "route not found"
    assert info.value.metadata == {"route": "test.fail"}
    assert not isinstance(info.value, RequestTimeout)


async def test_request_raw_keeps_the_error_flag(client: Client) -> None:
    message = await client.request_raw("test.fail", b"")
    assert message.error and message.type is MessageType.RESPONSE
    ok = await client.request_raw("test.echo", b"\x00\x01")
    assert not ok.error and ok.data == b"\x00\x01"


@pytest.mark.looptime  # virtual time: see "timers" below
async def test_timeout(client: Client, server: FakeServer) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(RequestTimeout) as info:
        await client.request("test.silent", timeout=3.0)
    assert asyncio.get_running_loop().time() - started == pytest.approx(3.0)
    assert info.value.code == PIT_504
    assert info.value.metadata == {"route": "test.silent"}
    assert isinstance(info.value, RequestError)
    assert await client.request("test.echo", "still fine") == "still fine"


@pytest.mark.looptime
async def test_default_request_timeout(server: FakeServer) -> None:
    async with await Client.connect("127.0.0.1", server.port, request_timeout=4.0) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RequestTimeout):
            await client.request("test.silent")
        assert asyncio.get_running_loop().time() - started == pytest.approx(4.0)


async def test_push_reaches_callbacks_and_iterator(client: Client) -> None:
    seen: list[Any] = []
    client.on_push("test.onPush", seen.append)
    client.on_push("test.onPush", lambda body: 1 / 0)  # a failing callback is only logged
    await client.request("test.push", {"n": 1})
    await client.notify("test.notify", "hello")
    pushes = client.pushes()
    assert await anext(pushes) == Push("test.onPush", {"n": 1})
    assert await anext(pushes) == Push("test.onNotify", "hello")
    assert seen == [{"n": 1}]


async def test_iterator_ends_when_the_connection_closes(client: Client) -> None:
    await client.notify("test.notify", 1)

    async def collect() -> list[Push]:
        return [push async for push in client.pushes()]

    task = asyncio.create_task(collect())
    await client.request("test.echo")  # the push arrived before this response
    await client.close()
    assert await asyncio.wait_for(task, 2) == [Push("test.onNotify", 1)]


async def test_next_push_takes_the_first_of_its_route_and_leaves_the_others(
    client: Client,
) -> None:
    await client.request("test.push", {"n": 1})
    await client.notify("test.notify", "hello")
    await client.request("test.echo")  # both pushes arrived before this response
    assert await client.next_push("test.onNotify") == Push("test.onNotify", "hello")
    assert await client.next_push() == Push("test.onPush", {"n": 1})


async def test_next_push_gives_up_naming_the_route_and_the_pushes_that_came(
    client: Client,
) -> None:
    await client.request("test.push", {"n": 1})
    with pytest.raises(PushTimeout, match=r"no push on 'test.onGone' within 0.05 s.*test\.onPush"):
        await client.next_push("test.onGone", timeout=0.05)
    assert await client.next_push() == Push("test.onPush", {"n": 1})  # still there


async def test_next_push_on_a_closed_connection_says_why(client: Client) -> None:
    await client.notify("test.kick")
    with pytest.raises(ConnectionClosed, match="kicked"):
        await client.next_push("test.onPush")


async def test_kick(client: Client) -> None:
    await client.notify("test.kick")
    await client.wait_closed(2)
    assert client.kicked and client.closed
    with pytest.raises(ConnectionClosed, match="kicked"):
        await client.request("test.echo")


async def test_server_closing_mid_request(client: Client) -> None:
    with pytest.raises(ConnectionClosed):
        await client.request("test.close", timeout=2)
    await client.wait_closed(2)
    assert client.closed and not client.kicked


async def test_local_close_fails_pending_requests(client: Client, server: FakeServer) -> None:
    pending = asyncio.create_task(client.request("test.silent", timeout=2))
    await server.until(lambda: len(server.messages) == 1)
    await client.close()
    with pytest.raises(ConnectionClosed):
        await pending
    await client.close()  # idempotent
    with pytest.raises(ConnectionClosed):
        await client.notify("test.notify")


async def test_hostile_bytes_make_the_server_hang_up(client: Client, server: FakeServer) -> None:
    await client.send_raw(b"\x09\x00\x00\x00")
    await server.until(lambda: bool(server.protocol_errors))
    await client.wait_closed(2)
    assert client.closed


# -- timers, on looptime's virtual clock -------------------------------------------------------
#
# The client reads ``loop.time()`` and sleeps with ``asyncio.sleep``; under
# ``pytest.mark.looptime`` the loop's clock jumps to the next timer whenever nothing is ready to
# run and loopback I/O takes no time, so these tests state *when* things happen, exactly.

INTERVAL = 10.0
"""A heartbeat interval far above any real I/O latency, so windows are unmistakable."""
NEVER = 1000 * INTERVAL
"""A virtual-time bound for waits that must end; reaching it is a failure, and cheap."""


def now() -> float:
    return asyncio.get_running_loop().time()


@pytest.mark.looptime
async def test_heartbeats_follow_the_announced_interval(make_server: ServerFactory) -> None:
    server = await make_server(heartbeat=INTERVAL)
    async with await Client.connect("127.0.0.1", server.port) as client:
        connected = now()
        await server.until(lambda: len(server.heartbeat_times) >= 20, timeout=NEVER)
        # One heartbeat every interval, neither sooner nor later; the server answers each,
        # so the client never gives up.
        expected = [connected + k * INTERVAL for k in range(1, 21)]
        assert server.heartbeat_times == pytest.approx(expected)
        assert client.heartbeats_received >= 19  # the last answer may still be on its way
        assert not client.closed


async def wait_given_up(client: Client) -> float:
    """When the client gave the connection up."""
    await client.wait_closed(NEVER)
    assert client.close_reason == f"nothing received from the server for {2 * INTERVAL:g} s"
    return now()


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("offset", "silence"),
    [
        # Nothing after the handshake: the ticks at 1 and 2 intervals see at most 2
        # intervals of silence; the third gives up.
        (0.0, 3 * INTERVAL),
        # Last bytes half an interval in: given up on the tick at 3 intervals, after 2.5
        # intervals of silence (a 1 x rule would give up at 1.5, a 3 x rule at 3.5).
        (0.5 * INTERVAL, 2.5 * INTERVAL),
    ],
)
async def test_a_silent_server_is_given_up_between_2_and_3_intervals(
    make_server: ServerFactory, offset: float, silence: float
) -> None:
    server = await make_server(heartbeat=INTERVAL, answer_heartbeats=False)
    client = await Client.connect("127.0.0.1", server.port)
    last_received = now()
    if offset:
        await asyncio.sleep(offset)
        await client.request("test.echo", "the last thing the server says")
        last_received = now()
    pending = asyncio.create_task(client.request("test.silent", timeout=NEVER))
    gave_up = await wait_given_up(client)
    with pytest.raises(ConnectionClosed, match="nothing received"):
        await pending
    assert 2 * INTERVAL <= gave_up - last_received <= 3 * INTERVAL
    assert gave_up - last_received == pytest.approx(silence)
    await server.until(lambda: server.disconnects == 1, timeout=NEVER)


@pytest.mark.looptime
async def test_a_server_heard_from_just_within_2_intervals_is_kept(
    make_server: ServerFactory,
) -> None:
    server = await make_server(heartbeat=INTERVAL, answer_heartbeats=False)
    async with await Client.connect("127.0.0.1", server.port) as client:
        # The server says something every 1.99 intervals (an answer), never a heartbeat:
        # the silence never exceeds 2 intervals, so the client keeps the connection.
        for n in range(25):
            await asyncio.sleep(1.99 * INTERVAL)
            assert await client.request("test.echo", n) == n
        assert not client.closed


@pytest.mark.looptime
async def test_connect_times_out_without_a_handshake_answer(make_server: ServerFactory) -> None:
    server = await make_server(answer_handshake=False)
    started = now()
    with pytest.raises(TimeoutError):
        await Client.connect("127.0.0.1", server.port, timeout=7.0)
    assert now() - started == pytest.approx(7.0)
    await server.until(lambda: server.disconnects == 1, timeout=NEVER)


async def test_handshake_rejected(make_server: ServerFactory) -> None:
    server = await make_server(reject=403)
    with pytest.raises(HandshakeRejected) as info:
        await Client.connect("127.0.0.1", server.port)
    assert info.value.code == 403 and info.value.message == "go away"
    await server.until(lambda: server.disconnects == 1)


async def test_connection_refused(make_server: ServerFactory) -> None:
    server = await make_server()
    port = server.port
    await server.aclose()
    with pytest.raises(OSError):
        await Client.connect("127.0.0.1", port, timeout=2)


async def test_serializer_announced_by_the_server(make_server: ServerFactory) -> None:
    server = await make_server(serializer="msgpack")
    async with await Client.connect("127.0.0.1", server.port) as client:
        assert isinstance(client.serializer, MsgpackSerializer)
        assert await client.request("test.echo", {1: b"raw"}) == {1: b"raw"}
        assert server.messages[0].data == MsgpackSerializer().marshal({1: b"raw"})


async def test_explicit_serializer_wins(make_server: ServerFactory) -> None:
    server = await make_server(serializer="msgpack")
    json = JsonSerializer()
    async with await Client.connect("127.0.0.1", server.port, serializer=json) as client:
        assert client.serializer is json


async def test_websocket(make_server: ServerFactory) -> None:
    server = await make_server(websocket=True, heartbeat=0.05)
    async with await Client.connect(
        "127.0.0.1", server.port, websocket=True, path="/any/path"
    ) as client:
        assert await client.request("test.echo", {"x": 1}) == {"x": 1}
        with pytest.raises(RequestError):
            await client.request("test.fail")
        await client.request("test.push", "p")
        assert await anext(aiter(client.pushes())) == Push("test.onPush", "p")
        await server.until(lambda: len(server.heartbeat_times) >= 2)
    assert server.ws_paths == ["/any/path"]
    await server.until(lambda: server.disconnects == 1)


async def test_websocket_kick(make_server: ServerFactory) -> None:
    server = await make_server(websocket=True)
    client = await Client.connect("127.0.0.1", server.port, websocket=True)
    await client.notify("test.kick")
    await client.wait_closed(2)
    assert client.kicked and client.closed


@pytest.mark.parametrize("websocket", [False, True], ids=["tls", "wss"])
async def test_tls(make_server: ServerFactory, websocket: bool) -> None:
    ca = trustme.CA()
    server_context = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl_module.create_default_context()
    ca.configure_trust(client_context)
    server = await make_server(websocket=websocket, ssl=server_context)
    async with await Client.connect(
        "127.0.0.1", server.port, websocket=websocket, ssl=client_context
    ) as client:
        assert await client.request("test.echo", "secret") == "secret"
    untrusted = ssl_module.create_default_context()
    with pytest.raises(ssl_module.SSLCertVerificationError):
        await Client.connect("127.0.0.1", server.port, websocket=websocket, ssl=untrusted)

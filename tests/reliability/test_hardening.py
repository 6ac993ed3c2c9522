"""Issue 18 (hardening), over real sockets: each test reproduces a finding of the attacker's
review and checks the whole class is closed, and that well-behaved clients are unaffected.

The figures (peak RSS, a bystander's worst latency) come from ``tests/bench/bench_attack.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.sessions.actor import SessionActor
from actors.testing import serve
from samples.chat.room import build_app as chat_app
from samples.echo.server import Echo
from tests.rawclient import RawClient
from tests.reliability.hostile import ws_client
from tests.reliability.support import until
from transport.client import Client, HandshakeRejected
from transport.errorbody import ErrorBody
from transport.handshake import decode_handshake_response, encode_handshake_request
from transport.message import MessageType, decode_message
from transport.packet import Packet, PacketDecoder, PacketType, encode_packet

MIB = 1024 * 1024


@dataclass
class Form:
    name: str


class Forms(Handler):
    """``form.fill`` (a typed body, answered at once), ``form.hold`` (raw body, held until
    released)."""

    service = "form"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    @handler
    def fill(self, session: Session, body: Form) -> dict[str, str]:
        return {"name": body.name[:32]}

    @handler
    async def hold(self, session: Session, body: bytes) -> dict[str, int]:
        await self.release.wait()
        return {"size": len(body)}


def make_app(**options: Any) -> App:
    app = App(server_type="hard", **options)
    app.register(Echo)
    app.register(Forms)
    return app


def forms(app: App) -> Forms:
    actor = app.handler_ref("form")._cell.actor
    assert isinstance(actor, Forms)
    return actor


def compressed(route: str, data: bytes, message_id: int) -> bytes:
    """A request whose data is zlib-deflated (flag 0x10), with a plain route."""
    head = bytes([0x10 | MessageType.REQUEST << 1, message_id, len(route)]) + route.encode()
    return encode_packet(PacketType.DATA, head + zlib.compress(data, 9))


def plain(route: str, data: bytes, message_id: int) -> bytes:
    head = bytes([MessageType.REQUEST << 1, message_id, len(route)]) + route.encode()
    return encode_packet(PacketType.DATA, head + data)


def nested(serializer: str, size: int = MIB) -> bytes:
    """``{"content": [[], [], ...]}`` of ``size`` bytes: cheap to send, costly to decode."""
    if serializer == "msgpack":
        return bytes(msgpack.packb({"content": [[] for _ in range(size - 20)]}))
    return ('{"content":[' + ",".join(["[]"] * ((size - 20) // 3)) + "]}").encode()


async def answers(raw: RawClient, count: int, timeout: float = 30) -> list[ErrorBody | None]:
    """The next ``count`` responses, in order: the error of each (None for a success)."""
    found: list[ErrorBody | None] = []
    while len(found) < count:
        packet = await raw.read_packet(timeout)
        if packet.type is PacketType.DATA:
            message = decode_message(packet.body)
            found.append(ErrorBody.from_value(_loads(message.data)) if message.error else None)
    return found


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Bystander:
    """A well-behaved client sending ``echo.echo`` every 5 ms; its worst latency."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.worst = 0.0
        self.served = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            assert await self.client.request("echo.echo", "ping", timeout=30) == "ping"
            self.worst = max(self.worst, time.perf_counter() - start)
            self.served += 1
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


# -- 1. decode amplification ----------------------------------------------------------------


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
async def test_decode_amplification_neither_stalls_nor_pins(serializer: str) -> None:
    """24 requests of ~1 KiB each inflating to 1 MiB of nested lists, pipelined: the
    attacker gets PIT-400 for each, a bystander keeps being answered within 250 ms, and the
    server's Python memory stays well under what the decoded bodies would take (before the
    fix: a 2.5 s (JSON) / 11 s (msgpack) stall, and every decoded body alive at once)."""
    app = make_app(serializer=serializer)
    body = nested(serializer)
    attack = b"".join(compressed("form.fill", body, i) for i in range(1, 25))
    async with serve(app) as server:
        bystander = Bystander(await server.connect())
        raw = await RawClient.connect(*app.address("tcp"))
        await raw.handshake()
        await until(lambda: bystander.served >= 5)
        await raw.send(attack)
        got = await answers(raw, 24)
        await bystander.stop()
        assert {error.code if error else "ok" for error in got} == {"PIT-400"}
        assert bystander.worst < 0.25, f"bystander waited {bystander.worst:.3f}s"
        # Again, counting Python's memory this time (tracing slows the decoding down).
        tracemalloc.start()
        try:
            await raw.send(attack)
            got = await answers(raw, 24)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(got) == 24
        assert peak < 24 * MIB, f"peak traced memory {peak / MIB:.0f} MiB"
        await raw.close()


async def test_large_bodies_of_many_sessions_take_turns() -> None:
    """Eight sessions each pipelining 1 MiB bodies (decodable, not refused): all are served,
    and so is the bystander, between them."""
    app = make_app()
    body = json.dumps({"name": "x" * (MIB - 20)}).encode()
    async with serve(app) as server:
        bystander = Bystander(await server.connect())
        raws = [await RawClient.connect(*app.address("tcp")) for _ in range(8)]
        for raw in raws:
            await raw.handshake()
        for raw in raws:
            await raw.send(b"".join(compressed("form.fill", body, i) for i in range(1, 9)))
        for raw in raws:
            got = await answers(raw, 8)
            assert set(got) == {None}
            await raw.close()
        await bystander.stop()
        assert bystander.worst < 0.25, f"bystander waited {bystander.worst:.3f}s"


# -- 2. memory a connection may hold ---------------------------------------------------------


async def test_compressed_bodies_wait_compressed_and_are_inflated_one_at_a_time() -> None:
    """2 connections x 300 requests of 1 KiB inflating to 1 MiB each, behind a held request:
    the queue keeps them compressed, the rest get PIT-429, and Python memory stays far below
    the 600 MiB they would inflate to (before the fix: all inflated on arrival, 64 per
    session kept)."""
    app = make_app()
    body = b'"' + b"a" * (MIB - 2) + b'"'
    async with serve(app) as server:
        good = await server.connect()
        tracemalloc.start()
        try:
            raws = [await RawClient.connect(*app.address("tcp")) for _ in range(2)]
            for raw in raws:
                await raw.handshake()
                await raw.send(
                    b"".join(compressed("form.hold", body, i % 127 + 1) for i in range(300))
                )
            refused = [
                await answers(raw, 300 - 1 - app.config.max_pending_requests) for raw in raws
            ]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        for got in refused:
            assert {error.code if error else "ok" for error in got} == {"PIT-429"}
        actors = [s.ref._cell.actor for s in app.sessions]
        queued = [a for a in actors if isinstance(a, SessionActor) and a.pending]
        assert len(queued) == 2
        for actor in queued:
            assert all(m.compressed for m, _ in actor.pending)
            assert actor.queued_bytes < 128 * 1024
            assert actor.open_bytes == MIB
        assert peak < 32 * MIB, f"peak traced memory {peak / MIB:.0f} MiB"
        assert await good.request("echo.echo", 1) == 1
        forms(app).release.set()
        for raw in raws:
            got = await answers(raw, 1 + app.config.max_pending_requests)
            assert set(got) == {None}
            await raw.close()


async def test_session_buffer_bounds_queued_bytes(websocket: bool) -> None:
    """Uncompressed bodies too: past ``max_session_buffer`` of queued data, PIT-429."""
    app = make_app(max_session_buffer=1024 * 1024)
    async with serve(app) as server:
        client = await server.connect(websocket=websocket)
        held = asyncio.ensure_future(client.request_raw("form.hold", b"x" * 1000))
        await until(lambda: app.invoker.running == 1)
        body = b"y" * (100 * 1024)
        tasks = [asyncio.ensure_future(client.request_raw("form.hold", body)) for _ in range(15)]
        # 1000 bytes open + 10 x 100 KiB fit in 1 MiB; the other 5 are refused at once.
        await until(lambda: sum(t.done() for t in tasks) == 5)
        refused = [t.result() for t in tasks if t.done()]
        assert all(m.error for m in refused)
        assert {ErrorBody.from_value(json.loads(m.data)).msg for m in refused} == {
            "too much data waiting for this session"
        }
        actor = next(iter(app.sessions)).ref._cell.actor
        assert isinstance(actor, SessionActor)
        assert actor.queued_bytes + actor.open_bytes <= app.config.max_session_buffer
        forms(app).release.set()
        assert not (await held).error
        replies = await asyncio.gather(*tasks)
        assert sum(not m.error for m in replies) == 10


# -- 3. text the serializer cannot write back ------------------------------------------------


async def test_unwritable_text_is_refused_and_does_not_break_other_clients() -> None:
    """A join named with a lone surrogate: PIT-400, and joins over TCP and WebSocket keep
    working (before the fix: PIT-500 for that one, and for every join after it)."""
    app = chat_app("127.0.0.1", 0, 0)
    async with serve(app) as server:
        evil = await server.connect()
        message = await evil.request_raw("room.join", b'{"name": "\\ud800evil"}')
        assert message.error
        error = ErrorBody.from_value(json.loads(message.data))
        assert error.code == "PIT-400" and "surrogate" in error.msg
        for websocket in (False, True, False):
            client = await server.connect(websocket=websocket)
            reply = await client.request("room.join", {"name": f"ok-{websocket}"})
            assert reply["result"] == "success"
        # A proper pair (an emoji) is fine.
        client = await server.connect()
        reply = await client.request_raw("room.join", b'{"name": "\\ud83d\\ude00"}')
        assert not reply.error and "\U0001f600" in json.loads(reply.data)["members"]


async def test_json_constants_that_cannot_be_written_back_are_refused(websocket: bool) -> None:
    """``NaN``/``Infinity`` parse in Python but our JSON encoder refuses them: an echo of one
    was PIT-500 (and kept in a room's state, it would break every answer that holds it)."""
    async with serve(make_app()) as server:
        client = await server.connect(websocket=websocket)
        for body in (b"NaN", b'{"x": Infinity}', b"[-Infinity]", b'{"x":1e999}', b"[-1e400]"):
            message = await client.request_raw("echo.echo", body)
            error = ErrorBody.from_value(json.loads(message.data))
            assert message.error and error.code == "PIT-400", (body, error)
        assert await client.request("echo.echo", {"x": 1.5, "y": 1e308}) == {"x": 1.5, "y": 1e308}


async def test_a_number_too_large_for_a_float_is_a_bad_request_not_a_logged_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``1e999`` is valid JSON text that Python reads as an infinity: it was decoded, echoed,
    and failed when answered (PIT-500, with two tracebacks logged per request: a client
    could fill the server's disk)."""
    async with serve(make_app()) as server:
        client = await server.connect()
        with caplog.at_level(logging.WARNING):
            message = await client.request_raw("echo.echo", b'{"x":1e999}')
        error = ErrorBody.from_value(json.loads(message.data))
        assert (error.code, error.msg) == (
            "PIT-400",
            "cannot decode the json body: "
            "malformed JSON data: number 1e999 is too large for a float",
        )
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_msgpack_non_string_keys_are_a_bad_request() -> None:
    app = make_app(serializer="msgpack")
    async with serve(app) as server:
        client = await server.connect()
        for body in ({1: "x"}, {1: "x", "name": "a"}, {b"name": "a", "other": 1}, {(1, 2): 3}):
            data = msgpack.packb(body, use_bin_type=True)
            message = await client.request_raw("form.fill", data)
            assert message.error
            error = ErrorBody.from_value(msgpack.unpackb(message.data, raw=False))
            assert error.code == "PIT-400", (body, error)
        assert await client.request("form.fill", {"name": "a"}) == {"name": "a"}


async def test_handshake_with_unwritable_text_is_refused(websocket: bool) -> None:
    """The handshake travels on (to validators, to backends): the same rule applies."""
    body = b'{"sys": {"platform": "t"}, "user": {"name": "\\ud800"}}'
    async with serve(make_app()) as server:
        good = await server.connect(websocket=websocket)
        host, port = server.app.address("ws" if websocket else "tcp")
        packets = await exchange(host, port, websocket, encode_packet(PacketType.HANDSHAKE, body))
        assert [p.type for p in packets] == [PacketType.HANDSHAKE]
        response = decode_handshake_response(packets[0].body)
        assert response.code == 400 and "surrogate" in response.message
        await until(lambda: len(server.app.sessions) == 1)
        assert await good.request("echo.echo", 1) == 1


async def exchange(host: str, port: int, websocket: bool, data: bytes) -> list[Packet]:
    """Send ``data`` (one binary frame over WebSocket); the packets received until closed."""
    if not websocket:
        raw = await RawClient.connect(host, port)
        await raw.send(data)
        try:
            return await raw.read_until_closed(5)
        finally:
            await raw.close()
    protocol = ws_client(host, port)
    reader, writer = await asyncio.open_connection(host, port)
    decoder = PacketDecoder()
    packets: list[Packet] = []
    try:
        protocol.send_request(protocol.connect())
        writer.write(b"".join(protocol.data_to_send()))
        while protocol.state is not OPEN:
            protocol.receive_data(await reader.read(65536))
            protocol.events_received()
        protocol.send_binary(data)
        writer.write(b"".join(protocol.data_to_send()))
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                protocol.receive_data(chunk)
                for event in protocol.events_received():
                    if isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                        packets += decoder.feed(event.data)
                writer.write(b"".join(c for c in protocol.data_to_send() if c))
        return packets
    finally:
        writer.close()


# -- 4. handshake size --------------------------------------------------------------------------


async def test_handshake_over_max_handshake_size_is_refused_from_its_header() -> None:
    app = make_app(max_handshake_size=1024)
    async with serve(app) as server:
        good = await server.connect()
        host, port = app.address("tcp")
        # At the limit: accepted.
        body = encode_handshake_request({"platform": "t"}, {"pad": "x" * 1000})
        body = encode_handshake_request({"platform": "t"}, {"pad": "x" * (1000 + 1024 - len(body))})
        assert len(body) == 1024
        raw = await RawClient.connect(host, port)
        await raw.send(encode_packet(PacketType.HANDSHAKE, body))
        assert decode_handshake_response((await raw.read_packet()).body).ok
        await raw.close()
        # Over it: only the header of a 1 MiB handshake is sent, and it is answered 400.
        raw = await RawClient.connect(host, port)
        await raw.send(bytes([PacketType.HANDSHAKE]) + (MIB).to_bytes(3, "big"))
        packets = await raw.read_until_closed(5)
        assert [p.type for p in packets] == [PacketType.HANDSHAKE]
        response = decode_handshake_response(packets[0].body)
        assert response.code == 400 and "exceeds the limit of 1024 bytes" in response.message
        await raw.close()
        await until(lambda: len(app.sessions) == 1)
        assert await good.request("echo.echo", 1) == 1


async def test_default_handshake_limit_is_small(websocket: bool) -> None:
    async with serve(make_app()) as server:
        assert server.app.config.max_handshake_size == 8 * 1024
        with pytest.raises(HandshakeRejected):
            await server.connect(websocket=websocket, handshake_user={"blob": "x" * 9000})
        client = await server.connect(websocket=websocket, handshake_user={"token": "t" * 2000})
        assert await client.request("echo.echo", 1) == 1


# -- 5. error bodies ------------------------------------------------------------------------


async def test_error_bodies_do_not_echo_the_input_in_full(websocket: bool) -> None:
    async with serve(make_app()) as server:
        client = await server.connect(websocket=websocket)
        body = json.dumps({f"k{i}": 0 for i in range(80_000)}, separators=(",", ":"))
        message = await client.request_raw("form.fill", body.encode())
        assert message.error and len(message.data) < 2048, len(message.data)
        error = ErrorBody.from_value(json.loads(message.data))
        assert error.code == "PIT-400"
        assert error.msg.startswith("unknown field(s) ['k0', 'k1', 'k10', 'k100', 'k1000', ...")
        assert "(79995 more)" in error.msg
        # Long names are cut too.
        message = await client.request_raw("form.fill", json.dumps({"k" * 100_000: 1}).encode())
        assert message.error and len(message.data) < 2048


async def test_a_handler_error_is_cut_to_size() -> None:
    class Loud(Handler):
        service = "loud"

        @handler
        def shout(self, session: Session, body: Any) -> dict[str, str]:
            from actors.errors import PitayaError

            meta = {f"k{i}": "v" * 10_000 for i in range(100)}
            raise PitayaError("PIT-418", "x" * 1_000_000, meta)

    app = make_app()
    app.register(Loud)
    async with serve(app) as server:
        client = await server.connect()
        message = await client.request_raw("loud.shout", b"{}")
        assert message.error and len(message.data) < 8 * 1024
        error = ErrorBody.from_value(json.loads(message.data))
        assert error.code == "PIT-418" and error.msg.endswith("...")
        assert len(error.metadata) == 16


# -- 10. WebSocket --------------------------------------------------------------------------


async def ws_close_code(host: str, port: int, *parts: bytes) -> int | None:
    """Upgrade, send a text message in ``parts`` (fragments), return the server's close code."""
    protocol = ws_client(host, port)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        protocol.send_request(protocol.connect())
        writer.write(b"".join(protocol.data_to_send()))
        while protocol.state is not OPEN:
            protocol.receive_data(await reader.read(65536))
            protocol.events_received()
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if i == 0:
                protocol.send_text(part, fin=last)
            else:
                protocol.send_continuation(part, fin=last)
        writer.write(b"".join(protocol.data_to_send()))
        async with asyncio.timeout(5):
            while data := await reader.read(65536):
                protocol.receive_data(data)
                protocol.events_received()
        return protocol.close_rcvd.code if protocol.close_rcvd is not None else None
    finally:
        writer.close()


async def test_invalid_utf8_text_frame_closes_with_1007() -> None:
    async with serve(make_app()) as server:
        good = await server.connect(websocket=True)
        address = server.app.address("ws")
        assert await ws_close_code(*address, b"\xff\xfe not utf-8") == 1007
        assert await ws_close_code(*address, b"ok", b"\xc3") == 1007  # fragmented
        # Text that is valid UTF-8 (here a Pitaya heartbeat packet) is delivered.
        text = await ws_text_then_close(*address)
        assert text == 1000
        assert await good.request("echo.echo", 1) == 1


async def ws_text_then_close(host: str, port: int) -> int | None:
    """A valid handshake packet as a text frame, then a client close: answered 1000."""
    body = encode_handshake_request({"platform": "t"}, {})
    protocol = ws_client(host, port)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        protocol.send_request(protocol.connect())
        writer.write(b"".join(protocol.data_to_send()))
        while protocol.state is not OPEN:
            protocol.receive_data(await reader.read(65536))
            protocol.events_received()
        protocol.send_text(encode_packet(PacketType.HANDSHAKE, body))
        writer.write(b"".join(protocol.data_to_send()))
        got_handshake = False
        async with asyncio.timeout(5):
            while not got_handshake:
                protocol.receive_data(await reader.read(65536))
                got_handshake = any(isinstance(e, Frame) for e in protocol.events_received())
            protocol.send_close(1000)
            writer.write(b"".join(protocol.data_to_send()))
            while data := await reader.read(65536):
                protocol.receive_data(data)
                protocol.events_received()
        return protocol.close_rcvd.code if protocol.close_rcvd is not None else None
    finally:
        writer.close()


async def test_websocket_upgrades_in_progress_count_toward_max_connections() -> None:
    app = make_app(max_connections=5)
    async with serve(app) as server:
        first = await server.connect()
        host, port = app.address("ws")
        slow = []
        for _ in range(4):  # slowloris: an HTTP request never finished
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            slow.append((reader, writer))
        await until(lambda: sum(a.stats.opening for a in app.acceptors) == 4)
        refused = app.stats.refused_connections
        for websocket in (True, False):
            with pytest.raises((ConnectionError, OSError, asyncio.TimeoutError, Exception)):
                await server.connect(websocket=websocket, timeout=2)
        assert app.stats.refused_connections >= refused + 2
        assert await first.request("echo.echo", 1) == 1
        for _, writer in slow:
            writer.close()
        await until(lambda: sum(a.stats.opening for a in app.acceptors) == 0)
        late = await server.connect(websocket=True)
        assert await late.request("echo.echo", 2) == 2


async def test_an_unfinished_websocket_upgrade_is_dropped_after_the_upgrade_timeout() -> None:
    """Slowloris sockets hold a place in max_connections only for ``upgrade_timeout`` (not
    the Pitaya ``handshake_timeout``, which starts once the upgrade is done)."""
    app = make_app(max_connections=3, upgrade_timeout=0.3, handshake_timeout=30)
    async with serve(app) as server:
        host, port = app.address("ws")
        slow = []
        started = time.monotonic()
        for _ in range(3):  # fill the limit with upgrades never finished
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            slow.append((reader, writer))
        await until(lambda: sum(a.stats.opening for a in app.acceptors) == 3)
        for reader, _ in slow:  # each is closed by the server, at the upgrade timeout
            async with asyncio.timeout(5):
                assert await reader.read() == b""
        assert 0.3 <= time.monotonic() - started < 5
        await until(lambda: sum(a.stats.opening for a in app.acceptors) == 0)
        client = await server.connect(websocket=True)  # places are free again
        assert await client.request("echo.echo", 3) == 3
        for _, writer in slow:
            writer.close()


# -- 6. served_by ---------------------------------------------------------------------------


async def test_served_by_keeps_only_routes_a_backend_serves() -> None:
    """A client making up routes of a backend type: the backend answers PIT-404 and the
    frontend's record of what served the session does not grow (before the fix: one entry per
    made-up route, for the session's life)."""
    from actors.testing import MemoryCluster

    network = MemoryCluster()
    room = App(
        server_type="room",
        server_id="room-1",
        mode="cluster",
        frontend=False,
        discovery=network.discovery(),
        rpc=network.rpc(),
    )
    room.register(Forms)
    connector = App(
        server_type="connector",
        server_id="c-1",
        mode="cluster",
        discovery=network.discovery(),
        rpc=network.rpc(),
    )
    async with room, serve(connector) as server:
        client = await server.connect(use_route_dict=False)
        assert await client.request("room.form.fill", {"name": "a"}) == {"name": "a"}
        replies = []
        for batch in range(8):  # under max_pending_requests at a time
            routes = [f"room.form.made{batch}-{i}" for i in range(25)]
            routes += [f"room.nope{batch}-{i}.x" for i in range(25)]
            replies += await asyncio.gather(*(client.request_raw(r, b"{}") for r in routes))
        assert {ErrorBody.from_value(json.loads(m.data)).code for m in replies} == {"PIT-404"}
        session = next(iter(connector.sessions))
        assert session.served_by == {"room-1": {"room.form.fill"}}


class Moves(Handler):
    """``room.move.*``: four routes that answer at once."""

    service = "move"

    @handler
    def a(self, session: Session, body: Any) -> dict[str, str]:
        return {"server": self.app.server_id}

    @handler
    def b(self, session: Session, body: Any) -> dict[str, str]:
        return {"server": self.app.server_id}

    @handler
    def c(self, session: Session, body: Any) -> dict[str, str]:
        return {"server": self.app.server_id}

    @handler
    def d(self, session: Session, body: Any) -> dict[str, str]:
        return {"server": self.app.server_id}


async def test_served_by_is_capped_and_events_still_reach_the_servers_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the routes cap a server's record becomes 'every route' (its route-filtered close
    callbacks all run, those of routes before and after the cap alike); past the servers cap
    a server is not recorded (not told of the close). Caps lowered to 2 routes, 1 server."""
    from actors.cluster import session_events
    from actors.cluster.discovery import ServerInfo
    from actors.testing import MemoryCluster

    monkeypatch.setattr(session_events, "MAX_SERVED_ROUTES", 2)
    monkeypatch.setattr(session_events, "MAX_SERVED_SERVERS", 1)
    network = MemoryCluster()
    closed: dict[str, list[str]] = {"room-1": [], "room-2": []}
    rooms = []
    for room_id in ("room-1", "room-2"):
        room = App(
            server_type="room",
            server_id=room_id,
            mode="cluster",
            frontend=False,
            discovery=network.discovery(),
            rpc=network.rpc(),
        )
        room.register(Moves)
        for route in ("room.move.a", "room.move.c", None):
            room.on_remote_session_close(
                lambda s, r=route, i=room_id: closed[i].append(r or "any"), route=route
            )
        rooms.append(room)
    connector = App(
        server_type="connector",
        server_id="c-1",
        mode="cluster",
        discovery=network.discovery(),
        rpc=network.rpc(),
    )

    def d_elsewhere(session: Session | None, route: str, servers: list[ServerInfo]) -> ServerInfo:
        wanted = "room-2" if route.endswith(".d") else "room-1"
        return next(s for s in servers if s.id == wanted)

    connector.add_route("room", d_elsewhere)
    async with rooms[0], rooms[1], serve(connector) as server:
        client = await server.connect()
        for name in "abc":
            assert await client.request(f"room.move.{name}", {}) == {"server": "room-1"}
        assert await client.request("room.move.d", {}) == {"server": "room-2"}
        session = next(iter(connector.sessions))
        assert session.served_by == {"room-1": {"*"}}  # 3 routes > 2: every route
        await client.close()
        await until(lambda: len(closed["room-1"]) == 3)
        assert sorted(closed["room-1"]) == ["any", "room.move.a", "room.move.c"]
        assert closed["room-2"] == []  # past the servers cap: not recorded, not told

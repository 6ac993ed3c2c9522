"""The session actor over an in-memory connection: what it logs, measures, traces and answers.

Each test drives one connection byte by byte through the app's in-memory acceptor
(``TestClient.acceptor``), so it sees exactly what the client gets. Pitaya-level behaviour
(requests, pushes, ordering) is in test_testing.py, test_concurrency.py and the cluster tests;
these pin the session actor's own rules: its log lines (an operator's only view of a dropped
client), the response-time metric, tracing spans, the pending-queue limit and the teardown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from actors.app import App
from actors.errors import PitayaError
from actors.handler import Handler, handler
from actors.metrics.names import PROCESS_DELAY, RESPONSE_TIME
from actors.session import Session
from actors.sessions.actor import MAX_PIPELINED
from actors.testing import MemoryCluster, TestClient, cluster_app
from tests.actors.metrics.recorder import Recorder
from transport.errorbody import ErrorBody
from transport.handshake import (
    HandshakeResponse,
    decode_handshake_request,
    decode_handshake_response,
    encode_handshake_request,
)
from transport.memory import MemoryChannel
from transport.message import Message, MessageType, decode_message, encode_message
from transport.packet import HANDSHAKE_ACK_PACKET, Packet, PacketDecoder, PacketType, encode_packet
from transport.serializers import JsonSerializer

LOGGER = "actors.sessions.actor"
TIMEOUT = 5.0


class Svc(Handler):
    service = "svc"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.notes: list[Any] = []

    @handler
    def echo(self, session: Session, body: Any) -> Any:
        return body

    @handler
    def empty(self, session: Session) -> bytes:
        return b""

    @handler
    def note(self, session: Session, body: Any) -> None:
        self.notes.append(body)

    @handler
    async def hold(self, session: Session) -> dict[str, str]:
        await self.gate.wait()
        return {"held": "done"}

    @handler
    async def ahold(self, session: Session, body: Any) -> Any:
        await self.gate.wait()
        return body

    @handler
    def fail(self, session: Session) -> dict[str, str]:
        raise ValueError("bad")

    @handler
    def refuse(self, session: Session) -> dict[str, str]:
        raise PitayaError("PIT-403", "no", {"why": "test"})

    @handler
    async def login(self, session: Session, body: dict[str, str]) -> dict[str, str]:
        await session.bind(body["uid"])
        return {}

    @handler
    def lost(self, session: Session) -> dict[str, str]:
        raise PitayaError("PIT-404", "gone")  # a route served here answering PIT-404

    @handler
    def traced(self, session: Session) -> dict[str, int]:
        return {"span": trace.get_current_span().get_span_context().span_id}

    @handler
    def spoil(self, session: Session) -> dict[str, str]:
        session.set("bad", object())  # session data that cannot travel to another server
        return {}

    @handler
    def kick_me(self, session: Session, body: dict[str, str]) -> dict[str, str]:
        session.kick(body.get("reason", ""))
        return {}


def make_app(**options: Any) -> App:
    app = App(server_type="svc", server_id="s1", **options)
    app.register(Svc)
    return app


def svc(app: App) -> Svc:
    actor = app.handler_ref("svc")._cell.actor
    assert isinstance(actor, Svc)
    return actor


class Raw:
    """One client connection, spoken by hand."""

    def __init__(self, channel: MemoryChannel) -> None:
        self.channel = channel
        self.decoder = PacketDecoder()
        self.packets: list[Packet] = []
        self.next_id = 1

    @property
    def address(self) -> str:
        return self.channel.server_side.remote_address

    async def send(self, data: bytes) -> None:
        await self.channel.send(data)

    async def packet(self) -> Packet:
        while not self.packets:
            data = await asyncio.wait_for(self.channel.receive(), TIMEOUT)
            if not data:
                raise ConnectionError("closed by the server")
            self.packets.extend(self.decoder.feed(data))
        return self.packets.pop(0)

    async def message(self) -> Message:
        while True:
            packet = await self.packet()
            if packet.type is PacketType.DATA:
                return decode_message(packet.body)

    async def handshake(self, user: dict[str, Any] | None = None) -> HandshakeResponse:
        body = encode_handshake_request({"platform": "raw"}, user or {})
        await self.send(encode_packet(PacketType.HANDSHAKE, body))
        packet = await self.packet()
        assert packet.type is PacketType.HANDSHAKE
        response = decode_handshake_response(packet.body)
        if response.ok:
            await self.send(HANDSHAKE_ACK_PACKET)
        return response

    def data(self, msg: Message) -> bytes:
        return encode_packet(PacketType.DATA, encode_message(msg))

    def request(self, route: str, body: bytes = b"{}") -> bytes:
        msg_id, self.next_id = self.next_id, self.next_id + 1
        return self.data(Message(MessageType.REQUEST, msg_id, route, body))

    def notify(self, route: str, body: bytes = b"{}") -> bytes:
        return self.data(Message(MessageType.NOTIFY, route=route, data=body))

    async def until_closed(self) -> list[Packet]:
        """The packets the server sent before closing."""
        seen = list(self.packets)
        self.packets.clear()
        while True:
            data = await asyncio.wait_for(self.channel.receive(), TIMEOUT)
            if not data:
                return seen
            seen.extend(self.decoder.feed(data))


@asynccontextmanager
async def running(app: App) -> AsyncIterator[TestClient]:
    test = TestClient(app)
    await test.start()
    try:
        yield test
    finally:
        await test.stop()


async def connect(test: TestClient) -> Raw:
    return Raw(await test.acceptor.connect())


def session_of(app: App, raw: Raw) -> Session:
    (session,) = [s for s in app.sessions if s.remote_address == raw.address]
    return session


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def logged(caplog: pytest.LogCaptureFixture, message: str) -> logging.LogRecord:
    found = [r for r in caplog.records if r.name == LOGGER and r.getMessage() == message]
    assert found, f"not logged: {message!r}; got {[r.getMessage() for r in caplog.records]}"
    return found[0]


@pytest.fixture(autouse=True)
def no_failed_receivers(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Any:
    """The session actor never fails a message: the kernel logs none of its receivers."""
    yield
    if request.node.get_closest_marker("xfail") is None:
        records = caplog.get_records("call")  # caplog.records would be teardown's only
        failures = [r.getMessage() for r in records if r.name == "actors.kernel"]
        assert not failures


def error_of(msg: Message) -> ErrorBody:
    assert msg.type is MessageType.RESPONSE and msg.error
    value = JsonSerializer().unmarshal(msg.data)
    return ErrorBody(value["code"], value.get("msg", ""), value.get("metadata") or {})


# -- connection life -------------------------------------------------------------------------


async def test_connect_and_close_are_logged_with_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        session = session_of(app, raw)
        assert session.remote_address == raw.address
        assert logged(
            caplog, f"[s1] session {session.id} connected from {raw.address} (memory)"
        ).levelno == (logging.DEBUG)
        await raw.channel.close()
        await until(lambda: len(app.sessions) == 0)
        assert logged(caplog, f"[s1] session {session.id} closed").levelno == logging.DEBUG


async def test_a_protocol_error_is_logged_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        session = session_of(app, raw)
        await raw.send(b"\x09")
        assert await raw.until_closed() == []
        record = logged(
            caplog,
            f"[s1] session {session.id}: protocol error from {raw.address}: "
            "invalid packet type 9 (expected 1..5)",
        )
        assert record.levelno == logging.INFO


async def test_protocol_errors_are_logged_at_info_once_per_10_s_each_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A scanner's garbage, connection after connection, made an info line each."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    app = make_app()
    async with running(app) as test:

        async def garbage() -> None:
            raw = await connect(test)
            await raw.handshake()
            await raw.send(b"\x09")
            assert await raw.until_closed() == []

        for _ in range(5):
            await garbage()
        errors = [r for r in caplog.records if "protocol error from" in r.getMessage()]
        assert [r.levelno for r in errors] == [logging.INFO] + [logging.DEBUG] * 4
        app.protocol_errors._last = -100.0  # 10 s later
        await garbage()
        last = [r for r in caplog.records if "protocol error from" in r.getMessage()][-1]
        assert last.levelno == logging.INFO
        assert last.getMessage().endswith("(4 more since the last such line, not logged)")


async def test_a_malformed_handshake_is_answered_400_with_the_reason() -> None:
    body = b'{"sys": [1]}'
    with pytest.raises(Exception) as expected:
        decode_handshake_request(body)
    async with running(make_app()) as test:
        raw = await connect(test)
        await raw.send(encode_packet(PacketType.HANDSHAKE, body))
        (packet,) = await raw.until_closed()
        assert packet.type is PacketType.HANDSHAKE
        response = decode_handshake_response(packet.body)
        assert (response.code, response.message) == (400, str(expected.value))


async def test_a_refusing_validator_is_logged_and_answered_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app()

    def only_ann(request: Any) -> None:
        if request.user.get("name") != "ann":
            raise ValueError("ann only")

    def silent(request: Any) -> None:
        if request.user.get("name") == "eve":
            raise ValueError()

    app.add_handshake_validator("only-ann", only_ann)
    app.add_handshake_validator("silent", silent)
    async with running(app) as test:
        raw = await connect(test)
        response = await raw.handshake({"name": "bob"})
        assert (response.code, response.message) == (400, "ann only")
        assert await raw.until_closed() == []
        logged(caplog, "[s1] session 1: handshake validator only-ann refused: ann only")
        assert (await (await connect(test)).handshake({"name": "ann"})).ok


async def test_what_clients_do_wrong_shares_one_line_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused handshake, a connection that never handshakes: any peer can, as often as
    it connects, and each wrote an info line; with protocol errors, one line per 10 s at
    info (with the count of the others), each at debug."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    app = make_app(handshake_timeout=0.05)

    def only_ann(request: Any) -> None:
        if request.user.get("name") != "ann":
            raise ValueError("ann only")

    app.add_handshake_validator("only-ann", only_ann)
    faults = ("handshake validator", "no handshake within")
    async with running(app) as test:
        for _ in range(3):
            raw = await connect(test)
            assert (await raw.handshake({"name": "eve"})).code == 400
            await raw.until_closed()
        await (await connect(test)).until_closed()  # silent: the handshake deadline
        told = [r for r in caplog.records if any(f in r.getMessage() for f in faults)]
        assert [r.levelno for r in told] == [logging.INFO] + [logging.DEBUG] * 3
        app.protocol_errors._last = -100.0  # 10 s later
        raw = await connect(test)
        await raw.handshake({"name": "eve"})
        await raw.until_closed()
        assert (
            logged(
                caplog,
                "[s1] session 5: handshake validator only-ann refused: ann only "
                "(3 more since the last such line, not logged)",
            ).levelno
            == logging.INFO
        )


# -- requests, notifies and the pending queue -----------------------------------------------


async def test_an_empty_payload_is_answered_empty() -> None:
    async with running(make_app()) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(raw.request("svc.empty"))
        answer = await raw.message()
        assert (answer.type, answer.id, answer.data, answer.error) == (
            MessageType.RESPONSE,
            1,
            b"",
            False,
        )


async def test_an_unknown_route_waits_its_turn_and_names_the_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(raw.request("svc.hold"))
        await until(lambda: app.invoker.running == 1)
        await raw.send(raw.request("svc.nope") + raw.notify("svc.gone"))
        await asyncio.sleep(0.01)
        svc(app).gate.set()
        first, second = await raw.message(), await raw.message()
        assert (first.id, first.error) == (1, False)
        assert second.id == 2
        assert error_of(second) == ErrorBody(
            "PIT-404", "pitaya/handler: svc.nope not found", {"route": "svc.nope"}
        )
        await until(lambda: any("unknown route" in r.getMessage() for r in caplog.records))
        assert logged(caplog, "[s1] session 1: notify to unknown route 'svc.gone'").levelno == (
            logging.INFO
        )


async def test_notifies_to_unknown_routes_are_logged_at_info_once_per_10_s_each_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A notify is never answered, so a client may send one to a made-up route per packet,
    on every connection: that made an info line each."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(b"".join(raw.notify(f"svc.gone{i}") for i in range(5)))
        await raw.send(raw.request("svc.echo", b"1"))  # answered after the notifies
        assert (await raw.message()).data == b"1"
        lines = [r for r in caplog.records if "notify to unknown route" in r.getMessage()]
        assert [r.levelno for r in lines] == [logging.INFO] + [logging.DEBUG] * 4
        app.unknown_routes._last = -100.0  # 10 s later
        await raw.send(raw.notify("svc.gone5") + raw.request("svc.echo", b"2"))
        assert (await raw.message()).data == b"2"
        last = [r for r in caplog.records if "notify to unknown route" in r.getMessage()][-1]
        assert last.levelno == logging.INFO
        assert last.getMessage() == (
            "[s1] session 1: notify to unknown route 'svc.gone5' "
            "(4 more since the last such line, not logged)"
        )


async def test_a_route_with_a_line_break_cannot_forge_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The route is the client's text: logged quoted, its line breaks escaped, so it cannot
    end the line and write one that looks like the server's own."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        forged = "svc.x\n2026-12-07 12:00:00 ERROR actors.app [s1] database is gone"
        await raw.send(raw.notify(forged) + raw.request("svc.echo", b"1"))
        assert (await raw.message()).data == b"1"
        (line,) = [r.getMessage() for r in caplog.records if "unknown route" in r.getMessage()]
        assert "\n" not in line
        assert line == f"[s1] session 1: notify to unknown route {forged!r}"


async def test_the_pending_queue_holds_exactly_max_pending_requests() -> None:
    app = make_app(max_pending_requests=2)
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(raw.request("svc.hold"))
        await until(lambda: app.invoker.running == 1)
        # Two wait; the third request is refused at once; notifies beyond are dropped.
        await raw.send(
            raw.request("svc.echo", b'{"n":2}')
            + raw.request("svc.echo", b'{"n":3}')
            + raw.request("svc.echo", b'{"n":4}')
            + raw.notify("svc.note", b"1")
            + raw.notify("svc.note", b"2")
        )
        refused = await raw.message()
        assert refused.id == 4
        assert error_of(refused) == ErrorBody("PIT-429", "too many requests in flight", {})
        await until(lambda: app.stats.dropped_notifies == 2)
        svc(app).gate.set()
        answers = [await raw.message() for _ in range(3)]
        assert [(a.id, a.data) for a in answers] == [
            (1, b'{"held":"done"}'),
            (2, b'{"n":2}'),
            (3, b'{"n":3}'),
        ]
        assert app.stats.dropped_notifies == 2
        assert svc(app).notes == []


async def test_the_session_buffer_bounds_the_bytes_held_for_one_client() -> None:
    # 100 bytes: the running request's body counts too; refusals say which limit it was.
    app = make_app(max_session_buffer=100)
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        held = b'"' + b"h" * 18 + b'"'  # 20 bytes, held while its handler runs
        await raw.send(raw.request("svc.hold", held))
        await until(lambda: app.invoker.running == 1)
        fits = b'"' + b"f" * 38 + b'"'  # 40: 20 + 40 + 40 == 100, exactly the limit
        for _ in range(2):
            await raw.send(raw.request("svc.echo", fits))
        await raw.send(raw.request("svc.echo", b"1"))  # one byte too many
        refused = await raw.message()
        assert refused.id == 4
        assert error_of(refused) == ErrorBody(
            "PIT-429", "too much data waiting for this session", {}
        )
        svc(app).gate.set()
        assert [(await raw.message()).id for _ in range(3)] == [1, 2, 3]
        # Everything answered: the whole buffer is free again, for the same amounts.
        svc(app).gate.clear()
        await raw.send(raw.request("svc.hold", held))
        await until(lambda: app.invoker.running == 1)
        await raw.send(raw.request("svc.echo", fits) + raw.request("svc.echo", fits))
        await asyncio.sleep(0.01)
        svc(app).gate.set()
        assert [(await raw.message()).id for _ in range(3)] == [5, 6, 7]


async def test_a_compressed_body_is_inflated_when_its_turn_comes() -> None:
    async with running(make_app()) as test:
        raw = await connect(test)
        await raw.handshake()
        bodies = [b'"' + b"z" * 10_000 + b'"', b'"' + b"y" * 30 + b'"']
        packets = []
        for msg_id, body in enumerate(bodies, start=1):
            msg = Message(MessageType.REQUEST, msg_id, "svc.echo", body)
            packed = encode_message(msg, compress=True)
            assert packed[0] & 0x10  # really compressed
            packets.append(encode_packet(PacketType.DATA, packed))
        await raw.send(b"".join(packets))
        answers = [await raw.message() for _ in bodies]
        assert [(a.id, a.data) for a in answers] == [(1, bodies[0]), (2, bodies[1])]


async def test_a_compressed_body_is_inflated_only_when_its_turn_comes() -> None:
    # Bad zlib behind a running request: the request is still answered, then the close.
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(raw.request("svc.hold"))
        await until(lambda: app.invoker.running == 1)
        await raw.send(encode_packet(PacketType.DATA, b"\x10\x02\x08svc.echonot zlib"))
        await asyncio.sleep(0.01)
        svc(app).gate.set()
        packets = await raw.until_closed()
        assert [decode_message(p.body).id for p in packets] == [1]


async def test_the_handshake_size_limit_applies() -> None:
    app = make_app(max_handshake_size=64)
    async with running(app) as test:
        raw = await connect(test)
        assert (await raw.handshake({"n": "x" * 10})).ok
        raw = await connect(test)
        body = encode_handshake_request({"platform": "raw"}, {"n": "x" * 100})
        await raw.send(encode_packet(PacketType.HANDSHAKE, body))
        (packet,) = await raw.until_closed()
        response = decode_handshake_response(packet.body)
        assert (response.code, response.message) == (
            400,
            f"handshake of {len(body)} bytes exceeds the limit of 64 bytes",
        )


async def test_a_compressed_body_that_is_not_zlib_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        session = session_of(app, raw)
        bad = b"\x10\x01\x08svc.echonot zlib"  # request id 1, compressed flag, junk data
        await raw.send(encode_packet(PacketType.DATA, bad))
        assert await raw.until_closed() == []
        prefix = (
            f"[s1] session {session.id}: protocol error from {raw.address}: "
            "compressed data is not valid zlib: "
        )
        assert any(m.startswith(prefix) for m in caplog.messages)


async def test_an_error_the_apps_serializer_cannot_encode_falls_back_to_json() -> None:
    class Odd(Handler):
        service = "odd"

        @handler
        def refuse(self, session: Session) -> dict[str, str]:
            raise PitayaError("PIT-403", "no", {"n": 2**70})  # too big for msgpack

    app = App(server_type="svc", server_id="s1", serializer="msgpack")
    app.register(Odd)
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(raw.request("odd.refuse"))
        answer = await raw.message()
        assert answer.id == 1
        assert error_of(answer) == ErrorBody("PIT-403", "no", {"n": 2**70})


async def test_an_error_no_serializer_can_encode_still_answers_and_frees_the_session() -> None:
    class Odd(Handler):
        service = "odd"

        @handler
        def refuse(self, session: Session) -> dict[str, str]:
            raise PitayaError("PIT-403", "no", {"why": b"\xff"})  # bytes: not JSON

        @handler
        def echo(self, session: Session, body: Any) -> Any:
            return body

    app = App(server_type="svc", server_id="s1")
    app.register(Odd)
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(raw.request("odd.refuse") + raw.request("odd.echo", b"2"))
        first = await raw.message()
        assert first.id == 1
        assert error_of(first) == ErrorBody("PIT-403", "no", {})  # code and text alone
        second = await raw.message()
        assert (second.id, second.data) == (2, b"2")


# -- kicks, timers, overflow, teardown -------------------------------------------------------


@pytest.mark.parametrize(("reason", "suffix"), [("bye", ": bye"), ("", "")])
async def test_a_kick_is_logged_with_its_reason(
    reason: str, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        body = b'{"reason":"%s"}' % reason.encode()
        await raw.send(raw.request("svc.kick_me", body))
        packets = await raw.until_closed()
        [kick] = [p for p in packets if p.type is PacketType.KICK]
        assert json.loads(kick.body) == {"reason": reason}  # as pomelo's clients read it
        assert logged(caplog, f"[s1] session 1 kicked{suffix}").levelno == logging.INFO


async def test_kicks_and_heartbeat_timeouts_are_logged_at_info_once_per_10_s_each_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stop, a maintenance kick by uid or a network blip ends thousands of sessions at
    once: one info line each was a flood. A stop says how many it kicks, in one line."""
    caplog.set_level(logging.DEBUG)
    app = make_app(heartbeat_interval=0.02)
    async with running(app) as test:
        quiet = [await connect(test) for _ in range(3)]
        for raw in quiet:
            await raw.handshake()  # then no heartbeat: each times out
        for raw in quiet:
            await raw.until_closed()
        timeouts = [r for r in caplog.records if r.getMessage().endswith("heartbeat timeout")]
        assert [r.levelno for r in timeouts] == [logging.INFO] + [logging.DEBUG] * 2
    app = make_app()
    async with running(app) as test:
        kicked = [await connect(test) for _ in range(3)]
        for raw in kicked:
            await raw.handshake()
        await app.stop()
        for raw in kicked:
            await raw.until_closed()
    kicks = [r for r in caplog.records if "kicked: server shutting down" in r.getMessage()]
    assert [r.levelno for r in kicks] == [logging.INFO] + [logging.DEBUG] * 2
    logged_by_stop = [r.getMessage() for r in caplog.records if r.name == "actors.lifecycle"]
    assert "[s1] kicking 3 session(s): server shutting down" in logged_by_stop
    app.kicks._last = -100.0  # 10 s later: the next line says how many were not logged
    more = app.kicks.allow(0.0)
    assert more == " (2 more since the last such line, not logged)"


async def test_a_kick_of_a_closed_connection_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        session = session_of(app, raw)
        raw.channel.server_side.close()
        session.kick("late")
        await raw.until_closed()
        await until(lambda: len(app.sessions) == 0)
        assert not [r for r in caplog.records if "kicked" in r.getMessage()]


async def test_timeouts_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app(heartbeat_interval=0.02, handshake_timeout=0.05)
    async with running(app) as test:
        silent = await connect(test)
        await silent.until_closed()
        logged(caplog, "[s1] session 1: no handshake within 0.05s")
        quiet = await connect(test)
        await quiet.handshake()
        await quiet.until_closed()  # sends no heartbeat
        logged(caplog, "[s1] session 2: heartbeat timeout")


async def test_a_mailbox_overflow_is_logged_counted_once_and_torn_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = make_app(mailbox_limits={"SessionActor": 2})
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        session = session_of(app, raw)
        for _ in range(6):  # more pushes than the mailbox holds, in one turn
            session.push("onFlood", {})
        await raw.until_closed()
        await until(lambda: len(app.sessions) == 0)
        assert app.stats.mailbox_overflows == 1
        record = logged(
            caplog,
            f"[s1] SessionActor-{session.ref.name.rsplit('-', 1)[-1]}: mailbox full (2 messages);"
            f" disconnecting {raw.address}",
        )
        assert record.levelno == logging.WARNING


async def test_the_teardown_is_queued_even_into_a_full_mailbox() -> None:
    app = make_app(mailbox_limits={"SessionActor": 2})
    async with running(app) as test:
        for expected in (1, 2):  # counted once per connection, added up
            raw = await connect(test)
            await raw.handshake()
            session = session_of(app, raw)
            ref = session.ref
            await until(lambda ref=ref: ref.mailbox_depth == 0 and not ref._cell.scheduled)
            raw.channel.server_side.abort()  # the connection is lost: its teardown is due...
            session.push("onA", {})  # ...behind two messages that fill the mailbox
            session.push("onB", {})
            await until(lambda: len(app.sessions) == 0)
            assert app.stats.mailbox_overflows == expected - 1
            raw = await connect(test)
            await raw.handshake()
            session = session_of(app, raw)
            for _ in range(3):
                session.push("onFlood", {})
            await raw.until_closed()
            await until(lambda: len(app.sessions) == 0)
            assert app.stats.mailbox_overflows == expected


async def test_large_bodies_take_turns_and_keep_their_order() -> None:
    # Three bodies of 700 KB in one read: one fits the loop's decode budget per turn, the
    # others wait for their turn (DecodeTurn), in order.
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        bodies = [b'"' + bytes([c]) * 700_000 + b'"' for c in b"abc"]
        await raw.send(b"".join(raw.request("svc.echo", body) for body in bodies))
        answers = [await raw.message() for _ in range(3)]
        assert [(a.id, a.data) for a in answers] == [(1, bodies[0]), (2, bodies[1]), (3, bodies[2])]


async def test_a_session_actor_stopped_with_its_connection_open_aborts_it() -> None:
    app = make_app()
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await session_of(app, raw).ref.stop()
        assert await raw.until_closed() == []  # no kick: aborted


# -- the response-time metric ---------------------------------------------------------------


def response_times(recorder: Recorder) -> list[tuple[str, str, str, str]]:
    calls = recorder.find(lambda c: c.metric == RESPONSE_TIME)
    for call in calls:
        assert call.method == "summary"
        assert 0 < call.value < TIMEOUT * 1e9  # nanoseconds since the message arrived
    return [(c.tags["route"], c.tags["status"], c.tags["type"], c.tags["code"]) for c in calls]


async def test_response_times_are_reported_per_route_and_outcome() -> None:
    app = make_app(max_pending_requests=1)
    recorder = Recorder()
    app.add_metrics_reporter(recorder)
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(
            raw.request("svc.echo", b"1")
            + raw.request("svc.fail")
            + raw.request("svc.refuse")
            + raw.request("nope.x")
            + raw.request("svc.lost")
            + raw.notify("svc.note", b"2")
        )
        for _ in range(5):
            await raw.message()
        await until(lambda: len(response_times(recorder)) == 6)
        assert sorted(response_times(recorder)) == [
            ("svc.echo", "ok", "handler", ""),
            ("svc.fail", "failed", "handler", "PIT-500"),
            ("svc.lost", "failed", "handler", "PIT-404"),  # served here: keeps its name
            ("svc.note", "ok", "handler", ""),
            ("svc.refuse", "failed", "handler", "PIT-403"),
            ("unknown", "failed", "handler", "PIT-404"),
        ]
        # The invocation path got the arrival time too: its process-delay metric.
        delays = recorder.find(lambda c: c.metric == PROCESS_DELAY)
        assert {c.tags["route"] for c in delays} == {
            "svc.echo",
            "svc.fail",
            "svc.refuse",
            "svc.lost",
            "svc.note",
        }
        # Refused because too many wait: a served route keeps its name, others are "unknown".
        recorder.calls.clear()
        await raw.send(raw.request("svc.hold"))
        await until(lambda: app.invoker.running == 1)
        await raw.send(raw.request("svc.echo") + raw.request("svc.echo") + raw.request("a.b"))
        await raw.message()
        await raw.message()
        assert response_times(recorder) == [
            ("svc.echo", "failed", "handler", "PIT-429"),
            ("unknown", "failed", "handler", "PIT-429"),
        ]
        svc(app).gate.set()


# -- tracing ---------------------------------------------------------------------------------


async def test_each_message_is_traced_and_its_span_ended() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app()
    app.enable_tracing(provider)
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(raw.request("svc.traced"))
        seen = JsonSerializer().unmarshal((await raw.message()).data)["span"]
        await until(lambda: len(exporter.get_finished_spans()) == 1)
        (traced,) = exporter.get_finished_spans()
        assert traced.context is not None and seen == traced.context.span_id  # current
        exporter.clear()
        await raw.send(raw.request("svc.echo", b"1") + raw.request("svc.refuse"))
        await raw.message()
        await raw.message()
        await raw.send(raw.notify("svc.note", b"2"))
        await until(lambda: len(exporter.get_finished_spans()) == 3)
        echo, refuse, note = exporter.get_finished_spans()
        assert (echo.name, refuse.name, note.name) == ("svc.echo", "svc.refuse", "svc.note")
        assert echo.status.status_code is StatusCode.UNSET
        assert refuse.status.status_code is StatusCode.ERROR
        assert echo.attributes is not None and note.attributes is not None
        assert dict(echo.attributes) == {
            "route": "svc.echo",
            "local.id": "s1",
            "local.serverType": "svc",
            "session.id": 1,
            "msg.type": "request",
        }
        assert note.attributes["msg.type"] == "notify"
        # A bound session's spans name its user.
        await raw.send(raw.request("svc.login", b'{"uid":"ann"}') + raw.request("svc.echo", b"3"))
        await raw.message()
        await raw.message()
        await until(lambda: len(exporter.get_finished_spans()) == 5)
        bound = exporter.get_finished_spans()[4]
        assert bound.attributes is not None and bound.attributes["user.id"] == "ann"
        before_hold = 5
        # A request still running when the client leaves: its span is ended with the session.
        await raw.send(raw.request("svc.hold"))
        await until(lambda: app.invoker.running == 1)
        await raw.channel.close()
        await until(lambda: len(exporter.get_finished_spans()) == before_hold + 1)
        assert exporter.get_finished_spans()[before_hold].name == "svc.hold"
        svc(app).gate.set()


# -- forwarding (cluster mode, in memory) ----------------------------------------------------


class Ops(Handler):
    """The backend's ``room.ops.*`` and ``room.more.*`` routes."""

    service = "ops"

    def __init__(self, seen: list[str]) -> None:
        self.gate = asyncio.Event()
        self.seen = seen

    @handler
    async def hold(self, session: Session, body: Any) -> Any:
        self.seen.append(f"hold {body}")
        await self.gate.wait()
        return body

    @handler
    def echo(self, session: Session, body: Any) -> Any:
        self.seen.append(f"echo {body}")
        return body


class More(Handler):
    service = "more"

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    @handler
    def echo(self, session: Session, body: Any) -> Any:
        self.seen.append(f"more {body}")
        return body


@dataclass
class Net:
    front: App
    ops: Ops
    raw: Raw


@asynccontextmanager
async def frontend_and_backend(setup: Any = None, **options: Any) -> AsyncIterator[Net]:
    network = MemoryCluster()

    def server(server_type: str, **more: Any) -> App:
        return cluster_app(network, server_type, server_id=f"{server_type}-1", **more)

    room = server("room", frontend=False)
    seen: list[str] = []
    room.register(Ops, seen)
    room.register(More, seen)
    async with room:
        ops = room.handler_ref("ops")._cell.actor
        assert isinstance(ops, Ops)
        front = server("connector", **options)
        front.register(Svc)
        if setup is not None:
            setup(front)
        async with running(front) as test:
            raw = await connect(test)
            await raw.handshake()
            yield Net(front, ops, raw)
            ops.gate.set()


def front_session_actor(net: Any) -> Any:
    """The frontend's one session actor."""
    [session] = net.front.sessions
    return session.ref._cell.actor


async def test_forwards_to_one_service_pipeline_others_wait_their_turn() -> None:
    async with frontend_and_backend() as net:
        await net.raw.send(
            net.raw.request("room.ops.hold", b"1")
            + net.raw.request("room.ops.echo", b"2")  # same server and service: pipelined
            + net.raw.request("room.more.echo", b"3")  # another service: waits
            + net.raw.request("svc.echo", b"4")  # a local route: waits
            + net.raw.notify("chat.x.y")  # no server of that type: waits, then nothing
            + net.raw.request("room.ops.echo", b"5")
        )
        # Both forwarded at once (the backend's sequencer then runs them in order); the
        # others wait, received: a graceful stop counts all six.
        actor = front_session_actor(net)
        await until(lambda: len(actor.in_flight) == 2)
        await asyncio.sleep(0.01)
        assert len(actor.in_flight) == 2 and len(actor.pending) == 4
        assert net.front.requests_in_flight.count == 6
        assert net.ops.seen == ["hold 1"]
        net.ops.gate.set()
        answers = [await net.raw.message() for _ in range(5)]
        assert [(a.id, a.data) for a in answers] == [
            (1, b"1"),
            (2, b"2"),
            (3, b"3"),
            (4, b"4"),
            (5, b"5"),
        ]
        assert net.ops.seen == ["hold 1", "echo 2", "more 3", "echo 5"]
        assert net.front.requests_in_flight.count == 0


async def test_at_most_max_pipelined_forwards_are_in_flight() -> None:
    async with frontend_and_backend() as net:
        count = MAX_PIPELINED + 1
        await net.raw.send(
            b"".join(net.raw.request("room.ops.hold", b"%d" % i) for i in range(count))
        )
        actor = front_session_actor(net)
        await until(lambda: len(actor.in_flight) == MAX_PIPELINED)
        await asyncio.sleep(0.01)
        assert len(actor.in_flight) == MAX_PIPELINED and len(actor.pending) == 1
        net.ops.gate.set()
        answers = [await net.raw.message() for _ in range(count)]
        assert [a.id for a in answers] == list(range(1, count + 1))


async def test_a_type_with_no_server_answers_requests_in_turn_and_drops_notifies() -> None:
    async with frontend_and_backend() as net:
        await net.raw.send(
            net.raw.request("room.ops.hold", b"1")
            + net.raw.request("chat.x.y")
            + net.raw.notify("chat.x.y")
            + net.raw.request("room.ops.echo", b"3")
        )
        await until(lambda: net.ops.seen == ["hold 1"])
        net.ops.gate.set()
        first, second, third = [await net.raw.message() for _ in range(3)]
        assert (first.id, first.data) == (1, b"1")
        assert second.id == 2
        assert error_of(second) == ErrorBody(
            "PIT-500", "no servers available of type chat", {"server_type": "chat"}
        )
        assert (third.id, third.data) == (3, b"3")


async def test_forwarded_response_times_name_the_route_or_unknown() -> None:
    recorder = Recorder()
    async with frontend_and_backend(lambda app: app.add_metrics_reporter(recorder)) as net:
        await net.raw.send(
            net.raw.request("room.ops.echo", b"1")
            + net.raw.request("room.ops.nope")
            + net.raw.request("chat.x.y")
            + net.raw.notify("room.ops.echo", b"2")
        )
        for _ in range(3):
            await net.raw.message()

        def handler_times() -> list[tuple[str, str, str, str]]:
            return [t for t in response_times(recorder) if t[2] == "handler"]  # not "rpc"

        await until(lambda: len(handler_times()) == 4)
        assert sorted(handler_times()) == [
            ("room.ops.echo", "ok", "handler", ""),
            ("room.ops.echo", "ok", "handler", ""),
            ("unknown", "failed", "handler", "PIT-404"),
            ("unknown", "failed", "handler", "PIT-500"),  # no server of type chat
        ]


async def test_routes_of_server_types_with_no_server_make_no_time_series_of_their_own() -> None:
    # A client can spell any number of "<type>.x.y" routes: when no server of the type takes
    # them, they were served nowhere and must not each open a time series of the metric.
    recorder = Recorder()
    async with frontend_and_backend(lambda app: app.add_metrics_reporter(recorder)) as net:
        count = 20
        await net.raw.send(
            b"".join(net.raw.request(f"made{i}.x.y") for i in range(count))
            + b"".join(net.raw.notify(f"made{i}.x.z") for i in range(count))
        )
        for _ in range(count):
            assert error_of(await net.raw.message()).code == "PIT-500"
        await until(lambda: len(response_times(recorder)) == 2 * count)
        assert {route for route, *_ in response_times(recorder)} == {"unknown"}


async def test_forwarded_messages_are_traced() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with frontend_and_backend(lambda app: app.enable_tracing(provider)) as net:
        await net.raw.send(
            net.raw.request("room.ops.echo", b"1") + net.raw.request("room.ops.nope")
        )
        await net.raw.message()
        await net.raw.message()

        def servers() -> list[Any]:
            return [s for s in exporter.get_finished_spans() if s.name.startswith("room.")]

        await until(lambda: len(servers()) == 2)
        echo, nope = servers()
        calls = [s for s in exporter.get_finished_spans() if s.name == "NATS RPC Call"]
        assert len(calls) == 2
        assert calls[0].parent is not None and echo.context is not None
        assert calls[0].parent.span_id == echo.context.span_id  # the RPC is part of the request
        assert (echo.name, nope.name) == ("room.ops.echo", "room.ops.nope")
        assert echo.status.status_code is StatusCode.UNSET
        assert nope.status.status_code is StatusCode.ERROR
        assert echo.attributes is not None and echo.attributes["msg.type"] == "request"
        # A forward still open when the client leaves: ended with the session, counted done.
        await net.raw.send(net.raw.request("room.ops.hold", b"2"))
        await until(lambda: net.ops.seen[-1:] == ["hold 2"])
        assert net.front.requests_in_flight.count == 1
        await net.raw.channel.close()
        await until(lambda: len(servers()) == 3)
        assert net.front.requests_in_flight.count == 0


async def test_a_custom_route_sees_the_route_and_the_session() -> None:
    chosen: list[tuple[Any, str]] = []

    def pick(session: Session | None, route: str, servers: list[Any]) -> Any:
        chosen.append((session, route))
        return servers[0]

    async with frontend_and_backend(lambda app: app.add_route("room", pick)) as net:
        await net.raw.send(net.raw.request("room.ops.echo", b"1"))
        assert (await net.raw.message()).data == b"1"
        assert chosen == [(session_of(net.front, net.raw), "room.ops.echo")]


async def test_a_route_the_backend_does_not_serve_is_forgotten_from_served_by() -> None:
    async with frontend_and_backend() as net:
        session = session_of(net.front, net.raw)
        await net.raw.send(net.raw.request("room.ops.echo", b"1") + net.raw.request("room.ops.no"))
        await net.raw.message()
        assert error_of(await net.raw.message()).code == "PIT-404"
        assert session.served_by == {"room-1": {"room.ops.echo"}}
        await net.raw.send(net.raw.request("room.more.nope"))
        await net.raw.message()
        assert session.served_by == {"room-1": {"room.ops.echo"}}
    async with frontend_and_backend() as net:
        session = session_of(net.front, net.raw)
        await net.raw.send(net.raw.request("room.ops.no"))
        await net.raw.message()
        assert session.served_by == {}  # the server's last route gone: the server too


async def test_a_forwarded_notify_that_cannot_be_sent_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with frontend_and_backend(shutdown_timeout=0.2) as net:
        raw = net.raw
        session = session_of(net.front, raw)
        await raw.send(raw.request("svc.spoil"))
        await raw.message()
        await raw.send(raw.notify("room.ops.echo", b"1") + raw.request("room.ops.echo", b"2"))
        # The request fails the same way, and is answered (at once: 1 s is plenty).
        answer = await asyncio.wait_for(raw.message(), 1)
        assert answer.id == 2 and error_of(answer).code == "PIT-500"
        failed = [m for m in caplog.messages if " failed: " in m]
        assert len(failed) == 1
        assert failed[0].startswith(
            f"[connector-1] session {session.id}: notify room.ops.echo failed: "
        )
        record = next(r for r in caplog.records if r.getMessage() == failed[0])
        assert record.levelno == logging.WARNING
        # A local notify that fails (a PitayaError by then) is not logged here.
        await raw.send(raw.notify("svc.fail") + raw.request("svc.echo", b"3"))
        assert (await raw.message()).data == b"3"
        assert len([m for m in caplog.messages if " failed: " in m]) == 1


async def test_a_notify_whose_forward_fails_with_a_plain_error_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with frontend_and_backend() as net:
        cluster: Any = net.front.cluster
        real = cluster.forward

        def forward(
            server: Any,
            session: Session,
            route: str,
            data: bytes,
            notify: bool,
            reply: Any,
            *,
            parent: Any = None,
            pipelined: bool = False,
        ) -> None:
            if route == "room.ops.echo" and notify:
                error = RuntimeError("wire broke") if data == b"1" else PitayaError("PIT-1", "x")
                reply(None, error)
            else:
                real(
                    server, session, route, data, notify, reply, parent=parent, pipelined=pipelined
                )

        cluster.forward = forward  # the Forwarder seam, failing for notifies
        raw = net.raw
        session = session_of(net.front, raw)
        await raw.send(
            raw.notify("room.ops.echo", b"1")
            + raw.notify("room.ops.echo", b"2")
            + raw.request("room.ops.echo", b"3")
        )
        answer = await raw.message()
        assert (answer.id, answer.data) == (1, b"3")  # the notifies are answered by nobody
        failed = [r for r in caplog.records if " failed: " in r.getMessage()]
        assert [r.getMessage() for r in failed] == [
            f"[connector-1] session {session.id}: notify room.ops.echo failed: wire broke"
        ]
        assert failed[0].levelno == logging.WARNING


async def test_the_same_unknown_route_twice_in_flight_is_answered_twice() -> None:
    async with frontend_and_backend() as net:
        raw = net.raw
        # Both in flight at once: the first answer forgets the route, and the server with
        # it; the second finds nothing left to forget.
        await raw.send(raw.request("room.ops.no") + raw.request("room.ops.no"))
        answers = [await raw.message() for _ in range(2)]
        assert session_of(net.front, raw).served_by == {}
        await raw.send(raw.request("room.ops.echo", b"3"))
        answers.append(await raw.message())
        assert [a.id for a in answers] == [1, 2, 3]
        assert [error_of(a).code for a in answers[:2]] == ["PIT-404", "PIT-404"]
        assert session_of(net.front, raw).served_by == {"room-1": {"room.ops.echo"}}


async def test_the_buffer_is_free_once_a_local_handler_is_done() -> None:
    # A running local request's body counts, and not once it is done: with a forward open
    # next, the whole buffer is there again for the messages that wait behind it.
    async with frontend_and_backend(max_session_buffer=100) as net:
        raw = net.raw
        await raw.send(raw.request("svc.ahold", b'"' + b"h" * 48 + b'"'))
        await until(lambda: net.front.invoker.running == 1)
        svc(net.front).gate.set()
        await raw.message()
        await raw.send(raw.request("room.ops.hold", b"1"))
        await until(lambda: net.front.requests_in_flight.count == 1)
        fits = b'"' + b"f" * 48 + b'"'  # 50 + 50 == 100, exactly the limit
        await raw.send(raw.request("svc.echo", fits) + raw.request("svc.echo", fits))
        await asyncio.sleep(0.01)
        net.ops.gate.set()
        answers = [await raw.message() for _ in range(3)]
        assert [(a.id, a.error) for a in answers] == [(2, False), (3, False), (4, False)]


async def test_the_whole_buffer_is_there_while_only_a_forward_is_open() -> None:
    async with frontend_and_backend(max_session_buffer=100) as net:
        raw = net.raw
        await raw.send(raw.request("room.ops.hold", b"1"))  # no local body held
        await until(lambda: net.front.requests_in_flight.count == 1)
        fits = b'"' + b"f" * 48 + b'"'  # 50 + 50 == 100, exactly the limit
        await raw.send(raw.request("svc.echo", fits) + raw.request("svc.echo", fits))
        await asyncio.sleep(0.01)
        net.ops.gate.set()
        answers = [await raw.message() for _ in range(3)]
        assert [(a.id, a.error) for a in answers] == [(1, False), (2, False), (3, False)]


# -- a synchronous handler's answer, written in the same turn ----------------------------------


class Pusher(Handler):
    """Synchronous handlers that push to their own session, kick it, or only answer."""

    service = "pusher"

    @handler
    def push_then_answer(self, session: Session, body: Any) -> dict[str, str]:
        session.push("pushed", {"n": 1})
        session.push("pushed", {"n": 2})
        return {"answer": "after the pushes"}

    @handler
    def answer(self, session: Session, body: Any) -> dict[str, Any]:
        return {"echo": body}


async def test_a_sync_handlers_pushes_reach_the_client_before_its_answer() -> None:
    app = make_app()
    app.register(Pusher)
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        await raw.send(raw.request("pusher.push_then_answer"))
        got = [await raw.message() for _ in range(3)]
        assert [(m.type, m.route) for m in got] == [
            (MessageType.PUSH, "pushed"),
            (MessageType.PUSH, "pushed"),
            (MessageType.RESPONSE, ""),
        ]
        assert [JsonSerializer().unmarshal(m.data) for m in got] == [
            {"n": 1},
            {"n": 2},
            {"answer": "after the pushes"},
        ]


async def test_pipelined_answers_keep_the_order_of_the_requests() -> None:
    """Sync answers written in the turn, an async one through the mailbox, sync ones again:
    the client reads them in the order it asked."""
    app = make_app()
    app.register(Pusher)
    async with running(app) as test:
        raw = await connect(test)
        await raw.handshake()
        batch = b"".join(
            [
                raw.request("pusher.answer", b'{"i":1}'),
                raw.request("svc.ahold", b'{"i":2}'),
                raw.request("pusher.answer", b'{"i":3}'),
                raw.request("pusher.push_then_answer"),
                raw.request("pusher.answer", b'{"i":4}'),
            ]
        )
        svc(app).gate.set()  # ahold still runs as a task of its own, answered later
        await raw.send(batch)
        got = [await raw.message() for _ in range(7)]
        push, response = MessageType.PUSH, MessageType.RESPONSE
        assert [(m.type, m.id) for m in got] == [
            (response, 1),
            (response, 2),
            (response, 3),
            (push, 0),
            (push, 0),
            (response, 4),
            (response, 5),
        ]

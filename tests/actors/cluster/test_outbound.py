"""This server's calls to the others (``actors.cluster.outbound``): forwarded client messages,
user RPCs, controls to a frontend.

:class:`Outbound` is given a hand-made RPC client (:class:`Wire`) that records each encoded
request (decoded back here) and answers it as the test says, a real
:class:`~actors.cluster.router.Router` over a fixed server table, and metrics and tracing off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from actors.cluster.bridge import LateAnswer, OutboundCall, OutboundNotify
from actors.cluster.codec import (
    ARGS_KEY,
    EXTRAS_KEY,
    EXTRAS_VERSION,
    MSGPACK_ARGS,
    PIPELINED_KEY,
    RPC_SERIALIZER,
    SYS,
    USER,
    RpcRequest,
    SessionSnapshot,
    UserPush,
    decode_push,
    decode_request,
    encode_answer,
    encode_error,
    encode_json_body,
)
from actors.cluster.control import (
    GO_CLOSED_SESSION,
    HandshakeGet,
    SessionEvent,
    SessionKick,
    SessionPush,
    UidKick,
    UidPush,
    decode_control,
)
from actors.cluster.discovery import ServerInfo
from actors.cluster.outbound import Outbound, RpcArgumentError, UnsendableRequest, go_duration
from actors.cluster.router import Router
from actors.cluster.rpc import ClusterUnavailable, ServerUnreachable
from actors.cluster.session_events import MAX_SERVED_SERVERS
from actors.errors import InternalError, PitayaError, RpcTimeout
from transport.handshake import HandshakeRequest

OURS = {EXTRAS_KEY: EXTRAS_VERSION}


def server(
    server_id: str, server_type: str = "room", *, ours: bool = True, **kw: Any
) -> ServerInfo:
    metadata = dict(OURS) if ours else {}
    return ServerInfo(server_id, server_type, hostname="h", metadata=metadata, **kw)


ME = server("c-1", "connector", frontend=True)


@dataclass
class Sent:
    server: str
    request: RpcRequest
    timeout: float
    reply: Callable[[Any, BaseException | None], None]
    target: ServerInfo


Answer = Callable[[ServerInfo, RpcRequest], tuple[bytes | None, BaseException | None]]


class Wire:
    """The RPC client. With ``answer`` set, each call is answered at once with what it returns
    for (server, request); without, the test answers ``sent[i].reply`` itself."""

    ordered = True

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer
        self.connected = True
        self.direct: Any = None
        self.user_subjects: Any = None
        self.sent: list[Sent] = []
        self.notified: list[tuple[str, RpcRequest]] = []

    def start_call(self, target: ServerInfo, payload: bytes, timeout: float, reply: Any) -> None:
        if not self.connected:  # as NatsRpc's: failed at once, nothing sent
            reply(None, ClusterUnavailable("cluster unavailable: not connected to memory"))
            return
        request = decode_request(payload)
        self.sent.append(Sent(target.id, request, timeout, reply, target))
        if self.answer is not None:
            reply(*self.answer(target, request))

    def notify(self, target: ServerInfo, payload: bytes) -> None:
        self.notified.append((target.id, decode_request(payload)))


class BridgeWire(Wire):
    """A client without ``start_call``: calls and notifies go through the bridge actor."""

    start_call = None  # type: ignore[assignment]


class Bridge:
    """The bridge actor's ref: what it was asked and told."""

    def __init__(self) -> None:
        self.requests: list[tuple[Any, Any]] = []
        self.told: list[Any] = []
        self.mailbox_depth = 0

    def request(self, message: Any, reply: Any) -> None:
        self.requests.append((message, reply))

    def tell(self, message: Any) -> None:
        self.told.append(message)


class Table:
    def __init__(self, *servers: ServerInfo) -> None:
        self.table = {s.id: s for s in servers}

    def servers(self, server_type: str) -> list[ServerInfo]:
        return [s for s in self.table.values() if s.type == server_type]

    def server(self, server_id: str) -> ServerInfo | None:
        return self.table.get(server_id)


@dataclass
class FrontSession:
    id: int = 7
    uid: str | None = "ann"
    data: dict[str, Any] = field(default_factory=dict)
    handshake: HandshakeRequest | None = None
    served_by: dict[str, set[str]] | None = None


class Metrics:
    """A metrics reporter that keeps what it was told."""

    enabled = True

    def __init__(self) -> None:
        self.summaries: list[tuple[str, dict[str, str]]] = []

    def report_summary(self, name: str, labels: dict[str, str], value: float) -> None:
        self.summaries.append((name, labels))


class Tracing:
    """Tracing on: each client span started is recorded, with its target and parent."""

    enabled = True

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, Any]] = []

    def start_rpc_client_span(
        self, request: RpcRequest, server_id: str, server_type: str, parent: Any
    ) -> Any:
        self.spans.append((request.route, server_id, server_type, parent))
        return None


def outbound(
    *servers: ServerInfo,
    wire: Wire | None = None,
    bridge: Any = True,
    metrics: Any = None,
    tracing: Any = None,
) -> Outbound:
    table = Table(ME, *servers)
    made = Outbound(
        me=ME,
        discovery=table,  # type: ignore[arg-type]
        router=Router(table, server_id="c-1"),  # type: ignore[arg-type]
        client=wire or Wire(),  # type: ignore[arg-type]
        rpc_timeout=2.5,
        metrics=metrics or SimpleNamespace(enabled=False),
        tracing=tracing or SimpleNamespace(enabled=False),
        via="memory",
    )
    made.bridge = (Bridge() if bridge is True else bridge) if bridge is not None else None
    return made


class Replies:
    """A ``Reply`` that keeps what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, BaseException | None]] = []

    def __call__(self, result: Any, error: BaseException | None) -> None:
        self.got.append((result, error))


def ok(payload: bytes = b"fine") -> Answer:
    return lambda target, request: (encode_answer(payload), None)


# -- forward -------------------------------------------------------------------------------


def test_forward_sends_the_client_message_with_the_session_and_records_who_served_it() -> None:
    wire = Wire(ok(b"answer"))
    out = outbound(server("room-1"), wire=wire)
    session = FrontSession(data={"level": 3})
    replies = Replies()
    out.forward(server("room-1"), session, "room.r.join", b"{}", False, replies)  # type: ignore[arg-type]
    assert replies.got == [(b"answer", None)]
    (sent,) = wire.sent
    assert (sent.server, sent.timeout) == ("room-1", 2.5)
    request = sent.request
    assert (request.kind, request.route, request.data, request.notify) == (
        SYS,
        "room.r.join",
        b"{}",
        False,
    )
    assert request.session is not None
    assert (request.session.id, request.session.uid, request.session.data) == (
        7,
        "ann",
        {"level": 3},
    )
    assert (request.session.frontend_id, request.session.frontend_type) == ("c-1", "connector")
    assert (request.metadata["peer.id"], request.metadata["peer.service"]) == ("c-1", "connector")
    assert request.metadata["reqTimeout"] == "2500ms"  # Go's duration
    assert session.served_by == {"room-1": {"room.r.join"}}
    out.forward(server("room-1"), session, "room.r.chat", b"", True, replies)  # type: ignore[arg-type]
    assert wire.sent[1].request.notify
    assert session.served_by == {"room-1": {"room.r.join", "room.r.chat"}}


def test_an_answer_waits_behind_the_messages_received_before_it() -> None:
    # Over NATS a backend's push control and then its answer reach this frontend in that
    # order; the push waits in the bridge's mailbox, so the answer must wait behind it.
    wire = Wire()
    out = outbound(server("room-1"), wire=wire)
    bridge = out.bridge
    assert isinstance(bridge, Bridge)
    replies = Replies()
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"{}", False, replies)  # type: ignore[arg-type]
    bridge.mailbox_depth = 1  # a push control, received before the answer, still waits
    wire.sent[0].reply(encode_answer(b"answer"), None)
    assert replies.got == []
    (late,) = bridge.told
    assert isinstance(late, LateAnswer)
    late.deliver(late.result, late.error)  # the bridge's turn, after the push
    assert replies.got == [(b"answer", None)]
    # With nothing waiting, an answer is delivered at once.
    bridge.mailbox_depth = 0
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"{}", False, replies)  # type: ignore[arg-type]
    wire.sent[1].reply(encode_answer(b"again"), None)
    assert replies.got[-1] == (b"again", None) and len(bridge.told) == 1


def test_the_handshake_goes_only_to_a_server_that_has_not_served_the_session() -> None:
    wire = Wire(ok())
    room1, room2 = server("room-1"), server("room-2")
    out = outbound(room1, room2, wire=wire)
    session = FrontSession(handshake=HandshakeRequest(sys={"platform": "mac"}, user={}))
    for target in (room1, room1, room2):
        out.forward(target, session, "room.r.join", b"", False, Replies())  # type: ignore[arg-type]
    first, again, other = (s.request.session for s in wire.sent)
    assert first is not None and again is not None and other is not None
    assert first.handshake == {"sys": {"platform": "mac"}, "user": {}}
    assert (again.handshake, again.handshake_omitted) == (None, True)
    assert other.handshake == first.handshake


def test_a_remote_error_comes_back_as_its_pitaya_error() -> None:
    refusal = encode_error(PitayaError("PIT-403", "not yours", {"why": "x"}))
    out = outbound(server("room-1"), wire=Wire(lambda s, r: (refusal, None)))
    replies = Replies()
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"", False, replies)  # type: ignore[arg-type]
    ((result, error),) = replies.got
    assert result is None and isinstance(error, PitayaError)
    assert (error.code, error.msg, error.metadata) == ("PIT-403", "not yours", {"why": "x"})


def test_a_forward_nobody_received_goes_to_another_server_of_the_type() -> None:
    room1, room2, room3 = server("room-1"), server("room-2"), server("room-3")

    def answer(target: ServerInfo, request: RpcRequest) -> tuple[Any, Any]:
        if target.id == "room-3":
            return encode_answer(b"from 3"), None
        return None, ServerUnreachable("gone")

    wire = Wire(answer)
    out = outbound(room1, room2, room3, wire=wire)
    replies = Replies()
    session = FrontSession()
    out.forward(room1, session, "room.r.join", b"x", True, replies)  # type: ignore[arg-type]
    assert replies.got == [(b"from 3", None)]
    assert all(s.request.notify for s in wire.sent)  # resent as it was
    assert wire.sent[0].server == "room-1"
    assert wire.sent[-1].server == "room-3"  # after room-2 or not: the router's choice
    assert len({s.server for s in wire.sent}) == len(wire.sent)  # none tried twice
    assert all(s.request.route == "room.r.join" and s.request.data == b"x" for s in wire.sent)
    assert "room-1" in out.router.probation


def test_a_forward_nobody_received_anywhere_fails_with_the_refusal() -> None:
    wire = Wire(lambda s, r: (None, ServerUnreachable("gone")))
    out = outbound(server("room-1"), server("room-2"), wire=wire)
    replies = Replies()
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"", False, replies)  # type: ignore[arg-type]
    ((_, error),) = replies.got
    assert isinstance(error, ServerUnreachable)
    assert [s.server for s in wire.sent] == ["room-1", "room-2"]


def test_a_timeout_is_never_resent() -> None:
    wire = Wire(lambda s, r: (None, RpcTimeout()))
    out = outbound(server("room-1"), server("room-2"), wire=wire)
    replies = Replies()
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"", False, replies)  # type: ignore[arg-type]
    ((_, error),) = replies.got
    assert type(error) is RpcTimeout
    assert [s.server for s in wire.sent] == ["room-1"]
    assert out.router.probation == {}


def test_a_forward_that_cannot_be_encoded_fails_without_sending() -> None:
    wire = Wire(ok())
    out = outbound(server("room-1"), wire=wire)
    replies = Replies()
    session = FrontSession(data={"bad": object()})
    out.forward(server("room-1"), session, "room.r.join", b"", True, replies)  # type: ignore[arg-type]
    ((_, error),) = replies.got
    assert isinstance(error, UnsendableRequest)
    assert "room.r.join" in str(error) and "room-1" in str(error)
    assert wire.sent == []


def test_no_call_leaves_without_the_bridge_or_a_connection() -> None:
    for out in (outbound(server("room-1"), bridge=None), outbound(server("room-1"))):
        if out.bridge is not None:
            out.client.connected = False  # type: ignore[misc]
        replies = Replies()
        out.forward(server("room-1"), FrontSession(), "room.r.join", b"", False, replies)  # type: ignore[arg-type]
        ((_, error),) = replies.got
        assert isinstance(error, ClusterUnavailable)
        assert "memory" in str(error)
        assert out.client.sent == []  # type: ignore[attr-defined]


def test_past_the_servers_cap_a_server_is_not_recorded_and_that_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rooms = [server(f"room-{i}") for i in range(MAX_SERVED_SERVERS + 2)]
    out = outbound(*rooms, wire=Wire(ok()))
    session = FrontSession()
    for room in rooms[:MAX_SERVED_SERVERS]:
        out.forward(room, session, "room.r.join", b"", False, Replies())  # type: ignore[arg-type]
    assert caplog.records == []  # within the cap: nothing to say
    for room in rooms[MAX_SERVED_SERVERS:]:
        out.forward(room, session, "room.r.join", b"", False, Replies())  # type: ignore[arg-type]
    assert session.served_by is not None and len(session.served_by) == MAX_SERVED_SERVERS
    assert [r.getMessage() for r in caplog.records] == [
        f"[c-1] session 7 was served by more than {MAX_SERVED_SERVERS} servers: the others "
        "are not told of its bind and close (logged once)"
    ]


def test_without_start_call_calls_and_notifies_go_through_the_bridge_in_order() -> None:
    wire = BridgeWire()
    out = outbound(server("room-1"), wire=wire)
    bridge = out.bridge
    assert isinstance(bridge, Bridge)
    replies = Replies()
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"", False, replies)  # type: ignore[arg-type]
    out.notify(server("room-1"), RpcRequest(USER, "room.r.note", b"n"))
    ((message, answer),) = bridge.requests
    assert isinstance(message, OutboundCall)
    assert (message.server.id, message.timeout) == ("room-1", 2.5)
    assert decode_request(message.payload).route == "room.r.join"
    (told,) = bridge.told
    assert isinstance(told, OutboundNotify)
    assert decode_request(told.payload).route == "room.r.note"
    assert wire.notified == []
    answer(encode_answer(b"late"), None)
    assert replies.got == [(b"late", None)]


# -- notify --------------------------------------------------------------------------------


def test_a_notify_to_ours_is_a_notify_and_to_go_a_call_whose_error_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusal = encode_error(PitayaError("PIT-500", "boom"))
    wire = Wire(lambda s, r: (refusal, None))
    go = server("go-1", ours=False)
    out = outbound(server("room-1"), go, wire=wire)
    out.notify(server("room-1"), RpcRequest(USER, "room.r.note", b"n", notify=True))
    assert [(s, r.route) for s, r in wire.notified] == [("room-1", "room.r.note")]
    assert wire.sent == []
    out.notify(go, RpcRequest(USER, "room.r.note", b"n", notify=True))
    assert [s.server for s in wire.sent] == ["go-1"]
    assert [r.getMessage() for r in caplog.records] == ["[c-1] room.r.note failed: PIT-500: boom"]
    out.client.connected = False  # type: ignore[misc]
    out.notify(server("room-1"), RpcRequest(USER, "room.r.note", b"n"))
    assert len(wire.notified) == 1


def test_notifies_to_a_go_server_that_is_down_are_told_once_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each failed notify to a Go server logged a warning: a line per client message for
    as long as the server was down."""
    wire = Wire(lambda s, r: (None, RpcTimeout()))
    go = server("go-1", ours=False)
    out = outbound(go, wire=wire)
    for i in range(30):
        out.notify(go, RpcRequest(USER, f"room.r.note{i % 2}", b"n", notify=True))
    assert len(wire.sent) == 30
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "[c-1] room.r.note0 failed: PIT-408: rpc client: request timeout"
    ]
    caplog.clear()
    out._failed_notifies._last = -100.0  # 10 s later: told again, with how many were not
    out.notify(go, RpcRequest(USER, "room.r.note%s", b"n", notify=True))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "[c-1] room.r.note%s failed: PIT-408: rpc client: request timeout "
        "(29 more since the last such line, not logged)"
    ]


# -- user RPCs -----------------------------------------------------------------------------


async def test_rpc_to_ours_with_any_value_travels_as_msgpack_and_comes_back_decoded() -> None:
    wire = Wire(lambda s, r: (encode_answer(RPC_SERIALIZER.marshal({"got": 1})), None))
    out = outbound(server("room-1"), wire=wire)
    assert await out.rpc_to("room-1", "room.counts.add", {"n": 1}) == {"got": 1}
    (sent,) = wire.sent
    assert (sent.request.kind, sent.request.route) == (USER, "room.counts.add")
    assert sent.request.metadata[ARGS_KEY] == MSGPACK_ARGS
    assert RPC_SERIALIZER.unmarshal(sent.request.data) == {"n": 1}
    assert sent.timeout == 2.5
    await out.rpc_to("room-1", "room.counts.add", [1], timeout=0.5)
    assert wire.sent[1].timeout == 0.5


async def test_rpc_to_with_protobuf_or_bytes_is_pitayas_and_returns_the_bytes() -> None:
    answer = StringValue(value="HI").SerializeToString()
    wire = Wire(lambda s, r: (encode_answer(answer), None))
    out = outbound(server("room-1"), server("go-1", ours=False), wire=wire)
    for target in ("room-1", "go-1"):
        assert await out.rpc_to(target, "room.c.up", StringValue(value="hi")) == answer
        assert await out.rpc_to(target, "room.c.up", b"raw", reply=StringValue) == StringValue(
            value="HI"
        )
    first, second = wire.sent[:2]
    assert StringValue.FromString(first.request.data).value == "hi"
    assert ARGS_KEY not in first.request.metadata
    assert second.request.data == b"raw"


async def test_a_go_server_gets_no_msgpack_argument() -> None:
    wire = Wire(ok(b""))
    out = outbound(server("go-1", ours=False), wire=wire)
    with pytest.raises(RpcArgumentError) as caught:
        await out.rpc_to("go-1", "room.c.up", {"n": 1})
    assert caught.value.code == "PIT-400"
    assert "go-1" in caught.value.msg and "dict" in caught.value.msg
    assert wire.sent == []
    assert await out.rpc_to("go-1", "room.c.up") == b""  # no argument: fine
    assert wire.sent[0].request.data == b""


async def test_rpc_to_an_unknown_server_or_a_bad_reply_class_fails() -> None:
    out = outbound(server("room-1"), wire=Wire(ok(b"")))
    with pytest.raises(InternalError, match="room-9 not found"):
        await out.rpc_to("room-9", "room.c.up", b"")
    with pytest.raises(TypeError, match="protobuf message class"):
        await out.rpc_to("room-1", "room.c.up", b"", reply=dict)


async def test_rpc_to_a_server_that_served_the_session_omits_the_handshake() -> None:
    wire = Wire(ok(b""))
    out = outbound(server("room-1"), server("room-2"), wire=wire)
    session = FrontSession(
        handshake=HandshakeRequest(sys={"v": 1}, user={}), served_by={"room-1": {"r"}}
    )
    await out.rpc_to("room-1", "room.c.x", b"", session=session)  # type: ignore[arg-type]
    await out.rpc_to("room-2", "room.c.x", b"", session=session)  # type: ignore[arg-type]
    served, fresh = (s.request.session for s in wire.sent)
    assert served is not None and fresh is not None
    assert (served.uid, served.handshake_omitted, served.handshake) == ("ann", True, None)
    assert fresh.handshake == {"sys": {"v": 1}, "user": {}}


async def test_rpc_by_route_is_resent_only_when_nobody_received_it() -> None:
    def answer(target: ServerInfo, request: RpcRequest) -> tuple[Any, Any]:
        if target.id == "room-2":
            return encode_answer(RPC_SERIALIZER.marshal("two")), None
        return None, ServerUnreachable("gone")

    wire = Wire(answer)
    out = outbound(server("room-1"), server("room-2"), wire=wire)
    for _ in range(5):
        assert await out.rpc("room.c.x", 1) == "two"
    # Each call went to room-2, straight or after room-1 refused it.
    assert [s.server for s in wire.sent].count("room-2") == 5
    before = len(wire.sent)
    wire.answer = lambda s, r: (None, RpcTimeout())
    with pytest.raises(RpcTimeout):
        await out.rpc("room.c.x", 1)
    assert len(wire.sent) == before + 1  # whichever server it went to: once


async def test_rpc_by_route_fails_with_the_refusal_when_every_server_refused() -> None:
    wire = Wire(lambda s, r: (None, ServerUnreachable("gone")))
    out = outbound(server("room-1"), server("room-2"), wire=wire)
    with pytest.raises(ServerUnreachable):
        await out.rpc("room.c.x", 1)
    assert sorted(s.server for s in wire.sent) == ["room-1", "room-2"]


async def test_rpc_to_by_id_is_never_resent() -> None:
    wire = Wire(lambda s, r: (None, ServerUnreachable("gone")))
    out = outbound(server("room-1"), server("room-2"), wire=wire)
    with pytest.raises(ServerUnreachable):
        await out.rpc_to("room-1", "room.c.x", 1)
    assert [s.server for s in wire.sent] == ["room-1"]


@pytest.mark.parametrize("route", ["room.c", "room..x", "a.b.c.d", ""])
async def test_an_rpc_route_must_have_three_parts(route: str) -> None:
    with pytest.raises(PitayaError) as caught:
        await outbound(server("room-1")).rpc(route)
    assert caught.value.code == "PIT-400"
    assert caught.value.msg == f"RPC route must be serverType.service.method, not {route!r}"


# -- controls to a frontend ----------------------------------------------------------------


async def test_a_control_to_a_frontend_of_ours_is_a_request_and_raises_its_error() -> None:
    front = server("c-2", "connector", frontend=True)
    wire = Wire(lambda s, r: (encode_error(PitayaError("PIT-404", "no session")), None))
    out = outbound(front, wire=wire)
    with pytest.raises(PitayaError, match="no session"):
        await out.frontend_call("c-2", UidKick("ann"))
    request = wire.sent[0].request
    assert decode_control(request.route, request) == UidKick("ann")


async def test_a_go_frontends_kick_of_a_closed_session_counts_as_kicked() -> None:
    go = server("go-1", "connector", ours=False, frontend=True)
    wire = Wire(lambda s, r: (encode_error(PitayaError("PIT-000", GO_CLOSED_SESSION)), None))
    out = outbound(go, wire=wire)
    await out.frontend_call("go-1", UidKick("ann"))
    wire.answer = lambda s, r: (encode_error(PitayaError("PIT-000", "other")), None)
    with pytest.raises(PitayaError, match="other"):
        await out.frontend_call("go-1", UidKick("ann"))


async def test_a_frontend_not_yet_in_discovery_is_reached_by_its_type() -> None:
    wire = Wire(ok(b""))
    out = outbound(wire=wire)
    await out.frontend_call("c-9", UidKick("ann"), "connector", True)
    target = wire.sent[0].target
    assert (target.id, target.type, target.frontend, target.metadata) == (
        "c-9",
        "connector",
        True,
        {EXTRAS_KEY: EXTRAS_VERSION},
    )
    # Not ours (extras False): Go's way, a closed session's kick error counts as kicked.
    wire.answer = lambda s, r: (encode_error(PitayaError("PIT-000", GO_CLOSED_SESSION)), None)
    await out.frontend_call("c-9", UidKick("ann"), "connector", False)
    assert wire.sent[1].target.metadata == {}
    with pytest.raises(PitayaError):
        await out.frontend_call("c-9", UidKick("ann"), "connector", True)
    with pytest.raises(InternalError) as caught:
        await out.frontend_call("c-9", UidKick("ann"))
    assert caught.value.msg == "frontend c-9 not found in discovery"
    out.frontend_notify("c-9", SessionKick(7, "ann", "bye"), "connector", False)
    sent = wire.sent[-1].request  # Go reads the uid; a frontend of ours the reason too
    assert decode_control(sent.route, sent) == UidKick("ann", "bye")
    assert wire.sent[-1].target.type == "connector"


async def test_a_control_to_an_unknown_frontend_without_its_type_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wire = Wire(ok(b""))
    out = outbound(wire=wire)
    out.frontend_notify("c-9", SessionKick(7, "ann", "bye"))
    assert wire.notified == [] and wire.sent == []
    assert [r.getMessage() for r in caplog.records] == [
        "[c-1] frontend 'c-9' unknown; dropping pysys.kick"
    ]


async def test_a_push_by_uid_goes_direct_over_grpc_and_as_our_request_over_nats() -> None:
    front = server("c-2", "connector", frontend=True)
    wire = Wire(ok(b""))
    out = outbound(front, wire=wire)
    await out.frontend_call("c-2", UidPush("ann", "onMsg", b"x"))
    request = wire.sent[0].request
    assert decode_control(request.route, request) == UidPush("ann", "onMsg", b"x")
    pushed: list[tuple[str, bytes, float]] = []

    async def push_to_user(target: ServerInfo, push: bytes, timeout: float) -> bytes:
        pushed.append((target.id, push, timeout))
        return b""

    wire.direct = SimpleNamespace(push_to_user=push_to_user)
    await out.frontend_call("c-2", UidPush("ann", "onMsg", b"x"))
    assert len(wire.sent) == 1
    assert [(t, decode_push(p), to) for t, p, to in pushed] == [
        ("c-2", UserPush("ann", "onMsg", b"x"), 2.5)
    ]


async def test_a_push_by_uid_to_a_go_frontend_over_nats_is_a_publish() -> None:
    go = server("go-1", "connector", ours=False, frontend=True)
    wire = Wire(ok(b""))
    out = outbound(go, wire=wire)
    with pytest.raises(InternalError):  # neither direct calls nor subjects
        await out.frontend_call("go-1", UidPush("ann", "onMsg", b"x"))
    published: list[tuple[str, str, str, bytes]] = []
    wire.user_subjects = SimpleNamespace(publish_user=lambda *a: published.append(a))
    await out.frontend_call("go-1", UidPush("ann", "onMsg", b"x"))
    assert [(t, u, w, decode_push(p)) for t, u, w, p in published] == [
        ("connector", "ann", "push", UserPush("ann", "onMsg", b"x"))
    ]
    assert wire.sent == []


async def test_session_controls_to_a_go_frontend_reach_bound_sessions_by_uid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    go = server("go-1", "connector", ours=False, frontend=True)
    wire = Wire(ok(b""))
    published: list[tuple[str, str, str, bytes]] = []
    wire.user_subjects = SimpleNamespace(publish_user=lambda *a: published.append(a))
    out = outbound(go, wire=wire)
    out.frontend_notify("go-1", SessionKick(7, "ann", "bye"))
    request = wire.sent[0].request  # a call: Go answers every request
    assert decode_control(request.route, request) == UidKick("ann", "bye")  # Go: the uid
    out.frontend_notify("go-1", SessionPush(7, "ann", "onMsg", b"x"))
    assert [(t, u, w, decode_push(p)) for t, u, w, p in published] == [
        ("connector", "ann", "push", UserPush("ann", "onMsg", b"x"))
    ]
    with caplog.at_level(logging.WARNING):
        out.frontend_notify("go-1", SessionPush(8, None, "onMsg", b"x"))  # unbound: dropped
    assert [r.getMessage() for r in caplog.records] == [
        "[c-1] pysys.push to session 8 on go-1 dropped: a Go frontend reaches only bound sessions"
    ]
    out.frontend_notify("go-1", SessionEvent("close", frozenset()))  # Go has no such route
    await out.frontend_call("go-1", SessionKick(8, None, ""))
    assert len(wire.sent) == 1 and len(published) == 1 and wire.notified == []


async def test_session_controls_to_a_frontend_of_ours_are_our_notifies() -> None:
    front = server("c-2", "connector", frontend=True)
    wire = Wire()
    out = outbound(front, wire=wire)
    out.frontend_notify("c-2", SessionPush(7, None, "onMsg", b"x"))
    ((target, request),) = wire.notified
    assert target == "c-2" and request.notify
    assert decode_control(request.route, request) == SessionPush(7, None, "onMsg", b"x")


async def test_fetch_handshake_asks_the_frontend_for_it() -> None:
    wire = Wire(lambda s, r: (encode_answer(encode_json_body({"hs": {"sys": {"v": 2}}})), None))
    out = outbound(wire=wire)
    assert await out.fetch_handshake("c-2", 7, "connector") == {"sys": {"v": 2}}
    request = wire.sent[0].request
    assert wire.sent[0].server == "c-2"
    assert decode_control(request.route, request) == HandshakeGet(7)
    wire.answer = lambda s, r: (encode_answer(encode_json_body({"hs": None})), None)
    assert await out.fetch_handshake("c-2", 7, "connector") is None
    wire.answer = lambda s, r: (encode_answer(encode_json_body({"hs": "odd"})), None)
    assert await out.fetch_handshake("c-2", 7, "connector") is None
    assert wire.sent[0].target.metadata == {EXTRAS_KEY: EXTRAS_VERSION}  # asked as one of ours


async def test_an_answer_to_a_server_on_probation_ends_it() -> None:
    wire = Wire(lambda s, r: (None, ServerUnreachable("gone")))
    out = outbound(server("room-1"), wire=wire)
    with pytest.raises(ServerUnreachable):
        await out.rpc_to("room-1", "room.c.x", 1)
    assert "room-1" in out.router.probation
    wire.answer = ok(b"")
    await out.rpc_to("room-1", "room.c.x", 1)
    assert out.router.probation == {}


def test_an_unreadable_answer_is_an_internal_error() -> None:
    out = outbound(server("room-1"), wire=Wire(lambda s, r: (b"\xff\xff\xff", None)))
    replies = Replies()
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"", False, replies)  # type: ignore[arg-type]
    ((_, error),) = replies.got
    assert isinstance(error, InternalError)


def test_ordered_is_the_clients() -> None:
    assert outbound().ordered is True
    wire = Wire()
    wire.ordered = False  # type: ignore[misc]
    assert outbound(wire=wire).ordered is False


def test_messages_are_pipelined_only_to_our_servers_over_an_ordered_transport() -> None:
    """A Go Pitaya server runs one session's messages concurrently, and hands no session
    changes from one to the next: each message to it waits for the previous answer."""
    assert outbound().pipelines_to(server("room-1"))
    assert not outbound().pipelines_to(server("go-room", ours=False))
    wire = Wire()
    wire.ordered = False  # type: ignore[misc]
    assert not outbound(wire=wire).pipelines_to(server("room-1"))


def test_a_pipelined_message_says_so_to_the_server() -> None:
    wire = Wire(ok(b"answer"))
    out = outbound(server("room-1"), wire=wire)
    session = FrontSession()
    replies = Replies()
    out.forward(server("room-1"), session, "room.r.a", b"", False, replies)  # type: ignore[arg-type]
    out.forward(server("room-1"), session, "room.r.b", b"", False, replies, pipelined=True)  # type: ignore[arg-type]
    first, second = (sent.request.metadata for sent in wire.sent)
    assert PIPELINED_KEY not in first
    assert second[PIPELINED_KEY] is True


class Told(logging.Handler):
    """The lines a logger tells, and an event set at each."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.seen.set()


async def test_a_push_to_a_go_frontends_session_goes_direct_over_grpc() -> None:
    go = server("go-1", "connector", ours=False, frontend=True)
    pushed: list[tuple[str, UserPush, float]] = []
    told = Told()
    logger = logging.getLogger("actors.cluster.outbound")
    logger.addHandler(told)

    async def push_to_user(target: ServerInfo, push: bytes, timeout: float) -> bytes:
        pushed.append((target.id, decode_push(push), timeout))
        if len(pushed) == 2:
            raise PitayaError("PIT-404", "not bound here")
        return b""

    wire = Wire(ok(b""))
    wire.direct = SimpleNamespace(push_to_user=push_to_user)
    out = outbound(go, wire=wire)
    out.frontend_notify("go-1", SessionPush(7, "ann", "onMsg", b"x"))
    out.frontend_notify("go-1", SessionPush(7, "ann", "onMsg", b"y"))
    try:
        await asyncio.wait_for(told.seen.wait(), 2)  # the second push's failure, logged
    finally:
        logger.removeHandler(told)
    assert pushed == [
        ("go-1", UserPush("ann", "onMsg", b"x"), 2.5),
        ("go-1", UserPush("ann", "onMsg", b"y"), 2.5),
    ]
    assert told.lines == ["[c-1] push failed: PIT-404: not bound here"]


async def test_rpc_by_route_carries_its_argument_session_timeout_and_reply_class() -> None:
    answer = StringValue(value="HI").SerializeToString()
    wire = Wire(lambda s, r: (encode_answer(answer), None))
    out = outbound(server("room-1"), wire=wire)
    got = await out.rpc(
        "room.c.up", StringValue(value="hi"), session=FrontSession(), timeout=0.7, reply=StringValue
    )  # type: ignore[arg-type]
    assert got == StringValue(value="HI")
    (sent,) = wire.sent
    assert StringValue.FromString(sent.request.data).value == "hi"
    assert sent.request.session is not None and sent.request.session.uid == "ann"
    assert sent.timeout == 0.7


def test_calls_are_timed_and_traced_when_metrics_or_tracing_are_on() -> None:
    metrics, tracing = Metrics(), Tracing()
    wire = Wire(ok())
    out = outbound(server("room-1"), wire=wire, metrics=metrics)
    replies = Replies()
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"", False, replies)  # type: ignore[arg-type]
    assert replies.got == [(b"fine", None)]
    assert metrics.summaries == [
        ("response_time_ns", {"route": "room.r.join", "status": "ok", "type": "rpc", "code": ""})
    ]
    parent = object()
    out = outbound(server("room-1"), wire=wire, tracing=tracing)
    out.forward(server("room-1"), FrontSession(), "room.r.join", b"", False, replies, parent=parent)  # type: ignore[arg-type]
    assert tracing.spans == [("room.r.join", "room-1", "room", parent)]
    assert len(replies.got) == 2


def test_a_notify_that_cannot_be_encoded_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    out = outbound(server("room-1"), wire=wire)
    bad = RpcRequest(
        USER, "room.r.note", b"", SessionSnapshot(7, "c-1", "connector", data={"bad": object()})
    )
    out.notify(server("room-1"), bad)
    assert wire.notified == []
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("[c-1] cannot send room.r.note to room-1: cannot encode")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (1.5, "1.5s"),
        (0.5, "500ms"),
        (0.02, "20ms"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        # Go's own output for these (time.Duration(x * 1e9).String()):
        (0.0015, "1.5ms"),
        (0.0005, "500µs"),
        (1e-8, "10ns"),
        (59.9999999, "59.9999999s"),
        (119.99999999, "1m59.99999999s"),
        (123.456789, "2m3.456789s"),
        (3600.5, "1h0m0.5s"),
        (0, "0s"),
        (1e-6, "1µs"),
        (1e-3, "1ms"),
        (1, "1s"),
        (60, "1m0s"),
    ],
)
def test_a_timeout_is_written_as_go_writes_a_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


async def test_controls_forged_for_unknown_frontends_hide_no_unbound_go_session_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both dropped-control lines shared one throttle: requests forged on NATS naming
    unknown frontends (any peer's, as often as it likes) turned the first warning about a
    Go frontend's unbound session (a game's mistake, to be seen) into a debug line."""
    go = server("go-1", "connector", ours=False, frontend=True)
    out = outbound(go, wire=Wire(ok(b"")))
    with caplog.at_level(logging.WARNING):
        out.frontend_notify("forged", SessionPush(7, None, "onMsg", b"x"))
        out.frontend_notify("go-1", SessionPush(8, None, "onMsg", b"x"))
    assert [r.getMessage() for r in caplog.records] == [
        "[c-1] frontend 'forged' unknown; dropping pysys.push",
        "[c-1] pysys.push to session 8 on go-1 dropped: a Go frontend reaches only bound sessions",
    ]

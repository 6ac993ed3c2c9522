"""The RPC bridge actor (``actors.cluster.bridge``): what it does with the messages that come
in for this server, and how calls go out.

The bridge is spawned in a real :class:`~actors.system.ActorSystem`; what it is given is
hand-made: an invoker that records each invocation (and answers it, or lets the test answer
it later), the control handler, the frontend link (for the handshake fetch), the RPC client.
Answers are read back with the codec. Large bodies and the decode budget are in
``tests/actors/cluster/test_in_memory_cluster.py`` and ``tests/cluster/test_decode_budget.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import actors.cluster.bridge as bridge_module
from actors.cluster.backend_session import BackendSession
from actors.cluster.bridge import Inbound, OutboundCall, OutboundNotify, RpcBridge
from actors.cluster.codec import (
    ACK,
    ARGS_KEY,
    MSGPACK_ARGS,
    PROTOBUF_RPC_SERIALIZER,
    RPC_SERIALIZER,
    SYS,
    USER,
    BindNotice,
    RpcRequest,
    SessionSnapshot,
    UserKick,
    UserPush,
    encode_bind,
    encode_kick,
    encode_push,
    encode_request,
    read_answer,
)
from actors.cluster.discovery import ServerInfo
from actors.cluster.handshakes import HandshakeCache
from actors.cluster.rpc import BIND, KICK, PUSH, REQUEST
from actors.errors import PitayaError
from actors.logs import Throttle
from actors.system import ActorSystem
from actors.tally import Tally
from actors.turns import SMALL_BODY

JOIN, CALL = object(), object()
"""The local and remote routes the invoker is handed (it only passes them through here)."""


class Metrics:
    """Metrics on: what was reported."""

    enabled = True

    def __init__(self) -> None:
        self.summaries: list[tuple[str, dict[str, str], float]] = []

    def report_summary(self, name: str, labels: dict[str, str], value: float) -> None:
        self.summaries.append((name, labels, value))


@dataclass
class Invocation:
    route: Any
    name: str
    session: Any
    data: bytes
    notify: bool
    done: Callable[[Any, BaseException | None], None]
    serializer: Any
    received_ns: int = 0
    delay_type: str = "local"


class Invoker:
    """Records each invocation; ``answer`` (result, error) answers at once, None holds it."""

    def __init__(self) -> None:
        self.metrics = SimpleNamespace(enabled=False)
        self.in_flight = Tally()
        """The server's count of requests in flight (the bridge counts what it received)."""
        self.calls: list[Invocation] = []
        self.answer: tuple[Any, BaseException | None] | None = (b"result", None)
        self._invoked = asyncio.Event()

    async def invoked(self, n: int) -> Invocation:
        """The ``n``-th invocation (1-based), once it happened (a large body may wait for a
        later turn of the loop's decode budget)."""
        while len(self.calls) < n:
            self._invoked.clear()
            await asyncio.wait_for(self._invoked.wait(), 2)
        return self.calls[n - 1]

    def invoke(
        self,
        route: Any,
        name: str,
        session: Any,
        data: bytes,
        notify: bool,
        done: Any,
        *,
        serializer: Any = None,
        received_ns: int = 0,
        span: Any = None,
        delay_type: str = "local",
    ) -> None:
        self.calls.append(
            Invocation(
                route, name, session, data, notify, done, serializer, received_ns, delay_type
            )
        )
        self._invoked.set()
        if self.answer is not None:
            done(*self.answer)


class Controls:
    def __init__(self) -> None:
        self.handshakes = HandshakeCache()
        self.served_sessions = None
        self.requests: list[tuple[str, RpcRequest, Any]] = []
        self.user_messages: list[tuple[Any, Any]] = []
        self.handled = asyncio.Event()

    async def on_request(
        self, route: str, request: RpcRequest, respond: Any, finished: Any = None
    ) -> None:
        self.requests.append((route, request, respond))
        self.handled.set()

    def on_user_message(self, message: Any, respond: Any) -> None:
        self.user_messages.append((message, respond))


class Frontend:
    """The frontend link: only the handshake fetch is used by the bridge itself."""

    def __init__(self) -> None:
        self.handshake: dict[str, Any] | None = {"sys": {"v": "fetched"}, "user": {}}
        self.error: Exception | None = None
        self.fetched: list[tuple[str, int, str]] = []
        self.notified: list[tuple[str, Any, Any, Any]] = []

    def frontend_notify(
        self, frontend_id: str, control: Any, frontend_type: Any = None, extras: Any = None
    ) -> None:
        self.notified.append((frontend_id, control, frontend_type, extras))

    async def fetch_handshake(
        self, frontend_id: str, session_id: int, frontend_type: str
    ) -> dict[str, Any] | None:
        self.fetched.append((frontend_id, session_id, frontend_type))
        if self.error is not None:
            raise self.error
        return self.handshake


class Client:
    def __init__(self) -> None:
        self.notifies: list[tuple[str, bytes]] = []

    async def call(self, target: ServerInfo, payload: bytes, timeout: float) -> bytes:
        return b"answer of " + target.id.encode() + b" " + payload + f" {timeout}".encode()

    async def send_notify(self, target: ServerInfo, payload: bytes) -> None:
        self.notifies.append((target.id, payload))


class Answers:
    """The ``respond`` of inbound messages: what each was answered."""

    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def respond(self, data: bytes) -> None:
        self.got.put_nowait(data)

    async def next(self) -> bytes:
        return await asyncio.wait_for(self.got.get(), 2)

    def now(self) -> list[bytes]:
        got = []
        while not self.got.empty():
            got.append(self.got.get_nowait())
        return got


@dataclass
class Bridge:
    ref: Any
    invoker: Invoker
    controls: Controls
    frontend: Frontend
    client: Client
    answers: Answers
    dropped: list[int]
    notices: list[BindNotice] = field(default_factory=list)

    async def send(self, kind: str, data: bytes, *, answered: bool = True) -> None:
        """Hand the bridge one inbound message; returns once it was taken in."""
        respond = self.answers.respond if answered else None
        await self.ref.ask(Inbound(kind, data, respond), timeout=2)

    async def request(self, request: RpcRequest, *, answered: bool = True) -> None:
        await self.send(
            REQUEST, encode_request(request, "c-1", "connector", 5.0), answered=answered
        )


@asynccontextmanager
async def bridge() -> AsyncIterator[Bridge]:
    invoker, controls, frontend, client = Invoker(), Controls(), Frontend(), Client()
    dropped: list[int] = []
    notices: list[BindNotice] = []
    async with ActorSystem() as system:
        ref = system.spawn(
            RpcBridge,
            client,
            server_id="room-1",
            invoker=invoker,
            local_routes={"room.r.join": JOIN},
            remote_routes={"room.c.call": CALL},
            tracing=SimpleNamespace(enabled=False),
            frontend=frontend,
            serializer=RPC_SERIALIZER,
            controls=controls,
            on_bind_notice=notices.append,
            on_dropped=lambda: dropped.append(1),
        )
        yield Bridge(ref, invoker, controls, frontend, client, Answers(), dropped, notices)


def session(sid: int = 7, frontend: str = "c-1", **kw: Any) -> SessionSnapshot:
    return SessionSnapshot(sid, frontend, "connector", **kw)


def forwarded(
    sid: int = 7, frontend: str = "c-1", *, notify: bool = False, **kw: Any
) -> RpcRequest:
    return RpcRequest(SYS, "room.r.join", b"body", session(sid, frontend, **kw), notify)


# -- forwarded client messages and user RPCs -----------------------------------------------


async def test_a_forwarded_request_runs_on_its_local_route_with_a_backend_session() -> None:
    async with bridge() as b:
        await b.request(forwarded(uid="ann", data={"level": 3}))
        (call,) = b.invoker.calls
        assert (call.route, call.name, call.data, call.notify) == (
            JOIN,
            "room.r.join",
            b"body",
            False,
        )
        assert call.serializer is None  # the server's own
        s = call.session
        assert isinstance(s, BackendSession)
        assert (s.id, s.uid, s.data, s.frontend_id, s.frontend_type) == (
            7,
            "ann",
            {"level": 3},
            "c-1",
            "connector",
        )
        assert not s.read_only
        assert read_answer(await b.answers.next()) == b"result"
        s.push("onMsg", {"n": 1})  # through the frontend link, with the server's serializer
        ((front, control, front_type, extras),) = b.frontend.notified
        assert (front, front_type, extras) == ("c-1", "connector", True)
        assert (control.sid, control.uid, control.push_route) == (7, "ann", "onMsg")
        assert RPC_SERIALIZER.unmarshal(control.data) == {"n": 1}


async def test_a_forwarded_notify_is_acknowledged_and_an_error_answered_as_pitayas() -> None:
    async with bridge() as b:
        await b.request(forwarded(notify=True))
        assert await b.answers.next() == ACK
        assert b.invoker.calls[0].notify
        b.invoker.answer = (None, PitayaError("PIT-403", "no", {"k": "v"}))
        await b.request(forwarded())
        with pytest.raises(PitayaError) as caught:
            read_answer(await b.answers.next())
        assert (caught.value.code, caught.value.msg, caught.value.metadata) == (
            "PIT-403",
            "no",
            {"k": "v"},
        )
        b.invoker.answer = (None, None)
        await b.request(forwarded())
        assert read_answer(await b.answers.next()) == b""  # None: an empty answer


async def test_a_user_rpc_gets_a_read_only_caller_session_and_its_callers_serializer() -> None:
    async with bridge() as b:
        await b.request(
            RpcRequest(
                USER, "room.c.call", b"x", session(uid="ann"), metadata={ARGS_KEY: MSGPACK_ARGS}
            )
        )
        await b.request(RpcRequest(USER, "room.c.call", b"x"))
        with_caller, without = b.invoker.calls
        assert with_caller.route is CALL
        assert isinstance(with_caller.session, BackendSession) and with_caller.session.read_only
        assert with_caller.serializer is RPC_SERIALIZER
        assert without.session is None
        assert without.serializer is PROTOBUF_RPC_SERIALIZER  # Pitaya's protobuf
        assert [read_answer(a) for a in b.answers.now()] == [b"result", b"result"]


async def test_unknown_routes_and_a_forward_without_session_are_answered_not_run() -> None:
    async with bridge() as b:
        await b.request(RpcRequest(SYS, "room.r.nope", b"", session()))
        await b.request(RpcRequest(USER, "room.r.join", b""))  # a local route is no RPC
        await b.request(RpcRequest(SYS, "room.r.join", b""))
        await b.request(RpcRequest(SYS, "room.r.nope", b"", session()), answered=False)
        errors = []
        for answer in b.answers.now():
            with pytest.raises(PitayaError) as caught:
                read_answer(answer)
            errors.append((caught.value.code, caught.value.msg, caught.value.metadata))
        assert errors == [
            ("PIT-404", "pitaya/handler: room.r.nope not found", {"route": "room.r.nope"}),
            ("PIT-404", "route not found", {"route": "room.r.join"}),
            ("PIT-400", "forwarded message without session", {}),
        ]
        assert b.invoker.calls == []
        assert b.dropped == []


async def test_one_sessions_forwarded_messages_run_in_order_others_do_not_wait() -> None:
    async with bridge() as b:
        b.invoker.answer = None
        await b.request(forwarded(7, data={"n": 1}))
        await b.request(forwarded(7, data={"n": 2}))
        await b.request(forwarded(8))  # another session
        await b.request(forwarded(7, "c-2"))  # the same id on another frontend
        running = [(c.session.frontend_id, c.session.id, c.session.data) for c in b.invoker.calls]
        assert running == [("c-1", 7, {"n": 1}), ("c-1", 8, {}), ("c-2", 7, {})]
        b.invoker.calls[0].done(b"first", None)
        assert [c.session.data for c in b.invoker.calls[3:]] == [{"n": 2}]
        assert read_answer(b.answers.now()[0]) == b"first"


async def test_user_rpcs_are_not_held_behind_each_other() -> None:
    async with bridge() as b:
        b.invoker.answer = None
        await b.request(RpcRequest(USER, "room.c.call", b"", session()))
        await b.request(RpcRequest(USER, "room.c.call", b"", session()))
        assert len(b.invoker.calls) == 2


async def test_a_large_body_is_invoked_as_a_small_one() -> None:
    big = b"x" * (SMALL_BODY + 1)
    async with bridge() as b:
        await b.request(RpcRequest(SYS, "room.r.join", big, session(uid="ann"), True))
        await b.request(
            RpcRequest(USER, "room.c.call", big, session(), metadata={ARGS_KEY: MSGPACK_ARGS})
        )
        assert await b.answers.next() == ACK
        assert read_answer(await b.answers.next()) == b"result"
        forwarded_call, rpc_call = b.invoker.calls
        assert (forwarded_call.route, forwarded_call.name, forwarded_call.data) == (
            JOIN,
            "room.r.join",
            big,
        )
        assert forwarded_call.notify and forwarded_call.serializer is None
        assert forwarded_call.session.uid == "ann"
        assert (rpc_call.route, rpc_call.name, rpc_call.notify) == (CALL, "room.c.call", False)
        assert rpc_call.serializer is RPC_SERIALIZER and rpc_call.session.read_only


async def test_large_bodies_waiting_past_the_bound_are_refused_in_their_sessions_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = b"x" * (SMALL_BODY + 1)
    monkeypatch.setattr(bridge_module, "MAX_WAITING_BYTES", 2 * len(big))
    async with bridge() as b:
        b.invoker.answer = None
        for _ in range(4):  # the first runs (held); two wait; the fourth is past the bound
            await b.request(RpcRequest(SYS, "room.r.join", big, session()))
        await b.invoker.invoked(1)
        assert len(b.invoker.calls) == 1 and b.dropped == [1]
        assert b.answers.now() == []  # refused in its turn, after the ones before it
        for n in (1, 2, 3):
            (await b.invoker.invoked(n)).done(str(n).encode(), None)
        answers = [await b.answers.next() for _ in range(4)]
        assert [read_answer(a) for a in answers[:3]] == [b"1", b"2", b"3"]
        with pytest.raises(PitayaError) as caught:
            read_answer(answers[3])
        assert (caught.value.code, caught.value.msg) == ("PIT-429", "too many large bodies waiting")
        b.invoker.answer = (b"5", None)
        await b.request(RpcRequest(SYS, "room.r.join", big, session()))  # room again
        assert read_answer(await b.answers.next()) == b"5"  # when the budget grants it
        assert len(b.invoker.calls) == 4 and b.dropped == [1]


# -- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (REQUEST, b"\xff\xff\xff"),
        (PUSH, b"\xff\xff\xff"),
        (KICK, b"\xff\xff\xff"),
        (BIND, b"\xff\xff\xff"),
        ("gossip", b""),
    ],
)
async def test_a_malformed_message_is_counted_and_answered_pit_400(
    kind: str, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with bridge() as b:
        await b.send(kind, data)
        with pytest.raises(PitayaError) as caught:
            read_answer(await b.answers.next())
        assert caught.value.code == "PIT-400" and caught.value.msg
        line = caplog.records[0].getMessage()
        assert line == f"[room-1] dropped a malformed message: {caught.value.msg}"
        await b.send(kind, data, answered=False)
        assert b.dropped == [1, 1]
        assert b.invoker.calls == [] and b.controls.user_messages == [] and b.notices == []
        await b.request(forwarded())  # the bridge still works
        assert read_answer(await b.answers.next()) == b"result"


async def test_a_flood_of_malformed_messages_is_counted_and_logged_once_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with bridge() as b:
        for _ in range(100):
            await b.send(REQUEST, b"\xff\xff\xff", answered=False)
        assert len(b.dropped) == 100
        lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(lines) == 1  # not 100: a peer on NATS could fill the disk


def test_a_throttle_tells_what_it_did_not_log() -> None:
    throttle = Throttle(10.0)
    assert throttle.allow(0.0) == ""
    assert [throttle.allow(t) for t in (1.0, 5.0, 9.9)] == [None, None, None]
    assert throttle.allow(10.0) == " (3 more since the last such line, not logged)"
    assert throttle.allow(25.0) == ""


# -- controls, pushes, kicks and bind notices ----------------------------------------------


async def test_a_control_request_goes_to_the_control_handler() -> None:
    async with bridge() as b:
        request = RpcRequest(USER, "connector.sys.kick", b"payload")
        await b.request(request)
        await asyncio.wait_for(b.controls.handled.wait(), 2)
        ((route, got, respond),) = b.controls.requests
        assert route == "sys.kick"
        assert (got.route, got.data) == ("connector.sys.kick", b"payload")
        assert respond == b.answers.respond
        assert b.invoker.calls == []


async def test_a_forwarded_message_on_a_control_route_is_no_control() -> None:
    async with bridge() as b:
        await b.request(RpcRequest(SYS, "sys.kick", b"", session()))
        with pytest.raises(PitayaError) as caught:
            read_answer(await b.answers.next())
        assert caught.value.code == "PIT-404"
        assert b.controls.requests == []


async def test_pushes_kicks_and_bind_notices_by_uid() -> None:
    async with bridge() as b:
        await b.send(PUSH, encode_push(UserPush("ann", "onMsg", b"x")))
        await b.send(KICK, encode_kick(UserKick("bob")))
        await b.send(KICK, encode_kick(UserKick("cid")), answered=False)
        assert b.controls.user_messages == [
            (UserPush("ann", "onMsg", b"x"), b.answers.respond),
            (UserKick("bob"), b.answers.respond),
            (UserKick("cid"), None),
        ]
        await b.send(BIND, encode_bind(BindNotice("ann", "c-2")))
        await b.send(BIND, encode_bind(BindNotice("bob", "c-2")), answered=False)
        assert b.notices == [BindNotice("ann", "c-2"), BindNotice("bob", "c-2")]
        assert b.answers.now() == [ACK]
        assert b.dropped == []


# -- handshakes: once per session and server -----------------------------------------------


HS = {"sys": {"v": "1"}, "user": {"u": 2}}


async def test_a_handshake_sent_is_kept_and_given_to_later_messages_that_omit_it() -> None:
    async with bridge() as b:
        await b.request(forwarded(handshake=HS))
        await b.request(forwarded(handshake=HS, handshake_omitted=True))
        first, later = b.invoker.calls
        assert first.session.handshake.sys == {"v": "1"}
        assert (later.session.handshake.sys, later.session.handshake.user) == ({"v": "1"}, {"u": 2})
        assert b.controls.handshakes.get("c-1", 7) == HS
        assert b.frontend.fetched == []


async def test_a_handshake_omitted_and_not_kept_is_fetched_from_the_frontend() -> None:
    async with bridge() as b:
        await b.request(forwarded(9, handshake=HS, handshake_omitted=True))
        assert read_answer(await b.answers.next()) == b"result"
        assert b.frontend.fetched == [("c-1", 9, "connector")]
        (call,) = b.invoker.calls
        assert call.session.handshake.sys == {"v": "fetched"}
        assert b.controls.handshakes.get("c-1", 9) == {"sys": {"v": "fetched"}, "user": {}}


async def test_a_failed_handshake_fetch_runs_the_handler_without_it() -> None:
    async with bridge() as b:
        b.frontend.error = PitayaError("PIT-500", "frontend gone")
        await b.request(forwarded(9, handshake=HS, handshake_omitted=True))
        assert read_answer(await b.answers.next()) == b"result"
        (call,) = b.invoker.calls
        assert call.session.handshake is None
        assert b.controls.handshakes.get("c-1", 9) is None


# -- out -----------------------------------------------------------------------------------


async def test_outbound_calls_and_notifies_go_to_the_client() -> None:
    room = ServerInfo("room-2", "room", hostname="h")
    async with bridge() as b:
        assert (
            await b.ref.ask(OutboundCall(room, b"req", 1.5), timeout=2)
            == b"answer of room-2 req 1.5"
        )
        await b.ref.ask(OutboundNotify(room, b"note"), timeout=2)
        assert b.client.notifies == [("room-2", b"note")]


async def test_with_metrics_on_the_handler_time_is_reported_by_kind() -> None:
    async with bridge() as b:
        metrics = Metrics()
        b.invoker.metrics = metrics  # type: ignore[assignment]
        await b.request(forwarded())
        b.invoker.answer = (None, PitayaError("PIT-403", "no"))
        await b.request(RpcRequest(USER, "room.c.call", b"", session()))
        # The invoker's delay metric, of a message that came by RPC (Pitaya's "remote").
        assert [(c.received_ns > 0, c.delay_type) for c in b.invoker.calls] == [
            (True, "remote"),
            (True, "remote"),
        ]
        assert [(name, labels) for name, labels, _ in metrics.summaries] == [
            (
                "response_time_ns",
                {"route": "room.r.join", "status": "ok", "type": "handler", "code": ""},
            ),
            (
                "response_time_ns",
                {"route": "room.c.call", "status": "failed", "type": "remote", "code": "PIT-403"},
            ),
        ]
        assert all(value >= 0 for *_, value in metrics.summaries)

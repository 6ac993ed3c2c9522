"""The NATS RPC adapter (``actors.cluster.nats_rpc``) over a fake byte pipe: which subject each
call, notify and uid message goes on (Pitaya's), how what arrives is handed on, and how the
pipe's errors become the RPC seam's. The same against a real nats-server is in
``tests/cluster`` and ``tests/transport/test_nats*.py``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.cluster.discovery import ServerInfo
from actors.cluster.nats_rpc import NatsRpc
from actors.cluster.rpc import (
    KICK,
    PUSH,
    REQUEST,
    ClusterStartupError,
    ClusterUnavailable,
    ServerUnreachable,
)
from actors.errors import InternalError, RpcTimeout
from transport.nats import (
    NatsDown,
    NatsError,
    NatsNoResponders,
    NatsSecurity,
    NatsTimeout,
    NatsUnreachable,
)

ROOM = ServerInfo("room-1", "room", hostname="h")
ME = ServerInfo("c-1", "connector", frontend=True, hostname="h")


class Pipe:
    """``transport.nats.NatsPipe`` as the adapter uses it: every call recorded; ``error``
    is raised (or reported) by the next request, ``answer`` returned otherwise."""

    def __init__(self) -> None:
        self.connected = True
        self.connect_timeout = 3.0
        self.log: list[tuple[Any, ...]] = []
        self.subscriptions: dict[str, Any] = {}
        self.groups: dict[str, tuple[list[str], Any]] = {}
        self.answer = b"answer"
        self.error: Exception | None = None
        self.flush_error: Exception | None = None
        self.max_payload: int | None = 1024 * 1024

    async def connect(self) -> None:
        if self.error is not None:
            raise self.error

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        self.log.append(("request", subject, payload, timeout))
        if self.error is not None:
            raise self.error
        return self.answer

    def send_request(self, subject: str, payload: bytes, timeout: float, answered: Any) -> None:
        self.log.append(("send_request", subject, payload, timeout))
        if self.error is not None:
            answered(None, self.error)
        else:
            answered(self.answer, None)

    def publish(self, subject: str, payload: bytes) -> None:
        self.log.append(("publish", subject, payload))

    def answer_to(self, subject: str, payload: bytes) -> None:
        self.log.append(("answer_to", subject, payload))

    async def publish_now(self, subject: str, payload: bytes) -> None:
        self.log.append(("publish_now", subject, payload))

    async def subscribe(self, subject: str, on_message: Any) -> None:
        self.subscriptions[subject] = on_message

    async def subscribe_group(self, key: str, subjects: list[str], on_message: Any) -> None:
        self.groups[key] = (subjects, on_message)

    async def unsubscribe_group(self, key: str) -> None:
        self.groups.pop(key, None)

    async def flush(self, timeout: float) -> None:
        self.log.append(("flush", timeout))
        if self.flush_error is not None:
            raise self.flush_error


def nats() -> tuple[NatsRpc, Pipe]:
    rpc = NatsRpc("nats://127.0.0.1:1", name="c-1", connect_timeout=1.0)
    pipe = Pipe()
    rpc.pipe = pipe  # type: ignore[assignment]
    return rpc, pipe


async def started() -> tuple[NatsRpc, Pipe, list[tuple[str, bytes, Any]]]:
    rpc, pipe = nats()
    delivered: list[tuple[str, bytes, Any]] = []
    await rpc.start(ME, lambda kind, data, respond: delivered.append((kind, data, respond)))
    return rpc, pipe, delivered


def test_its_pipe_gets_the_url_name_timeout_security_and_drop_counter() -> None:
    security = NatsSecurity(user="u", password="p")
    dropped: list[int] = []
    rpc = NatsRpc(
        "nats://a:1,nats://b:2",
        name="c-1",
        connect_timeout=1.5,
        on_dropped=lambda: dropped.append(1),
        security=security,
    )
    pipe = rpc.pipe
    assert (pipe.urls, pipe.name, pipe.connect_timeout, pipe.security) == (
        "nats://a:1,nats://b:2",
        "c-1",
        1.5,
        security,
    )
    assert pipe.on_slow_consumer is not None
    pipe.on_slow_consumer()
    assert dropped == [1]


def test_it_is_one_ordered_connection_with_subjects_and_no_direct_calls() -> None:
    rpc, pipe = nats()
    assert rpc.ordered and rpc.direct is None and rpc.user_subjects is rpc
    assert rpc.metadata == {}
    assert rpc.connected and rpc.serving
    pipe.connected = False
    assert not rpc.connected and not rpc.serving


async def test_calls_and_notifies_go_on_the_servers_subject() -> None:
    rpc, pipe = nats()
    assert await rpc.call(ROOM, b"req", 2.0) == b"answer"
    got: list[tuple[Any, Any]] = []
    rpc.start_call(ROOM, b"req2", 3.0, lambda r, e: got.append((r, e)))
    rpc.notify(ROOM, b"note")
    await rpc.send_notify(ROOM, b"note2")
    subject = "pitaya/servers/room/room-1"
    assert pipe.log == [
        ("request", subject, b"req", 2.0),
        ("send_request", subject, b"req2", 3.0),
        ("publish", subject, b"note"),
        ("publish_now", subject, b"note2"),
    ]
    assert got == [(b"answer", None)]


@pytest.mark.parametrize(
    ("error", "expected", "text"),
    [
        (
            NatsNoResponders("no responders"),
            ServerUnreachable,
            "rpc client: server room-1 (room) is unreachable",
        ),
        (NatsTimeout("timeout"), RpcTimeout, "rpc client: request timeout"),
        (NatsDown("down"), ClusterUnavailable, "cluster unavailable: down"),
        (NatsError("odd"), InternalError, "rpc client: odd"),
    ],
)
async def test_the_pipes_errors_become_the_rpc_seams(
    error: Exception, expected: type[Exception], text: str
) -> None:
    rpc, pipe = nats()
    pipe.error = error
    with pytest.raises(expected) as caught:
        await rpc.call(ROOM, b"", 1.0)
    assert type(caught.value) is expected
    got: list[tuple[Any, Any]] = []
    rpc.start_call(ROOM, b"", 1.0, lambda r, e: got.append((r, e)))
    ((result, failure),) = got
    assert result is None and type(failure) is expected
    assert failure.msg == caught.value.msg == text  # type: ignore[attr-defined]


async def test_an_unreachable_nats_at_start_up_is_a_startup_error() -> None:
    rpc, pipe = nats()
    pipe.error = NatsUnreachable("cannot reach nats://x")
    with pytest.raises(ClusterStartupError, match="cannot reach"):
        await rpc.connect()


async def test_start_subscribes_to_its_subject_and_hands_requests_on_with_their_reply() -> None:
    _, pipe, delivered = await started()
    assert ("flush", 3.0) in pipe.log
    inbound = pipe.subscriptions["pitaya/servers/connector/c-1"]
    inbound(b"request", "_INBOX.1")
    inbound(b"notify", None)
    (kind, data, respond), (_, _, no_reply) = delivered
    assert (kind, data, no_reply) == (REQUEST, b"request", None)
    respond(b"answer")
    assert pipe.log[-1] == ("answer_to", "_INBOX.1", b"answer")


async def test_start_while_nats_is_down_is_cluster_unavailable() -> None:
    rpc, pipe = nats()
    pipe.flush_error = NatsDown("down")
    with pytest.raises(ClusterUnavailable) as caught:
        await rpc.start(ME, lambda *a: None)
    assert caught.value.msg == "cluster unavailable: not connected to NATS"


async def test_a_uids_push_and_kick_subjects_are_taken_and_dropped() -> None:
    rpc, pipe, delivered = await started()
    await rpc.listen_user("ann")
    push_subjects, on_push = pipe.groups["ann/push"]
    kick_subjects, on_kick = pipe.groups["ann/kick"]
    assert push_subjects == ["pitaya/connector/user/ann/push"]
    assert kick_subjects == ["pitaya/connector/user/ann/kick"]
    on_push(b"p", "_INBOX.2")
    on_kick(b"k", None)
    on_push(b"p2", None)
    on_kick(b"k2", "_INBOX.3")
    assert [(k, d) for k, d, _ in delivered] == [
        (PUSH, b"p"),
        (KICK, b"k"),
        (PUSH, b"p2"),
        (KICK, b"k2"),
    ]
    assert delivered[1][2] is None and delivered[2][2] is None  # a publish: nobody to answer
    delivered[0][2](b"ack")
    delivered[3][2](b"kicked")
    assert pipe.log[-2:] == [
        ("answer_to", "_INBOX.2", b"ack"),
        ("answer_to", "_INBOX.3", b"kicked"),
    ]
    await rpc.forget_user("ann")
    assert pipe.groups == {}


async def test_a_uid_is_pushed_to_and_asked_on_its_subjects() -> None:
    rpc, pipe = nats()
    rpc.publish_user("gate", "ann", "push", b"p")
    assert await rpc.request_user("gate", "ann", "kick", b"k", 1.5) == b"answer"
    assert pipe.log == [
        ("publish", "pitaya/gate/user/ann/push", b"p"),
        ("request", "pitaya/gate/user/ann/kick", b"k", 1.5),
    ]
    pipe.error = NatsNoResponders("nobody")
    assert await rpc.request_user("gate", "ann", "kick", b"k", 1.5) is None
    pipe.error = NatsTimeout("slow")
    assert await rpc.request_user("gate", "ann", "kick", b"k", 1.5) is None
    pipe.error = NatsDown("down")
    with pytest.raises(ClusterUnavailable) as caught:
        await rpc.request_user("gate", "ann", "kick", b"k", 1.5)
    assert caught.value.msg == "cluster unavailable: down"


async def test_binds_are_announced_and_watched_on_the_bindings_subject(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rpc, pipe = nats()
    await rpc.announce_bind(b"n")  # not started: nowhere to announce
    await rpc.listen_user("ann")  # not started: nothing taken
    assert pipe.log == [] and pipe.groups == {}
    rpc, pipe, _ = await started()
    await rpc.announce_bind(b"notice")
    assert pipe.log[-2:] == [
        ("publish_now", "pitaya/connector/bindings", b"notice"),
        ("flush", 3.0),
    ]
    pipe.flush_error = NatsTimeout("slow")
    await rpc.announce_bind(b"notice")
    assert [r.getMessage() for r in caplog.records] == [
        "[c-1] bind notice not confirmed by NATS: slow"
    ]
    # NATS down: the pipe tells the outage once; a bind during it is no news (at debug).
    pipe.flush_error = NatsDown("not connected to NATS")
    await rpc.announce_bind(b"notice")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["[c-1] bind notice not confirmed by NATS: slow"]
    heard: list[bytes] = []
    pipe.connected = False
    await rpc.watch_binds(heard.append)  # not connected: not yet
    assert "pitaya/connector/bindings" not in pipe.subscriptions
    pipe.connected = True
    await rpc.watch_binds(heard.append)
    pipe.subscriptions["pitaya/connector/bindings"](b"bound", None)
    assert heard == [b"bound"]
    del pipe.subscriptions["pitaya/connector/bindings"]
    await rpc.watch_binds(heard.append)  # once
    assert "pitaya/connector/bindings" not in pipe.subscriptions

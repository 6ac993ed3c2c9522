"""Reaching users across the cluster (``actors.cluster.users``): push and kick by uid, bind
notices, and the session events a frontend sends the backends that served a session.

:class:`ClusterUsers` is given its seams here as hand-made fakes that record what it asks of
them: the transport's per-uid subjects (``UserSubjects``), the RPC client (notices to single
servers), discovery, this server's sessions and the binding storage (``UserDelivery``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.cluster import users as users_module
from actors.cluster.codec import (
    EXTRAS_KEY,
    EXTRAS_VERSION,
    BindNotice,
    UserKick,
    UserPush,
    decode_bind,
    decode_kick,
    decode_push,
    decode_request,
    encode_answer,
    encode_bind,
    encode_error,
)
from actors.cluster.control import SessionEvent, decode_control
from actors.cluster.discovery import ServerInfo
from actors.cluster.rpc import ClusterUnavailable
from actors.cluster.users import ClusterUsers
from actors.errors import UserNotHere
from tests.reliability.support import until
from transport.etcd import EtcdUnavailable

OURS = {EXTRAS_KEY: EXTRAS_VERSION}
ACKED = encode_answer(b"ack")
REFUSED = encode_error(UserNotHere("gone"))


def server(server_id: str, server_type: str, *, frontend: bool, ours: bool = True) -> ServerInfo:
    metadata = dict(OURS) if ours else {}
    return ServerInfo(server_id, server_type, frontend=frontend, hostname="h", metadata=metadata)


ME = server("c-1", "connector", frontend=True)


class Discovery:
    def __init__(self, *servers: ServerInfo) -> None:
        self.table = {s.id: s for s in servers}
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def add(self, server: ServerInfo) -> None:
        """A server registered: listed, and the listeners told."""
        self.table[server.id] = server
        for listener in self.listeners:
            listener(server, True)

    def servers(self, server_type: str) -> list[ServerInfo]:
        return [s for s in self.table.values() if s.type == server_type]

    def server(self, server_id: str) -> ServerInfo | None:
        return self.table.get(server_id)

    def server_types(self) -> set[str]:
        return {s.type for s in self.table.values()}


class Subjects:
    """``UserSubjects``: ``answers[(frontend_type, uid)]`` is what a request gets (missing:
    nobody holds the subject); every call is recorded."""

    def __init__(self, answers: dict[tuple[str, str], bytes | None] | None = None) -> None:
        self.answers = answers or {}
        self.published: list[tuple[str, str, str, bytes]] = []
        self.requested: list[tuple[str, str, str, bytes, float]] = []
        self.listening: list[str] = []
        self.forgotten: list[str] = []
        self.announced: list[bytes] = []
        self.watcher: Any = None
        self.down = False

    async def listen_user(self, uid: str) -> None:
        self.listening.append(uid)

    async def forget_user(self, uid: str) -> None:
        self.forgotten.append(uid)

    def publish_user(self, frontend_type: str, uid: str, what: str, payload: bytes) -> None:
        self.published.append((frontend_type, uid, what, payload))

    async def request_user(
        self, frontend_type: str, uid: str, what: str, payload: bytes, timeout: float
    ) -> bytes | None:
        self.requested.append((frontend_type, uid, what, payload, timeout))
        if self.down:
            raise ClusterUnavailable("down")
        return self.answers.get((frontend_type, uid))

    async def announce_bind(self, notice: bytes) -> None:
        self.announced.append(notice)

    async def watch_binds(self, deliver: Any) -> None:
        self.watcher = deliver


class Direct:
    def __init__(self, error: Exception | None = None) -> None:
        self.binds: list[tuple[str, bytes, float]] = []
        self.error = error

    async def bind_remote(self, target: ServerInfo, bind: bytes, timeout: float) -> bytes:
        self.binds.append((target.id, bind, timeout))
        if self.error is not None:
            raise self.error
        return b""


class Client:
    def __init__(self, direct: Direct | None = None) -> None:
        self.direct = direct
        self.notified: list[tuple[str, bytes]] = []
        self.called: list[tuple[str, bytes]] = []
        self.connected = True
        """Notifies are dropped while False (NATS's are)."""

    def notify(self, target: ServerInfo, request: bytes) -> None:
        if self.connected:
            self.notified.append((target.id, request))

    async def call(self, target: ServerInfo, request: bytes, timeout: float) -> bytes:
        """Acknowledged at once while connected."""
        if not self.connected:
            raise ClusterUnavailable("not connected")
        self.called.append((target.id, request))
        return b""

    def start_call(self, target: ServerInfo, request: bytes, timeout: float, reply: Any) -> None:
        """:meth:`call` answered at once (what session events are sent with, over NATS)."""
        if not self.connected:
            reply(None, ClusterUnavailable("not connected"))
            return
        self.called.append((target.id, request))
        reply(b"", None)


class Bindings:
    """``UserDelivery``: ``failed`` and ``unknown`` are what each call reports."""

    def __init__(
        self,
        failed: list[str] | None = None,
        unknown: list[str] | None = None,
        holder: str | None = None,
    ) -> None:
        self.failed = failed or []
        self.unknown = unknown or []
        self.holder = holder
        self.calls: list[tuple[Any, ...]] = []
        self.error: Exception | None = None

    async def push_to_users(
        self, route: str, payload: bytes, uids: list[str], frontend_types: list[str]
    ) -> tuple[list[str], list[str]]:
        self.calls.append(("push", route, payload, list(uids), list(frontend_types)))
        if self.error is not None:
            raise self.error
        return [u for u in uids if u in self.failed], [u for u in uids if u in self.unknown]

    async def kick_users(
        self, reason: str, uids: list[str], frontend_types: list[str]
    ) -> tuple[list[str], list[str]]:
        self.calls.append(("kick", reason, list(uids), list(frontend_types)))
        return [u for u in uids if u in self.failed], [u for u in uids if u in self.unknown]

    async def frontend_of(self, uid: str, frontend_types: list[str]) -> str | None:
        self.calls.append(("frontend_of", uid, list(frontend_types)))
        if self.error is not None:
            raise self.error
        return self.holder


class Sessions:
    def __init__(self) -> None:
        self.uids: dict[str, Any] = {}
        self.turns: dict[str, asyncio.Lock] = {}
        """The uids' turns (a bind under way holds its uid's)."""

    def by_uid(self, uid: str) -> Any:
        return self.uids.get(uid)

    @asynccontextmanager
    async def turn(self, uid: str) -> AsyncIterator[None]:
        async with self.turns.setdefault(uid, asyncio.Lock()):
            yield


@dataclass
class FrontSession:
    """What ``ClusterUsers`` reads of a frontend session."""

    id: int
    uid: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    handshake: Any = None
    served_by: dict[str, set[str]] | None = None


def users(
    *servers: ServerInfo,
    subjects: Subjects | None = None,
    client: Client | None = None,
    bindings: Bindings | None = None,
    me: ServerInfo = ME,
) -> ClusterUsers:
    made = ClusterUsers(
        me=me,
        subjects=subjects,
        client=client or Client(),  # type: ignore[arg-type]
        discovery=Discovery(me, *servers),  # type: ignore[arg-type]
        sessions=Sessions(),  # type: ignore[arg-type]
        rpc_timeout=1.5,
    )
    if bindings is not None:  # else the default: no binding storage
        made.bindings = bindings
    return made


# -- push and kick by uid over the per-uid subjects -----------------------------------------


async def test_a_push_asks_each_uids_subject_and_reports_who_nobody_acknowledged() -> None:
    subjects = Subjects({("connector", "ann"): ACKED, ("connector", "bob"): REFUSED})
    cluster = users(subjects=subjects)
    failed = await cluster.push_to_users("onMsg", b"{}", ["ann", "bob", "ghost"], None)
    assert failed == ["bob", "ghost"]
    assert [(t, u, w, to) for t, u, w, _, to in subjects.requested] == [
        ("connector", "ann", "push", 1.5),
        ("connector", "bob", "push", 1.5),
        ("connector", "ghost", "push", 1.5),
    ]
    assert decode_push(subjects.requested[0][3]) == UserPush("ann", "onMsg", b"{}")
    assert subjects.published == []


async def test_each_frontend_type_is_tried_until_one_acknowledges() -> None:
    gate = server("g-1", "gate", frontend=True)
    subjects = Subjects({("gate", "ann"): ACKED})
    cluster = users(gate, server("room-1", "room", frontend=False), subjects=subjects)
    assert await cluster.push_to_users("onMsg", b"x", ["ann"], None) == []
    # Frontend types only (a backend type has no such subjects), sorted.
    assert [(t, u) for t, u, *_ in subjects.requested] == [("connector", "ann"), ("gate", "ann")]


async def test_a_refusal_moves_on_to_the_next_frontend_type() -> None:
    gate = server("g-1", "gate", frontend=True)
    subjects = Subjects({("connector", "ann"): REFUSED, ("gate", "ann"): ACKED})
    assert await users(gate, subjects=subjects).push_to_users("r", b"", ["ann"], None) == []


async def test_a_given_frontend_type_is_the_only_one_asked() -> None:
    gate = server("g-1", "gate", frontend=True)
    subjects = Subjects({("connector", "ann"): ACKED})
    assert await users(gate, subjects=subjects).push_to_users("r", b"", ["ann"], "gate") == ["ann"]
    assert [t for t, *_ in subjects.requested] == ["gate"]


async def test_an_answer_that_is_not_a_response_or_a_transport_failure_is_unreached() -> None:
    subjects = Subjects({("connector", "ann"): b"\xff\xff not a response"})
    assert await users(subjects=subjects).push_to_users("r", b"", ["ann"], None) == ["ann"]
    subjects = Subjects({("connector", "ann"): ACKED})
    subjects.down = True
    assert await users(subjects=subjects).push_to_users("r", b"", ["ann"], None) == ["ann"]


async def test_toward_a_go_frontend_type_it_is_a_publish_counted_as_delivered() -> None:
    go = server("go-1", "connector", frontend=True, ours=False)
    subjects = Subjects()
    failed = await users(go, subjects=subjects).push_to_users("r", b"p", ["ann", "bob"], None)
    assert failed == []
    assert subjects.requested == []
    assert [(t, u, w, decode_push(d)) for t, u, w, d in subjects.published] == [
        ("connector", "ann", "push", UserPush("ann", "r", b"p")),
        ("connector", "bob", "push", UserPush("bob", "r", b"p")),
    ]


async def test_a_kick_by_uid_goes_on_the_kick_subjects() -> None:
    subjects = Subjects({("connector", "ann"): ACKED})
    assert await users(subjects=subjects).kick_users(["ann", "bob"], "bye", None) == ["bob"]
    assert [(u, w) for _, u, w, *_ in subjects.requested] == [("ann", "kick"), ("bob", "kick")]
    assert decode_kick(subjects.requested[0][3]) == UserKick("ann", "bye")
    gate = server("g-1", "gate", frontend=True)
    subjects = Subjects()
    assert await users(gate, subjects=subjects).kick_users(["ann"], "", "gate") == ["ann"]
    assert [t for t, *_ in subjects.requested] == ["gate"]  # only the type given


async def test_without_subjects_or_bindings_every_uid_is_unreached() -> None:
    cluster = users()
    assert await cluster.push_to_users("r", b"", ["ann", "bob"], None) == ["ann", "bob"]
    assert await cluster.kick_users(["ann"], "", None) == ["ann"]
    assert await cluster.push_to_users("r", b"", [], None) == []


# -- with the binding storage -------------------------------------------------------------


async def test_the_storage_delivers_and_uids_it_could_not_look_up_take_the_subjects() -> None:
    bindings = Bindings(failed=["bob"], unknown=["cid"])
    subjects = Subjects({("connector", "cid"): ACKED})
    cluster = users(subjects=subjects, bindings=bindings)
    assert await cluster.push_to_users("r", b"p", ["ann", "bob", "cid"], None) == ["bob"]
    assert bindings.calls == [("push", "r", b"p", ["ann", "bob", "cid"], ["connector"])]
    assert [u for _, u, *_ in subjects.requested] == ["cid"]
    assert await cluster.kick_users(["bob", "cid"], "why", "connector") == ["bob"]
    assert bindings.calls[-1] == ("kick", "why", ["bob", "cid"], ["connector"])


async def test_without_subjects_the_uids_the_storage_could_not_look_up_fail() -> None:
    bindings = Bindings(unknown=["cid"])
    cluster = users(bindings=bindings)
    assert await cluster.push_to_users("r", b"", ["ann", "cid"], None) == ["cid"]
    assert await cluster.kick_users(["cid"], "", None) == ["cid"]


# -- publish_push: nothing reported back ---------------------------------------------------


async def test_publish_push_publishes_once_per_uid_and_frontend_type_in_order() -> None:
    gate = server("g-1", "gate", frontend=True)
    subjects = Subjects()
    cluster = users(gate, subjects=subjects)
    cluster.publish_push("r", b"p", ["ann", "bob"], None)
    cluster.publish_push("s", b"q", ["ann"], "gate")
    published = [(t, u, w, decode_push(d)) for t, u, w, d in subjects.published]
    assert published == [
        ("connector", "ann", "push", UserPush("ann", "r", b"p")),
        ("gate", "ann", "push", UserPush("ann", "r", b"p")),
        ("connector", "bob", "push", UserPush("bob", "r", b"p")),
        ("gate", "bob", "push", UserPush("bob", "r", b"p")),
        ("gate", "ann", "push", UserPush("ann", "s", b"q")),
    ]
    users().publish_push("r", b"", ["ann"], None)  # nowhere to publish: nothing happens


async def test_publish_push_with_the_storage_works_off_a_queue_in_order() -> None:
    gate = server("g-1", "gate", frontend=True)
    bindings = Bindings(failed=["bob"])
    cluster = users(gate, subjects=Subjects(), bindings=bindings)
    cluster.publish_push("r", b"1", ["ann", "bob"], None)
    cluster.publish_push("s", b"2", ["cid"], "gate")
    assert bindings.calls == []  # nothing awaited by the caller
    pusher = cluster._pusher.task
    assert pusher is not None
    await pusher
    assert bindings.calls == [
        ("push", "r", b"1", ["ann", "bob"], ["connector"]),
        ("push", "r", b"1", ["bob"], ["gate"]),  # only who the first type did not take
        ("push", "s", b"2", ["cid"], ["gate"]),
    ]
    assert cluster._pusher.task is None


async def test_a_failing_queued_push_is_logged_and_the_next_one_still_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bindings = Bindings()
    bindings.error = EtcdUnavailable("etcd down")
    cluster = users(bindings=bindings)
    cluster.publish_push("r", b"1", ["ann"], None)
    cluster.publish_push("s", b"2", ["bob"], None)
    assert cluster._pusher.task is not None
    await cluster._pusher.task
    assert [c[1] for c in bindings.calls] == ["r", "s"]
    assert [r.getMessage() for r in caplog.records] == [
        "[c-1] push r to 1 uid(s) failed: etcd down",
        "[c-1] push s to 1 uid(s) failed: etcd down",
    ]


async def test_a_queued_push_that_reached_nobody_is_told_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.cluster.users")
    cluster = users(bindings=Bindings(failed=["bob"]))
    cluster.publish_push("r", b"1", ["ann", "bob"], None)
    assert cluster._pusher.task is not None
    await cluster._pusher.task
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "[c-1] push r reached nobody for ['bob']")
    ]


# -- no frontend listed yet ----------------------------------------------------------------


ROOM = server("room-1", "room", frontend=False)
CONNECTOR = server("c-1", "connector", frontend=True)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def discovery_of(cluster: ClusterUsers) -> Discovery:
    found = cluster.discovery
    assert isinstance(found, Discovery)
    return found


async def test_pushes_published_while_no_frontend_is_listed_go_once_one_is_in_order() -> None:
    """A frontend accepts clients once registered; a backend's table hears of it a moment
    later. Its players' pushes meanwhile wait for it, not reach nobody."""
    subjects = Subjects()
    cluster = users(subjects=subjects, me=ROOM)
    cluster.publish_push("r", b"1", ["ann"], None)
    cluster.publish_push("s", b"2", ["bob"], "connector")  # behind the first one
    cluster.publish_push("t", b"0", ["cid"], None)
    await until(lambda: cluster._frontend_listed is not None)
    assert subjects.published == []
    discovery_of(cluster).add(CONNECTOR)
    assert cluster._publisher.task is not None
    await asyncio.wait_for(cluster._publisher.task, 1)
    assert [(t, decode_push(d)) for t, _, _, d in subjects.published] == [
        ("connector", UserPush("ann", "r", b"1")),
        ("connector", UserPush("bob", "s", b"2")),
        ("connector", UserPush("cid", "t", b"0")),
    ]  # each once, in order
    cluster.publish_push("t", b"3", ["cid"], None)  # listed now: at once
    assert decode_push(subjects.published[-1][3]) == UserPush("cid", "t", b"3")


class FailingSubjects(Subjects):
    def publish_user(self, frontend_type: str, uid: str, what: str, payload: bytes) -> None:
        if uid == "bad":
            raise RuntimeError("refused")
        super().publish_user(frontend_type, uid, what, payload)


async def test_a_waiting_push_that_fails_or_a_cancelled_wait_never_holds_the_next_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    subjects = FailingSubjects()
    cluster = users(subjects=subjects, me=ROOM)
    cluster.publish_push("r", b"1", ["ann"], None)
    publisher = cluster._publisher.task
    assert publisher is not None
    publisher.cancel()  # the server stopping, say
    with pytest.raises(asyncio.CancelledError):
        await publisher
    assert cluster._publisher.task is None
    cluster.publish_push("s", b"2", ["bad"], None)
    cluster.publish_push("t", b"3", ["bob"], None)
    assert cluster._publisher.task is not None
    discovery_of(cluster).add(CONNECTOR)
    await asyncio.wait_for(cluster._publisher.task, 5)
    assert [decode_push(d).route for *_, d in subjects.published] == ["r", "t"]
    assert "[room-1] push s to 1 uid(s) failed: refused" in caplog.messages


async def test_an_awaited_push_or_kick_waits_for_a_frontend_to_be_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Woken when one is listed (not at the end of the wait), and only by a frontend."""
    monkeypatch.setattr(users_module, "FRONTEND_WAIT", 60.0)
    subjects = Subjects({("connector", "ann"): ACKED})
    cluster = users(subjects=subjects, me=ROOM)
    pushed = asyncio.ensure_future(cluster.push_to_users("r", b"1", ["ann", "bob"], None))
    kicked = asyncio.ensure_future(cluster.kick_users(["ann"], "bye", None))
    await until(lambda: cluster._frontend_listed is not None)
    discovery = discovery_of(cluster)
    discovery.add(server("room-2", "room", frontend=False))  # a backend: no one to push to
    for listener in discovery.listeners:
        listener(CONNECTOR, False)  # a frontend leaving: not listed
    await settle()
    assert not pushed.done() and not kicked.done()
    discovery.add(CONNECTOR)
    assert await asyncio.wait_for(pushed, 1) == ["bob"]
    assert await asyncio.wait_for(kicked, 1) == []


async def test_a_queued_push_waits_for_a_frontend_too() -> None:
    bindings = Bindings()
    cluster = users(subjects=Subjects(), bindings=bindings, me=ROOM)
    cluster.publish_push("r", b"1", ["ann"], None)
    await until(lambda: cluster._frontend_listed is not None)
    discovery_of(cluster).add(CONNECTOR)
    assert cluster._pusher.task is not None
    await cluster._pusher.task
    assert bindings.calls == [("push", "r", b"1", ["ann"], ["connector"])]


async def test_with_no_frontend_at_all_a_push_waits_once_then_warns_and_no_longer_waits(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users_module, "FRONTEND_WAIT", 0.01)
    subjects = Subjects()
    cluster = users(subjects=subjects, me=ROOM)
    assert await cluster.push_to_users("r", b"1", ["ann"], None) == ["ann"]
    monkeypatch.setattr(users_module, "FRONTEND_WAIT", 60.0)  # a second wait would hang
    assert await asyncio.wait_for(cluster.push_to_users("s", b"", ["bob"], None), 5) == ["bob"]
    assert await asyncio.wait_for(cluster.kick_users(["bob"], "", None), 5) == ["bob"]
    cluster.publish_push("t", b"", ["cid"], None)
    assert cluster._publisher.task is not None
    await asyncio.wait_for(cluster._publisher.task, 5)
    assert subjects.published == [] and subjects.requested == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "[room-1] r by uid reached nobody: discovery lists no frontend server "
        "(name one with frontend_type=...)"
    ]


@pytest.mark.looptime
async def test_after_giving_up_pushes_wait_for_a_frontend_again_only_10s_later() -> None:
    """A cluster with no frontend must not stall every push for 2 s (FRONTEND_WAIT); but a
    frontend may come later, and a push 10 s on (FRONTEND_WAIT_AGAIN) waits for it again.
    On looptime's virtual clock: the sleeps only move the clock."""
    loop = asyncio.get_running_loop()
    subjects = Subjects({("connector", "ann"): ACKED})
    cluster = users(subjects=subjects, me=ROOM)
    start = loop.time()
    assert await cluster.push_to_users("r", b"1", ["ann"], None) == ["ann"]
    gave_up = loop.time()
    assert gave_up - start == pytest.approx(2.0)
    await asyncio.sleep(9.5)
    before = loop.time()
    assert await cluster.push_to_users("s", b"2", ["ann"], None) == ["ann"]
    assert loop.time() == before  # no wait 9.5 s on
    await asyncio.sleep(gave_up + 10.0 - loop.time())
    assert loop.time() - gave_up == 10.0
    pushed = asyncio.ensure_future(cluster.push_to_users("t", b"3", ["ann"], None))
    await settle()
    assert not pushed.done()  # waiting again, for the frontend listed now
    discovery_of(cluster).add(CONNECTOR)
    assert await pushed == []
    assert [decode_push(d).route for _, _, _, d, _ in subjects.requested] == ["t"]


# -- bind notices --------------------------------------------------------------------------


async def test_bind_notices_of_other_frontends_reach_every_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    subjects = Subjects()
    cluster = users(subjects=subjects)
    heard: list[tuple[str, BindNotice]] = []
    await cluster.watch_binds(lambda n: heard.append(("a", n)))

    def broken(notice: BindNotice) -> None:
        raise RuntimeError("listener bug")

    cluster._bind_listeners.insert(0, broken)  # a failing listener stops no other
    await cluster.watch_binds(lambda n: heard.append(("b", n)))
    subjects.watcher(encode_bind(BindNotice("ann", "c-2")))
    subjects.watcher(encode_bind(BindNotice("bob", "c-1")))  # our own: ignored
    subjects.watcher(b"\xff\xff")  # malformed: logged, dropped
    assert heard == [("a", BindNotice("ann", "c-2")), ("b", BindNotice("ann", "c-2"))]
    told = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert told[0] == ("ERROR", "[c-1] bind listener failed")
    assert told[1][0] == "WARNING"
    assert told[1][1].startswith("[c-1] malformed bind notice: not a protos.BindMsg")


async def test_a_bind_is_announced_on_the_subjects_and_the_uids_subjects_taken() -> None:
    subjects = Subjects()
    cluster = users(subjects=subjects)
    await cluster.bound(FrontSession(1, "ann"))  # type: ignore[arg-type]
    assert [decode_bind(n) for n in subjects.announced] == [BindNotice("ann", "c-1")]
    assert subjects.listening == ["ann"]
    await cluster.bound(FrontSession(2))  # type: ignore[arg-type]
    assert len(subjects.announced) == 1  # not bound: nothing


async def test_without_subjects_a_watched_bind_goes_to_the_uids_previous_frontend() -> None:
    other = server("c-2", "connector", frontend=True)
    direct = Direct()
    bindings = Bindings(holder="c-2")
    cluster = users(other, client=Client(direct), bindings=bindings)
    await cluster.bound(FrontSession(1, "ann"))  # type: ignore[arg-type]
    assert direct.binds == []  # nobody watches binds here: no lookup
    assert bindings.calls == []
    await cluster.watch_binds(lambda n: None)
    await cluster.bound(FrontSession(1, "ann"))  # type: ignore[arg-type]
    assert bindings.calls == [("frontend_of", "ann", ["connector"])]
    assert [(s, decode_bind(b), t) for s, b, t in direct.binds] == [
        ("c-2", BindNotice("ann", "c-1"), 1.5)
    ]


@pytest.mark.parametrize("holder", [None, "c-1", "c-9"])
async def test_no_bind_notice_when_the_uid_was_nowhere_else(holder: str | None) -> None:
    direct = Direct()
    cluster = users(client=Client(direct), bindings=Bindings(holder=holder))
    await cluster.watch_binds(lambda n: None)
    await cluster.bound(FrontSession(1, "ann"))  # type: ignore[arg-type]
    assert direct.binds == []


async def test_a_bind_notice_that_cannot_be_looked_up_or_sent_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = server("c-2", "connector", frontend=True)
    direct = Direct(error=RuntimeError("refused"))
    bindings = Bindings(holder="c-2")
    cluster = users(other, client=Client(direct), bindings=bindings)
    await cluster.watch_binds(lambda n: None)
    await cluster.bound(FrontSession(1, "ann"))  # type: ignore[arg-type]
    bindings.error = EtcdUnavailable("etcd down")
    await cluster.bound(FrontSession(1, "bob"))  # type: ignore[arg-type]
    told = EtcdUnavailable("still down")
    told.told = True  # the outage was logged once already: debug
    bindings.error = told
    caplog.set_level(logging.DEBUG, logger="actors.cluster.users")
    await cluster.bound(FrontSession(1, "cid"))  # type: ignore[arg-type]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "[c-1] bind notice to c-2 failed: refused"),
        ("WARNING", "[c-1] cannot find where bob was bound: etcd down"),
        ("DEBUG", "[c-1] cannot find where cid was bound: still down"),
    ]
    assert len(direct.binds) == 1


async def test_without_direct_calls_no_bind_notice_is_looked_up() -> None:
    bindings = Bindings(holder="c-2")
    cluster = users(server("c-2", "connector", frontend=True), client=Client(), bindings=bindings)
    await cluster.watch_binds(lambda n: None)
    await cluster.bound(FrontSession(1, "ann"))  # type: ignore[arg-type]
    assert bindings.calls == []


# -- closing sessions and session events ---------------------------------------------------


async def test_closing_drops_the_uids_subjects_unless_another_session_holds_it() -> None:
    """Or a bind of the uid under way ends holding it: a unique session's bind kicks the
    uid's older session and waits for its close, whose unsubscribing then raced with the new
    bind's subscribing (the uid unreachable by push and kick, for the new session's life,
    when it came last). A bind that fails after the kick leaves them to the close: skipped,
    they stayed subscribed with nobody holding the uid, and this frontend answered for it
    (not here) when it was bound elsewhere."""
    subjects = Subjects()
    cluster = users(subjects=subjects)
    sessions: Any = cluster.sessions
    cluster.closing(FrontSession(1, "ann"))  # type: ignore[arg-type]
    sessions.uids["bob"] = object()
    cluster.closing(FrontSession(2, "bob"))  # type: ignore[arg-type]
    cluster.closing(FrontSession(3))  # type: ignore[arg-type]
    for uid in ("cid", "dan"):  # a bind of each under way: it kicked session 4, or 5
        await sessions.turns.setdefault(uid, asyncio.Lock()).acquire()
    cluster.closing(FrontSession(4, "cid"))  # type: ignore[arg-type]
    cluster.closing(FrontSession(5, "dan"))  # type: ignore[arg-type]
    sessions.uids["cid"] = object()  # cid's bind succeeds, dan's fails
    for uid in ("cid", "dan"):
        sessions.turns[uid].release()
    await asyncio.gather(*cluster._tasks)
    assert subjects.forgotten == ["ann", "dan"]


async def test_held_session_events_wait_for_a_connection_that_is_up() -> None:
    """The transport said it was back, and was down again by the time its callback ran (a
    flapping connection): what was held went out to the dropped connection, lost, though
    the next reconnection would have sent it."""
    client = Client()
    cluster = users(server("room-1", "room", frontend=False), client=client)
    cluster.hold_events(client.start_call)
    client.connected = False
    session = FrontSession(7, "ann", served_by={"room-1": {"room.r.join"}})
    cluster.session_event(session, "close")  # type: ignore[arg-type]
    cluster.transport_back()  # down again already
    await asyncio.sleep(0)
    held = cluster.held_events
    assert held is not None
    assert (len(held), client.called) == (1, [])
    client.connected = True
    cluster.transport_back()
    await until(lambda: len(held) == 0)
    assert [target for target, _ in client.called] == ["room-1"]
    assert client.notified == []  # sent as requests, acknowledged


async def test_session_events_go_to_the_backends_of_ours_that_served_the_session() -> None:
    ours = server("room-1", "room", frontend=False)
    go = server("room-2", "room", frontend=False, ours=False)
    client = Client()
    cluster = users(ours, go, client=client)
    session = FrontSession(
        7,
        "ann",
        {"level": 3},
        # The ones skipped first: skipping one does not end the round.
        served_by={"room-2": {"room.r.x"}, "room-9": {"room.r.y"}, "room-1": {"room.r.join"}},
    )
    cluster.session_event(session, "close")  # type: ignore[arg-type]
    # Not the Go backend (it has no such route), nor one that left discovery.
    assert [target for target, _ in client.notified] == ["room-1"]
    request = decode_request(client.notified[0][1])
    assert request.notify
    assert decode_control(request.route, request) == SessionEvent(
        "close", frozenset({"room.r.join"})
    )
    assert request.session is not None
    assert (request.session.id, request.session.uid, request.session.data) == (
        7,
        "ann",
        {"level": 3},
    )
    assert request.session.frontend_id == "c-1"
    assert (request.metadata["peer.id"], request.metadata["peer.service"]) == ("c-1", "connector")


async def test_bind_and_close_tell_the_backends_that_served_the_session() -> None:
    client = Client()
    cluster = users(server("room-1", "room", frontend=False), subjects=Subjects(), client=client)
    session = FrontSession(7, "ann", served_by={"room-1": {"room.r.join"}})
    await cluster.bound(session)  # type: ignore[arg-type]
    cluster.closing(session)  # type: ignore[arg-type]
    events = []
    for _, data in client.notified:
        request = decode_request(data)
        events.append(decode_control(request.route, request))
    assert [e.event for e in events] == ["bind", "close"]  # type: ignore[attr-defined]
    cluster.session_event(FrontSession(8, "bob"), "close")  # type: ignore[arg-type]
    assert len(client.notified) == 2  # served by nobody: nobody told


async def test_a_session_event_that_cannot_be_encoded_is_logged_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client()
    cluster = users(
        server("room-1", "room", frontend=False),
        server("room-2", "room", frontend=False),
        client=client,
    )
    served = {"room-1": {"r"}, "room-2": {"r"}}
    session = FrontSession(7, "ann", {"bad": object()}, served_by=served)
    cluster.session_event(session, "bind")  # type: ignore[arg-type]
    assert client.notified == []
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 2  # one per server: the second one is tried too
    assert told[0].startswith("[c-1] session event to room-1 not sent: cannot encode")


@pytest.mark.parametrize(
    ("count", "size", "queued"),
    [
        (users_module.MAX_QUEUED_PUSHES + 3, 1, users_module.MAX_QUEUED_PUSHES),
        (5, users_module.MAX_QUEUED_PUSH_BYTES // 2, 2),
    ],
)
async def test_pushes_made_without_waiting_queue_within_bounds_and_are_dropped_past_them(
    count: int, size: int, queued: int, caplog: pytest.LogCaptureFixture
) -> None:
    """With the binding storage a push waits for those before it (each looked up in etcd):
    a handler pushing faster than they went grew the queue without end."""
    bindings = Bindings()
    cluster = users(bindings=bindings)
    for n in range(count):
        cluster.publish_push(f"r{n}", b"x" * size, ["ann"], "connector")
    assert len(cluster._pushes) == queued
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1  # one line per 10 s, however many
    assert dropped[0].startswith(f"[c-1] push r{queued} dropped: {queued} pushes (")
    assert cluster._pusher.task is not None
    await cluster._pusher.task
    assert [call[1] for call in bindings.calls] == [f"r{n}" for n in range(queued)]
    assert cluster._queued_bytes == 0  # what went out left room
    cluster.publish_push("later", b"x" * size, ["ann"], "connector")
    assert len(cluster._pushes) == 1


async def test_pushes_waiting_for_a_frontend_are_bounded_too() -> None:
    # A backend that lists no frontend yet: they wait for one.
    cluster = users(subjects=Subjects(), me=server("room-1", "room", frontend=False))
    for n in range(users_module.MAX_QUEUED_PUSHES + 2):
        cluster.publish_push(f"r{n}", b"p", ["ann"], None)
    assert len(cluster._unsent) == users_module.MAX_QUEUED_PUSHES
    assert cluster._queued_bytes == sum(
        len(data) for _, encoded, _ in cluster._unsent for _, data in encoded
    )
    assert cluster._publisher.task is not None
    cluster._publisher.task.cancel()

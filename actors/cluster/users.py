"""Reaching users across the cluster, and what a frontend tells others about its sessions.

* Push and kick by uid: with the binding storage module, the uid's frontend is read from etcd
  and sent one push (``PushToUser`` over gRPC, ``pysys.pushuser`` over NATS) or ``sys.kick``
  (``actors.cluster.outbound``). Without it (NATS only) a ``protos.Push``/``KickMsg`` goes on
  the uid's subject ``pitaya/<frontendType>/user/<uid>/push|kick`` for each frontend type, as
  Go publishes it; when every frontend of that type is one of ours (discovery metadata
  ``pitayaActors``) it is a NATS request instead, which our frontends acknowledge (or refuse:
  the uid is gone), so the caller learns who was reached. A Go frontend never answers: a
  publish to it counts as delivered. Uids the storage could not look up (etcd down) take the
  subjects too over NATS, and fail over gRPC.
* Bind notices (for the unique session module): over NATS every bind is published as a
  ``protos.BindMsg`` on ``pitaya/<frontendType>/bindings``; over gRPC there is no broadcast,
  so a frontend that watches binds sends it (``SessionBindRemote``) to the one frontend the
  binding storage names for the uid, before its own binding replaces that entry (Pitaya's
  gRPC ``BroadcastSessionBind``).

"Over NATS" means: through the transport's
:class:`~actors.cluster.rpc.UserSubjects` (``RPCClient.user_subjects``), which NATS and the
in-memory RPC have; "over gRPC": a transport without them.
* Session events: every backend of ours that served a session hears of its bind and close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from actors.cluster.codec import (
    INCARNATION_KEY,
    BindNotice,
    CodecError,
    UserKick,
    UserPush,
    decode_bind,
    encode_bind,
    encode_kick,
    encode_push,
    encode_request,
    has_extras,
    is_refusal,
    snapshot,
    without_handshake,
)
from actors.cluster.control import SessionEvent, control_request
from actors.cluster.held_events import HeldEvents, StartCall
from actors.cluster.rpc import BindListener, ClusterUnavailable
from actors.cluster.session_events import BIND, CLOSE
from actors.cluster.subjects import uid_problem
from actors.errors import BadRequest
from actors.logs import ServerLog, Throttle
from transport.etcd import EtcdUnavailable
from transport.waiting import set_within

if TYPE_CHECKING:
    from actors.cluster.discovery import ServerInfo, ServiceDiscovery
    from actors.cluster.rpc import RPCClient, UserSubjects
    from actors.session import Session
    from actors.sessions.registry import SessionRegistry

log = logging.getLogger(__name__)

FRONTEND_WAIT = 2.0
"""Seconds a push or kick by uid waits for discovery to list a frontend when it lists none:
a frontend accepts clients once registered, and this server's table hears of it a moment
later (a backend started first, a connector restarted), while its players already act."""

MAX_QUEUED_PUSHES = 10_000
"""Pushes by uid made without waiting (``publish_push``) that may wait in this server's queue
(for a frontend to be listed; with the binding storage, for the pushes before them, each
looked up in etcd): past it, or past :data:`MAX_QUEUED_PUSH_BYTES`, a new one is dropped, with
a warning per 10 s (a handler pushing faster than etcd or the frontends answer grew the queue
without end)."""
MAX_QUEUED_PUSH_BYTES = 64 * 1024 * 1024
"""Bytes of the pushes waiting in that queue."""

FRONTEND_WAIT_AGAIN = 10.0
"""Seconds after a wait for a frontend came to nothing during which pushes do not wait
again (a cluster that has no frontend at all)."""


class QueueWorker:
    """The one task working a queue off: :meth:`wake` starts it when none runs, and it is
    forgotten when it ends, also when cancelled before it began (a ``finally`` in the work
    would not run then, and the queue would wait for good)."""

    __slots__ = ("_work", "task")

    def __init__(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._work = work
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        if self.task is None:
            task = asyncio.get_running_loop().create_task(self._work())
            task.add_done_callback(self._done)
            self.task = task

    def _done(self, task: asyncio.Task[None]) -> None:
        if self.task is task:
            self.task = None


@runtime_checkable
class UserDelivery(Protocol):
    """How pushes and kicks by uid reach the frontend each uid is bound on, when something
    knows it (the binding storage module, ``actors.modules.binding_storage``).

    Both return ``(failed, unknown)``: uids not reached, and uids that could not be looked
    up (etcd unreachable) which the cluster then sends the default way.
    """

    async def push_to_users(
        self, route: str, payload: bytes, uids: list[str], frontend_types: list[str]
    ) -> tuple[list[str], list[str]]: ...

    async def kick_users(
        self, reason: str, uids: list[str], frontend_types: list[str]
    ) -> tuple[list[str], list[str]]: ...

    async def frontend_of(self, uid: str, frontend_types: list[str]) -> str | None:
        """The id of the frontend ``uid`` is bound on; raises EtcdUnavailable."""
        ...


class ClusterUsers:
    """The user side of one cluster server (``me``): ``subjects``, the transport's per-uid
    and bindings subjects (None if it has none); ``client`` sends notices to single servers
    found in ``discovery``; ``sessions``: this server's sessions; ``rpc_timeout``: how long a
    frontend may take to acknowledge a push or kick."""

    def __init__(
        self,
        *,
        me: ServerInfo,
        subjects: UserSubjects | None,
        client: RPCClient,
        discovery: ServiceDiscovery,
        sessions: SessionRegistry,
        rpc_timeout: float,
    ) -> None:
        self.me = me
        self.log = ServerLog(log, me.id)
        self.subjects = subjects
        self.client = client
        self.discovery = discovery
        self.sessions = sessions
        self.rpc_timeout = rpc_timeout
        self.incarnation = me.metadata.get(INCARNATION_KEY, "")
        """Sent with the session events (``actors.cluster.codec.SENDER_INCARNATION_KEY``)."""
        self.bindings: UserDelivery | None = None
        """Set by the binding storage module: pushes and kicks by uid go straight to the
        frontend each uid is bound on (the only way without per-uid subjects, as gRPC)."""
        self._bind_listeners: list[BindListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        """Unsubscriptions and fire-and-forget pushes under way (kept referenced)."""
        self._pushes: deque[tuple[str, bytes, list[str], list[str]]] = deque()
        self._pusher = QueueWorker(self._work_off_pushes)
        """Works ``_pushes`` off (with the binding storage module)."""
        self._unsent: deque[tuple[str, list[tuple[str, bytes]], str | None]] = deque()
        """Pushes published while no frontend was known, waiting for one (in call order):
        route, each uid with its encoded push, the frontend type asked for."""
        self._publisher = QueueWorker(self._publish_when_listed)
        """Works ``_unsent`` off once a frontend is listed."""
        self._queued_bytes = 0
        """Bytes of the pushes in ``_pushes`` and ``_unsent`` (bounded with their number)."""
        self._queue_full = Throttle()
        self._frontend_listed: asyncio.Event | None = None
        """Set when discovery lists a frontend, for the pushes waiting for one."""
        self._gave_up_at: float | None = None
        self._nobody = Throttle()
        self.held_events: HeldEvents | None = None
        """Session events to backends, acknowledged, and held while the transport or the
        backend is unreachable (``actors.cluster.held_events``) until the transport says it
        is back (:meth:`transport_back`): set by :meth:`hold_events` (NATS). Without it
        they are notifies, lost while the transport or the backend is down."""
        discovery.add_listener(self._server_changed)

    # -- push and kick by uid --------------------------------------------------------------

    async def push_to_users(
        self, route: str, payload: bytes, uids: list[str], frontend_type: str | None
    ) -> list[str]:
        """Push to uids bound on any frontend; returns those no frontend acknowledged."""
        types = [frontend_type] if frontend_type else await self._frontend_types_soon(route)
        bindings = self.bindings
        if bindings is not None:
            failed, unknown = await bindings.push_to_users(route, payload, uids, types)
        else:
            failed, unknown = [], list(uids)
        return failed + await self._by_subject(
            unknown, types, lambda uid: encode_push(UserPush(uid, route, payload)), "push"
        )

    def publish_push(
        self, route: str, payload: bytes, uids: list[str], frontend_type: str | None
    ) -> None:
        """Push to uids bound on other frontends without waiting for anyone (Pitaya's push
        by uid is a publish). Over NATS alone: one publish per uid and frontend type, in the
        order of the calls. With the binding storage module: an ordered queue worked off by
        one task (each uid's frontend is looked up in etcd first). Nothing is reported back;
        ``push_to_users`` is the one to await for the uids nobody took."""
        types = [frontend_type] if frontend_type else self._frontend_types()
        subjects = self.subjects
        if self.bindings is None:
            if subjects is None:
                return
            encoded = [(uid, encode_push(UserPush(uid, route, payload))) for uid in uids]
            if not types or self._unsent:
                # No frontend listed yet: published once one is, after those before it.
                size = sum(len(data) for _, data in encoded)
                if self._may_queue(route, size):
                    self._unsent.append((route, encoded, frontend_type))
                    self._queued_bytes += size
                    self._publisher.wake()
                return
            self._publish(subjects, encoded, types)
            return
        if self._may_queue(route, len(payload)):
            self._pushes.append((route, payload, list(uids), types))
            self._queued_bytes += len(payload)
            self._pusher.wake()

    def _may_queue(self, route: str, size: int) -> bool:
        """Whether a push of ``size`` bytes fits in the queue (else it is dropped, told)."""
        queued = len(self._pushes) + len(self._unsent)
        if queued < MAX_QUEUED_PUSHES and self._queued_bytes + size <= MAX_QUEUED_PUSH_BYTES:
            return True
        self._queue_full.log(
            time.monotonic(),
            self.log,
            logging.WARNING,
            "push %s dropped: %d pushes (%d bytes) wait already to go out (at most %d, %d bytes)",
            route,
            queued,
            self._queued_bytes,
            MAX_QUEUED_PUSHES,
            MAX_QUEUED_PUSH_BYTES,
        )
        return False

    @staticmethod
    def _publish(
        subjects: UserSubjects, encoded: list[tuple[str, bytes]], types: list[str]
    ) -> None:
        for uid, data in encoded:
            for kind in types:
                subjects.publish_user(kind, uid, "push", data)

    async def _publish_when_listed(self) -> None:
        subjects = self.subjects
        assert subjects is not None  # only queued where there are subjects
        unsent = self._unsent
        while unsent:
            route, encoded, frontend_type = unsent[0]
            types = [frontend_type] if frontend_type else await self._frontend_types_soon(route)
            unsent.popleft()
            self._queued_bytes -= sum(len(data) for _, data in encoded)
            try:
                self._publish(subjects, encoded, types)
            except Exception as exc:  # one push's failure is not the next one's
                self.log.warning("push %s to %d uid(s) failed: %s", route, len(encoded), exc)

    async def _work_off_pushes(self) -> None:
        while self._pushes:
            route, payload, uids, types = self._pushes.popleft()
            self._queued_bytes -= len(payload)
            if not types:
                types = await self._frontend_types_soon(route)
            if not types:
                continue
            try:
                unreached = await self.push_to_users(route, payload, uids, types[0])
                for kind in types[1:]:
                    unreached = await self.push_to_users(route, payload, unreached, kind)
            except Exception as exc:
                self.log.warning("push %s to %d uid(s) failed: %s", route, len(uids), exc)
                continue
            if unreached:
                self.log.debug("push %s reached nobody for %s", route, unreached)

    async def kick_users(
        self, uids: list[str], reason: str, frontend_type: str | None
    ) -> list[str]:
        types = [frontend_type] if frontend_type else await self._frontend_types_soon("kick")
        bindings = self.bindings
        if bindings is not None:
            failed, unknown = await bindings.kick_users(reason, uids, types)
        else:
            failed, unknown = [], list(uids)
        return failed + await self._by_subject(
            unknown, types, lambda uid: encode_kick(UserKick(uid, reason)), "kick"
        )

    def _frontend_types(self) -> list[str]:
        discovery = self.discovery
        return sorted(
            {s.type for t in discovery.server_types() for s in discovery.servers(t) if s.frontend}
        )

    async def _frontend_types_soon(self, what: str) -> list[str]:
        """The frontend types discovery lists; when it lists none, waits up to
        :data:`FRONTEND_WAIT` for one (see there), then warns that ``what`` (a push's route,
        or "kick") reaches nobody."""
        types = self._frontend_types()
        if types:
            return types
        loop = asyncio.get_running_loop()
        gave_up = self._gave_up_at
        if gave_up is None or loop.time() - gave_up >= FRONTEND_WAIT_AGAIN:
            listed = self._frontend_listed
            if listed is None or listed.is_set():
                listed = self._frontend_listed = asyncio.Event()
            if not await set_within(listed, FRONTEND_WAIT):
                self._gave_up_at = loop.time()
            types = self._frontend_types()
        if not types:
            more = self._nobody.allow(loop.time())
            if more is not None:
                self.log.warning(
                    "%s by uid reached nobody: discovery lists no frontend server (name "
                    "one with frontend_type=...)%s",
                    what,
                    more,
                )
        return types

    def _server_changed(self, server: ServerInfo, added: bool) -> None:
        listed = self._frontend_listed
        if added and server.frontend and listed is not None:
            listed.set()

    def _all_ours(self, frontend_type: str) -> bool:
        """No frontend of ``frontend_type`` in the table is a Go one: the one holding a uid
        answers on its subjects (none known yet: asked all the same, as nobody may hold it)."""
        return all(has_extras(s.metadata) for s in self.discovery.servers(frontend_type))

    async def _by_subject(
        self, uids: list[str], types: list[str], make: Callable[[str], bytes], what: str
    ) -> list[str]:
        """The per-uid subjects, trying each frontend type; the uids nobody took. Where a
        frontend of the type is not ours (Go never answers there) it is Go's publish, and the
        uid counts as reached."""
        subjects = self.subjects
        if not uids or subjects is None:
            return list(uids)
        timeout = self.rpc_timeout
        asking = {frontend_type: self._all_ours(frontend_type) for frontend_type in types}

        async def one(uid: str) -> bool:
            payload = make(uid)
            for frontend_type in types:
                if not asking[frontend_type]:
                    subjects.publish_user(frontend_type, uid, what, payload)
                    return True  # delivered, for all a publish can tell
                try:
                    answer = await subjects.request_user(frontend_type, uid, what, payload, timeout)
                except ClusterUnavailable:
                    return False
                if answer is None:
                    continue  # no frontend of this type holds the uid
                refused = is_refusal(answer)
                if refused is None:
                    return False  # not an answer
                if not refused:
                    return True
                # Refused: the frontend that held the subject no longer holds the uid.
            return False

        results = await asyncio.gather(*(one(uid) for uid in uids))
        return [uid for uid, ok in zip(uids, results, strict=True) if not ok]

    # -- bind notices ----------------------------------------------------------------------

    async def watch_binds(self, listener: BindListener) -> None:
        """Frontends: call ``listener`` when another frontend of this type binds a uid."""
        self._bind_listeners.append(listener)
        if self.subjects is not None:
            await self.subjects.watch_binds(self._bind_notice_arrived)

    def _bind_notice_arrived(self, data: bytes) -> None:
        try:
            notice = decode_bind(data)
        except CodecError as exc:
            self.log.warning("malformed bind notice: %s", exc)
            return
        self.bind_noticed(notice)

    def bind_noticed(self, notice: BindNotice) -> None:
        if notice.frontend_id == self.me.id:
            return
        for listener in self._bind_listeners:
            try:
                listener(notice)
            except Exception:
                self.log.exception("bind listener failed")

    async def _announce_bind(self, uid: str) -> None:
        notice = encode_bind(BindNotice(uid, self.me.id))
        if self.subjects is not None:
            await self.subjects.announce_bind(notice)
            return
        # gRPC: no broadcast. Only frontends that watch binds (unique session) pay the lookup;
        # this runs before the binding storage stores the new bind (the cluster's after-bind
        # callback is registered at join, before modules start), so it finds the old holder.
        bindings = self.bindings
        direct = self.client.direct
        if not self._bind_listeners or bindings is None or direct is None:
            return
        try:
            holder = await bindings.frontend_of(uid, [self.me.type])
        except EtcdUnavailable as exc:
            # During an outage the etcd client tells it once; one line per bind would flood.
            level = logging.DEBUG if exc.told else logging.WARNING
            self.log.log(level, "cannot find where %s was bound: %s", uid, exc)
            return
        server = self.discovery.server(holder) if holder and holder != self.me.id else None
        if server is not None:
            try:
                await direct.bind_remote(server, notice, self.rpc_timeout)
            except Exception as exc:
                self.log.warning("bind notice to %s failed: %s", server.id, exc)

    # -- this frontend's sessions ----------------------------------------------------------

    def check_uid(self, session: Session) -> None:
        """Frontend, a bind callback where uids have subjects (NATS): refuse, with
        ``PIT-400``, a uid that cannot be a token of its push and kick subjects (see
        :func:`~actors.cluster.subjects.uid_problem`)."""
        uid = session.uid
        if self.subjects is not None and uid is not None:
            problem = uid_problem(uid)
            if problem is not None:
                shown = uid if len(uid) <= 40 else uid[:40] + "..."
                raise BadRequest(f"uid {shown!r} cannot be bound: {problem}")

    async def bound(self, session: Session) -> None:
        """Frontend, after a bind: announce it, take the uid's subjects (NATS), tell the
        backends that served the session."""
        uid = session.uid
        if uid is None:
            return
        await self._announce_bind(uid)
        if self.subjects is not None:
            await self.subjects.listen_user(uid)
        self.session_event(session, BIND)

    def closing(self, session: Session) -> None:
        """Frontend, the moment a session is forgotten (before the close callbacks await):
        drop the uid's push/kick subjects now, so pushes stop coming to a uid that is gone,
        and tell the backends that served the session."""
        self.session_event(session, CLOSE)
        uid = session.uid
        subjects = self.subjects
        if uid is None or subjects is None or self.sessions.by_uid(uid) is not None:
            return  # no subjects, or another session holds the uid now
        task = asyncio.get_running_loop().create_task(self._forget_user(uid, subjects))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget_user(self, uid: str, subjects: UserSubjects) -> None:
        """Drop ``uid``'s subjects in its turn, unless a session holds it by then: a bind of
        the uid under way (the unique session's kick of the closed session) subscribes
        them, and unsubscribing meanwhile would race with it; one that fails leaves them
        to this."""
        async with self.sessions.turn(uid):
            if self.sessions.by_uid(uid) is None:
                await subjects.forget_user(uid)

    def session_event(self, session: Session, event: str) -> None:
        """Tell every backend of ours that served ``session`` that it bound or closed (a Go
        backend has no such route)."""
        if not session.served_by:
            return
        me = self.me
        for server_id, routes in session.served_by.items():
            server = self.discovery.server(server_id)
            if server is None or not has_extras(server.metadata):
                continue
            request = replace(
                control_request(SessionEvent(event, frozenset(routes)), notify=True),
                # It had the handshake with the session's first message (or fetched it).
                session=without_handshake(snapshot(session, me.id, me.type)),
            )
            try:
                data = encode_request(
                    request, me.id, me.type, self.rpc_timeout, True, self.incarnation
                )
            except CodecError as exc:
                self.log.warning("session event to %s not sent: %s", server_id, exc)
                continue
            held = self.held_events
            if held is not None:
                held.send(server, data, session.id, event)
            else:
                self.client.notify(server, data)

    def hold_events(self, start_call: StartCall) -> None:
        """Send session events as acknowledged requests through ``start_call``, held while
        they cannot be delivered (the transport tells :meth:`transport_back`)."""
        client = self.client
        self.held_events = HeldEvents(
            start_call, lambda: client.connected, self.discovery, self.log, self.rpc_timeout
        )

    def transport_back(self) -> None:
        """The RPC transport reconnected: the session events held meanwhile go out. Unless
        it is down again already (a flapping connection): they would be dropped, and wait
        for the next reconnection instead."""
        if self.client.connected and self.held_events is not None:
            self.held_events.release()

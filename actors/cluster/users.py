"""Reaching users across the cluster, and what a frontend tells others about its sessions.

* Push and kick by uid: with the binding storage module, the uid's frontend is read from etcd
  and sent one ``sys.pushuser``/``sys.kickuser`` request (any transport). Without it (NATS
  only) the uid's per-user subject is requested for each frontend type; uids the storage could
  not look up (etcd down) take that way too over NATS, and fail over gRPC.
* Bind notices (for the unique session module): over NATS every bind is published on
  ``pitaya/<frontendType>/bindings``; over gRPC there is no broadcast, so a frontend that
  watches binds sends the notice to the one frontend the binding storage names for the uid,
  before its own binding replaces that entry (Pitaya's gRPC ``BroadcastSessionBind``).

"Over NATS" means: through the transport's
:class:`~actors.cluster.rpc.UserSubjects` (``RPCClient.user_subjects``), which NATS and the
in-memory RPC have; "over gRPC": a transport without them.
* Session events: every backend that served a session hears of its bind and close.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from actors.cluster.rpc import BindListener
from actors.cluster.session_events import BIND, CLOSE, SESSION_EVENT_ROUTE
from transport.envelope import (
    BindNotice,
    Envelope,
    RpcRequest,
    UserKick,
    UserPush,
    encode_envelope,
)
from transport.etcd import EtcdUnavailable

if TYPE_CHECKING:
    from actors.cluster.cluster import Cluster
    from actors.cluster.rpc import UserSubjects
    from actors.session import Session

log = logging.getLogger(__name__)


class ClusterUsers:
    """The user side of one server's :class:`~actors.cluster.cluster.Cluster`; ``subjects``:
    the transport's per-uid and bindings subjects, None if it has none."""

    def __init__(self, cluster: Cluster, subjects: UserSubjects | None) -> None:
        self.cluster = cluster
        self.subjects = subjects
        self.me = cluster.me
        self._bind_listeners: list[BindListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        """Unsubscriptions and fire-and-forget pushes under way (kept referenced)."""
        self._pushes: deque[tuple[str, bytes, list[str], list[str]]] = deque()
        self._pusher: asyncio.Task[None] | None = None

    # -- push and kick by uid --------------------------------------------------------------

    async def push_to_users(
        self, route: str, payload: bytes, uids: list[str], frontend_type: str | None
    ) -> list[str]:
        """Push to uids bound on any frontend; returns those no frontend acknowledged."""
        types = [frontend_type] if frontend_type else self._frontend_types()
        bindings = self.cluster.bindings
        if bindings is not None:
            failed, unknown = await bindings.push_to_users(route, payload, uids, types)
        else:
            failed, unknown = [], list(uids)
        return failed + await self._by_subject(
            unknown, types, lambda uid: UserPush(uid, route, payload), "push"
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
        if self.cluster.bindings is None:
            if subjects is None:
                return
            for uid in uids:
                data = encode_envelope(UserPush(uid, route, payload))
                for kind in types:
                    subjects.publish_user(kind, uid, "push", data)
            return
        self._pushes.append((route, payload, list(uids), types))
        if self._pusher is None:
            self._pusher = asyncio.get_running_loop().create_task(self._work_off_pushes())

    async def _work_off_pushes(self) -> None:
        try:
            while self._pushes:
                route, payload, uids, types = self._pushes.popleft()
                try:
                    unreached = await self.push_to_users(route, payload, uids, types[0])
                    for kind in types[1:]:
                        unreached = await self.push_to_users(route, payload, unreached, kind)
                except Exception as exc:
                    log.warning(
                        "[%s] push %s to %d uid(s) failed: %s", self.me.id, route, len(uids), exc
                    )
                    continue
                if unreached:
                    log.debug("[%s] push %s reached nobody for %s", self.me.id, route, unreached)
        finally:
            self._pusher = None

    async def kick_users(
        self, uids: list[str], reason: str, frontend_type: str | None
    ) -> list[str]:
        types = [frontend_type] if frontend_type else self._frontend_types()
        bindings = self.cluster.bindings
        if bindings is not None:
            failed, unknown = await bindings.kick_users(reason, uids, types)
        else:
            failed, unknown = [], list(uids)
        return failed + await self._by_subject(
            unknown, types, lambda uid: UserKick(uid, reason), "kick"
        )

    def _frontend_types(self) -> list[str]:
        discovery = self.cluster.discovery
        return sorted(
            {s.type for t in discovery.server_types() for s in discovery.servers(t) if s.frontend}
        )

    async def _by_subject(
        self, uids: list[str], types: list[str], make: Callable[[str], Envelope], what: str
    ) -> list[str]:
        """The per-uid subjects, trying each frontend type; the uids nobody took."""
        subjects = self.subjects
        if not uids or subjects is None:
            return list(uids)
        timeout = self.cluster.app.config.rpc_timeout

        async def one(uid: str) -> bool:
            payload = encode_envelope(make(uid))
            for frontend_type in types:
                outcome = await subjects.request_user(frontend_type, uid, what, payload, timeout)
                if outcome is not None:
                    return outcome
            return False

        results = await asyncio.gather(*(one(uid) for uid in uids))
        return [uid for uid, ok in zip(uids, results, strict=True) if not ok]

    # -- bind notices ----------------------------------------------------------------------

    async def watch_binds(self, listener: BindListener) -> None:
        """Frontends: call ``listener`` when another frontend of this type binds a uid."""
        self._bind_listeners.append(listener)
        if self.subjects is not None:
            await self.subjects.watch_binds(self.bind_noticed)

    def bind_noticed(self, notice: BindNotice) -> None:
        if notice.frontend_id == self.me.id:
            return
        for listener in self._bind_listeners:
            try:
                listener(notice)
            except Exception:
                log.exception("[%s] bind listener failed", self.me.id)

    async def _announce_bind(self, uid: str) -> None:
        cluster = self.cluster
        notice = encode_envelope(BindNotice(uid, self.me.id))
        if self.subjects is not None:
            await self.subjects.announce_bind(notice)
            return
        # gRPC: no broadcast. Only frontends that watch binds (unique session) pay the lookup;
        # this runs before the binding storage stores the new bind (the cluster's after-bind
        # callback is registered at join, before modules start), so it finds the old holder.
        bindings = cluster.bindings
        if not self._bind_listeners or bindings is None:
            return
        try:
            holder = await bindings.frontend_of(uid, [self.me.type])
        except EtcdUnavailable as exc:
            log.warning("[%s] cannot find where %s was bound: %s", self.me.id, uid, exc)
            return
        server = cluster.discovery.server(holder) if holder and holder != self.me.id else None
        if server is not None:
            cluster.rpc_client.notify(server, notice)

    # -- this frontend's sessions ----------------------------------------------------------

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
        if uid is None or subjects is None or self.cluster.app.sessions.by_uid(uid) is not None:
            return  # no subjects, or another session holds the uid now
        task = asyncio.get_running_loop().create_task(subjects.forget_user(uid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def session_event(self, session: Session, event: str) -> None:
        """Tell every backend that served ``session`` that it bound or closed."""
        if not session.served_by:
            return
        from actors.cluster.cluster import snapshot

        cluster = self.cluster
        for server_id, routes in session.served_by.items():
            server = cluster.discovery.server(server_id)
            if server is None:
                continue
            body: Any = msgpack.packb({"event": event, "routes": sorted(routes)}, use_bin_type=True)
            request = RpcRequest(
                "sys", SESSION_EVENT_ROUTE, body, snapshot(session, self.me), notify=True
            )
            cluster.rpc_client.notify(server, encode_envelope(request))

"""The cluster's seams in memory: several apps of one process in one cluster, with no NATS, no
etcd and no sockets (for tests). ``actors.testing`` re-exports these classes.

::

    network = MemoryCluster()
    room = App(server_type="room", mode="cluster",
               discovery=network.discovery(), rpc=network.rpc())
    connector = App(server_type="connector", mode="cluster",
                    discovery=network.discovery(), rpc=network.rpc())

* :class:`MemoryDiscovery`: one server table for the whole network. A server is seen by every
  other the moment it registers, and is gone the moment it leaves (no watch lag).
* :class:`MemoryRpc`: a loopback RPC client and server, with Pitaya's per-uid ``push``/``kick``
  subjects and the ``bindings`` subject as over NATS (``RPCClient.user_subjects``), so push
  and kick by uid and the unique session module work without the binding storage. Every
  message is handed over with ``loop.call_soon``: what one server sends reaches its targets in
  the order sent (as over one NATS connection, so it is ``ordered``), never inside the
  sender's own call. A request to a server that is not serving fails at once with
  ``PIT-408`` (NATS's "no responders": ``ServerUnreachable``), so a test can kill a server
  without its leaving discovery by stopping its RPC server (``await rpc.stop()``); an
  unanswered request fails after its timeout.
* Groups: the etcd group service itself (``actors.cluster.groups``) on a
  :class:`~actors.cluster.memory_store.MemoryStore`, an in-memory key-value store with etcd's
  leases (expiring on the event loop's clock), shared by the network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from actors.cluster.discovery import DiscoveryListener, Registration, ServerInfo
from actors.cluster.groups import EtcdGroupService, PushToUsers
from actors.cluster.memory_store import MemoryStore
from actors.cluster.rpc import (
    KICK,
    PUSH,
    REQUEST,
    ClusterStartupError,
    ClusterUnavailable,
    DeliverBytes,
    DeliverInbound,
    Respond,
    RpcPair,
    ServerIdTaken,
    ServerUnreachable,
    UserSubjects,
)
from actors.cluster.subjects import bindings_subject, server_subject, user_subject
from actors.errors import RpcTimeout
from actors.groups import GroupService
from transport.waiting import settles

if TYPE_CHECKING:
    from actors.kernel import Reply

log = logging.getLogger(__name__)

__all__ = ["MemoryCluster", "MemoryDiscovery", "MemoryRpc", "MemoryStore"]


class MemoryCluster:
    """One in-memory network: give every app of a test its own :meth:`discovery` and
    :meth:`rpc` from the same instance (see the module docstring)."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerInfo] = {}
        """The registered servers by id, in registration order."""
        self.store = MemoryStore()
        """Where the cluster's groups live (etcd's layout, ``pitaya/groups/...``)."""
        self._discoveries: list[MemoryDiscovery] = []
        self._endpoints: dict[str, MemoryRpc] = {}
        """Serving RPC servers by subject (``pitaya/servers/<type>/<id>``)."""
        self._subscribers: dict[str, list[MemoryRpc]] = {}
        """Who takes each per-uid subject."""
        self._bind_watchers: dict[str, list[Callable[[bytes], None]]] = {}

    def discovery(self) -> MemoryDiscovery:
        """A discovery for one app of this network."""
        return MemoryDiscovery(self)

    def rpc(self) -> RpcPair:
        """An RPC client and server (one :class:`MemoryRpc`) for one app of this network."""
        rpc = MemoryRpc(self)
        return RpcPair(rpc, rpc)

    # -- discovery -------------------------------------------------------------------------

    def _register(self, me: ServerInfo) -> None:
        if me.id in self.servers:
            raise ServerIdTaken(f"a server with id {me.id} is already registered")
        self.servers[me.id] = me
        self._announce(me, True)

    def _deregister(self, server_id: str) -> None:
        server = self.servers.pop(server_id, None)
        if server is not None:
            self._announce(server, False)

    def _announce(self, server: ServerInfo, added: bool) -> None:
        for discovery in list(self._discoveries):
            for listener in list(discovery.listeners):
                try:
                    listener(server, added)
                except Exception:
                    log.exception("discovery listener failed")


class MemoryDiscovery:
    """:class:`~actors.cluster.discovery.ServiceDiscovery` of a :class:`MemoryCluster`."""

    def __init__(self, network: MemoryCluster) -> None:
        self.network = network
        self.me: ServerInfo | None = None
        self.listeners: list[DiscoveryListener] = []
        self._registered = False

    @property
    def registered(self) -> bool:
        return self._registered

    @property
    def registration(self) -> Registration:
        """Registered, or not yet, or left (memory has no outages)."""
        if self._registered:
            return Registration.REGISTERED
        return Registration.UNREGISTERED if self.me is None else Registration.LEFT

    def servers(self, server_type: str) -> list[ServerInfo]:
        return [s for s in self.network.servers.values() if s.type == server_type]

    def server(self, server_id: str) -> ServerInfo | None:
        return self.network.servers.get(server_id)

    def server_types(self) -> set[str]:
        return {s.type for s in self.network.servers.values()}

    def add_listener(self, listener: DiscoveryListener) -> None:
        self.listeners.append(listener)

    async def connect(self) -> None:
        if self not in self.network._discoveries:
            self.network._discoveries.append(self)

    async def start(self, me: ServerInfo) -> None:
        self.network._register(me)
        self.me = me
        self._registered = True

    async def lookup(self, server_type: str, server_id: str) -> ServerInfo | None:
        server = self.network.servers.get(server_id)
        return server if server is not None and server.type == server_type else None

    def group_service(self, push: PushToUsers) -> GroupService:
        return EtcdGroupService(self.network.store, push)

    async def stop(self) -> None:
        if self._registered and self.me is not None:
            self.network._deregister(self.me.id)
        self._registered = False

    async def close(self) -> None:
        if self in self.network._discoveries:
            self.network._discoveries.remove(self)


class _Call:
    """One call's answer: handed back like any message, or :class:`RpcTimeout` once its
    time is up; ``reply`` is called once."""

    __slots__ = ("loop", "reply", "timer")

    def __init__(self, reply: Reply, timeout: float) -> None:
        self.reply: Reply | None = reply
        self.loop = asyncio.get_running_loop()
        self.timer = self.loop.call_later(timeout, self._settle, None, RpcTimeout())

    def respond(self, data: bytes) -> None:
        """A :data:`~actors.cluster.rpc.Respond`."""
        self.loop.call_soon(self._settle, data, None)

    def _settle(self, data: bytes | None, error: BaseException | None) -> None:
        reply, self.reply = self.reply, None
        if reply is None:
            return  # answered after its time was up, or timed out after its answer
        self.timer.cancel()
        reply(data, error)


class MemoryRpc:
    """Loopback :class:`~actors.cluster.rpc.RPCClient`, :class:`~actors.cluster.rpc.RPCServer`
    and :class:`~actors.cluster.rpc.UserSubjects` of a :class:`MemoryCluster`."""

    ordered = True
    """Everything is handed over in the order sent (see the module docstring)."""

    def __init__(self, network: MemoryCluster) -> None:
        self.network = network
        self.me: ServerInfo | None = None
        self._open = False
        self._deliver: DeliverInbound | None = None
        self._subject: str | None = None
        self._users: set[str] = set()
        self._bind_watch: tuple[str, Callable[[bytes], None]] | None = None

    @property
    def connected(self) -> bool:
        return self._open

    @property
    def serving(self) -> bool:
        return self._open and self._subject is not None

    @property
    def metadata(self) -> dict[str, str]:
        return {}

    @property
    def user_subjects(self) -> UserSubjects:
        return self

    direct = None
    """As NATS: pushes and kicks by uid go on the uid's subjects."""

    # -- client ----------------------------------------------------------------------------

    async def connect(self) -> None:
        self._open = True

    async def call(self, server: ServerInfo, request: bytes, timeout: float) -> bytes:
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.start_call(server, request, timeout, settles(answer))
        return await answer

    def start_call(self, server: ServerInfo, request: bytes, timeout: float, reply: Reply) -> None:
        """:meth:`call` without a coroutine, as NATS's: the request is handed over in order
        with the notifies before and after it, and ``reply(answer, error)`` runs when the
        answer is handed back, in order with what the target sent before and after it (a
        handler's push, a kick made once it answered); at once when it cannot be sent."""
        if not self._open:
            reply(None, ClusterUnavailable("cluster unavailable: the in-memory RPC is closed"))
            return
        subject = server_subject(server.type, server.id)
        target = self.network._endpoints.get(subject)
        if target is None:
            reply(None, ServerUnreachable.of(server))
            return
        _send(target, REQUEST, request, _Call(reply, timeout).respond)

    def notify(self, server: ServerInfo, request: bytes) -> None:
        if not self._open:
            return
        target = self.network._endpoints.get(server_subject(server.type, server.id))
        if target is None:
            log.debug("nobody serves %s; dropping a notify", server.id)
            return
        _send(target, REQUEST, request, None)

    async def send_notify(self, server: ServerInfo, request: bytes) -> None:
        self.notify(server, request)

    async def close(self) -> None:
        await self.stop()
        self._open = False
        self._deliver = None

    # -- server ----------------------------------------------------------------------------

    async def start(self, me: ServerInfo, deliver: DeliverInbound) -> None:
        if not self._open:
            raise ClusterUnavailable("cluster unavailable: connect the in-memory RPC first")
        subject = server_subject(me.type, me.id)
        if subject in self.network._endpoints:
            raise ClusterStartupError(f"another server already serves {subject}")
        self.me = me
        self._deliver = deliver
        self._subject = subject
        self.network._endpoints[subject] = self

    async def stop(self) -> None:
        """Receive nothing new (what was already handed over is still delivered)."""
        network = self.network
        if self._subject is not None and network._endpoints.get(self._subject) is self:
            del network._endpoints[self._subject]
        self._subject = None
        for uid in list(self._users):
            await self.forget_user(uid)
        if self._bind_watch is not None:
            subject, watcher = self._bind_watch
            network._bind_watchers.get(subject, []).remove(watcher)
            self._bind_watch = None

    def _inbound(self, kind: str, data: bytes, respond: Respond | None) -> None:
        if self._deliver is not None:
            self._deliver(kind, data, respond)

    # -- per-uid and bindings subjects (UserSubjects) ----------------------------------------

    def _user_subjects(self, uid: str) -> list[str]:
        assert self.me is not None
        return [user_subject(self.me.type, uid, what) for what in ("push", "kick")]

    async def listen_user(self, uid: str) -> None:
        if self.me is None or uid in self._users:
            return
        self._users.add(uid)
        for subject in self._user_subjects(uid):
            self.network._subscribers.setdefault(subject, []).append(self)

    async def forget_user(self, uid: str) -> None:
        if uid not in self._users:
            return
        self._users.discard(uid)
        for subject in self._user_subjects(uid):
            takers = self.network._subscribers.get(subject, [])
            if self in takers:
                takers.remove(self)
            if not takers:
                self.network._subscribers.pop(subject, None)

    def publish_user(self, frontend_type: str, uid: str, what: str, payload: bytes) -> None:
        if not self._open:
            return
        kind = _USER_KINDS[what]
        for target in self.network._subscribers.get(user_subject(frontend_type, uid, what), []):
            _send(target, kind, payload, None)

    async def request_user(
        self, frontend_type: str, uid: str, what: str, payload: bytes, timeout: float
    ) -> bytes | None:
        if not self._open:
            raise ClusterUnavailable("cluster unavailable: the in-memory RPC is closed")
        takers = self.network._subscribers.get(user_subject(frontend_type, uid, what), [])
        if not takers:
            return None  # no responders
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        call = _Call(settles(answer), timeout)
        for target in takers:  # the first answer wins, as a NATS request's
            _send(target, _USER_KINDS[what], payload, call.respond)
        try:
            return await answer
        except RpcTimeout:
            return None

    async def announce_bind(self, notice: bytes) -> None:
        if not self._open or self.me is None:
            return
        loop = asyncio.get_running_loop()
        for watcher in self.network._bind_watchers.get(bindings_subject(self.me.type), []):
            loop.call_soon(watcher, notice)

    async def watch_binds(self, deliver: DeliverBytes) -> None:
        if self.me is None or self._bind_watch is not None:
            return
        subject = bindings_subject(self.me.type)
        self.network._bind_watchers.setdefault(subject, []).append(deliver)
        self._bind_watch = (subject, deliver)


_USER_KINDS = {"push": PUSH, "kick": KICK}


def _send(target: MemoryRpc, kind: str, data: bytes, respond: Respond | None) -> None:
    asyncio.get_running_loop().call_soon(target._inbound, kind, data, respond)

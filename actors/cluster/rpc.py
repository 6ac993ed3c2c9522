"""The RPC seam: how cluster servers hand each other Pitaya's messages (its RPCClient/RPCServer).

Pitaya has two RPC implementations, NATS (default) and gRPC; so do we, chosen with the
``rpc_transport`` option (built in ``actors.cluster.defaults``):

* ``"nats"``: :class:`~actors.cluster.nats_rpc.NatsRpc`, one NATS connection that is both
  client and server, on Pitaya's subjects (``pitaya/servers/<type>/<id>`` ...);
* ``"grpc"``: :class:`~actors.cluster.grpc_rpc.GrpcRPCClient` and
  :class:`~actors.cluster.grpc_rpc.GrpcRPCServer`: every server listens on its own port and
  advertises it in discovery (``grpcHost``/``grpcPort``); no NATS at all. Pushes and kicks by
  uid then need the binding storage module to find a uid's frontend, as in Pitaya.

Or your own pair, given to the app: ``App(mode="cluster", rpc=(client, server))``; the
in-memory :class:`~actors.cluster.memory.MemoryRpc` (for tests) is one.

Both only move bytes: an encoded ``protos.Request`` in, an encoded ``protos.Response`` out
(``actors.cluster.codec``). Everything above them (routing, the bridge actor's hand-off to
handler and remote actors, error codes, metrics, tracing) is shared, so a request behaves the
same over either. A server hands what arrives to a :data:`DeliverInbound` callback (the bridge
actor's mailbox) with its kind (:data:`REQUEST`, or :data:`PUSH`/:data:`KICK`/:data:`BIND`
for a ``protos.Push``/``KickMsg``/``BindMsg`` that came on a uid's subject or gRPC's
``PushToUser``/``KickUser``/``SessionBindRemote``); the bridge answers through the
:data:`Respond` it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from actors.errors import ActorError, InternalError, RpcTimeout

if TYPE_CHECKING:
    from actors.cluster.codec import BindNotice
    from actors.cluster.discovery import ServerInfo

NATS = "nats"
GRPC = "grpc"
TRANSPORTS = (NATS, GRPC)

REQUEST = "request"
"""Inbound kind: a ``protos.Request`` (answered with a ``protos.Response``)."""
PUSH = "push"
"""Inbound kind: a ``protos.Push`` to a uid bound here."""
KICK = "kick"
"""Inbound kind: a ``protos.KickMsg`` for a uid bound here."""
BIND = "bind"
"""Inbound kind: a ``protos.BindMsg`` from another frontend of this type (gRPC)."""

Respond = Callable[[bytes], None]
"""Answers one inbound message with an encoded ``protos.Response``; called at most once."""

DeliverInbound = Callable[[str, bytes, "Respond | None"], None]
"""Takes one inbound message of a kind (:data:`REQUEST` ...); ``respond`` is None when the
sender expects no answer. Must not block: it queues the message for the bridge actor."""

BindListener = Callable[["BindNotice"], None]
"""Called with the notice of a uid bound on another frontend of this server's type."""

DeliverBytes = Callable[[bytes], None]
"""Takes one encoded message (a bind notice) that expects no answer."""


class ClusterStartupError(ActorError):
    """NATS, etcd or the gRPC port cannot be reached or bound when a cluster server starts;
    says which."""


class ServerIdTaken(ClusterStartupError):
    """Discovery refused this server's id: another server holds it, a live one or one whose
    lease has not expired yet (this server's own crashed predecessor, taken over once its
    lease goes unrefreshed). A start to try again later, not a crash: ``App.run`` exits with
    :data:`actors.startup.EXIT_ID_HELD`, which the launcher retries at a steady pace."""


class ClusterUnavailable(InternalError):
    """``PIT-500``: this server's RPC transport is down, so the request cannot leave it."""


class ServerUnreachable(RpcTimeout):
    """``PIT-408`` at once: the request reached nobody, so it was not handled (NATS's "no
    responders": nobody subscribes to the server's subject; gRPC ``UNAVAILABLE`` before a
    connection was made). Unlike a timeout it is safe to send the request to another
    server; the router stops choosing this one for a while (``actors.cluster.router``)."""

    @classmethod
    def of(cls, server: ServerInfo) -> ServerUnreachable:
        """The error for ``server``, the same over every transport. It reaches the game
        client, so it names the server by id and type only: never its address, its subject
        or the transport's own words (a transport logs those itself)."""
        return cls(f"rpc client: server {server.id} ({server.type}) is unreachable")


class RPCClient(Protocol):
    """Sends requests to other servers."""

    ordered: bool
    """Calls and notifies started one after another reach one server in that order: true
    over NATS (``Outbound`` hands them to the connection at once, in call order, through
    ``NatsRpc.start_call``; one subject per server), false over gRPC (a stream per call).
    Only then does a frontend pipeline one session's forwarded messages; otherwise each waits
    for the previous answer."""

    @property
    def connected(self) -> bool:
        """Requests can leave this server now (part of readiness)."""
        ...

    async def connect(self) -> None:
        """Reach the transport; ClusterStartupError names what cannot be reached."""
        ...

    async def call(self, server: ServerInfo, request: bytes, timeout: float) -> bytes:
        """Send an encoded RpcRequest to ``server``; return its encoded RpcResponse.

        Raises :class:`ServerUnreachable` (``PIT-408``, at once) only when the request
        provably reached nobody, :class:`~actors.errors.RpcTimeout` (``PIT-408``) when the
        server does not answer within ``timeout`` or may have received it,
        :class:`ClusterUnavailable` when this server's own transport is down.
        """
        ...

    @property
    def user_subjects(self) -> UserSubjects | None:
        """Pitaya's per-uid and bindings subjects, when this transport has them (NATS);
        None (gRPC) leaves pushes and kicks by uid to the binding storage module."""
        ...

    @property
    def direct(self) -> DirectUserCalls | None:
        """gRPC's ``PushToUser``/``KickUser``/``SessionBindRemote`` to one frontend, when this
        transport has them; None (NATS) uses the uid's subjects instead."""
        ...

    def notify(self, server: ServerInfo, request: bytes) -> None:
        """Send an encoded request that expects no answer, keeping the order of notifies
        to one server. Never blocks; a failure is logged. Only to servers of ours (a Go
        server answers every request, so it is sent calls whose answer is dropped)."""
        ...

    async def send_notify(self, server: ServerInfo, request: bytes) -> None:
        """:meth:`notify` as a coroutine that the bridge runs as a task, in its mailbox
        order with the calls, for transports whose calls go through the bridge (NATS sends
        straight, in call order). A failure is logged."""
        ...

    async def close(self) -> None:
        """Release connections (after in-flight calls finished)."""
        ...


class RPCServer(Protocol):
    """Receives the requests other servers send to this one."""

    @property
    def serving(self) -> bool: ...

    @property
    def metadata(self) -> dict[str, str]:
        """What other servers need to reach this one, published in discovery (once
        started): gRPC's ``grpcHost``/``grpcPort``; nothing for NATS."""
        ...

    async def start(self, me: ServerInfo, deliver: DeliverInbound) -> None:
        """Begin receiving the requests for ``me`` (this server) and hand each one to
        ``deliver``."""
        ...

    async def stop(self) -> None:
        """Stop receiving (after this server left discovery and finished its work)."""
        ...


class RpcPair(NamedTuple):
    """An RPC client and server, as ``App(mode="cluster", rpc=...)`` takes them (one object
    may be both, as :class:`~actors.cluster.nats_rpc.NatsRpc` is)."""

    client: RPCClient
    server: RPCServer


class DirectUserCalls(Protocol):
    """Go Pitaya's gRPC methods besides ``Call``, to one frontend (both Go's and ours serve
    them). Each returns the frontend's answer bytes (a ``protos.Response``, or a
    ``KickAnswer`` for :meth:`kick_user`) and raises a PitayaError when it refused
    (the uid is not bound there: Go answers a gRPC error)."""

    async def push_to_user(self, server: ServerInfo, push: bytes, timeout: float) -> bytes: ...

    async def kick_user(self, server: ServerInfo, kick: bytes, timeout: float) -> bytes: ...

    async def bind_remote(self, server: ServerInfo, bind: bytes, timeout: float) -> bytes: ...


class UserSubjects(Protocol):
    """Reaching a uid without knowing its frontend, and telling the frontends of a type about
    every bind: Pitaya's ``pitaya/<frontendType>/user/<uid>/push|kick`` and
    ``pitaya/<frontendType>/bindings`` subjects (see ``actors.cluster.subjects``). NATS has
    them, gRPC does not; :attr:`RPCClient.user_subjects` says which. Like the RPC client and
    server, it moves bytes only: ``payload`` and ``notice`` are encoded by the cluster
    (``actors.cluster.codec``); what arrives on a uid's subjects goes to the
    :data:`DeliverInbound` given to :meth:`RPCServer.start`."""

    async def listen_user(self, uid: str) -> None:
        """Frontend: take the push and kick subjects of ``uid``, bound here (again: no-op)."""
        ...

    async def forget_user(self, uid: str) -> None:
        """Frontend: drop them (the uid's session is gone)."""
        ...

    def publish_user(self, frontend_type: str, uid: str, what: str, payload: bytes) -> None:
        """Send to a uid's ``push``/``kick`` subject expecting no answer, in call order."""
        ...

    async def request_user(
        self, frontend_type: str, uid: str, what: str, payload: bytes, timeout: float
    ) -> bytes | None:
        """Request a uid's ``push``/``kick`` subject: the answer of the frontend that holds
        it, None when nobody answered; :class:`ClusterUnavailable` when the transport
        failed."""
        ...

    async def announce_bind(self, notice: bytes) -> None:
        """Tell every frontend of this server's type that a uid was bound here, now (not
        behind queued messages)."""
        ...

    async def watch_binds(self, deliver: DeliverBytes) -> None:
        """Frontend: hand the (encoded) bind notices of the frontends of this type to
        ``deliver``."""
        ...

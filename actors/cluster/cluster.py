"""Cluster mode: one server's node in a cluster found in etcd (Pitaya's rules), over NATS or gRPC.

This module wires the pieces and runs the node's life (connect, join, leave, close); each
piece is a module with one job:

* ``discovery``: who is alive, by type (etcd, Pitaya's keys); ``router``: which one serves a
  route;
* ``rpc``: the RPCClient/RPCServer seam, implemented by ``nats_rpc`` (default, Pitaya's
  subjects, over ``transport.nats``) and ``grpc_rpc`` (``rpc_transport="grpc"``, over
  ``transport.grpc_rpc``); ``defaults`` builds the discovery and RPC from the config when the
  app was given none (``memory`` has in-memory ones for tests);
* ``codec``: Pitaya's protobuf messages to bytes and back, the one place that knows the wire
  format;
* ``outbound``: calls to other servers (forwarded client messages, user RPCs, controls);
* ``bridge``: the reentrant actor every call goes out through and every inbound message
  comes in by (to the invocation path, or to the controls);
* ``control``: the typed control messages (bind, push, kick, ...) and their handling;
* ``users``: push and kick by uid, bind notices, backends' session events;
* ``backend_session``: the session a backend handler sees; ``groups``: etcd groups.

A target that does not answer within ``rpc_timeout`` (or cannot be reached) gives
``PIT-408`` (Pitaya's code); requests while this server's transport is down fail at once with
``PIT-500``.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from actors.cluster.backend_session import BackendSession
from actors.cluster.bridge import CloseHere, RpcBridge
from actors.cluster.codec import EXTRAS_KEY, EXTRAS_VERSION, INCARNATION_KEY
from actors.cluster.control import ControlHandler
from actors.cluster.defaults import default_discovery, default_rpc
from actors.cluster.discovery import (
    DuplicateServerId,
    Registration,
    ServerInfo,
    ServiceDiscovery,
)
from actors.cluster.groups import GroupsUnavailable
from actors.cluster.handshakes import HandshakeCache
from actors.cluster.join_gate import JoinGate
from actors.cluster.outbound import Outbound
from actors.cluster.router import Router
from actors.cluster.rpc import (
    GRPC,
    NATS,
    ClusterStartupError,
    ClusterUnavailable,
    RPCClient,
    RPCServer,
    ServerIdTaken,
)
from actors.cluster.serializer_check import SERIALIZER_KEY, SerializerCheck
from actors.cluster.served_sessions import ServedSession, ServedSessions
from actors.cluster.subjects import (
    MAX_LOGGED_ID,
    server_problem,
    server_subject,
    user_subject,
)
from actors.cluster.users import ClusterUsers, UserDelivery
from actors.errors import RpcTimeout
from actors.logs import ServerLog
from actors.readiness import Readiness
from transport.etcd import EtcdUnavailable
from transport.undo import undo_fully

if TYPE_CHECKING:
    from actors.cluster.codec import SessionSnapshot
    from actors.cluster.host import ClusterHost
    from actors.groups import GroupService
    from actors.kernel import ActorRef
    from actors.session import Session

log = logging.getLogger(__name__)


class Cluster:
    """The cluster side of one server: discovery, router, RPC client and server, bridge.

    ``discovery`` and ``rpc`` (a client and a server) are the seams the app was given, or
    built from the config (``actors.cluster.defaults``) when None. The app reaches the others
    through :attr:`outbound` (``forward``, ``rpc``, ``rpc_to``, also bound here) and
    :attr:`users` (``push_to_users``, ``kick_users``, also bound here).
    """

    def __init__(
        self,
        app: ClusterHost,
        *,
        discovery: ServiceDiscovery | None = None,
        rpc: tuple[RPCClient, RPCServer] | None = None,
    ) -> None:
        self.app = app
        config = app.config
        self.me = ServerInfo(
            id=app.server_id,
            type=app.server_type,
            frontend=app.is_frontend,
            metadata={
                **config.metadata,
                EXTRAS_KEY: EXTRAS_VERSION,
                SERIALIZER_KEY: app.serializer.name,
                INCARNATION_KEY: secrets.token_hex(8),
            },
        )
        self.log = ServerLog(log, app.server_id)
        self.lost: str | None = None
        """Why the RPC transport is gone for good (the server stops: ``App.run`` exits 1)."""
        self.dropped_messages = 0
        """Inbound messages that will never be handled: malformed messages the bridge
        dropped, and messages NATS dropped because this server read too slowly (slow
        consumer). Reported as Pitaya's ``rpc_server_dropped_messages`` gauge."""
        self.handshakes = HandshakeCache()
        """Backends: the handshakes of the sessions served (``actors.cluster.handshakes``)."""
        self.discovery: ServiceDiscovery = (
            discovery if discovery is not None else default_discovery(config, app.system)
        )
        self.router = Router(self.discovery, server_id=app.server_id)
        if rpc is None:
            rpc = default_rpc(config, self.discovery, on_dropped=self._dropped)
            self._via = {NATS: "NATS", GRPC: "gRPC"}.get(config.rpc_transport, "RPC")
        else:
            self._via = type(rpc[0]).__name__
        self.rpc_client: RPCClient = rpc[0]
        self.rpc_server: RPCServer = rpc[1]
        self.outbound = Outbound(
            me=self.me,
            discovery=self.discovery,
            router=self.router,
            client=self.rpc_client,
            rpc_timeout=config.rpc_timeout,
            metrics=app.metrics,
            tracing=app.tracing,
            via=self._via,
        )
        self.users = ClusterUsers(
            me=self.me,
            subjects=self.rpc_client.user_subjects,
            client=self.rpc_client,
            discovery=self.discovery,
            sessions=app.sessions,
            rpc_timeout=config.rpc_timeout,
        )
        self.bridge: ActorRef | None = None
        self.served_sessions: ServedSessions | None = None
        """The sessions of our frontends served here, closed here if their frontend dies
        (``actors.cluster.served_sessions``); from :meth:`join` on."""
        # The calls the app and the session actors make, bound once (no wrapper per call).
        self.forward = self.outbound.forward
        self.pipelines_to = self.outbound.pipelines_to
        self.pick = self.router.pick
        self.rpc = self.outbound.rpc
        self.rpc_to = self.outbound.rpc_to
        self.push_to_users = self.users.push_to_users
        self.kick_users = self.users.kick_users

    def _dropped(self) -> None:
        self.dropped_messages += 1

    def _transport_lost(self, cause: str) -> None:
        """The RPC transport is gone for good: stop this server (as Go Pitaya does), so it
        leaves discovery instead of staying there, unable to serve; a supervisor (the
        launcher's) starts it again."""
        self.log.error("stopping: the RPC transport cannot come back (%s)", cause)
        self.lost = cause
        self.app.request_stop()

    @property
    def connected(self) -> bool:
        """RPCs can go out and come in (readiness; discovery registration aside)."""
        return self.rpc_client.connected and self.rpc_server.serving

    @property
    def registration(self) -> Registration:
        """This server's standing in discovery: the discovery's ``registration`` when it has
        one; a discovery of one's own with ``registered`` only cannot tell an outage from
        not being registered."""
        state = getattr(self.discovery, "registration", None)
        if isinstance(state, Registration):
            return state
        return Registration.REGISTERED if self.discovery.registered else Registration.UNREGISTERED

    def readiness(self) -> Readiness:
        """The cluster's part of readiness: the RPC transport up (a server that cannot take
        RPCs cannot serve) and this server in discovery. Discovery unreachable keeps it
        ready, degraded: the outage is every server's at once, and each still serves its
        clients and RPCs from the last table it knew (see :class:`Registration`)."""
        if not self.connected:
            return Readiness(False, f"RPC transport ({self._via}) down")
        state = self.registration
        if state is Registration.REGISTERED:
            return Readiness(True)
        if state is Registration.UNREACHABLE:
            return Readiness(
                True, "discovery unreachable, serving from the last known server table"
            )
        return Readiness(False, state.value)

    def _backend_session(self, snapshot: SessionSnapshot, read_only: bool) -> Session:
        return BackendSession(snapshot, self.outbound, self.app.serializer, read_only=read_only)

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Reach the RPC transport and etcd; ClusterStartupError names what cannot be
        reached (or what is missing)."""
        config = self.app.config
        problem = server_problem(self.me.type, self.me.id)
        if problem is not None:
            # Every peer's discovery skips it: registered, it would be reached by none.
            raise ClusterStartupError(
                f"server {self.me.type[:MAX_LOGGED_ID]!r}/{self.me.id[:MAX_LOGGED_ID]!r} "
                f"cannot join the cluster: {problem}"
            )
        if self.rpc_client.user_subjects is None:
            self._require_user_delivery()
        on_lost = getattr(self.rpc_client, "on_lost", None)  # NATS's: gRPC reconnects per call
        if on_lost is not None:
            on_lost(self._transport_lost)
        on_reconnected = getattr(self.rpc_client, "on_reconnected", None)  # NATS's too
        start_call = getattr(self.rpc_client, "start_call", None)
        if on_reconnected is not None and start_call is not None:
            on_reconnected(self.users.transport_back)
            self.users.hold_events(start_call)
        try:
            await self.rpc_client.connect()
            await self.discovery.connect()
        except BaseException as exc:
            # Failed, or abandoned (a stop during the start-up): nothing is left open, even
            # if a stop comes while it is closed.
            await undo_fully(self._close_connections())
            if isinstance(exc, EtcdUnavailable):
                raise ClusterStartupError(
                    f"cannot reach etcd at {config.etcd_endpoints}: {exc}"
                ) from exc
            raise

    async def _close_connections(self) -> None:
        """What :meth:`connect` opened (either may be half open, or not open at all)."""
        await self.rpc_client.close()
        await self.discovery.close()

    def _require_user_delivery(self) -> None:
        if not any(isinstance(module, UserDelivery) for _, module in self.app.modules):
            what = "rpc_transport='grpc'" if self._via == "gRPC" else self._via
            raise ClusterStartupError(
                f"{what} has no per-uid subjects: reaching users by uid needs the binding "
                "storage module (as Pitaya's gRPC RPC): app.register_module(BindingStorage(app), "
                "'binding_storage') on every server"
            )

    async def join(self) -> None:
        """Serve RPCs and register in discovery (the local actors are spawned by now)."""
        app = self.app
        events = app.remote_session_events
        self.served_sessions = ServedSessions(
            self.discovery,
            probe=self._probe_frontend,
            close_here=self._close_here,
            events=events,
            server_id=self.me.id,
        )
        controls = ControlHandler(
            server_id=self.me.id,
            sessions=app.sessions,
            session_events=events,
            backend_session=self._backend_session,
            handshakes=self.handshakes,
            served_sessions=self.served_sessions,
        )
        bridge = self.bridge = self.outbound.bridge = app.system.spawn(
            RpcBridge,
            self.rpc_client,
            server_id=self.me.id,
            invoker=app.invoker,
            local_routes=app.local_routes,
            remote_routes=app.remote_routes,
            tracing=app.tracing,
            frontend=self.outbound,
            serializer=app.serializer,
            controls=controls,
            on_bind_notice=self.users.bind_noticed,
            on_dropped=self._dropped,
            name="rpc-bridge",
        )

        # The RPC server starts before the registration (peers that see the entry must reach
        # it); what arrives until discovery grants the id waits at the gate.
        gate = JoinGate(on_dropped=self._dropped)
        try:
            await self.rpc_server.start(self.me, gate.deliver)
            self.me.metadata.update(self.rpc_server.metadata)
            await self.discovery.start(self.me)
            gate.open(bridge.tell)
        except BaseException as exc:
            gate.refuse()
            # All of it, even if a stop comes meanwhile: cut short, the NATS connection (or
            # the etcd one) would stay open.
            await undo_fully(self.close())
            if isinstance(exc, EtcdUnavailable):
                raise ClusterStartupError(
                    f"cannot register in etcd at {app.config.etcd_endpoints}: {exc}"
                ) from exc
            if isinstance(exc, DuplicateServerId):
                raise ServerIdTaken(str(exc)) from None
            raise
        SerializerCheck(self.me, self.log).watch(self.discovery)
        if self.me.frontend:
            app.sessions.on_session_bind(self.users.check_uid)
            app.sessions.on_after_session_bind(self.users.bound)
            app.sessions.on_session_closing(self.users.closing)
        self.log.info(
            "joined the cluster (%s, %s)",
            self._via,
            type(self.discovery).__name__,
        )

    async def _probe_frontend(
        self, frontend_id: str, frontend_type: str, ids: list[int]
    ) -> list[int]:
        """Which of ``ids`` are open sessions of that frontend; ServerUnreachable when no
        process serves its id."""
        return await self.outbound.sessions_open(frontend_id, frontend_type, ids)

    def _close_here(self, sessions: list[ServedSession]) -> None:
        if self.bridge is not None:
            self.bridge.tell(CloseHere(sessions))

    def group_service(self) -> GroupService:
        """The group service the discovery keeps (etcd groups by default), the cluster's
        default; members leave on disconnect (unless the uid is still bound here, by another
        session). ClusterStartupError if it keeps none."""
        groups = self.discovery.group_service(self.app.send_push_to_users)
        if groups is None:
            raise ClusterStartupError(
                f"{type(self.discovery).__name__} keeps no groups: set a group service shared "
                "by the servers (app.set_group_service(...)) before the app starts"
            )
        if self.me.frontend:

            async def leave(session: Session) -> None:
                if session.uid is not None and self.app.sessions.by_uid(session.uid) is None:
                    try:
                        await groups.leave_all(session.uid)
                    except (EtcdUnavailable, GroupsUnavailable) as exc:
                        # An etcd outage is logged once by the etcd client, not per session.
                        self.log.debug("could not remove %s from groups: %s", session.uid, exc)

            self.app.sessions.on_session_close(leave)
        return groups

    async def leave(self) -> None:
        """Deregister from discovery (revoke the lease): no new RPCs get routed here."""
        try:
            await self.discovery.stop()
        except Exception:
            self.log.exception("leaving discovery failed")

    async def close(self, events_within: float = 0.0) -> None:
        """Stop serving RPCs and release etcd and connections (after in-flight work), once
        the session events sent to backends are acknowledged (at most ``events_within``
        seconds: the stop's budget; none once the transport is gone for good)."""
        if self.served_sessions is not None:
            await self.served_sessions.close()
        held = self.users.held_events
        if held is not None:
            if self.lost is not None:  # the transport cannot come back: nothing more goes
                events_within = 0.0
            if not await held.settled(events_within):
                self.log.debug("%d session event(s) unacknowledged at the stop", len(held))
            await held.close()
        try:
            await self.discovery.close()
        except Exception:
            self.log.exception("closing discovery failed")
        for what, step in (("server", self.rpc_server.stop), ("client", self.rpc_client.close)):
            try:
                await step()
            except Exception:
                self.log.exception("closing the RPC %s failed", what)


__all__ = [
    "Cluster",
    "ClusterStartupError",
    "ClusterUnavailable",
    "RpcTimeout",
    "server_subject",
    "user_subject",
]

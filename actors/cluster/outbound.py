"""Calls from this server to others: forwarded client messages, user RPCs, frontend controls.

Every call goes out through the bridge actor (``actors.cluster.bridge``), so calls and
notifies keep this server's order; the answer is decoded here (``actors.cluster.codec``): the
payload, or the remote's error as a ``PitayaError``. A target that does not answer within the
timeout (or cannot be reached) gives ``PIT-408``; a call while this server's transport is down
fails at once with ``PIT-500``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from actors.cluster.bridge import OutboundCall, OutboundNotify
from actors.cluster.codec import RPC_SERIALIZER, RpcRequest, encode, read_answer, snapshot
from actors.cluster.control import Control, encode_control
from actors.cluster.discovery import ServerInfo
from actors.cluster.rpc import ClusterUnavailable
from actors.errors import InternalError, PitayaError
from actors.metrics.rpc import observe_rpc
from actors.payload import encode_result

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors.cluster.discovery import ServiceDiscovery
    from actors.cluster.router import Router
    from actors.cluster.rpc import RPCClient
    from actors.kernel import ActorRef, Reply
    from actors.metrics.reporter import Metrics
    from actors.session import Session
    from actors.tracing import Tracing

log = logging.getLogger(__name__)


class UnsendableRequest(Exception):
    """A request this server cannot encode: its own data the envelope cannot carry (say,
    session data a handler set). A server error (``PIT-500``), not the client's, and not a
    ``PitayaError``, so a failed forwarded notify is logged."""


class Outbound:
    """This server's calls to the others (a :class:`~actors.cluster.control.FrontendLink`).

    ``me``: this server; ``discovery`` and ``router`` find the targets; ``client``: the RPC
    client (its ``connected`` and ``ordered``); ``rpc_timeout``: the default timeout;
    ``metrics`` and ``tracing`` time and trace the calls when on; ``via``: the transport's
    name for messages. :attr:`bridge` is set once the bridge actor runs (on join).
    """

    def __init__(
        self,
        *,
        me: ServerInfo,
        discovery: ServiceDiscovery,
        router: Router,
        client: RPCClient,
        rpc_timeout: float,
        metrics: Metrics,
        tracing: Tracing,
        via: str,
    ) -> None:
        self.me = me
        self.discovery = discovery
        self.router = router
        self.client = client
        self.rpc_timeout = rpc_timeout
        self.metrics = metrics
        self.tracing = tracing
        self.via = via
        self.bridge: ActorRef | None = None

    @property
    def ordered(self) -> bool:
        """Forwarded messages sent one after another reach a server in that order (NATS):
        a frontend may pipeline a session's messages (see ``RPCClient.ordered``)."""
        return self.client.ordered

    # -- the two primitives ----------------------------------------------------------------

    def call(
        self,
        server: ServerInfo,
        request: RpcRequest,
        reply: Reply,
        timeout: float,
        parent: Span | None = None,
    ) -> None:
        """Send ``request`` to ``server``; ``reply(payload, error)``, the remote's errors
        decoded. Timed and traced when metrics or tracing are on (``parent``: the span the
        call belongs to)."""
        bridge = self.bridge
        if bridge is None or not self.client.connected:
            reply(None, ClusterUnavailable(f"cluster unavailable: not connected to {self.via}"))
            return
        if self.metrics.enabled or self.tracing.enabled:
            reply = observe_rpc(
                self.metrics, self.tracing, server.id, server.type, request, reply, parent
            )
        try:
            payload = encode(request)
        except Exception as exc:
            reply(None, UnsendableRequest(f"cannot send {request.route} to {server.id}: {exc}"))
            return
        bridge.request(OutboundCall(server, payload, timeout), _unwrap(reply))

    def notify(self, server: ServerInfo, request: RpcRequest) -> None:
        """Send ``request`` expecting no answer, in order with the calls around it."""
        if not self.client.connected:
            return
        if self.bridge is not None:
            # Through the bridge, in order with the calls sent before and after it.
            self.bridge.tell(OutboundNotify(server, encode(request)))
        else:
            self.client.notify(server, encode(request))

    async def ask(self, server: ServerInfo, request: RpcRequest, timeout: float) -> bytes:
        """:meth:`call` awaited: the answer's payload, or its error raised."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def reply(result: Any, error: BaseException | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        self.call(server, request, reply, timeout)
        return await future

    # -- client messages -------------------------------------------------------------------

    def forward(
        self,
        server: ServerInfo,
        session: Session,
        route: str,
        data: bytes,
        notify: bool,
        reply: Reply,
        *,
        parent: Span | None = None,
    ) -> None:
        """Send a client message to ``server`` (the router's pick); ``reply(payload, error)``.

        ``parent``: the tracing span of the client message (its RPC span's parent).
        """
        me = self.me
        try:
            request = RpcRequest("sys", route, data, snapshot(session, me.id, me.type), notify)
        except Exception as exc:
            reply(None, exc)
            return
        if session.served_by is None:
            session.served_by = {}
        session.served_by.setdefault(server.id, set()).add(route)
        # A notify is a request too, answered with an empty ack once handled (as Pitaya
        # does): the session's next message, maybe for another server, waits for it.
        self.call(server, request, reply, self.rpc_timeout, parent)

    # -- user RPCs -------------------------------------------------------------------------

    async def rpc(
        self,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
    ) -> Any:
        """User RPC to a server of the route's type, chosen by the router."""
        server_type = _server_type(route)
        server = self.router.pick(server_type, route, session)
        return await self.rpc_to(server.id, route, arg, session=session, timeout=timeout)

    async def rpc_to(
        self,
        server_id: str,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
    ) -> Any:
        """User RPC to one server by id; returns the remote method's result."""
        server = self.discovery.server(server_id)
        if server is None:
            raise InternalError(f"server {server_id} not found in discovery")
        me = self.me
        request = RpcRequest(
            "user",
            route,
            encode_result(arg, RPC_SERIALIZER),
            snapshot(session, me.id, me.type) if session is not None else None,
        )
        payload = await self.ask(server, request, timeout or self.rpc_timeout)
        return RPC_SERIALIZER.unmarshal(payload) if payload else None

    # -- controls to a frontend (FrontendLink) ---------------------------------------------

    def _frontend(self, frontend_id: str, frontend_type: str | None) -> ServerInfo | None:
        """The frontend by id; a backend session knows its frontend's type, so a frontend this
        server's table has not seen yet (the watch lags) is still reachable."""
        server = self.discovery.server(frontend_id)
        if server is None and frontend_type:
            server = ServerInfo(id=frontend_id, type=frontend_type, frontend=True)
        return server

    async def frontend_call(
        self, frontend_id: str, control: Control, frontend_type: str | None = None
    ) -> None:
        """A control request to a frontend; raises its error."""
        server = self._frontend(frontend_id, frontend_type)
        if server is None:
            raise InternalError(f"frontend {frontend_id} not found in discovery")
        request = RpcRequest("sys", control.route, encode_control(control))
        await self.ask(server, request, self.rpc_timeout)

    def frontend_notify(
        self, frontend_id: str, control: Control, frontend_type: str | None = None
    ) -> None:
        """A control to a frontend expecting no answer (logged and dropped if unknown)."""
        server = self._frontend(frontend_id, frontend_type)
        if server is None:
            log.warning(
                "[%s] frontend %s unknown; dropping %s", self.me.id, frontend_id, control.route
            )
            return
        self.notify(server, RpcRequest("sys", control.route, encode_control(control), notify=True))


def _server_type(route: str) -> str:
    parts = route.split(".")
    if len(parts) != 3 or not all(parts):
        raise PitayaError("PIT-400", f"RPC route must be serverType.service.method, not {route!r}")
    return parts[0]


def _unwrap(reply: Reply) -> Reply:
    """Turn the bridge's answer into ``reply(payload, None)`` or ``reply(None, PitayaError)``."""

    def unwrap(result: Any, error: BaseException | None) -> None:
        if error is not None:
            reply(None, error)
            return
        try:
            data = read_answer(result)
        except PitayaError as exc:
            reply(None, exc)
            return
        reply(data, None)

    return unwrap

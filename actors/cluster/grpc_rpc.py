"""gRPC RPC (``rpc_transport="grpc"``): servers call each other directly, without NATS.

As Pitaya's gRPC RPC client and server, on Go's service ``protos.Pitaya`` (Go servers and
ours call each other):

* every server runs a gRPC server on ``grpc_host:grpc_port`` (0: a free port) and advertises
  it in its discovery metadata under Pitaya's keys ``grpcHost`` and ``grpcPort``;
* the client keeps one channel per peer server, opened from the peer's metadata on first use
  and reused; a peer that leaves discovery is not chosen any more (the router reads the same
  table), and its channel is closed once the calls in flight on it have finished (a server
  stopping gracefully leaves discovery first and still answers what it already received);
* a peer that does not answer within the RPC timeout (``DEADLINE_EXCEEDED``) or cannot be
  reached (``UNAVAILABLE``: dead, not listening) gives ``PIT-408``, as over NATS; when no
  connection could be made at all, the call provably never left (:data:`NEVER_CONNECTED`):
  :class:`~actors.cluster.rpc.ServerUnreachable`, so the router skips that peer and the
  request may go to another server, as NATS's "no responders";
* there are no per-uid subjects and no bind broadcasts: pushes and kicks by uid find the uid's
  frontend through the binding storage module (required with gRPC, as in Pitaya) and go to it
  with ``PushToUser`` and ``Call("sys.kick")``, and a bind notice (for the unique session
  module) goes to the frontend the storage names with ``SessionBindRemote``; this server
  serves ``PushToUser``, ``KickUser`` and ``SessionBindRemote`` as Go's does (a uid not bound
  here is a gRPC error).

Notifies to one of our peers keep their order (one ``pitaya_actors.Extras/Notify`` stream per
peer); a notify and a later call to the same peer may overtake each other, which NATS would
not do.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping

import grpc

from actors.cluster.codec import kick_answer_of, read_answer
from actors.cluster.discovery import ServerInfo, ServiceDiscovery
from actors.cluster.rpc import (
    BIND,
    KICK,
    PUSH,
    REQUEST,
    ClusterStartupError,
    ClusterUnavailable,
    DeliverInbound,
    DirectUserCalls,
    ServerUnreachable,
)
from actors.errors import InternalError, PitayaError, RpcTimeout
from actors.logs import ServerLog, Throttle
from transport.grpc_rpc import (
    KICK_USER,
    PUSH_TO_USER,
    SESSION_BIND_REMOTE,
    GrpcBindError,
    GrpcCallError,
    GrpcChannel,
    GrpcListener,
    GrpcRefused,
    GrpcTls,
)

log = logging.getLogger(__name__)

GRPC_HOST_KEY = "grpcHost"
"""Discovery metadata key of the host a server's gRPC server is reached on (Pitaya's)."""
GRPC_PORT_KEY = "grpcPort"
"""Discovery metadata key of its port (Pitaya's)."""
REGION_KEY = "region"
GRPC_EXTERNAL_HOST_KEY = "grpc-external-host"
GRPC_EXTERNAL_PORT_KEY = "grpc-external-port"
"""Pitaya's keys of a server's region and the address peers of other regions dial."""

STOP_GRACE = 0.25
"""Seconds the gRPC server waits on stop for calls still open. The app has already waited for
its in-flight work by then; what is still open is mostly the peers' idle notify streams."""


def grpc_address(server: ServerInfo, region: str = "") -> str | None:
    """``host:port`` from ``server``'s discovery metadata, None if it advertises none.

    Chosen as Go Pitaya's gRPC client chooses (``region``: this server's, Go's
    ``pitaya.cluster.info.region``): the external address when ``server`` has one and is of
    another region, or names no region; its ``grpcHost`` otherwise."""
    metadata = server.metadata
    keys = (GRPC_HOST_KEY, GRPC_PORT_KEY)
    theirs = metadata.get(REGION_KEY, "")
    if metadata.get(GRPC_EXTERNAL_HOST_KEY) and (not theirs or theirs != region):
        keys = (GRPC_EXTERNAL_HOST_KEY, GRPC_EXTERNAL_PORT_KEY)
    host = metadata.get(keys[0])
    port = metadata.get(keys[1])
    if not host or not port:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Peer:
    """The channel to one server, and the ServerInfo it was opened for."""

    __slots__ = ("channel", "server")

    def __init__(self, server: ServerInfo, address: str, tls: GrpcTls | None) -> None:
        self.server = server
        self.channel = GrpcChannel(address, tls)


class GrpcRPCClient:
    """:class:`~actors.cluster.rpc.RPCClient` over gRPC; see the module docstring.

    ``discovery``: where peers' addresses are read (and followed); ``name``: this server's
    id (for logs); ``rpc_timeout``: how long a call may take (a retired channel lives that
    long for the calls still on it); ``tls``: mutual TLS with the peers (None: plain text);
    ``region``: this server's, which decides the address of a peer that advertises one for
    other regions (:func:`grpc_address`).
    """

    ordered = False
    """A stream per call: two calls started in order may arrive in either order."""

    user_subjects = None
    """No per-uid subjects over gRPC: pushes and kicks by uid need the binding storage."""

    def __init__(
        self,
        discovery: ServiceDiscovery,
        *,
        name: str,
        rpc_timeout: float,
        tls: GrpcTls | None = None,
        region: str = "",
    ) -> None:
        self.discovery = discovery
        self.tls = tls
        self.region = region
        self.server_id = name
        self.log = ServerLog(log, name)
        self.rpc_timeout = rpc_timeout
        self._peers: dict[str, _Peer] = {}
        self._addresses: dict[str, str] = {}
        """The last gRPC address seen for each server id."""
        self._resolving: dict[str, list[bytes]] = {}
        """Notifies to servers whose channel is being opened, in order."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = False
        self._failures = Throttle()
        discovery.add_listener(self._server_changed)

    @property
    def connected(self) -> bool:
        """Nothing to be connected to: peers are dialled on demand."""
        return self._open

    async def connect(self) -> None:
        self._open = True

    async def call(self, server: ServerInfo, request: bytes, timeout: float) -> bytes:
        peer = self._peers.get(server.id)
        if peer is None or peer.server is not server:
            peer = await self._peer(server)  # new, moved, or a stand-in ServerInfo
        try:
            return await peer.channel.call(request, timeout)
        except GrpcCallError as exc:
            raise self._failed(exc, server) from None

    def _failed(self, exc: GrpcCallError, server: ServerInfo) -> Exception:
        """The error a failed call to ``server`` raises. It may reach a game client, so it
        names the server only; what gRPC said (the peer's address, its own debug text) is
        logged here instead, at most once per 10 s with the count of the failures between.
        A handler's own refusal (``UNKNOWN``) and a call cancelled here are no failure of
        the peer: not logged."""
        if exc.code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED):
            self._failures.log(
                asyncio.get_running_loop().time(),
                self.log,
                logging.WARNING,
                "gRPC call to server %s (%s) at %s failed: %s: %s",
                server.id,
                server.type,
                exc.address,
                exc.code.name,
                exc.details,
            )
        return _pitaya_error(exc, server)

    # -- DirectUserCalls: Go's other methods ---------------------------------------------------

    @property
    def direct(self) -> DirectUserCalls:
        return self

    async def _invoke(self, server: ServerInfo, method: str, data: bytes, timeout: float) -> bytes:
        peer = self._peers.get(server.id)
        if peer is None or peer.server is not server:
            peer = await self._peer(server)
        try:
            return await peer.channel.invoke(method, data, timeout)
        except GrpcCallError as exc:
            raise self._failed(exc, server) from None

    async def push_to_user(self, server: ServerInfo, push: bytes, timeout: float) -> bytes:
        return await self._invoke(server, PUSH_TO_USER, push, timeout)

    async def kick_user(self, server: ServerInfo, kick: bytes, timeout: float) -> bytes:
        return await self._invoke(server, KICK_USER, kick, timeout)

    async def bind_remote(self, server: ServerInfo, bind: bytes, timeout: float) -> bytes:
        return await self._invoke(server, SESSION_BIND_REMOTE, bind, timeout)

    async def send_notify(self, server: ServerInfo, request: bytes) -> None:
        self.notify(server, request)

    def notify(self, server: ServerInfo, request: bytes) -> None:
        peer = self._peers.get(server.id)
        if peer is not None and (
            peer.server is server or grpc_address(server, self.region) is None
        ):
            peer.channel.notify(request)  # the peer, or a stand-in without metadata for it
            return
        waiting = self._resolving.get(server.id)
        if waiting is not None:  # behind the notifies already waiting for this channel
            waiting.append(request)
            return
        self._resolving[server.id] = [request]
        task = asyncio.get_running_loop().create_task(self._notify_when_open(server))
        self._tasks.add(task)  # held until done
        task.add_done_callback(self._tasks.discard)

    async def _notify_when_open(self, server: ServerInfo) -> None:
        try:
            peer = await self._peer(server)
        except Exception as exc:
            dropped = self._resolving.pop(server.id, [])
            self.log.warning("%d notify(s) to %s dropped: %s", len(dropped), server.id, exc)
            return
        for request in self._resolving.pop(server.id, []):
            peer.channel.notify(request)

    async def _peer(self, server: ServerInfo) -> _Peer:
        """The peer of ``server.id``, opened (or reopened on a new address) as needed."""
        if not self._open:
            raise ClusterUnavailable("cluster unavailable: the gRPC client is closed")
        address = grpc_address(server, self.region)
        if address is not None:
            self._addresses[server.id] = address
        else:  # a stand-in ServerInfo, without metadata
            peer = self._peers.get(server.id)
            if peer is not None:
                return peer
            address = await self._address_of(server)
        peer = self._peers.get(server.id)  # (again: another call may have opened it meanwhile)
        if peer is not None and peer.channel.address == address:
            if server.metadata:
                peer.server = server
            return peer
        if peer is not None:  # the server came back on another address
            self._retire(peer)
        peer = self._peers[server.id] = _Peer(server, address, self.tls)
        self.log.debug("gRPC channel to %s at %s", server.id, address)
        return peer

    async def _address_of(self, server: ServerInfo) -> str:
        """Where a server known only by id and type is: a backend session's frontend that
        this server's table has not seen yet (the watch lags), or no longer lists (it left
        discovery to drain its clients and still serves them)."""
        address = self._addresses.get(server.id)
        if address is None:
            known = self.discovery.server(server.id) or await self.discovery.lookup(
                server.type, server.id
            )
            address = grpc_address(known, self.region) if known is not None else None
        if address is None:
            raise InternalError(
                f"server {server.id} advertises no gRPC address ({GRPC_HOST_KEY}/"
                f"{GRPC_PORT_KEY} in its discovery metadata)"
            )
        self._addresses[server.id] = address
        return address

    def _server_changed(self, server: ServerInfo, added: bool) -> None:
        address = grpc_address(server, self.region)
        if added and address is not None:
            self._addresses[server.id] = address
        elif not added:
            # Not chosen any more (the router reads the same table). Its address is kept for
            # the sessions it may still serve while it drains (a channel reopened for them
            # lives until this client closes).
            peer = self._peers.pop(server.id, None)
            if peer is not None:
                self._retire(peer)

    def _retire(self, peer: _Peer, wait: float | None = None) -> None:
        """Close ``peer``'s channel once its calls in flight are done, waiting at most
        ``wait`` seconds (default: as long as a call may take, the RPC timeout, plus slack)."""
        if wait is None:
            wait = self.rpc_timeout + 1.0
        task = asyncio.get_running_loop().create_task(peer.channel.close(wait_idle=wait))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._open = False
        peers, self._peers = list(self._peers.values()), {}
        for peer in peers:  # this server's own work is done: only stragglers are left
            self._retire(peer, wait=1.0)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


NEVER_CONNECTED = "failed to connect to all addresses"
"""How gRPC's status details start when a call failed because no connection to the peer
could be made (its pick_first balancer in ``TRANSIENT_FAILURE``): the call was failed before
it was given a transport, so no byte of it left this process. Checked with grpcio 1.85:
a peer killed mid-call gives ``UNAVAILABLE`` "Stream removed (Socket closed)" instead, which
is not proof (the peer may have run it) and stays a plain ``RpcTimeout``."""


def _pitaya_error(exc: GrpcCallError, server: ServerInfo) -> Exception:
    """The Pitaya error for a failed call to ``server``: by id and type, never by address
    (``exc`` is logged by the caller); the same words as over NATS where the case is the
    same (unreachable, timeout)."""
    code = exc.code
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RpcTimeout()
    if code == grpc.StatusCode.UNAVAILABLE:
        if exc.details.startswith(NEVER_CONNECTED):
            return ServerUnreachable.of(server)
        # A connection that broke mid-call ("Socket closed"): the peer may have run it.
        return RpcTimeout(
            f"rpc client: the connection to server {server.id} ({server.type}) broke "
            "before it answered"
        )
    if code == grpc.StatusCode.CANCELLED:
        return ClusterUnavailable(f"cluster unavailable: call to {server.id} cancelled")
    if code == grpc.StatusCode.UNKNOWN:  # the handler's own error (Go: "session not found")
        return PitayaError("PIT-000", exc.details or "unknown error", {"server": server.id})
    return InternalError(f"rpc client: call to server {server.id} ({server.type}) failed")


class GrpcRPCServer:
    """:class:`~actors.cluster.rpc.RPCServer` over gRPC: this server's gRPC service, on
    ``host:port`` (0: a free port). ``metadata``: this server's discovery metadata, where an
    operator's ``grpcHost``/``grpcPort`` win over what is advertised by default; ``tls``:
    mutual TLS (only peers with a certificate of the CA get in; None: plain text)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metadata: Mapping[str, str] | None = None,
        tls: GrpcTls | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        self.port = port
        self.configured = dict(metadata or {})
        self._listener: GrpcListener | None = None
        self._deliver: DeliverInbound | None = None
        self._metadata: dict[str, str] = {}

    @property
    def serving(self) -> bool:
        return self._listener is not None and self._listener.serving

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    async def start(self, me: ServerInfo, deliver: DeliverInbound) -> None:
        self._deliver = deliver
        listener = GrpcListener(
            self.host,
            self.port,
            on_call=self._call,
            on_notify=self._notify,
            on_method=self._method,
            tls=self.tls,
        )
        try:
            port = await listener.start()
        except GrpcBindError as exc:
            raise ClusterStartupError(str(exc)) from exc
        self._listener = listener
        # What the operator put in the metadata wins (an address behind NAT or a port map).
        self._metadata = {
            GRPC_HOST_KEY: self.configured.get(GRPC_HOST_KEY) or _advertised(self.host),
            GRPC_PORT_KEY: self.configured.get(GRPC_PORT_KEY) or str(port),
        }
        ServerLog(log, me.id).info("gRPC RPC server on %s:%d", self.host, listener.port)

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop(STOP_GRACE)

    async def _call(self, data: bytes, kind: str = REQUEST) -> bytes:
        assert self._deliver is not None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def respond(payload: bytes) -> None:
            if not future.done():  # the caller may have given up (deadline)
                future.set_result(payload)

        self._deliver(kind, data, respond)
        return await future

    async def _method(self, method: str, data: bytes) -> bytes:
        """``PushToUser``/``KickUser``/``SessionBindRemote``: answered as Go answers them (a
        Response, a bare KickAnswer), a refusal as a gRPC error."""
        kind = _KINDS[method]
        answer = await self._call(data, kind)
        try:
            if kind == KICK:
                return kick_answer_of(answer)
            read_answer(answer)  # raises a refusal
        except PitayaError as exc:
            raise GrpcRefused(exc.msg or exc.code) from None
        return answer

    def _notify(self, data: bytes) -> None:
        assert self._deliver is not None
        self._deliver(REQUEST, data, None)


_KINDS = {PUSH_TO_USER: PUSH, KICK_USER: KICK, SESSION_BIND_REMOTE: BIND}


def _advertised(host: str) -> str:
    """The host peers dial: the listening one, or this machine's name for a wildcard."""
    return socket.gethostname() if host in ("", "0.0.0.0", "::") else host

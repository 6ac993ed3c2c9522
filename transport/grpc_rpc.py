"""gRPC as a byte pipe between cluster servers: a channel per peer, a listener per process.

The service (``transport/protos/cluster.proto``) carries the bytes of cluster envelopes:
``Call`` is unary (a request and its answer), ``Notify`` a client stream that stays open per
peer, so notifies reach the peer in the order they were sent (a push before a kick), without
waiting a round trip each. This module knows nothing of envelopes, servers or Pitaya errors:
it moves bytes and reports a failed call as :class:`GrpcCallError` with the gRPC status code,
which ``actors.cluster.grpc_rpc`` maps to ``PIT-408``/``PIT-500``. It uses grpcio's asyncio
API: calls and the listener run on the server's event loop.

::

    listener = GrpcListener("127.0.0.1", 0, on_call=echo, on_notify=print)
    port = await listener.start()
    channel = GrpcChannel(f"127.0.0.1:{port}")
    assert await channel.call(b"ping", timeout=1) == b"ping"
    channel.notify(b"hello")  # queued, sent in order, never blocks
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from transport.errors import TransportError
from transport.protos import cluster_pb2, cluster_pb2_grpc

log = logging.getLogger(__name__)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # A dead peer's channel retries in the background with backoff; gRPC's default grows it
    # to 120 s, so a peer that comes back on the same address would stay unreachable for
    # minutes. Cluster peers are near: retry quickly.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

SERVER_OPTIONS: list[tuple[str, Any]] = [
    # gRPC sets SO_REUSEPORT by default on Linux: a second server on a taken port would bind
    # "successfully" and share its traffic. A port in use must be an error instead.
    ("grpc.so_reuseport", 0),
    # The asyncio server accepts calls one at a time; past 1000 waiting (3000 hard), gRPC
    # cancels new ones. A burst of forwarded requests is normal load here, not an attack.
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
]

_EMPTY = cluster_pb2.Empty()


class GrpcCallError(TransportError):
    """A call failed at the gRPC level; ``code`` is the ``grpc.StatusCode``."""

    def __init__(self, code: grpc.StatusCode, details: str, address: str) -> None:
        super().__init__(f"{code.name} from {address}: {details}")
        self.code = code
        self.details = details
        self.address = address


class GrpcBindError(TransportError):
    """The listener cannot bind its address (port in use, unknown host)."""


class GrpcChannel:
    """Calls and notifies to one peer ``host:port``; gRPC connects on first use and
    reconnects by itself."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        stub = cluster_pb2_grpc.PitayaStub(self._channel)
        self._call = stub.Call
        self._open_stream = stub.Notify
        self._stream: Any = None
        self._queue: deque[bytes] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.lost_notifies = 0
        """Notifies that could not be written (the peer was gone): fire-and-forget, like a
        NATS publish nobody receives."""

    @property
    def idle(self) -> bool:
        """No call in flight and no notify waiting to be sent."""
        return not self._calls and self._pump is None

    async def call(self, data: bytes, timeout: float) -> bytes:
        """The peer's answer to ``data``; GrpcCallError if it fails or misses ``timeout``."""
        self._calls += 1
        self._idle.clear()
        try:
            response = await self._call(cluster_pb2.Envelope(data=data), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise GrpcCallError(exc.code(), exc.details() or "", self.address) from None
        finally:
            self._calls -= 1
            if self.idle:
                self._idle.set()
        return bytes(response.data)

    def notify(self, data: bytes) -> None:
        """Queue ``data`` for the peer; sent in order on the notify stream. Never blocks."""
        self._queue.append(data)
        if self._pump is None:
            self._idle.clear()
            self._pump = asyncio.get_running_loop().create_task(self._send_queued())

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                await self._write(cluster_pb2.Envelope(data=self._queue.popleft()))
        finally:
            self._pump = None
            if self.idle:
                self._idle.set()

    async def _write(self, message: cluster_pb2.Envelope) -> None:
        # A stream opened before the peer restarted fails on the next write: open a new one
        # and try once more before giving the notify up.
        for attempt in (1, 2):
            if self._stream is None or self._stream.done():
                self._stream = self._open_stream()
            try:
                await self._stream.write(message)
                return
            except Exception as exc:  # AioRpcError, or InvalidStateError once it ended
                self._stream = None
                if attempt == 2:
                    self.lost_notifies += 1
                    log.info("notify to %s lost: %s", self.address, _describe(exc))

    async def close(self, *, wait_idle: float = 0.0) -> None:
        """Close the connection, after up to ``wait_idle`` seconds for calls in flight and
        queued notifies; what is still pending then is cancelled."""
        if wait_idle > 0 and not self.idle:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), wait_idle)
        if self._pump is not None:
            self._pump.cancel()
        stream, self._stream = self._stream, None
        if stream is not None and not stream.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.done_writing(), 1.0)
        await self._channel.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__


CallHandler = Callable[[bytes], Awaitable[bytes]]
"""Answers the bytes of a ``Call`` (awaited: the answer may come from another actor)."""
NotifyHandler = Callable[[bytes], None]
"""Takes the bytes of one notify; must not block (the stream's next message waits)."""


class _Servicer(cluster_pb2_grpc.PitayaServicer):
    def __init__(self, on_call: CallHandler, on_notify: NotifyHandler) -> None:
        self.on_call = on_call
        self.on_notify = on_notify

    async def Call(  # the method names are the proto's
        self, request: cluster_pb2.Envelope, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.Envelope:
        return cluster_pb2.Envelope(data=await self.on_call(request.data))

    async def Notify(
        self, requests: AsyncIterator[cluster_pb2.Envelope], context: grpc.aio.ServicerContext
    ) -> cluster_pb2.Empty:
        async for request in requests:
            self.on_notify(request.data)
        return _EMPTY


class GrpcListener:
    """The ``Pitaya`` gRPC service of this process on ``host:port`` (0: a free port)."""

    def __init__(
        self, host: str, port: int, *, on_call: CallHandler, on_notify: NotifyHandler
    ) -> None:
        self.host = host
        self.port = port
        self._servicer = _Servicer(on_call, on_notify)
        self._server: grpc.aio.Server | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> int:
        """Bind and serve; returns the bound port. GrpcBindError if it cannot bind."""
        server = grpc.aio.server(options=SERVER_OPTIONS)
        cluster_pb2_grpc.add_PitayaServicer_to_server(self._servicer, server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises on a failed bind (older ones return 0)
            raise GrpcBindError(f"cannot listen for gRPC on {address}: {exc}") from None
        if not port:
            raise GrpcBindError(f"cannot listen for gRPC on {address}")
        await server.start()
        self._server = server
        self.port = int(port)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving. Calls in flight, and the peers' notify streams (open for as long
        as the peer lives), get ``grace`` seconds to finish; None cancels them at once."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

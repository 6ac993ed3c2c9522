"""gRPC as a byte pipe between cluster servers: a channel per peer, a listener per process.

The service is Go Pitaya's ``protos.Pitaya`` (``transport/protos/pitaya.proto``): ``Call``
(a ``protos.Request``, answered with a ``protos.Response``), ``PushToUser``, ``KickUser`` and
``SessionBindRemote``, so Go servers call ours and ours call Go's. The messages go through as
bytes (generic handlers with identity (de)serializers: the cluster codec already encoded
them). Beside it, our servers serve ``pitaya_actors.Extras/Notify``, a client stream that
stays open per peer, so notifies reach one of our peers in the order they were sent (a push
before a kick), without waiting a round trip each; Go servers have no such method and are
only sent ``Call``.

This module knows nothing of Pitaya's messages, servers or errors: it moves bytes and reports
a failed call as :class:`GrpcCallError` with the gRPC status code, which
``actors.cluster.grpc_rpc`` maps to ``PIT-408``/``PIT-500``. A handler refuses a call with
:class:`GrpcRefused` (a gRPC error, as a Go server's ``PushToUser`` answers for a uid it does
not hold). It uses grpcio's asyncio API: calls and the listener run on the server's event
loop.

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
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import grpc.aio

from transport.errors import TransportError
from transport.logs import Throttle
from transport.undo import undo_fully
from transport.waiting import set_within

log = logging.getLogger(__name__)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # A dead peer's channel retries in the background with backoff; gRPC's default grows it
    # to 120 s, so a peer that comes back on the same address would stay unreachable for
    # minutes. Cluster peers are near: retry quickly.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

MAX_QUEUED_NOTIFIES = 10_000
"""Notifies a channel holds for a peer that does not take them (hung, or cut off without a
reset, until it leaves discovery: a lease's TTL); past it a notify is lost, as a NATS
publish nobody receives is."""
NOTIFY_WRITE_TIMEOUT = 5.0
"""Seconds one notify may wait to be written (gRPC's flow control holds a write while the
peer reads nothing); then the stream is given up and what waited behind it is lost."""

SERVER_OPTIONS: list[tuple[str, Any]] = [
    # gRPC sets SO_REUSEPORT by default on Linux: a second server on a taken port would bind
    # "successfully" and share its traffic. A port in use must be an error instead.
    ("grpc.so_reuseport", 0),
    # The asyncio server accepts calls one at a time; past 1000 waiting (3000 hard), gRPC
    # cancels new ones. A burst of forwarded requests is normal load here, not an attack.
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
]

SERVICE = "protos.Pitaya"
"""Go Pitaya's gRPC service."""
CALL = "Call"
PUSH_TO_USER = "PushToUser"
KICK_USER = "KickUser"
SESSION_BIND_REMOTE = "SessionBindRemote"
METHODS = (CALL, PUSH_TO_USER, KICK_USER, SESSION_BIND_REMOTE)
"""The unary methods of ``protos.Pitaya``."""
EXTRAS_SERVICE = "pitaya_actors.Extras"
"""Ours: ``Notify``, a stream of ``protos.Request`` that expect no answer."""
NOTIFY = "Notify"


def _path(service: str, method: str) -> str:
    return f"/{service}/{method}"


class GrpcCallError(TransportError):
    """A call failed at the gRPC level; ``code`` is the ``grpc.StatusCode``."""

    def __init__(self, code: grpc.StatusCode, details: str, address: str) -> None:
        super().__init__(f"{code.name} from {address}: {details}")
        self.code = code
        self.details = details
        self.address = address


class GrpcBindError(TransportError):
    """The listener cannot bind its address (port in use, unknown host)."""


class GrpcRefused(TransportError):
    """Raised by a handler to answer its call with a gRPC error (``UNKNOWN`` and
    ``details``, what a Go server's handler error becomes) instead of bytes."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


@dataclass(frozen=True, slots=True)
class GrpcTls:
    """Mutual TLS between the cluster's servers: each listens with ``cert_file`` (PEM, with
    ``key_file``) and accepts only peers presenting a certificate signed by ``ca_file``; as a
    client it checks the peer's certificate against ``ca_file`` (for the name it dials, or
    ``server_name``) and presents its own certificate."""

    ca_file: str
    cert_file: str
    key_file: str
    server_name: str = ""

    def _pem(self) -> tuple[bytes, bytes, bytes]:
        files = (self.ca_file, self.cert_file, self.key_file)
        pems = []
        for path in files:
            with open(path, "rb") as file:
                pems.append(file.read())
        return pems[0], pems[1], pems[2]

    def server_credentials(self) -> grpc.ServerCredentials:
        ca, cert, key = self._pem()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        ca, cert, key = self._pem()
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )


class GrpcChannel:
    """Calls and notifies to one peer ``host:port``; gRPC connects on first use and
    reconnects by itself. With ``tls``, over mutual TLS."""

    def __init__(self, address: str, tls: GrpcTls | None = None) -> None:
        self.address = address
        if tls is None:
            self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        else:
            options = list(CHANNEL_OPTIONS)
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.aio.secure_channel(
                address, tls.channel_credentials(), options=options
            )
        # No (de)serializers: bytes in, bytes out (the cluster codec encoded them).
        self._methods = {
            method: self._channel.unary_unary(_path(SERVICE, method)) for method in METHODS
        }
        self._call = self._methods[CALL]
        self._open_stream = self._channel.stream_unary(_path(EXTRAS_SERVICE, NOTIFY))
        self._stream: Any = None
        self._queue: deque[bytes] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.lost_notifies = 0
        """Notifies that could not be written (the peer was gone or took nothing), or found
        the queue full: fire-and-forget, like a NATS publish nobody receives."""
        self._lost_told = Throttle()

    @property
    def idle(self) -> bool:
        """No call in flight and no notify waiting to be sent."""
        return not self._calls and self._pump is None

    async def call(self, data: bytes, timeout: float) -> bytes:
        """The peer's answer to ``data`` (``Call``); GrpcCallError if it fails or misses
        ``timeout``."""
        return await self.invoke(CALL, data, timeout)

    async def invoke(self, method: str, data: bytes, timeout: float) -> bytes:
        """The peer's answer to ``data`` on ``method`` (one of :data:`METHODS`)."""
        self._calls += 1
        self._idle.clear()
        try:
            response: bytes = await self._methods[method](data, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise GrpcCallError(exc.code(), exc.details() or "", self.address) from None
        finally:
            self._calls -= 1
            if self.idle:
                self._idle.set()
        return response

    def notify(self, data: bytes) -> None:
        """Queue ``data`` for the peer; sent in order on the notify stream. Never blocks;
        past :data:`MAX_QUEUED_NOTIFIES` waiting, ``data`` is lost (and counted)."""
        if len(self._queue) >= MAX_QUEUED_NOTIFIES:
            self._lose(1, f"{MAX_QUEUED_NOTIFIES} notifies already wait for it")
            return
        self._queue.append(data)
        if self._pump is None:
            self._idle.clear()
            self._pump = asyncio.get_running_loop().create_task(self._send_queued())

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                await self._write(self._queue.popleft())
        finally:
            self._pump = None
            if self.idle:
                self._idle.set()

    async def _write(self, message: bytes) -> None:
        # A stream opened before the peer restarted fails on the next write: open a new one
        # and try once more before giving the notify up.
        for attempt in (1, 2):
            if self._stream is None or self._stream.done():
                self._stream = self._open_stream()
            try:
                await asyncio.wait_for(self._stream.write(message), NOTIFY_WRITE_TIMEOUT)
                return
            except TimeoutError:
                # The peer takes nothing (hung, or cut off): what waits would wait as long.
                stream, self._stream = self._stream, None
                stream.cancel()
                lost = 1 + len(self._queue)
                self._queue.clear()
                self._lose(lost, f"not written within {NOTIFY_WRITE_TIMEOUT}s")
                return
            except Exception as exc:  # AioRpcError, or InvalidStateError once it ended
                self._stream = None
                if attempt == 2:
                    self._lose(1, _describe(exc))

    def _lose(self, count: int, why: str) -> None:
        """Count ``count`` notifies lost; told at info once per 10 s (each at debug)."""
        self.lost_notifies += count
        self._lost_told.log(
            asyncio.get_running_loop().time(),
            log,
            logging.INFO,
            "%d notify(ies) to %s lost: %s",
            count,
            self.address,
            why,
        )

    async def close(self, *, wait_idle: float = 0.0) -> None:
        """Close the connection, after up to ``wait_idle`` seconds for calls in flight and
        queued notifies; what is still pending then is cancelled."""
        if not self.idle:
            await set_within(self._idle, wait_idle)
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
MethodHandler = Callable[[str, bytes], Awaitable[bytes]]
"""Answers the bytes of ``PushToUser``/``KickUser``/``SessionBindRemote`` (the method's name
first); raises :class:`GrpcRefused` to answer with a gRPC error."""
NotifyHandler = Callable[[bytes], None]
"""Takes the bytes of one notify; must not block (the stream's next message waits)."""


def _unary(answer: Callable[[bytes], Awaitable[bytes]]) -> grpc.RpcMethodHandler:
    async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            return await answer(request)
        except GrpcRefused as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, exc.details)
            raise  # abort raises; this line is for type checkers

    return grpc.unary_unary_rpc_method_handler(handle)


def _handlers(
    on_call: CallHandler, on_method: MethodHandler | None, on_notify: NotifyHandler
) -> tuple[grpc.GenericRpcHandler, ...]:
    methods = {CALL: _unary(on_call)}
    if on_method is not None:
        for name in METHODS[1:]:
            methods[name] = _unary(partial(on_method, name))

    async def notify(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        async for request in requests:
            on_notify(request)
        return b""

    return (
        grpc.method_handlers_generic_handler(SERVICE, methods),
        grpc.method_handlers_generic_handler(
            EXTRAS_SERVICE, {NOTIFY: grpc.stream_unary_rpc_method_handler(notify)}
        ),
    )


class GrpcListener:
    """The ``protos.Pitaya`` gRPC service of this process on ``host:port`` (0: a free
    port), and our ``Notify`` stream. ``on_method`` serves ``PushToUser``/``KickUser``/
    ``SessionBindRemote`` (None: ``UNIMPLEMENTED``). With ``tls``, only peers with a
    certificate of its CA get in."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_call: CallHandler,
        on_notify: NotifyHandler,
        on_method: MethodHandler | None = None,
        tls: GrpcTls | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self._handlers = _handlers(on_call, on_method, on_notify)
        self._server: grpc.aio.Server | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> int:
        """Bind and serve; returns the bound port. GrpcBindError if it cannot bind."""
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers(self._handlers)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            if self.tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self.tls.server_credentials())
        except RuntimeError as exc:  # grpcio raises on a failed bind (older ones return 0)
            raise GrpcBindError(f"cannot listen for gRPC on {address}: {exc}") from None
        if not port:
            raise GrpcBindError(f"cannot listen for gRPC on {address}")
        try:
            await server.start()
        except BaseException:  # cancelled (a stop during the start-up): nothing left bound
            await undo_fully(server.stop(None))
            raise
        self._server = server
        self.port = int(port)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving. Calls in flight, and the peers' notify streams (open for as long
        as the peer lives), get ``grace`` seconds to finish; None cancels them at once."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

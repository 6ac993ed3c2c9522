"""An asyncio client speaking the Pitaya wire protocol, over TCP or WebSocket.

Used by tests, samples, benchmarks and the CLI. It is a thin I/O layer over
:class:`~transport.connection.ClientConnection`: one reader task feeds the state machine and
routes responses to waiting requests and pushes to callbacks and iterators; one heartbeat
task sends a heartbeat every interval the server announced and, like pomelo's and
libpitaya's clients, gives the connection up when nothing arrived for two intervals.

Example::

    async with await Client.connect("127.0.0.1", 3250) as client:
        client.on_push("onMessage", print)
        reply = await client.request("room.room.join", {"name": "a"})

With the protobuf serializer, say what to decode into: ``request(route, JoinRequest(...),
response_type=JoinResponse)`` and ``connect(..., push_types={"onMessage": ChatMessage})``;
untyped protobuf responses and pushes come back as raw bytes. Error responses are decoded
from Pitaya's ``protos.Error`` into :class:`RequestError` whatever the serializer.

Over another packet stream, such as the in-memory pipes of :mod:`transport.memory` that
tests use: ``client = await Client.over(await acceptor.connect())``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import metadata
from types import TracebackType
from typing import Any

import websockets.exceptions

from transport.client_channels import CLOSE_TIMEOUT, Channel, open_channel
from transport.client_errors import (
    HandshakeRejected,
    PushTimeout,
    RequestError,
    RequestTimeout,
    request_error,
)
from transport.client_pushes import Push, PushDispatcher, decode_body
from transport.connection import (
    ClientConnection,
    Event,
    HandshakeResponseReceived,
    HeartbeatReceived,
    KickReceived,
    MessageReceived,
)
from transport.errorbody import PIT_504
from transport.errors import ConnectionClosed, HandshakeError, ProtocolError
from transport.handshake import HandshakeResponse
from transport.message import Message, MessageType
from transport.packet import DEFAULT_MAX_PACKET_SIZE
from transport.serializers import Serializer, get_serializer

__all__ = [
    "DEFAULT_HANDSHAKE_SYS",
    "Client",
    "HandshakeRejected",
    "Push",
    "PushTimeout",
    "RequestError",
    "RequestTimeout",
]

logger = logging.getLogger(__name__)

try:
    _LIB_VERSION = metadata.version("pitaya-actors")
except metadata.PackageNotFoundError:  # running from a source tree
    _LIB_VERSION = "0.0.0"

#: What the client announces in ``sys`` unless overridden (the keys Pitaya's session reads).
DEFAULT_HANDSHAKE_SYS: Mapping[str, str] = {
    "platform": "python",
    "libVersion": _LIB_VERSION,
    "clientBuildNumber": "0",
    "clientVersion": _LIB_VERSION,
}


class Client:
    """A connected, handshaken client. Create it with :meth:`connect`."""

    def __init__(
        self,
        channel: Channel,
        connection: ClientConnection,
        serializer: Serializer | None,
        request_timeout: float,
        pushes: PushDispatcher,
    ) -> None:
        self._channel = channel
        self._conn = connection
        self._serializer: Serializer | None = serializer
        self._request_timeout = request_timeout
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._next_id = 0
        self._pushes = pushes
        self._closed = False
        self._close_reason = "connection closed"
        self._close_cause: BaseException | None = None
        self._kicked = False
        self._kick_reason: str | None = None
        self._heartbeats_received = 0
        self._last_received = asyncio.get_running_loop().time()
        self._response: HandshakeResponse | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        websocket: bool = False,
        path: str = "/",
        ssl: ssl_module.SSLContext | None = None,
        serializer: Serializer | None = None,
        handshake_sys: Mapping[str, Any] | None = None,
        handshake_user: Mapping[str, Any] | None = None,
        timeout: float = 5.0,
        use_route_dict: bool = True,
        request_timeout: float = 5.0,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        push_buffer: int = 10_000,
        push_types: Mapping[str, type[Any]] | None = None,
    ) -> Client:
        """Connect, handshake and ack, all within ``timeout`` seconds.

        ``serializer`` None means "the one the server announces" (JSON for Pitaya's
        default). ``handshake_sys`` entries override :data:`DEFAULT_HANDSHAKE_SYS`.
        ``push_buffer`` bounds the pushes kept for :meth:`pushes` (oldest dropped first).
        ``push_types`` maps push routes to the protobuf classes their bodies decode into
        (ignored by schemaless serializers; see the module docstring).
        Raises :class:`HandshakeRejected`, ``TimeoutError``, ``OSError``,
        :class:`ConnectionClosed` or a :class:`ProtocolError`.
        """
        async with asyncio.timeout(timeout):
            channel = await open_channel(
                host, port, websocket=websocket, path=path, ssl=ssl, max_packet_size=max_packet_size
            )
            return await cls.over(
                channel,
                serializer=serializer,
                handshake_sys=handshake_sys,
                handshake_user=handshake_user,
                timeout=None,
                use_route_dict=use_route_dict,
                request_timeout=request_timeout,
                max_packet_size=max_packet_size,
                push_buffer=push_buffer,
                push_types=push_types,
            )

    @classmethod
    async def over(
        cls,
        channel: Channel,
        *,
        serializer: Serializer | None = None,
        handshake_sys: Mapping[str, Any] | None = None,
        handshake_user: Mapping[str, Any] | None = None,
        timeout: float | None = 5.0,
        use_route_dict: bool = True,
        request_timeout: float = 5.0,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        push_buffer: int = 10_000,
        push_types: Mapping[str, type[Any]] | None = None,
    ) -> Client:
        """Handshake and ack over an open ``channel`` (any packet stream, e.g. the in-memory
        one of :mod:`transport.memory`) within ``timeout`` seconds; the options and errors
        are :meth:`connect`'s. The channel is closed if the handshake fails."""
        sys = {**DEFAULT_HANDSHAKE_SYS, **(handshake_sys or {})}
        connection = ClientConnection(
            max_packet_size=max_packet_size, use_route_dict=use_route_dict
        )
        pushes = PushDispatcher(push_buffer, push_types or {})
        client = cls(channel, connection, serializer, request_timeout, pushes)
        try:
            async with asyncio.timeout(timeout):
                await client._handshake(sys, handshake_user or {})
        except BaseException:
            await channel.close()
            raise
        return client

    async def _handshake(self, sys: Mapping[str, Any], user: Mapping[str, Any]) -> None:
        await self._channel.send(self._conn.handshake(sys, user))
        leftover: list[Event] = []
        response: HandshakeResponse | None = None
        while response is None:
            data = await self._channel.receive()
            if not data:
                raise ConnectionClosed("the server closed the connection during the handshake")
            for event in self._conn.receive_data(data):
                if isinstance(event, HandshakeResponseReceived):
                    response = event.response
                else:
                    leftover.append(event)
        self._response = response
        if not response.ok:
            raise HandshakeRejected(response.code, response.message)
        if self._serializer is None:
            try:
                self._serializer = get_serializer(response.serializer)
            except ValueError as exc:
                raise HandshakeError(str(exc)) from exc
        await self._channel.send(self._conn.ack())
        self._last_received = asyncio.get_running_loop().time()
        for event in leftover:
            self._dispatch(event)
        self._reader_task = asyncio.create_task(self._read_loop(), name="pitaya-client-reader")
        if response.heartbeat > 0:
            self._heartbeat_task = asyncio.create_task(
                self._heartbeat_loop(response.heartbeat), name="pitaya-client-heartbeat"
            )

    # -- state ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_reason(self) -> str | None:
        """Why the connection ended (e.g. "kicked by the server"); None while it is open."""
        return self._close_reason if self._closed else None

    @property
    def kicked(self) -> bool:
        """True once the server sent a KICK packet."""
        return self._kicked

    @property
    def kick_reason(self) -> str | None:
        """The reason the server's kick gave (``session.kick("cheating")``: ``"cheating"``;
        ``""`` when it gave none, as Go Pitaya's kicks); None if not kicked."""
        return self._kick_reason

    @property
    def handshake_response(self) -> HandshakeResponse:
        assert self._response is not None  # connect() returns only after the response
        return self._response

    @property
    def heartbeats_received(self) -> int:
        return self._heartbeats_received

    @property
    def serializer(self) -> Serializer:
        assert self._serializer is not None  # chosen during the handshake
        return self._serializer

    # -- requests, notifies, pushes ---------------------------------------------------------

    async def request(
        self,
        route: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        response_type: type[Any] | None = None,
    ) -> Any:
        """Send a request and return the unmarshalled response.

        ``response_type`` is the protobuf class of the response (without it a protobuf
        response is returned as bytes; schemaless serializers ignore it). Raises
        :class:`RequestError` for an error response, :class:`RequestTimeout` when no response
        arrives within ``timeout`` (default: the client's request timeout),
        :class:`ConnectionClosed` when the connection ends first and
        :class:`SerializationError` when the body or the response cannot be (de)serialized.
        """
        message = await self.request_raw(route, self.serializer.marshal(body), timeout=timeout)
        if message.error:
            raise request_error(self.serializer, message.data)
        return decode_body(self.serializer, message.data, response_type)

    async def request_raw(
        self, route: str, data: bytes = b"", *, timeout: float | None = None
    ) -> Message:
        """Send a request with ``data`` as-is and return the response :class:`Message`."""
        self._next_id += 1
        msg_id = self._next_id
        packet = self._encode(Message(MessageType.REQUEST, msg_id, route, data))
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            # _send turns every OSError into ConnectionClosed and the future only ever holds a
            # Message or ConnectionClosed, so a TimeoutError here is the deadline's.
            async with asyncio.timeout(self._request_timeout if timeout is None else timeout):
                await self._send(packet)
                return await future
        except TimeoutError:
            raise RequestTimeout(PIT_504, "request timeout", {"route": route}) from None
        finally:
            self._pending.pop(msg_id, None)

    async def notify(self, route: str, body: Any = None) -> None:
        """Send a notify (no response expected)."""
        packet = self._encode(Message(MessageType.NOTIFY, 0, route, self.serializer.marshal(body)))
        async with asyncio.timeout(self._request_timeout):
            await self._send(packet)

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` untouched (one frame over WebSocket); for tests of hostile input."""
        async with asyncio.timeout(self._request_timeout):
            await self._send(data)

    def on_push(self, route: str, callback: Callable[[Any], object]) -> None:
        """Call ``callback(body)`` for every push on ``route`` (exceptions are logged)."""
        self._pushes.on_push(route, callback)

    def pushes(self) -> AsyncIterator[Push]:
        """Iterate over pushes as they arrive; ends once the connection is closed.

        Pushes are buffered from the moment the client connects, so none is missed between
        ``connect`` and the first iteration. Several iterators share one buffer.
        """
        return self._pushes.iterate()

    async def next_push(self, route: str | None = None, *, timeout: float | None = None) -> Push:
        """The next push on ``route`` (on any route if None), waiting up to ``timeout``
        seconds (default: the request timeout); pushes on other routes stay for later.

        For tests: ``assert await client.next_push("onJoin") == Push("onJoin", {...})``.
        Raises :class:`PushTimeout` naming the routes that came instead, and
        :class:`ConnectionClosed` (with the reason: kicked ...) once the connection is
        closed with no such push left.
        """
        seconds = self._request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(seconds):
                push = await self._pushes.take(route)
        except TimeoutError:
            wanted = "no push" if route is None else f"no push on {route!r}"
            came = ", ".join(self._pushes.routes()) or "none"
            raise PushTimeout(f"{wanted} within {seconds:g} s (pushes waiting: {came})") from None
        if push is None:
            raise self._closed_error()
        return push

    # -- closing ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection; pending requests get :class:`ConnectionClosed`. Idempotent."""
        self._mark_closed("closed by the client")
        await self._channel.close()
        tasks = self._tasks()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the connection is closed and its tasks are done (TimeoutError if not)."""
        tasks = self._tasks()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                raise TimeoutError("the client connection did not close in time")

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- internals --------------------------------------------------------------------------

    def _tasks(self) -> set[asyncio.Task[None]]:
        current = asyncio.current_task()
        return {
            task
            for task in (self._reader_task, self._heartbeat_task)
            if task is not None and task is not current
        }

    def _encode(self, message: Message) -> bytes:
        if self._closed:
            raise self._closed_error()
        return self._conn.encode(message)

    async def _send(self, data: bytes) -> None:
        if self._closed:
            raise self._closed_error()
        try:
            await self._channel.send(data)
        except (OSError, websockets.exceptions.ConnectionClosed) as exc:
            self._mark_closed("the connection was lost while sending", exc)
            raise self._closed_error() from exc

    def _closed_error(self) -> ConnectionClosed:
        error = ConnectionClosed(self._close_reason)
        error.__cause__ = self._close_cause
        return error

    def _mark_closed(self, reason: str, cause: BaseException | None = None) -> None:
        """Record the end of the connection once: fail waiters, end iterators, stop timers."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        self._close_cause = cause
        self._conn.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._closed_error())
        self._pending.clear()
        self._pushes.close()
        task = self._heartbeat_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _read_loop(self) -> None:
        reason, cause = "the server closed the connection", None
        try:
            while not self._closed:
                data = await self._channel.receive()
                if not data:
                    break
                self._last_received = asyncio.get_running_loop().time()
                for event in self._conn.receive_data(data):
                    self._dispatch(event)
                if self._kicked:
                    reason = "kicked by the server"
                    break
        except (ProtocolError, OSError) as exc:
            logger.warning("closing the client connection: %s", exc)
            reason, cause = f"connection failed: {exc}", exc
        finally:
            self._mark_closed(reason, cause)
            await self._channel.close()

    async def _heartbeat_loop(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        packet = self._conn.heartbeat()
        while not self._closed:
            await asyncio.sleep(interval)
            if loop.time() - self._last_received > 2 * interval:
                self._mark_closed(f"nothing received from the server for {2 * interval:g} s")
                await self._channel.close()
                return
            try:
                await self._send(packet)
            except ConnectionClosed:
                return

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            message = event.message
            if message.type is MessageType.RESPONSE:
                future = self._pending.pop(message.id, None)
                if future is not None and not future.done():
                    future.set_result(message)
            else:
                self._pushes.deliver(message.route, message.data, self.serializer)
        elif isinstance(event, HeartbeatReceived):
            self._heartbeats_received += 1
        elif isinstance(event, KickReceived):
            self._kicked = True
            self._kick_reason = event.reason

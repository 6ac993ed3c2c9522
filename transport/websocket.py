"""WebSocket (and WSS) acceptor: Pitaya's WebSocket transport, one packet per binary frame.

It drives the sans-I/O ``websockets.server.ServerProtocol`` from our own
``asyncio.Protocol`` instead of using websockets' asyncio server, so that
``Connection.write`` stays synchronous and is coalesced and bounded exactly like TCP (the
shared logic is :class:`transport.listener.BufferedConnection`). Every byte the state
machine wants on the wire (handshake response, frames, pongs, close frames) goes through
the same pending list, so the wire order is the order the state machine produced it.

Choices:

- Any URL path is accepted for the upgrade (Pitaya does the same).
- Text frames are delivered like binary ones (their UTF-8 bytes go to ``data_received``):
  some clients can only send text. A text message that is not valid UTF-8 fails the
  connection with close code 1007 (invalid data), as RFC 6455 requires.
- Fragmented messages are reassembled; ``max_frame_size`` bounds a whole message, and a
  larger one fails the connection with close code 1009 (websockets' ``max_size``). A
  message may come in at most :func:`max_fragments` frames (2,048 for the 1 MiB default:
  room for websocket-sharp's fragments of about 1 KiB); more fails the connection with
  close code 1008: 1-byte fragments made a 1 MiB message cost 45 MiB of frames and parsing.
- A plain HTTP ``GET`` (no ``Upgrade`` header) is offered to ``http_handler``, which may
  serve a page on the same port; otherwise it gets 426 Upgrade Required.

Example::

    def page(path: str) -> HttpResponse | None:
        if path == "/":
            return HttpResponse(200, "text/html; charset=utf-8", INDEX_HTML)
        return None

    acceptor = WebSocketAcceptor("0.0.0.0", 3251, http_handler=page)
    await acceptor.start(lambda conn: MyHandler(conn))
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl as ssl_module
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING, OPEN, SEND_EOF
from websockets.server import ServerProtocol

from transport.acceptor import ConnectionFactory, ConnectionLimits
from transport.listener import DEFAULT_LIMITS, BufferedConnection, Listener
from transport.logs import Throttle
from transport.partial import PartialBudget, PartialHold
from transport.stats import AcceptorStats

__all__ = ["HttpHandler", "HttpResponse", "WebSocketAcceptor", "WebSocketConnection"]

logger = logging.getLogger(__name__)


class _OneStepDown(logging.LoggerAdapter[logging.Logger]):
    """websockets' own lines, its info lines at debug: it says "connection open" and "HTTP
    response sent" at info for every peer, with no server id and no bound, while what a
    peer does is logged here once per 10 s (:meth:`WebSocketConnection._tell`); a loop of
    connections wrote a line each."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)


_PROTOCOL_LOG = _OneStepDown(logging.getLogger("websockets.server"))
"""The logger every connection's state machine writes to (one, shared)."""


MIN_FRAGMENT_AVERAGE = 512
"""Bytes a message's fragments must average at the least (see :func:`max_fragments`)."""


def max_fragments(max_size: int) -> int:
    """Frames one message may arrive in, for messages of at most ``max_size`` bytes: as many
    as fragments averaging :data:`MIN_FRAGMENT_AVERAGE` bytes take, and never fewer than 64."""
    return max(64, max_size // MIN_FRAGMENT_AVERAGE)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete plain-HTTP answer served on the WebSocket port; the connection then closes."""

    status: int
    content_type: str
    body: bytes


HttpHandler = Callable[[str], HttpResponse | None]
"""Called with the request path of a plain HTTP GET; ``None`` means 426 Upgrade Required."""


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class WebSocketConnection(BufferedConnection):
    """A WebSocket client: open once the upgrade completed; one frame per ``write``."""

    __slots__ = (
        "_eof_queued",
        "_fragment_count",
        "_fragments",
        "_fragments_text",
        "_http_handler",
        "_max_fragments",
        "_open_timer",
        "_partial",
        "_partial_budget",
        "_peer_faults",
        "_ws",
    )

    def __init__(
        self,
        on_connection: ConnectionFactory,
        limits: ConnectionLimits,
        stats: AcceptorStats,
        loop: asyncio.AbstractEventLoop,
        *,
        max_frame_size: int,
        http_handler: HttpHandler | None,
        partial_budget: PartialBudget | None = None,
        peer_faults: Throttle,
    ) -> None:
        super().__init__(on_connection, limits, stats, loop)
        self._peer_faults = peer_faults
        """How often a line about a peer's doing reaches info (see :meth:`_tell`): the
        acceptor's, shared by its connections."""
        self._partial_budget = partial_budget
        self._partial: PartialHold | None = None
        """What this peer holds of ``partial_budget``: its unfinished frame and message."""
        self._ws = ServerProtocol(max_size=max_frame_size, logger=_PROTOCOL_LOG)
        self._http_handler = http_handler
        self._fragments: bytearray | None = None
        """The message being reassembled (None between messages)."""
        self._fragment_count = 0
        self._max_fragments = max_fragments(max_frame_size)
        self._fragments_text = False
        """The message being reassembled began with a text frame."""
        self._eof_queued = False
        self._open_timer: asyncio.TimerHandle | None = None

    @property
    def kind(self) -> str:
        return "ws"

    @property
    def closed(self) -> bool:
        """Also true as soon as the peer's close frame was read, before it is processed."""
        return self._closed or self._ws.state is not OPEN

    def write(self, packet: bytes) -> None:
        """Queue ``packet`` as one binary frame, flushed with this iteration's other writes."""
        ws = self._ws
        # The state check matters while frames that arrived in the same chunk as the peer's
        # close frame are delivered: the state machine is already CLOSING by then.
        if self._closed or ws.state is not OPEN:
            return
        ws.send_binary(packet)
        self._queue_output(ws.data_to_send())

    def close(self) -> None:
        """Send queued frames, then a 1000 close frame; the peer has ``CLOSE_TIMEOUT`` to answer.

        The TCP connection is closed when the peer's close frame arrives (the server closes
        first, as RFC 6455 asks) or, failing that, aborted by the close timer.
        """
        if self._closed:
            return
        self._closed = True
        ws = self._ws
        if ws.state is OPEN:
            ws.send_close(CloseCode.NORMAL_CLOSURE)
            self._queue_output(ws.data_to_send())
        self._flush()
        self._arm_close_timer()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def _begin(self) -> None:
        if self._partial_budget is not None:
            self._partial = self._partial_budget.hold(self.abort, f"ws peer {self._peer}")
        # Until the upgrade completes nobody above knows this socket: without this timer a
        # peer that never finishes its HTTP request would hold it open forever. What a
        # PROXY header or TLS took of the opening budget is not given again.
        self._open_timer = self._loop.call_later(self._open_time_left(), self._open_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_open_timer()
        if self._partial is not None:
            self._partial.set(0)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        handshaking = ws.state is CONNECTING
        ws.receive_data(data)
        events = ws.events_received()
        output = ws.data_to_send()
        if handshaking and output == [SEND_EOF] and ws.handshake_exc is not None:
            # websockets drops a request it cannot parse without a word; answer it.
            reply = ws.reject(http.HTTPStatus.BAD_REQUEST, "Invalid HTTP request.\n")
            self._tell("ws peer %s sent an invalid HTTP request: %s", self._peer, ws.handshake_exc)
            output = [reply.serialize(), SEND_EOF]
        self._queue_output(output)
        for event in events:
            if isinstance(event, Frame):
                self._on_frame(event)
            elif isinstance(event, Request):
                self._on_request(event)
        if ws.state is not OPEN and ws.state is not CONNECTING and not self._closed:
            # The peer sent a close frame, or broke the protocol (the state machine failed
            # the connection and queued a close frame): nothing more may be written.
            self._closed = True
            if ws.parser_exc is not None:
                self._tell("ws peer %s failed the connection: %s", self._peer, ws.parser_exc)
        partial = self._partial
        if partial is not None:
            fragments = self._fragments
            held = len(ws.reader.buffer) + (0 if fragments is None else len(fragments))
            if held != partial.bytes:
                partial.set(held)  # over the server's budget, this may drop the largest

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._queue_output(self._ws.data_to_send())
        return super().eof_received()

    # -- internals -----------------------------------------------------------------------

    def _queue_output(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            if chunk:
                self._enqueue(chunk)
            else:  # SEND_EOF: the state machine is done; close TCP after the flush
                self._eof_queued = True
                self._schedule_flush()

    def _flush(self) -> None:
        super()._flush()
        if self._eof_queued and self._transport is not None and not self._transport.is_closing():
            self._close_transport()

    def _on_frame(self, frame: Frame) -> None:
        # Ping, pong and close frames are answered by the state machine itself.
        opcode = frame.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if frame.fin:
                self._deliver_message(bytes(frame.data), opcode is Opcode.TEXT)
            else:
                self._fragments = bytearray(frame.data)
                self._fragment_count = 1
                self._fragments_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragment_count += 1
            if self._fragment_count > self._max_fragments:
                self._fragments = None
                self._tell(
                    "ws peer %s sent a message in more than %d frames",
                    self._peer,
                    self._max_fragments,
                )
                self._fail(CloseCode.POLICY_VIOLATION, "message in too many fragments")
                return
            self._fragments += frame.data
            if frame.fin:
                message, self._fragments = bytes(self._fragments), None
                self._deliver_message(message, self._fragments_text)

    def _deliver_message(self, message: bytes, text: bool) -> None:
        if text:
            try:
                message.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._tell("ws peer %s sent a text frame that is not UTF-8", self._peer)
                self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8 at position {exc.start}")
                return
        self._deliver(message)

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Fail the connection: close frame ``code``, then the end of the TCP stream."""
        ws = self._ws
        if ws.state is OPEN:
            ws.fail(code, reason)
            self._queue_output(ws.data_to_send())
        self._closed = True
        self._arm_close_timer()

    def _on_request(self, request: Request) -> None:
        ws = self._ws
        if ws.eof_sent:
            # Bytes pipelined after the request were no WebSocket frames: the state machine
            # already failed the connection and queued its end; answering now would crash it.
            self._cancel_open_timer()
            self._tell("ws peer %s sent garbage after its HTTP request", self._peer)
            return
        response: Response | None = None
        if (
            self._http_handler is not None
            and request.method == "GET"
            and "Upgrade" not in request.headers
        ):
            response = self._serve_http(request)
        if response is None:
            response = ws.accept(request)  # 101, or the right 4xx when it is no upgrade
        ws.send_response(response)
        self._queue_output(ws.data_to_send())
        self._cancel_open_timer()
        if ws.state is OPEN:
            self._open()
        else:
            self._tell(
                "ws peer %s: %s %r answered %d",
                self._peer,
                request.method,
                request.path,
                response.status_code,
            )

    def _tell(self, message: str, *args: object) -> None:
        """A line about what a peer did (a bad request, a failed frame, a page served): any
        peer can, as often as it connects, so at info once per 10 s per acceptor (with how
        many were not), each one at debug."""
        self._peer_faults.log(time.monotonic(), self._log, logging.INFO, message, *args)

    def _open_expired(self) -> None:
        # Never after connection_lost: it cancels this timer.
        self._open_timer = None
        if self._ws.state is CONNECTING:
            self._tell(
                "ws peer %s did not complete the upgrade within %ss of its accept; aborting it",
                self._peer,
                self._limits.open_timeout,
            )
            self.abort()

    def _cancel_open_timer(self) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None

    def _serve_http(self, request: Request) -> Response | None:
        assert self._http_handler is not None
        try:
            reply = self._http_handler(request.path)
        except Exception:
            self._log.exception(
                "http handler failed for ws peer %s on %r", self._peer, request.path
            )
            return self._ws.reject(http.HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error.\n")
        if reply is None:
            return None
        headers = Headers(
            [
                ("Content-Type", reply.content_type),
                ("Content-Length", str(len(reply.body))),
                ("Connection", "close"),
            ]
        )
        return Response(reply.status, _reason(reply.status), headers, reply.body)


class WebSocketAcceptor(Listener):
    """Listens on ``host:port`` for WebSocket upgrades (``wss`` with ``ssl``) on any path.

    ``on_connection`` is called when the upgrade completed, never for a failed handshake
    or a plain HTTP request. ``stats`` counts upgraded connections (``accepted``,
    ``active``) and, apart, the sockets whose upgrade is still in progress (``opening``).
    ``partial_budget``: where each peer's unfinished frame and message are counted, with the
    server's other unfinished packets (:mod:`transport.partial`). ``proxy_protocol``: each
    connection begins with a load balancer's PROXY header, before TLS and the HTTP upgrade
    (:class:`~transport.listener.Listener`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        max_frame_size: int = 1024 * 1024,
        http_handler: HttpHandler | None = None,
        backlog: int = 1024,
        reuse_port: bool = False,
        partial_budget: PartialBudget | None = None,
        server_id: str = "",
        proxy_protocol: bool = False,
        proxy_protocol_trusted: Iterable[str] = (),
    ) -> None:
        super().__init__(
            host,
            port,
            ssl=ssl,
            limits=limits,
            backlog=backlog,
            reuse_port=reuse_port,
            server_id=server_id,
            proxy_protocol=proxy_protocol,
            proxy_protocol_trusted=proxy_protocol_trusted,
        )
        self._max_frame_size = max_frame_size
        self._http_handler = http_handler
        self._partial_budget = partial_budget
        self._peer_faults = Throttle()
        """Lines about what peers did, at info once per 10 s (``WebSocketConnection._tell``)."""

    _logger = logger

    @property
    def kind(self) -> str:
        return "ws"

    def _connection(
        self, on_connection: ConnectionFactory, loop: asyncio.AbstractEventLoop
    ) -> WebSocketConnection:
        return WebSocketConnection(
            on_connection,
            self.limits,
            self.stats,
            loop,
            max_frame_size=self._max_frame_size,
            http_handler=self._http_handler,
            partial_budget=self._partial_budget,
            peer_faults=self._peer_faults,
        )

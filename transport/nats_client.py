"""nats-py's client with a direct path for the cluster's hot messages.

nats-py hands every inbound message to its subscription through a ``Msg`` object, an
``asyncio.Queue`` and the subscription's own task, which then runs the callback coroutine;
and every publish is a coroutine that validates the subject, appends the command and wakes
the flusher task through a queue and a new future. For a forwarded request that is two task
wake-ups (each a pass of the event loop, each an ``epoll_wait``) and a handful of objects at
each end, more than the rest of what the NATS side of a request costs.

:class:`LeanClient` keeps nats-py for everything that is not per message (connecting,
authentication, TLS, reconnecting and subscribing again, PING/PONG, draining) and adds:

* :meth:`LeanClient.deliver_directly`: the messages of a subscription go to a plain function,
  called as each message is read: no ``Msg``, queue or task; plain ``MSG`` commands are read
  by a reader of its own (a split line and a slice per message, where nats-py's parser
  runs regular expressions and copies through a buffer), everything else by nats-py's;
* :meth:`LeanClient.publish_direct`: the command is appended to nats-py's own pending
  buffer (so it keeps its order with nats-py's commands) and written once per chunk read
  from the server, or once per loop pass, without waking the flusher task. When the
  socket's buffer is already full, nats-py's flusher writes instead: it waits for the
  socket to drain, so a stalled NATS server bounds what we hold;
* on asyncio's own event loop, reads of at most :data:`READ_SIZE`: asyncio asks ``recv`` for
  256 KiB, a buffer glibc maps and unmaps for every read (three system calls and page faults
  per read, some 25 µs of a backend's CPU per request at one request in flight); 64 KiB
  comes from the heap. (uvloop reads into a buffer of its own.)

All of it rests on internals (nats-py's parser calling ``_process_msg``, its state and
buffer, its ``_pending`` buffer; asyncio's ``max_size``): :func:`supported` checks at
start-up that nats-py's are as expected, and the owner (:class:`transport.nats.NatsPipe`)
uses nats-py's public API when they are not; a transport without ``max_size`` is read as it
is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.aio.client
import nats.protocol.parser
from nats.aio.client import Client as NatsClient
from nats.errors import MaxPayloadError, OutboundBufferLimitError

log = logging.getLogger(__name__)

DirectHandler = Callable[[bytes, bytes, bytes, bytes | None], None]
"""Takes one message as the parser read it: subject, reply subject (``b""`` for none),
payload and raw headers (None or empty for none)."""

WRITE_BUFFER_LIMIT = 1024 * 1024
"""Bytes the socket may hold unsent before a publish leaves the writing to nats-py's flusher
(which waits for the socket to drain)."""

READ_SIZE = 64 * 1024
"""Bytes asked of ``recv`` per read of the NATS socket on asyncio's loop (below glibc's
128 KiB threshold for mapping an allocation of its own)."""

CHECKED_SUBJECTS = 4096
"""Distinct subjects remembered as checked (then forgotten all at once)."""

_validate_subject: Callable[[str], None] | None = getattr(
    nats.aio.client, "_validate_subject", None
)
"""nats-py's own subject check (empty, whitespace, a line break: it would split the command
or inject another), which its ``publish`` runs and the direct path runs too."""

_AWAITING_CONTROL_LINE: Any = getattr(nats.protocol.parser, "AWAITING_CONTROL_LINE", None)
"""nats-py's parser state between commands (when it holds nothing of a command)."""
_MAX_CONTROL_LINE = 4096
"""Bytes of a MSG line past which one without its end is handed to nats-py (which reads the
line as the server sends it: at most 4 KiB by default)."""

_INTERNALS = (
    "_process_msg",
    "_ps",
    "_pending",
    "_pending_data_size",
    "_max_pending_size",
    "_max_payload",
    "_transport",
    "_flush_queue",
)


def supported(client: NatsClient) -> bool:
    """Whether nats-py's internals the direct path relies on are there (checked once)."""
    return (
        all(hasattr(client, name) for name in _INTERNALS)
        and all(hasattr(client._ps, name) for name in ("parse", "reset", "buf", "state"))
        and _AWAITING_CONTROL_LINE is not None
        and _validate_subject is not None
    )


class LeanClient(NatsClient):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._direct: dict[int, DirectHandler] = {}
        self._checked: set[str] = set()
        """Subjects that passed nats-py's check (at most :data:`CHECKED_SUBJECTS`)."""
        self._parsing = False
        self._write_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tuned: Any = None
        self.direct_ok = supported(self)
        """Whether the direct path may be used (nats-py's internals are as expected)."""
        self._rest = b""
        """The start of a MSG whose end has not been read yet (the direct reader's)."""
        if self.direct_ok:
            parse: Callable[[bytes], Awaitable[Any]] = self._ps.parse
            reset: Callable[[], None] = self._ps.reset

            async def parse_then_write(data: bytes) -> Any:
                # Publishes made while the parser delivers a chunk (answers of handlers
                # that ran at once) go out together once the chunk is read.
                self._parsing = True
                self._tune_reads()
                try:
                    await self._read_messages(data, parse)
                finally:
                    self._parsing = False
                    if self._pending_data_size:
                        self._write_out()

            def reset_too() -> None:  # a new connection: nothing of the old one is kept
                self._rest = b""
                reset()

            setattr(self._ps, "parse", parse_then_write)  # noqa: B010  # on this parser only
            setattr(self._ps, "reset", reset_too)  # noqa: B010

    async def _read_messages(self, data: bytes, parse: Callable[[bytes], Awaitable[Any]]) -> None:
        """Deliver the MSGs of ``data`` (after what was left of the last chunk); anything
        else (PING, PONG, INFO, +OK, -ERR, HMSG, a malformed line) goes, with all that
        follows it, to nats-py's parser, which then reads on until its buffer is empty.

        nats-py matches each message's line with regular expressions and keeps a buffer it
        copies into and cuts from; here a line is split at its spaces and the payload cut
        from the chunk: the parser was a fifth of a backend's CPU per forwarded request."""
        ps = self._ps
        if ps.buf or ps.state != _AWAITING_CONTROL_LINE:
            await parse(data)  # nats-py is in the middle of something: it goes on
            return
        if self._rest:
            data = self._rest + data
            self._rest = b""
        direct = self._direct
        size = len(data)
        position = 0
        while position < size:
            if not data.startswith(b"MSG ", position):
                break
            line_end = data.find(b"\r\n", position)
            if line_end < 0:
                if size - position > _MAX_CONTROL_LINE:
                    break  # no such line: nats-py says what is wrong
                self._rest = data[position:]
                return
            fields = data[position + 4 : line_end].split()
            if len(fields) == 3:
                subject, sid, length = fields
                reply = b""
            elif len(fields) == 4:
                subject, sid, reply, length = fields
            else:
                break
            if not (sid.isdigit() and length.isdigit()):
                break
            start = line_end + 2
            end = start + int(length)
            if end + 2 > size:
                self._rest = data[position:]  # the payload is still on its way
                return
            payload = data[start:end]
            position = end + 2
            sid_number = int(sid)
            handler = direct.get(sid_number)
            if handler is None:
                await super()._process_msg(sid_number, subject, reply, payload, None)  # type: ignore[arg-type]
            else:
                _hand_over(handler, subject, reply, payload, None)
        if position < size:
            await parse(data[position:])

    def _tune_reads(self) -> None:
        """Read at most READ_SIZE at a time on this connection (a new socket transport
        after each reconnection), if it is asyncio's socket transport."""
        writer = getattr(self._transport, "_io_writer", None)
        socket_transport = getattr(writer, "transport", None)
        if socket_transport is self._tuned:
            return
        self._tuned = socket_transport
        if getattr(socket_transport, "max_size", None) == 256 * 1024:
            socket_transport.max_size = READ_SIZE  # type: ignore[union-attr]

    # -- in --------------------------------------------------------------------------------

    def deliver_directly(self, sub: Any, handler: DirectHandler) -> None:
        """Hand the messages of the subscription ``sub`` to ``handler`` (from now on, and
        after reconnections: nats-py subscribes again with the same sid). A subscription
        without the expected sid keeps nats-py's own delivery to its callback."""
        sid = getattr(sub, "_id", None)
        if isinstance(sid, int):
            self._direct[sid] = handler

    def forget_direct(self, sub: Any) -> None:
        self._direct.pop(getattr(sub, "_id", None), None)  # type: ignore[arg-type]

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
        else:
            _hand_over(handler, subject, reply, data, headers)

    # -- out -------------------------------------------------------------------------------

    def publish_direct(
        self,
        subject: str,
        payload: bytes,
        reply: str = "",
        *,
        delivered: bool = False,
        own_reply: bool = False,
    ) -> None:
        """Queue a PUB after what nats-py queued, written before this loop pass ends.
        Raises nats-py's errors, as its ``publish`` does: BadSubjectError for a subject that
        would corrupt the protocol, MaxPayloadError for a payload larger than the server
        takes, OutboundBufferLimitError when the server does not read. The caller checks
        that the connection is up (publishing while it is down is the caller's policy).

        Subjects are checked with nats-py's check, once per distinct subject (a server's
        subject is published to again and again), except two kinds that are valid by
        construction and new each time: ``delivered``, ``subject`` is the reply subject of
        a message the server delivered (it read it as one token: no space, no line
        break); ``own_reply``, ``reply`` is one this process made on its own inbox."""
        if not delivered and subject not in self._checked:
            assert _validate_subject is not None  # checked by supported()
            _validate_subject(subject)
            if len(self._checked) >= CHECKED_SUBJECTS:
                self._checked.clear()
            self._checked.add(subject)
        if reply and not own_reply:
            assert _validate_subject is not None
            _validate_subject(reply)
        if len(payload) > self._max_payload:
            # The server would answer with an error and close the connection.
            raise MaxPayloadError
        if self._pending_data_size > self._max_pending_size:
            raise OutboundBufferLimitError
        # Text formatting and two concatenations: half the cost of one bytes % format.
        head = (
            f"PUB {subject} {reply} {len(payload)}\r\n"
            if reply
            else f"PUB {subject} {len(payload)}\r\n"
        )
        command = head.encode() + payload + b"\r\n"
        self._pending.append(command)
        self._pending_data_size += len(command)
        if not self._parsing and not self._write_scheduled:
            self._write_scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        """Write what is pending now, unless the socket is backed up (then nats-py's
        flusher writes it, after the socket drains)."""
        self._write_scheduled = False
        if not self._pending or not self.is_connected:
            return  # nats-py sends what is pending once reconnected, or drops it on close
        transport = self._transport
        writer = getattr(transport, "_io_writer", None)
        if writer is None or writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            self._kick_flusher()
            return
        pending, self._pending = self._pending, []
        self._pending_data_size = 0
        writer.writelines(pending)

    def _kick_flusher(self) -> None:
        queue = self._flush_queue
        if queue is not None and queue.empty():
            queue.put_nowait(asyncio.get_running_loop().create_future())


def _hand_over(
    handler: DirectHandler, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
) -> None:
    """One message to its direct handler; a failing handler is logged, and reading goes on
    (nats-py stops reading on an error)."""
    try:
        handler(subject, reply, data, headers)
    except Exception:
        log.exception("a NATS message handler failed (subject %r)", subject)

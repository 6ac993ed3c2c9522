"""NATS as a byte pipe between cluster servers: one connection, subjects and bytes.

This module knows nothing of envelopes, servers or Pitaya errors (as ``transport.grpc_rpc``
for gRPC): it connects, publishes in order, subscribes, and requests with a timeout,
reporting a failure as a :class:`NatsError` subclass that ``actors.cluster.nats_rpc`` maps to
``PIT-408``/``PIT-500``. Subject names are the caller's (``actors.cluster.subjects``).

::

    pipe = NatsPipe("nats://127.0.0.1:4222", name="room-1", connect_timeout=2)
    await pipe.connect()
    await pipe.subscribe("echo", lambda data, reply: reply and pipe.publish(reply, data))
    assert await pipe.request("echo", b"ping", timeout=1) == b"ping"
    pipe.publish("news", b"hello")  # handed to nats-py now, in order; never blocks

Publishes and requests go onto the connection in the order they are made, at once (into
nats-py's buffer, written once per loop pass, or once the chunk being read is handled when
they are made while handling it), so an answer published after a push reaches the peer
after it; inbound messages reach their callback straight from nats-py's parser. That is the
direct path of ``transport.nats_client``: nats-py's own queue, task and future per message
cost more than the rest of a forwarded request's NATS work. Should the installed nats-py
lack what that path needs, the pipe uses nats-py's public API (and says so once); then, if
nats-py's buffer is full, publishes queue, in order, behind the one that waits.

A publish while disconnected is dropped (nats-py would hold it until reconnected, long after
anyone waits for it); a request while disconnected fails at once with :class:`NatsDown`
(nats-py would otherwise buffer it until the timeout). Requests share one reply subscription
(``transport.nats_replies``): no future, timer or task per request.

Credentials (:class:`NatsSecurity`: user and password, token, NKey seed, ``.creds`` file, TLS
with a CA and a client certificate; or ``user:password@`` in a URL) never reach a log line or
an error message. An outage is logged once when it starts and once when it ends, with how
long it lasted and how many reconnection attempts failed; a clean close logs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from transport.credentials import mask_url, mask_urls_in
from transport.errors import TransportError
from transport.logs import ServerLog, Throttle
from transport.nats_client import LeanClient
from transport.nats_replies import OnAnswer, PendingReplies
from transport.undo import undo_fully
from transport.waiting import settles

log = logging.getLogger(__name__)

OnMessage = Callable[[bytes, "str | None"], None]
"""Takes one message: its bytes and its reply subject (None when no answer is expected)."""


class NatsError(TransportError):
    """A NATS operation failed."""


class NatsUnreachable(NatsError):
    """The first connection could not be made within the connect timeout."""


class NatsDown(NatsError):
    """This connection is down (closed, reconnecting, stale, or its buffer is full)."""


class NatsTimeout(NatsError):
    """Nobody answered a request within its timeout."""


class NatsNoResponders(NatsTimeout):
    """Nobody listens on the subject of a request (answered at once by the server)."""


@dataclass(frozen=True, slots=True)
class NatsSecurity:
    """How to authenticate to NATS and encrypt the connection.

    ``user``/``password``, ``token``, ``nkey_seed_file`` (a file holding an NKey seed) or
    ``creds_file`` (a ``.creds`` file: user JWT and seed) authenticate; ``ca_file`` (PEM CA of
    the server's certificate), ``cert_file``/``key_file`` (PEM client certificate, for a
    server with ``tls { verify: true }``) and ``server_name`` (the name checked in the
    server's certificate, when not the URL's host) set up TLS. Any TLS option turns TLS on;
    a ``tls://`` URL does too (with the system's CAs). ``repr`` shows no secret.
    """

    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    nkey_seed_file: str = ""
    creds_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context the options describe; None when they set no TLS option."""
        if not (self.ca_file or self.cert_file or self.key_file):
            return None
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file or None)
        return context

    def connect_options(self) -> dict[str, Any]:
        """nats-py's ``connect`` arguments for these options (only those that are set)."""
        options: dict[str, Any] = {}
        if self.user:
            options["user"], options["password"] = self.user, self.password
        if self.token:
            options["token"] = self.token
        if self.nkey_seed_file:
            options["nkeys_seed"] = self.nkey_seed_file
        if self.creds_file:
            options["user_credentials"] = self.creds_file
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
        if self.server_name:
            options["tls_hostname"] = self.server_name
        return options


class NatsPipe:
    """One NATS connection: publish, subscribe, request.

    ``urls``: comma-separated server URLs; ``name``: the connection's name (the server id,
    also in log lines); ``connect_timeout``: how long the first connection may take;
    ``on_slow_consumer``: called for each inbound message nats-py dropped because this
    process read too slowly (on its public path only: the direct path hands each message
    over as it is read, so none waits in a queue to be dropped; a process that cannot keep
    up reads later, and the NATS server, past its own limit, closes the connection, which
    is then logged as an outage); ``security``: credentials and TLS;
    ``outage_summary_interval``: seconds between two lines telling NATS is still down.
    """

    def __init__(
        self,
        urls: str,
        *,
        name: str,
        connect_timeout: float,
        on_slow_consumer: Callable[[], None] | None = None,
        security: NatsSecurity | None = None,
        outage_summary_interval: float = 30.0,
    ) -> None:
        self.urls = urls
        self.outage_summary_interval = outage_summary_interval
        self.display_urls = ",".join(mask_url(u.strip()) for u in urls.split(",") if u.strip())
        """``urls`` with any credentials masked: the only form that may be logged."""
        self.security = security or NatsSecurity()
        self.name = name
        self.log = ServerLog(log, name)
        self.connect_timeout = connect_timeout
        self.on_slow_consumer = on_slow_consumer
        self.nc: NatsClient | None = None
        self._lean: LeanClient | None = None
        """``nc`` when its direct path works (``transport.nats_client``); None otherwise."""
        self._outbox: deque[tuple[str, bytes, str]] = deque()
        """Publishes waiting behind one that nats-py made wait (its buffer was full)."""
        self._flusher: asyncio.Task[None] | None = None
        self._groups: dict[str, list[Any]] = {}
        self._replies: PendingReplies | None = None
        self._closing = False
        self._down_since: float | None = None
        self._failed_attempts = 0
        self._last_error = ""
        self._refusal = ""
        """Why the server refused the last connection attempt (credentials, TLS), if it did."""
        self._refusal_told = False
        """This outage's refusal was logged (once: the attempts repeat twice a second)."""
        self._summarised_at = 0.0
        """When this outage was last told (its start, or the last summary)."""
        self._unanswerable = Throttle()
        """Messages whose reply subject is not UTF-8 (a peer may name any bytes, and the
        server relays them): dropped, logged once per 10 s."""
        self._unsent_answers = Throttle()
        """Answers nats-py refused (too large, its buffer full): logged once per 10 s."""
        self._unsent = Throttle()
        """Publishes nats-py refused (its buffer full while the server reads nothing, the
        connection closing under them): each message fails the same way, so a line per
        message would flood the log for as long as it lasts; once per 10 s."""
        self.on_closed: Callable[[str], None] | None = None
        """Called, with the cause, when the connection is closed for good without
        :meth:`close` (nats-py gives up on a connection the server sent an error on: it
        never reconnects). Its owner decides what the server does then."""
        self.on_reconnected: Callable[[], None] | None = None
        """Called when the connection is back after an outage, subscriptions restored."""

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    @property
    def max_payload(self) -> int | None:
        """The largest payload the server takes (from its INFO), None before a connection:
        a larger one is refused by nats-py (``MaxPayloadError``), never sent."""
        nc = self.nc
        return None if nc is None else nc.max_payload

    async def connect(self) -> None:
        """Connect (reconnecting forever afterwards); NatsUnreachable if the first connection
        fails within ``connect_timeout``."""
        urls = [u.strip() for u in self.urls.split(",") if u.strip()]
        self._closing = False
        try:
            options = self.security.connect_options()
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise NatsUnreachable(f"cannot use the NATS TLS files: {exc}") from exc
        client = LeanClient()
        # nats-py retries the first connection forever when reconnects are allowed: bound
        # it, so an unreachable NATS is reported instead of hanging the start-up.
        connecting = asyncio.get_running_loop().create_task(
            client.connect(
                servers=urls,
                name=self.name,
                connect_timeout=self.connect_timeout,  # type: ignore[arg-type]  # float is fine
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,  # type: ignore[arg-type]  # float is fine
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
                error_cb=self._error,
                closed_cb=self._closed_cb,
                **options,
            )
        )
        try:
            await asyncio.wait({connecting}, timeout=self.connect_timeout)
            if not connecting.done():
                await undo_fully(_cancel_for_good(connecting))
                raise TimeoutError
            connecting.result()
        except asyncio.CancelledError:
            # Abandoned (a stop during the start-up): nothing may go on trying, even if
            # another cancellation comes while it is stopped.
            await undo_fully(_give_up(connecting, client))
            raise
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            # Or nats-py goes on trying in the background.
            await undo_fully(_give_up(connecting, client))
            # A timeout has no text: the start-up line fills in the cause (actors.startup),
            # unless the server refused us (credentials, certificate): that is the cause.
            reason = _describe(exc) if str(exc) else ""
            if isinstance(exc, TimeoutError) and self._refusal:
                reason = f"refused: {self._refusal}"
            raise NatsUnreachable(f"cannot reach NATS at {self.display_urls}: {reason}") from exc
        self.nc = client
        self._lean = client if client.direct_ok else None
        if self._lean is None:
            self.log.warning(
                "this nats-py version lacks what the direct message path needs: using its "
                "public API (slower)"
            )
        try:
            await self._subscribe_replies(client)
        except BaseException:
            # Connected, then failed or abandoned: the connection (and its reader task)
            # must not stay open behind a start-up that gave up.
            await undo_fully(self.close())
            raise

    async def _subscribe_replies(self, client: LeanClient) -> None:
        """The one subscription every request's answer comes by."""
        replies = PendingReplies(
            client.new_inbox() + ".",
            asyncio.get_running_loop(),
            lambda subject, timeout: NatsTimeout(f"no answer on {subject} within {timeout}s"),
        )
        # nats-py subscribes again after a reconnection: one subscription for good.
        sub = await client.subscribe(replies.subscription, cb=partial(self._answered, replies))
        if self._lean is not None:
            self._lean.deliver_directly(sub, partial(_answered_directly, replies))
        self._replies = replies

    # -- out -------------------------------------------------------------------------------

    def send_request(
        self, subject: str, payload: bytes, timeout: float, on_answer: OnAnswer
    ) -> None:
        """Send a request now; ``on_answer(data, error)`` gets the answer, or NatsTimeout,
        NatsNoResponders, NatsDown (called at once when it cannot be sent)."""
        nc, replies = self.nc, self._replies
        if nc is None or replies is None or not nc.is_connected:
            on_answer(None, NatsDown("not connected to NATS"))
            return
        reply = replies.add(on_answer, timeout, subject)
        try:
            self._put(nc, subject, payload, reply, own_reply=True)
        except nats.errors.Error as exc:
            replies.cancel(reply)
            on_answer(None, _request_error(exc))

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """The answer to ``payload`` on ``subject``; NatsTimeout, NatsNoResponders, NatsDown."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.send_request(subject, payload, timeout, settles(future))
        return await future

    def publish(self, subject: str, payload: bytes) -> None:
        """Publish now, in order with the other publishes and requests; dropped while
        disconnected, logged if it fails."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            self.log.debug("NATS down; dropping a message to %s", subject)
            return
        try:
            self._put(nc, subject, payload, "")
        except nats.errors.Error as exc:
            self._publish_failed(subject, exc)

    def _publish_failed(self, subject: str, exc: BaseException) -> None:
        self._unsent.log(
            time.monotonic(), self.log, logging.WARNING, "publish to %s failed: %s", subject, exc
        )

    def _drop_unanswerable(self) -> None:
        self._unanswerable.log(
            time.monotonic(),
            self.log,
            logging.WARNING,
            "dropped a message whose reply subject is not UTF-8",
        )

    def answer_to(self, subject: str, payload: bytes) -> None:
        """:meth:`publish` to the reply subject of a message NATS delivered (a request's
        answer): valid by construction, so it is not checked again."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            self.log.debug("NATS down; dropping an answer to %s", subject)
            return
        try:
            self._put(nc, subject, payload, "", delivered=True)
        except nats.errors.Error as exc:
            # A peer can ask again and again: once per 10 s, each at debug.
            self._unsent_answers.log(
                time.monotonic(), self.log, logging.WARNING, "answer to %s failed: %s", subject, exc
            )

    def _put(
        self,
        nc: NatsClient,
        subject: str,
        payload: bytes,
        reply: str,
        *,
        delivered: bool = False,
        own_reply: bool = False,
    ) -> None:
        """Hand a message to nats-py now, or queue it behind one nats-py made wait (its
        buffer was full: it writes before it takes more). Raises nats-py's error.
        ``delivered``/``own_reply``: see ``LeanClient.publish_direct``."""
        if self._flusher is not None:
            self._outbox.append((subject, payload, reply))
            return
        lean = self._lean
        if lean is not None:
            lean.publish_direct(subject, payload, reply, delivered=delivered, own_reply=own_reply)
            return
        # nats-py's publish is a coroutine that returns at once unless its buffer is full:
        # run it here, and only if it waits, finish it (and what queues behind) in a task.
        step = nc.publish(subject, payload, reply=reply)
        try:
            waiting = step.send(None)
        except StopIteration:
            return
        self._flusher = asyncio.get_running_loop().create_task(self._flush(subject, step, waiting))

    async def publish_now(self, subject: str, payload: bytes) -> None:
        """Publish from this coroutine's first step, not behind the queue (tasks started in
        order put their messages on the connection in order, as requests). Dropped while
        disconnected; a failure is logged."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            return
        try:
            await nc.publish(subject, payload)
        except nats.errors.Error as exc:
            self._publish_failed(subject, exc)

    async def _flush(self, first: str, step: Coroutine[Any, Any, None], waiting: Any) -> None:
        """Finish the publish ``step`` to ``first`` (suspended on ``waiting``), then the
        queued ones."""
        try:
            while True:  # drive ``step`` as a task would
                if waiting is not None:
                    # A future yielded by ``step`` is still marked as being awaited there
                    # (its blocking flag): a task clears the mark before it waits on it, or
                    # both awaits fail with "await wasn't used with future".
                    if getattr(waiting, "_asyncio_future_blocking", False):
                        waiting._asyncio_future_blocking = False
                    with contextlib.suppress(BaseException):
                        await waiting  # ``step`` sees the outcome when resumed
                else:
                    await asyncio.sleep(0)
                try:
                    waiting = step.send(None)
                except StopIteration:
                    break
                except Exception as exc:
                    self._publish_failed(first, exc)
                    break
            while self._outbox and self.nc is not None:
                subject, payload, reply = self._outbox.popleft()
                try:
                    await self.nc.publish(subject, payload, reply=reply)
                except nats.errors.Error as exc:
                    self._publish_failed(subject, exc)
        finally:
            self._flusher = None

    # -- in --------------------------------------------------------------------------------

    async def _answered(self, replies: PendingReplies, msg: Msg) -> None:
        headers = msg.headers
        if headers and headers.get("Status") == _NO_RESPONDERS:
            replies.resolve(msg.subject, None, _no_responders)
        else:
            replies.resolve(msg.subject, msg.data)

    async def subscribe(self, subject: str, on_message: OnMessage) -> Any:
        """Hand every message on ``subject`` to ``on_message``; returns the subscription."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            raise NatsDown("not connected to NATS")
        return await self._subscribe(nc, subject, on_message)

    async def _subscribe(self, nc: NatsClient, subject: str, on_message: OnMessage) -> Any:
        async def deliver(msg: Msg) -> None:
            on_message(msg.data, msg.reply or None)

        sub = await nc.subscribe(subject, cb=deliver)
        if self._lean is not None:
            self._lean.deliver_directly(
                sub, partial(_deliver_directly, on_message, self._drop_unanswerable)
            )
        return sub

    async def subscribe_group(self, key: str, subjects: list[str], on_message: OnMessage) -> None:
        """Subscribe to ``subjects`` as the group ``key`` (a uid's push and kick subjects),
        replacing the group's earlier subscriptions. While reconnecting too: nats-py sends
        the subscriptions it holds once it is back (a uid bound during an outage is reached
        after it). Nothing once the connection is closed, or closing."""
        nc = self.nc
        if nc is None or nc.is_closed or nc.is_draining or self._closing:
            return
        subs = [await self._subscribe(nc, subject, on_message) for subject in subjects]
        old = self._groups.pop(key, None)
        self._groups[key] = subs
        for sub in old or []:
            await self._unsubscribe(sub)

    async def unsubscribe_group(self, key: str) -> None:
        """Drop the subscriptions of the group ``key`` (none: nothing)."""
        for sub in self._groups.pop(key, []):
            await self._unsubscribe(sub)

    async def _unsubscribe(self, sub: Any) -> None:
        if self._lean is not None:
            self._lean.forget_direct(sub)
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()

    async def flush(self, timeout: float) -> None:
        """Wait until the server has seen everything sent so far (subscriptions included)."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            raise NatsDown("not connected to NATS")
        try:
            await nc.flush(timeout=max(1, round(timeout)))
        except nats.errors.FlushTimeoutError as exc:
            raise NatsTimeout(f"NATS did not confirm within {timeout}s") from exc
        except nats.errors.Error as exc:
            raise NatsDown(f"NATS: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        """Send what is queued, then drain (delivers pending inbound messages) and close."""
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        self._closing = True  # the disconnection that follows is ours: not an outage
        try:
            if self._flusher is not None:
                await asyncio.wait_for(asyncio.shield(self._flusher), 5)
            await asyncio.wait_for(nc.drain(), 5)
        except Exception:
            await nc.close()
        if self._replies is not None:
            self._replies.fail_all(NatsDown("the NATS connection is closed"))

    # -- connection events -----------------------------------------------------------------

    # nats-py reports every failed reconnection attempt (two a second) to error_cb: during an
    # outage they are counted, and told once, when it ends.

    async def _disconnected(self) -> None:
        if self._closing or self.nc is None or self._down_since is not None:
            return  # our own close, the first connection, or the same outage
        self._down_since = self._summarised_at = time.monotonic()
        self._failed_attempts = 0
        self._refusal_told = False
        self.log.warning(
            "lost the connection to NATS at %s (%s); requests fail and pushes are "
            "dropped until it is back, reconnecting",
            self.display_urls,
            self._last_error or "closed by the server",
        )

    async def _closed_cb(self) -> None:
        if self._closing or self.nc is None:
            return  # our own close, or a first connection that failed (reported as such)
        cause = self._last_error or "closed by the server"
        self.log.error(
            "the connection to NATS at %s is closed for good (%s): nats-py does not reconnect "
            "after that; requests fail and pushes are dropped from now on",
            self.display_urls,
            cause,
        )
        if self._replies is not None:
            # Not the cause: it reaches game clients (PIT-500) and may name NATS's address;
            # the line above logs it.
            self._replies.fail_all(NatsDown("the NATS connection is closed"))
        if self.on_closed is not None:
            self.on_closed(cause)

    async def _reconnected(self) -> None:
        down_since, self._down_since = self._down_since, None
        took = f" after {time.monotonic() - down_since:.1f} s" if down_since is not None else ""
        failed = self._failed_attempts
        self._failed_attempts = 0
        self.log.info(
            "reconnected to NATS%s (%d failed attempt%s)",
            took,
            failed,
            "" if failed == 1 else "s",
        )
        if self.on_reconnected is not None:
            try:
                self.on_reconnected()
            except Exception:  # nats-py would log it as its own error and go on
                self.log.exception("after reconnecting to NATS")

    async def _error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            if self.on_slow_consumer is not None:
                self.on_slow_consumer()  # NATS dropped an inbound message: we fell behind
            self.log.warning("NATS: %s", exc)
            return
        self._last_error = _describe(exc)
        refused = isinstance(exc, nats.errors.AuthorizationError | ssl.SSLError) or (
            "authorization" in self._last_error.lower()
        )
        if refused:
            self._refusal = self._last_error
        if self._closing:
            return
        if self._down_since is not None or self.nc is None:
            self._failed_attempts += 1  # a reconnection (or first connection) attempt failed
            if self._down_since is not None:
                self._tell_outage(refused)
            return
        if isinstance(exc, _CONNECTION_LOST):
            return  # the disconnection callback follows, and tells it with this cause
        self.log.warning("NATS error: %s", self._last_error)

    def _tell_outage(self, refused: bool) -> None:
        """While reconnecting: a refusal at once (once per outage: the credentials or the
        certificate no longer match, which no retry mends), else a summary every
        ``outage_summary_interval`` seconds."""
        down_since = self._down_since
        assert down_since is not None
        now = time.monotonic()
        if refused and not self._refusal_told:
            self._refusal_told = True
            self.log.error(
                "NATS at %s refuses this server (%s): it stays cut off until its credentials "
                "or certificate are accepted again",
                self.display_urls,
                self._last_error,
            )
        elif now - self._summarised_at >= self.outage_summary_interval:
            self._summarised_at = now
            self.log.warning(
                "NATS at %s still unreachable after %.0f s (%d failed attempts; last: %s)",
                self.display_urls,
                now - down_since,
                self._failed_attempts,
                self._last_error,
            )


_NO_RESPONDERS = "503"
"""The status header of the answer NATS sends itself when nobody listens on a subject."""
_NO_RESPONDERS_LINE = b"NATS/1.0 " + _NO_RESPONDERS.encode()
"""How the raw headers of that answer start (the direct path reads them unparsed)."""


def _no_responders(subject: str) -> NatsError:
    return NatsNoResponders(f"no server answering on {subject}")


def _answered_directly(
    replies: PendingReplies, subject: bytes, _reply: bytes, data: bytes, headers: bytes | None
) -> None:
    """An answer, straight from the parser (``LeanClient.deliver_directly``). Any peer may
    publish on the inbox, in any bytes: a subject that is not UTF-8 is no token of ours
    (those are hex), so it matches no request."""
    token = subject.decode(errors="replace")
    if headers and headers.startswith(_NO_RESPONDERS_LINE):
        replies.resolve(token, None, _no_responders)
    else:
        replies.resolve(token, data)


def _deliver_directly(
    on_message: OnMessage,
    unanswerable: Callable[[], None],
    _subject: bytes,
    reply: bytes,
    data: bytes,
    _headers: bytes | None,
) -> None:
    if not reply:
        on_message(data, None)
        return
    try:
        subject = reply.decode()
    except UnicodeDecodeError:
        unanswerable()  # no answer could be sent to it: dropped
        return
    on_message(data, subject)


def _request_error(exc: nats.errors.Error) -> NatsError:
    if isinstance(exc, _DOWN):
        return NatsDown(str(exc) or type(exc).__name__)
    return NatsError(str(exc) or type(exc).__name__)


_DOWN = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
)

_CONNECTION_LOST = (
    nats.errors.UnexpectedEOF,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionClosedError,
    OSError,
    TimeoutError,
)
"""Errors nats-py reports as the connection breaks, just before its disconnection callback."""


async def _cancel_for_good(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for its end, cancelling it again while it goes on: nats-py's
    connect can lose a cancellation (Python 3.11's ``wait_for`` drops one that comes as the
    TCP connection it waits for opens) and then waits a whole ``connect_timeout`` for the
    server's INFO, which held a stop requested during the start-up for that long."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if not task.cancelled():
        task.exception()  # retrieved: its failure is moot now, and must not be logged


async def _give_up(connecting: asyncio.Task[Any], client: LeanClient) -> None:
    """A first connection that failed or was abandoned: stop it, and close what it opened."""
    await _cancel_for_good(connecting)
    with contextlib.suppress(Exception):
        await client.close()


def _describe(exc: BaseException) -> str:
    """An error of nats-py in one line, any URL in it masked."""
    return mask_urls_in(" ".join(str(exc).split()) or type(exc).__name__)

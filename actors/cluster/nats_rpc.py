"""NATS RPC (the default transport): one connection that is this server's RPC client and server.

Subjects, as Pitaya's NATS RPC:

* ``pitaya/servers/<type>/<id>``: requests to one server (forwarded client messages, user
  RPCs, frontend controls such as ``sys.bind``), answered on the request's reply subject;
* ``pitaya/<frontendType>/user/<uid>/push`` and ``.../kick``: a frontend listens on these for
  every uid bound on it, so a push or kick by uid needs no lookup;
* ``pitaya/<frontendType>/bindings``: a frontend announces every bind (unique session).

Answers and notifies are queued and published by one task in order, so a backend's push
published before its answer reaches the frontend first, as it did through the bridge actor.
Requests while NATS is down fail at once with ``PIT-500`` (nats-py would otherwise buffer
them until the RPC timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from actors.cluster.rpc import (
    BindListener,
    ClusterStartupError,
    ClusterUnavailable,
    Dispatch,
    UserSubjects,
)
from actors.cluster.subjects import bindings_subject, server_subject, user_subject
from actors.errors import RpcTimeout
from transport.envelope import BindNotice, EnvelopeError, RpcResponse, decode_envelope

if TYPE_CHECKING:
    from actors.cluster.discovery import ServerInfo

log = logging.getLogger(__name__)


class NatsRpc:
    """:class:`~actors.cluster.rpc.RPCClient` and :class:`~actors.cluster.rpc.RPCServer`
    over NATS, and the :class:`~actors.cluster.rpc.UserSubjects` only NATS has.

    ``nats_url``: comma-separated server URLs; ``name``: the connection's name (this server's
    id); ``connect_timeout``: how long the first connection may take;
    ``on_dropped``: called for each inbound message NATS dropped because this server read
    too slowly (slow consumer).
    """

    ordered = True
    """One connection and one subject per server: what is published in order arrives in
    order (see ``RPCClient.ordered``)."""

    def __init__(
        self,
        nats_url: str,
        *,
        name: str,
        connect_timeout: float,
        on_dropped: Callable[[], None] | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.server_id = name
        self.connect_timeout = connect_timeout
        self.on_dropped = on_dropped
        self.me: ServerInfo | None = None
        """This server, once :meth:`start` was called."""
        self.nc: NatsClient | None = None
        self._dispatch: Dispatch | None = None
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._user_subscriptions: dict[str, list[Any]] = {}
        self._watching_binds = False

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    serving = connected  # one connection: the server receives whenever the client sends

    @property
    def metadata(self) -> dict[str, str]:
        return {}

    @property
    def user_subjects(self) -> UserSubjects:
        return self

    # -- client ----------------------------------------------------------------------------

    async def connect(self) -> None:
        urls = [u.strip() for u in self.nats_url.split(",") if u.strip()]
        try:
            # nats-py retries the first connection forever when reconnects are allowed:
            # bound it, so an unreachable NATS is reported instead of hanging the start-up.
            self.nc = await asyncio.wait_for(
                nats.connect(
                    servers=urls,
                    name=self.server_id,
                    connect_timeout=self.connect_timeout,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                ),
                self.connect_timeout,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise ClusterStartupError(
                f"cannot reach NATS at {self.nats_url}: {exc or type(exc).__name__}"
            ) from exc

    async def call(self, server: ServerInfo, request: bytes, timeout: float) -> bytes:
        nc = self._require_connected()
        subject = server_subject(server.type, server.id)
        try:
            response = await nc.request(subject, request, timeout=timeout)
        except nats.errors.TimeoutError:
            raise RpcTimeout() from None
        except nats.errors.NoRespondersError:
            raise RpcTimeout(f"rpc client: no server answering on {subject}") from None
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError,
            nats.errors.StaleConnectionError,
        ) as exc:
            raise ClusterUnavailable(f"cluster unavailable: {exc}") from exc
        data: bytes = response.data
        return data

    def notify(self, server: ServerInfo, request: bytes) -> None:
        self.publish(server_subject(server.type, server.id), request)

    async def send_notify(self, server: ServerInfo, request: bytes) -> None:
        # Published from the task's first step, like ``call``'s request: tasks started in
        # order put their messages on the connection in order.
        if not self.connected:
            return
        try:
            await self.nc.publish(server_subject(server.type, server.id), request)  # type: ignore[union-attr]
        except nats.errors.Error as exc:
            log.warning("[%s] notify to %s failed: %s", self.server_id, server.id, exc)

    def publish(self, subject: str, payload: bytes) -> None:
        """Queue a publish; one task sends the queue in order. Dropped while disconnected
        (nobody could answer it, and nats-py would hold it until reconnected)."""
        if not self.connected:
            log.debug("[%s] NATS down; dropping a message to %s", self.server_id, subject)
            return
        self._outbox.append((subject, payload))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._outbox and self.nc is not None:
                subject, payload = self._outbox.popleft()
                try:
                    await self.nc.publish(subject, payload)
                except nats.errors.Error as exc:
                    log.warning("[%s] publish to %s failed: %s", self.server_id, subject, exc)
        finally:
            self._flusher = None

    async def close(self) -> None:
        """Send what is queued, then drain (delivers pending inbound messages) and close."""
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        try:
            if self._flusher is not None:
                await asyncio.wait_for(asyncio.shield(self._flusher), 5)
            await asyncio.wait_for(nc.drain(), 5)
        except Exception:
            await nc.close()

    def _require_connected(self) -> NatsClient:
        if self.nc is None or not self.nc.is_connected:
            raise ClusterUnavailable("cluster unavailable: not connected to NATS")
        return self.nc

    # -- server ----------------------------------------------------------------------------

    async def start(self, me: ServerInfo, dispatch: Dispatch) -> None:
        nc = self._require_connected()
        self.me = me
        self._dispatch = dispatch
        await nc.subscribe(server_subject(me.type, me.id), cb=self._inbound)
        await nc.flush(timeout=max(1, round(self.connect_timeout)))

    async def stop(self) -> None:
        """Nothing to do: :meth:`close` drains the subscriptions after delivering what is
        pending (an early unsubscribe would drop it)."""

    async def _inbound(self, msg: Msg) -> None:
        if self._dispatch is not None:
            respond = partial(self.publish, msg.reply) if msg.reply else None
            self._dispatch(msg.data, respond)

    # -- per-uid and bindings subjects (UserSubjects, NATS only) -----------------------------

    async def listen_user(self, uid: str) -> None:
        """Frontend: take pushes and kicks on the subjects of ``uid``, bound here."""
        nc, me = self.nc, self.me
        if nc is None or me is None:
            return
        subs = [
            await nc.subscribe(user_subject(me.type, uid, "push"), cb=self._inbound),
            await nc.subscribe(user_subject(me.type, uid, "kick"), cb=self._inbound),
        ]
        old = self._user_subscriptions.pop(uid, None)
        self._user_subscriptions[uid] = subs
        for sub in old or []:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def forget_user(self, uid: str) -> None:
        for sub in self._user_subscriptions.pop(uid, []):
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    def publish_user(self, frontend_type: str, uid: str, what: str, payload: bytes) -> None:
        self.publish(user_subject(frontend_type, uid, what), payload)

    async def request_user(
        self, frontend_type: str, uid: str, what: str, payload: bytes, timeout: float
    ) -> bool | None:
        """Request a uid's ``push``/``kick`` subject: True when its frontend acknowledged,
        None when no frontend of this type holds the uid (nobody answered, or its frontend
        answered that the session is gone), False when NATS failed."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            return False
        try:
            answer = await nc.request(user_subject(frontend_type, uid, what), payload, timeout)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return None
        except nats.errors.Error:
            return False
        try:
            response = decode_envelope(answer.data)
        except EnvelopeError:
            return False
        # An error answer: the frontend that holds the subject no longer holds the uid.
        return None if isinstance(response, RpcResponse) and response.error else True

    async def announce_bind(self, notice: bytes) -> None:
        """Publish a bind notice now, not behind queued messages: the other frontends should
        see it before this bind's client hears back (a later bind elsewhere must win)."""
        nc, me = self.nc, self.me
        if nc is None or not nc.is_connected or me is None:
            return
        try:
            await nc.publish(bindings_subject(me.type), notice)
        except nats.errors.Error as exc:
            log.warning("[%s] bind notice not published: %s", self.server_id, exc)

    async def watch_binds(self, deliver: BindListener) -> None:
        """Frontend: hand the bind notices of the frontends of this type to ``deliver``,
        straight from the subscription (no actor hop: the sooner an older session is
        kicked, the smaller the window in which it could kick a newer one)."""
        if self._watching_binds or self.nc is None or self.me is None:
            return
        self._watching_binds = True

        async def on_notice(msg: Msg) -> None:
            try:
                notice = decode_envelope(msg.data)
            except EnvelopeError as exc:
                log.warning("[%s] malformed bind notice: %s", self.server_id, exc)
                return
            if isinstance(notice, BindNotice):
                deliver(notice)

        await self.nc.subscribe(bindings_subject(self.me.type), cb=on_notice)

    # -- connection events -----------------------------------------------------------------

    async def _disconnected(self) -> None:
        log.warning("[%s] disconnected from NATS; requests fail until it is back", self.server_id)

    async def _reconnected(self) -> None:
        log.info("[%s] reconnected to NATS", self.server_id)

    async def _error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError) and self.on_dropped is not None:
            self.on_dropped()  # NATS dropped an inbound message: we fell behind
        log.warning("[%s] NATS error: %s", self.server_id, exc)

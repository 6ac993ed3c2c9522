"""NATS RPC (the default transport): one connection that is this server's RPC client and server.

Subjects, as Pitaya's NATS RPC (``actors.cluster.subjects``):

* ``pitaya/servers/<type>/<id>``: ``protos.Request`` to one server (forwarded client
  messages, user RPCs, frontend controls such as ``sys.bindsession``), answered with a
  ``protos.Response`` on the request's reply subject;
* ``pitaya/<frontendType>/user/<uid>/push`` and ``.../kick``: a ``protos.Push``/``KickMsg``;
  a frontend listens on these for every uid bound on it, so a push or kick by uid needs no
  lookup (Go publishes them; ours may ask, and our frontends then answer);
* ``pitaya/<frontendType>/bindings``: a frontend announces every bind (``protos.BindMsg``).

The bytes move through :class:`transport.nats.NatsPipe`; this adapter names the subjects and
maps the pipe's errors to ``actors.errors``. NATS's "no responders" (nobody subscribes to the
server's subject: it is gone, and nobody received the request) is
:class:`~actors.cluster.rpc.ServerUnreachable`, at once; the router then skips that server
(``actors.cluster.router``). Answers and notifies are queued and published by one task in
order, so a backend's push published before its answer reaches the frontend first. Requests
while NATS is down fail at once with ``PIT-500``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from actors.cluster.codec import encode_error
from actors.cluster.rpc import (
    KICK,
    PUSH,
    REQUEST,
    ClusterStartupError,
    ClusterUnavailable,
    DeliverBytes,
    DeliverInbound,
    ServerUnreachable,
    UserSubjects,
)
from actors.cluster.subjects import bindings_subject, server_subject, uid_problem, user_subject
from actors.errors import AnswerTooLarge, InternalError, RpcTimeout
from actors.logs import ServerLog, Throttle
from transport.nats import (
    NatsDown,
    NatsError,
    NatsNoResponders,
    NatsPipe,
    NatsSecurity,
    NatsTimeout,
    NatsUnreachable,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from actors.cluster.discovery import ServerInfo
    from actors.kernel import Reply


class NatsRpc:
    """:class:`~actors.cluster.rpc.RPCClient` and :class:`~actors.cluster.rpc.RPCServer`
    over NATS, and the :class:`~actors.cluster.rpc.UserSubjects` only NATS has.

    ``nats_url``: comma-separated server URLs; ``name``: the connection's name (this server's
    id); ``connect_timeout``: how long the first connection may take;
    ``on_dropped``: called for each inbound message NATS dropped because this server read
    too slowly (slow consumer); ``security``: NATS credentials and TLS.
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
        security: NatsSecurity | None = None,
        outage_log_interval: float = 30.0,
    ) -> None:
        self.pipe = NatsPipe(
            nats_url,
            name=name,
            connect_timeout=connect_timeout,
            on_slow_consumer=on_dropped,
            security=security,
            outage_summary_interval=outage_log_interval,
        )
        self.me: ServerInfo | None = None
        """This server, once :meth:`start` was called."""
        self._deliver: DeliverInbound | None = None
        self._watching_binds = False
        self._oversized = Throttle()
        """Answers too large for NATS (:meth:`_answer`): logged once per 10 s."""
        self.log = ServerLog(log, name)

    @property
    def connected(self) -> bool:
        return self.pipe.connected

    def on_reconnected(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` each time the connection is back after an outage (its
        subscriptions restored): what waited for it may go."""
        self.pipe.on_reconnected = callback

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(cause)`` if the connection is closed for good (see
        ``NatsPipe.on_closed``): a transport that cannot come back says so."""
        self.pipe.on_closed = callback

    serving = connected  # one connection: the server receives whenever the client sends

    @property
    def metadata(self) -> dict[str, str]:
        return {}

    @property
    def user_subjects(self) -> UserSubjects:
        return self

    direct = None
    """No ``PushToUser``/``KickUser`` methods over NATS: the uid subjects do that."""

    # -- client ----------------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            await self.pipe.connect()
        except NatsUnreachable as exc:
            # Chained to what the connection met (a bare TimeoutError says nothing: the
            # start-up line fills in the wait and a probe of the address from it).
            raise ClusterStartupError(str(exc)) from exc.__cause__

    async def call(self, server: ServerInfo, request: bytes, timeout: float) -> bytes:
        subject = server_subject(server.type, server.id)
        try:
            return await self.pipe.request(subject, request, timeout)
        except NatsTimeout as exc:  # no responders too: nothing more to say
            raise _call_error(exc, server) from None
        except NatsError as exc:
            raise _call_error(exc, server) from exc

    def start_call(self, server: ServerInfo, request: bytes, timeout: float, reply: Reply) -> None:
        """:meth:`call` without a coroutine: ``reply(answer, error)`` once it is known (at
        once when it cannot be sent). The request is on the connection when this returns,
        in order with the publishes before and after it."""
        subject = server_subject(server.type, server.id)

        def answered(data: bytes | None, error: Exception | None) -> None:
            if error is None:
                reply(data, None)
            else:
                reply(None, _call_error(error, server))

        self.pipe.send_request(subject, request, timeout, answered)

    def notify(self, server: ServerInfo, request: bytes) -> None:
        self.pipe.publish(server_subject(server.type, server.id), request)

    def send_notify(self, server: ServerInfo, request: bytes) -> Coroutine[Any, Any, None]:
        # Published from the task's first step, like ``call``'s request: tasks started in
        # order put their messages on the connection in order.
        return self.pipe.publish_now(server_subject(server.type, server.id), request)

    async def close(self) -> None:
        """Send what is queued, then drain (delivers pending inbound messages) and close."""
        await self.pipe.close()

    # -- server ----------------------------------------------------------------------------

    async def start(self, me: ServerInfo, deliver: DeliverInbound) -> None:
        self.me = me
        self.log = ServerLog(log, me.id)
        self._deliver = deliver
        try:
            await self.pipe.subscribe(server_subject(me.type, me.id), self._inbound)
            await self.pipe.flush(self.pipe.connect_timeout)
        except NatsDown as exc:
            raise ClusterUnavailable("cluster unavailable: not connected to NATS") from exc

    async def stop(self) -> None:
        """Nothing to do: :meth:`close` drains the subscriptions after delivering what is
        pending (an early unsubscribe would drop it)."""

    def _inbound(self, data: bytes, reply: str | None) -> None:
        if self._deliver is not None:
            self._deliver(REQUEST, data, partial(self._answer, reply) if reply else None)

    def _answer(self, reply: str, answer: bytes) -> None:
        """Send ``answer`` to a request; one larger than NATS takes is answered ``PIT-500``
        saying so: nats-py refuses to send it, and the caller waited for its timeout (a
        ``PIT-408`` that said nothing of why) while a warning was logged each time."""
        limit = self.pipe.max_payload
        if limit is not None and len(answer) > limit:
            self._oversized.log(
                time.monotonic(),
                self.log,
                logging.WARNING,
                "an answer of %d bytes exceeds NATS's max payload (%d): answered PIT-500",
                len(answer),
                limit,
            )
            answer = encode_error(AnswerTooLarge(len(answer), limit, "NATS's max payload"))
        self.pipe.answer_to(reply, answer)

    def _user_push(self, data: bytes, reply: str | None) -> None:
        if self._deliver is not None:
            self._deliver(PUSH, data, partial(self.pipe.answer_to, reply) if reply else None)

    def _user_kick(self, data: bytes, reply: str | None) -> None:
        if self._deliver is not None:
            self._deliver(KICK, data, partial(self.pipe.answer_to, reply) if reply else None)

    # -- per-uid and bindings subjects (UserSubjects, NATS only) -----------------------------

    async def listen_user(self, uid: str) -> None:
        """Frontend: take pushes and kicks on the subjects of ``uid``, bound here (a uid that
        cannot be a subject token was refused at its bind: see ``ClusterUsers.check_uid``)."""
        me = self.me
        if me is None or uid_problem(uid) is not None:
            return
        # One group per subject: what arrives is told apart by the callback (a Push and a
        # KickMsg are both bare protobuf).
        await self.pipe.subscribe_group(
            f"{uid}/push", [user_subject(me.type, uid, "push")], self._user_push
        )
        await self.pipe.subscribe_group(
            f"{uid}/kick", [user_subject(me.type, uid, "kick")], self._user_kick
        )
        # Once bound, reachable: the bind returns after NATS has the subscriptions (one
        # round trip), or a push sent by another server at once could get there first.
        try:
            await self.pipe.flush(self.pipe.connect_timeout)
        except NatsError as exc:  # NATS is in trouble: the outage is told elsewhere
            self.log.debug("the subjects of a uid were not confirmed: %s", exc)

    async def forget_user(self, uid: str) -> None:
        await self.pipe.unsubscribe_group(f"{uid}/push")
        await self.pipe.unsubscribe_group(f"{uid}/kick")

    def publish_user(self, frontend_type: str, uid: str, what: str, payload: bytes) -> None:
        # A uid that cannot be a subject token is bound nowhere, and NATS would close this
        # connection over the subject (uids to push to may come from a client's body).
        if uid_problem(uid) is None:
            self.pipe.publish(user_subject(frontend_type, uid, what), payload)

    async def request_user(
        self, frontend_type: str, uid: str, what: str, payload: bytes, timeout: float
    ) -> bytes | None:
        """The answer of the frontend holding ``uid`` on its ``push``/``kick`` subject; None
        when nobody answered (a uid that cannot be a subject token, bound nowhere, too);
        ClusterUnavailable when NATS failed."""
        if uid_problem(uid) is not None:
            return None
        try:
            return await self.pipe.request(user_subject(frontend_type, uid, what), payload, timeout)
        except NatsTimeout:  # no responders too
            return None
        except NatsError as exc:
            raise ClusterUnavailable(f"cluster unavailable: {exc}") from exc

    async def announce_bind(self, notice: bytes) -> None:
        """Publish a bind notice now, not behind queued messages, and wait until the NATS
        server has it: the other frontends should see it before this bind's client hears
        back (a later bind elsewhere must win, not be kicked by this older one's notice
        arriving late). A round trip per bind; binds are rare."""
        if self.me is None:
            return
        await self.pipe.publish_now(bindings_subject(self.me.type), notice)
        try:
            await self.pipe.flush(self.pipe.connect_timeout)
        except NatsDown as exc:  # the outage is told once, by the pipe
            self.log.debug("bind notice not confirmed by NATS: %s", exc)
        except NatsTimeout as exc:
            self.log.warning("bind notice not confirmed by NATS: %s", exc)

    async def watch_binds(self, deliver: DeliverBytes) -> None:
        """Frontend: hand the bind notices of the frontends of this type to ``deliver``,
        straight from the subscription (no actor hop: the sooner an older session is
        kicked, the smaller the window in which it could kick a newer one)."""
        if self._watching_binds or self.me is None or not self.pipe.connected:
            return
        self._watching_binds = True
        await self.pipe.subscribe(
            bindings_subject(self.me.type), lambda data, _reply: deliver(data)
        )


def _call_error(exc: Exception, server: ServerInfo) -> Exception:
    """The RPC error for what the pipe reported of a call to ``server``."""
    if isinstance(exc, NatsNoResponders):
        # The NATS server had nobody subscribed to the subject: nobody received it.
        return ServerUnreachable.of(server)
    if isinstance(exc, NatsTimeout):
        return RpcTimeout()
    if isinstance(exc, NatsDown):
        return ClusterUnavailable(f"cluster unavailable: {exc}")
    return InternalError(f"rpc client: {exc}")

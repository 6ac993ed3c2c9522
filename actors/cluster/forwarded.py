"""A forwarded message's job in its session's lane on a backend, and how it is answered.

The bridge (``actors.cluster.bridge``) hands each small forwarded message to the sequencer as
a :class:`Forwarded`: when its session's turn comes it runs the handler with the values its
caller propagated, answers the frontend (:func:`respond_to`), and lets the session's next
message go (through the carry, ``actors.cluster.carry``). :func:`refuse` is the job of a
message answered with an error in its session's order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actors.cluster.codec import ACK, RpcRequest, encode_answer, encode_error
from actors.propagation import run_with

if TYPE_CHECKING:
    from actors.cluster.backend_session import BackendSession
    from actors.cluster.carry import SessionCarry
    from actors.cluster.rpc import Respond
    from actors.invocation import Invoker, LocalRoute
    from actors.tally import Tally


class Forwarded:
    """A small forwarded message, the sequencer's job (see :meth:`RpcBridge._request`):
    run its handler, answer, then ``finish``. One slotted object per message, not a partial
    and a closure: this is the path of nearly every forwarded message."""

    __slots__ = (
        "carry",
        "finish",
        "in_flight",
        "invoker",
        "key",
        "request",
        "respond",
        "route",
        "session",
    )

    def __init__(
        self,
        invoker: Invoker,
        route: LocalRoute,
        session: BackendSession,
        request: RpcRequest,
        respond: Respond | None,
        carry: SessionCarry,
        key: tuple[str, int],
        in_flight: Tally,
    ) -> None:
        self.invoker = invoker
        self.route = route
        self.session = session
        self.request = request
        self.respond = respond
        self.carry = carry
        self.key = key
        self.in_flight = in_flight
        """The server's count of requests in flight, this message counted until answered."""
        self.finish: Callable[[], None] | None = None

    def __call__(self, finish: Callable[[], None]) -> None:
        self.finish = finish
        request = self.request
        self.carry.resume(self.key, self.session, request)
        if request.propagated:  # its caller's values are current while its handler runs
            run_with(
                request.propagated,
                self.invoker.invoke,
                self.route,
                request.route,
                self.session,
                request.data,
                request.notify,
                self.done,
            )
            return
        # None (nearly every message from our frontends): the bridge's turn has none current
        # either (a synchronous handler's additions end with it), so nothing to set.
        self.invoker.invoke(
            self.route, request.route, self.session, request.data, request.notify, self.done
        )

    def done(self, result: Any, error: BaseException | None) -> None:
        # ``finish`` is dropped first: the sequencer's finish refers to this job (a cycle).
        finish, self.finish = self.finish, None
        respond = self.respond
        if respond is not None:
            respond_to(respond, self.request.notify, result, error)
        self.in_flight.down()
        if finish is not None:
            self.carry.finish(self.key, self.session, finish)


def respond_to(respond: Respond, notify: bool, result: Any, error: BaseException | None) -> None:
    """Answer a forwarded message or RPC: its error, ``ack`` for a notify (as Go does), or
    the handler's encoded result."""
    if error is not None:
        respond(encode_error(error))
    elif notify:
        respond(ACK)
    else:
        respond(encode_answer(result or b""))


def refuse(
    reply: Callable[[Any, BaseException | None], None],
    error: BaseException,
    finish: Callable[[], None] | None = None,
    *,
    carry: SessionCarry,
    lane: tuple[str, int] | None,
) -> None:
    """A message's job that answers ``error`` (a :class:`~actors.invocation.Sequencer` job)."""
    reply(None, error)
    if finish is not None:  # a sequencer's job: one of a session's messages
        assert lane is not None
        carry.finish(lane, None, finish)  # if it was the session's last, its record goes

"""What a session actor and its gateway use of their server, as an interface.

The session actor does not import the ``App``: it is given a :class:`SessionHost`, and the
app is one (``actors.app.App`` satisfies this protocol structurally; a test may pass any
object that does). Forwarding to other servers goes through :class:`Forwarder`, which a
cluster node implements. Declaring exactly these members is what keeps the session layer
below the app and the cluster (``tests/test_layers.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from opentelemetry.trace import Span

    from actors.config import Config
    from actors.invocation import Invoker, LocalRoute
    from actors.kernel import Reply
    from actors.metrics.handler import ForwardedRoutes
    from actors.metrics.reporter import Metrics
    from actors.session import Session
    from actors.sessions.registry import SessionRegistry
    from actors.stats import AppStats
    from actors.tracing import Tracing
    from transport.acceptor import Acceptor
    from transport.handshake import HandshakeRequest
    from transport.logs import Throttle
    from transport.message import RouteDictionary
    from transport.partial import PartialBudget
    from transport.serializers import Serializer


class ServerAddress(Protocol):
    """A server another one can send to (discovery's ``ServerInfo``)."""

    @property
    def id(self) -> str: ...


class Forwarder(Protocol):
    """Sends a client message to a server of another type (a cluster node)."""

    def pipelines_to(self, server: Any) -> bool:
        """A session's next message may go to ``server`` (one :meth:`pick` returned) before
        the previous one is answered: it reaches the server after it, runs after it, and
        sees the session as the previous one left it (``actors.cluster.carry``)."""
        ...

    def pick(self, server_type: str, route: str, session: Session | None) -> ServerAddress:
        """The server of ``server_type`` to send ``route`` to; raises when there is none."""
        ...

    def forward(
        self,
        server: Any,
        session: Session,
        route: str,
        data: bytes,
        notify: bool,
        reply: Reply,
        *,
        parent: Span | None = None,
        pipelined: bool = False,
    ) -> None:
        """Send the message to ``server`` (one :meth:`pick` returned); ``reply`` once.
        ``pipelined``: sent before the previous message of ``session`` to ``server`` was
        answered (only where :meth:`pipelines_to` allows it)."""
        ...


class SessionHost(Protocol):
    """What a :class:`~actors.sessions.actor.SessionActor` uses of its server."""

    @property
    def server_id(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def sessions(self) -> SessionRegistry: ...
    @property
    def invoker(self) -> Invoker: ...
    @property
    def local_routes(self) -> dict[str, LocalRoute]: ...
    @property
    def handshake_validators(
        self,
    ) -> Sequence[tuple[str, Callable[[HandshakeRequest], Any]]]: ...
    @property
    def route_dictionary(self) -> RouteDictionary | None: ...
    @property
    def serializer(self) -> Serializer: ...
    @property
    def fallback_serializer(self) -> Serializer: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def tracing(self) -> Tracing: ...
    @property
    def stats(self) -> AppStats: ...
    @property
    def protocol_errors(self) -> Throttle:
        """How often a client's protocol error is logged at info (see the session actor)."""
        ...

    @property
    def forwarded_routes(self) -> ForwardedRoutes:
        """The labels of forwarded routes' timings (made-up routes are ``unknown``)."""
        ...

    @property
    def unknown_routes(self) -> Throttle:
        """How often a client's notify to a route nobody serves is logged at info."""
        ...

    @property
    def kicks(self) -> Throttle:
        """How often a kicked session is logged at info."""
        ...

    @property
    def heartbeat_timeouts(self) -> Throttle:
        """How often a session's heartbeat timeout is logged at info."""
        ...

    @property
    def unwritable(self) -> Throttle:
        """How often an answer or push no packet can carry is logged at warning."""
        ...

    @property
    def partial_budget(self) -> PartialBudget:
        """The server's one budget for its clients' unfinished packets."""
        ...

    @property
    def cluster(self) -> Forwarder | None: ...

    def remote_server_type(self, route: str) -> str | None:
        """The other server type a client route belongs to (cluster mode), else None."""
        ...

    def request_started(self) -> None: ...
    def request_finished(self) -> None: ...
    def connection_closed(self) -> None: ...


class GatewayHost(SessionHost, Protocol):
    """What a :class:`~actors.gateway.Gateway` uses: the session host, plus the counts it
    checks a new connection against."""

    @property
    def acceptors(self) -> list[Acceptor]: ...
    @property
    def connection_count(self) -> int: ...

    def connection_opened(self) -> None: ...

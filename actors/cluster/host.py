"""What a cluster node uses of its server, as an interface.

``Cluster`` is given its app but depends only on these members (``actors.app.App``
satisfies them structurally; mypy checks it in ``actors.app``), so the cluster package stays
below the app in the layers (``tests/test_layers.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actors.cluster.session_events import RemoteSessionEvents
    from actors.config import Config
    from actors.invocation import Invoker, LocalRoute
    from actors.metrics.reporter import Metrics
    from actors.modules.base import Modules
    from actors.sessions.registry import SessionRegistry
    from actors.system import ActorSystem
    from actors.tracing import Tracing
    from transport.serializers import Serializer


class ClusterHost(Protocol):
    """The server a :class:`~actors.cluster.cluster.Cluster` node serves."""

    @property
    def server_id(self) -> str: ...
    @property
    def server_type(self) -> str: ...
    @property
    def is_frontend(self) -> bool: ...
    @property
    def config(self) -> Config: ...
    @property
    def system(self) -> ActorSystem: ...
    @property
    def sessions(self) -> SessionRegistry: ...
    @property
    def invoker(self) -> Invoker: ...
    @property
    def local_routes(self) -> dict[str, LocalRoute]: ...
    @property
    def remote_routes(self) -> dict[str, LocalRoute]: ...
    @property
    def remote_session_events(self) -> RemoteSessionEvents: ...
    @property
    def serializer(self) -> Serializer: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def tracing(self) -> Tracing: ...
    @property
    def modules(self) -> Modules: ...

    def request_stop(self) -> None:
        """Stop the server gracefully (what SIGTERM does)."""
        ...

    async def send_push_to_users(
        self, route: str, body: Any, uids: list[str], *, frontend_type: str | None = None
    ) -> list[str]: ...

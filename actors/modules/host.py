"""What the built-in modules use of the server they are registered on, as an interface.

A module is given its server (Pitaya's modules are, too) but depends only on these members,
which ``actors.app.App`` satisfies structurally (mypy checks it where the samples and tests
register modules): the modules stay below the app in the layers (``tests/test_layers.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from actors.modules.base import ProcessHost

if TYPE_CHECKING:
    from actors.cluster.cluster import Cluster
    from actors.config import Config
    from actors.modules.base import Modules
    from actors.sessions.registry import SessionRegistry


class ModuleHost(ProcessHost, Protocol):
    """What the binding-storage and unique-session modules use of their server."""

    @property
    def server_type(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def is_frontend(self) -> bool: ...
    @property
    def sessions(self) -> SessionRegistry: ...
    @property
    def cluster(self) -> Cluster | None: ...
    @property
    def modules(self) -> Modules: ...

"""What a reliable RPC job needs from its user and from the cluster.

:class:`RPCJob` is Pitaya's ``worker.RPCJob`` seam: which server runs a job
(``ServerDiscovery``) and which protobuf classes its argument and reply are (``GetArgReply``).
Pitaya's third method, ``RPC``, is ours to do (through the cluster's RPC), so a job is two
methods. :class:`RpcJob` is the one the worker uses when none is registered, and a base to
override::

    class Grants(RpcJob):
        def server_discovery(self, route: str, metadata: Mapping[str, Any]) -> str:
            return str(metadata.get("server", ""))  # "" lets the router choose

    app.register_rpc_job(Grants(arg_types={"room.remote.grant": Grant}))

:class:`RpcCaller` is what the worker uses of the cluster (``actors.cluster.cluster.Cluster``
has both methods).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from google.protobuf.message import Message

__all__ = ["RPCJob", "RpcCaller", "RpcJob"]


class RPCJob(Protocol):
    """Pitaya's ``worker.RPCJob``: the user's part of running a reliable RPC."""

    def server_discovery(self, route: str, metadata: Mapping[str, Any]) -> str:
        """The id of the server that runs ``route``; ``""`` lets the router choose one of the
        route's server type (as ``app.rpc`` does)."""
        ...

    def arg_reply(self, route: str) -> tuple[type[Message] | None, type[Message] | None]:
        """The protobuf classes of ``route``'s argument and reply: the job's ``Arg`` (Go JSON
        of that message) is decoded into the first; None passes the JSON value as it is (a
        dict reaches our servers as msgpack) and returns the answer's bytes."""
        ...


class RpcJob:
    """The default :class:`RPCJob`: any server of the route's type (the router's choice),
    argument and reply classes by route from ``arg_types`` / ``reply_types``."""

    def __init__(
        self,
        arg_types: Mapping[str, type[Message]] | None = None,
        reply_types: Mapping[str, type[Message]] | None = None,
    ) -> None:
        self.arg_types = dict(arg_types or {})
        self.reply_types = dict(reply_types or {})

    def server_discovery(self, route: str, metadata: Mapping[str, Any]) -> str:
        return ""

    def arg_reply(self, route: str) -> tuple[type[Message] | None, type[Message] | None]:
        return self.arg_types.get(route), self.reply_types.get(route)


class RpcCaller(Protocol):
    """The cluster's user RPCs, as the worker calls them."""

    async def rpc(self, route: str, arg: Any = None, *, reply: type[Any] | None = None) -> Any: ...

    async def rpc_to(
        self, server_id: str, route: str, arg: Any = None, *, reply: type[Any] | None = None
    ) -> Any: ...

"""Servers that forward clients' messages to each other must use one serializer.

A frontend hands a client's body to a backend as the client wrote it, in the serializer the
frontend announced in the handshake, and a backend's pushes reach the client as the backend
serialized them; the backend reads and writes with its own serializer. A frontend on
``msgpack`` in front of a backend on ``json`` made every forwarded request fail with
``PIT-400 cannot decode the json body: malformed JSON data``, as if the client had sent
garbage. Our servers publish their serializer in discovery (:data:`SERIALIZER_KEY`), and each
one warns once about every server it forwards with (a frontend and a backend, either way)
whose serializer differs. Go servers do not publish one: they are not checked.
"""

from __future__ import annotations

from actors.cluster.discovery import ServerInfo, ServiceDiscovery
from actors.logs import ServerLog

SERIALIZER_KEY = "py.serializer"
"""Discovery metadata: the name of the serializer a server of ours reads clients' bodies with."""


class SerializerCheck:
    """Warns once per server (by id) whose published serializer is not ``me``'s, when one of
    the two is a frontend and the other a backend (the pairs that forward clients' bodies)."""

    def __init__(self, me: ServerInfo, log: ServerLog) -> None:
        self.me = me
        self.log = log
        self.told: set[str] = set()

    def watch(self, discovery: ServiceDiscovery) -> None:
        """Check the servers listed now and every server added later."""
        discovery.add_listener(self.check)
        for server_type in sorted(discovery.server_types()):
            for server in discovery.servers(server_type):
                self.check(server, True)

    def check(self, server: ServerInfo, added: bool) -> None:
        mine = self.me.metadata.get(SERIALIZER_KEY)
        theirs = server.metadata.get(SERIALIZER_KEY)
        if (
            not added
            or theirs is None
            or theirs == mine
            or server.frontend == self.me.frontend
            or server.id in self.told
        ):
            return
        self.told.add(server.id)
        self.log.warning(
            "server %s (%s) serializes clients' bodies with %s, this one with %s: client "
            "messages forwarded between them, and pushes from the backend to the frontend's "
            "clients, would not decode; give every server of the cluster the same serializer",
            server.id,
            server.type,
            theirs,
            mine,
        )

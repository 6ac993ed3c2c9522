"""Session events held while the RPC transport is down, sent once it is back.

A frontend tells the backends that served a session of its bind and close
(``actors.cluster.session_events``) with a notify. While NATS was down that notify was
dropped: a backend never heard that a player left during the outage, and a room kept a
member who was gone, for as long as the room lived. Those events now wait here, in order,
and go out when the transport reconnects, before any event that comes after them (so one
session's bind still reaches a backend before its close).

Bounded: at most :data:`MAX_HELD` events (some hundred bytes each); past it the oldest is
dropped and counted, and the count is logged once the events are sent (or the server
stops). An event to a server that left discovery meanwhile is not sent: that server is gone,
and so is the state it kept of the session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.cluster.discovery import ServerInfo, ServiceDiscovery
    from actors.logs import ServerLog

MAX_HELD = 10_000
"""Session events held during one outage (all servers together)."""


class HeldEvents:
    """Encoded session events for servers of ours, waiting for the transport; ``send``
    notifies one server (``RPCClient.notify``)."""

    def __init__(
        self,
        send: Callable[[ServerInfo, bytes], None],
        discovery: ServiceDiscovery,
        log: ServerLog,
        limit: int = MAX_HELD,
    ) -> None:
        self._send = send
        self._discovery = discovery
        self._log = log
        self._limit = limit
        self._held: deque[tuple[str, bytes]] = deque()
        self.dropped = 0
        """Events dropped (the oldest, past ``limit``) since the last release."""

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, server_id: str, data: bytes) -> None:
        if len(self._held) >= self._limit:
            self._held.popleft()
            self.dropped += 1
        self._held.append((server_id, data))

    def release(self) -> None:
        """Send what is held, oldest first (the transport is back)."""
        held, self._held = self._held, deque()
        sent = gone = 0
        for server_id, data in held:
            server = self._discovery.server(server_id)
            if server is None:
                gone += 1
                continue
            self._send(server, data)
            sent += 1
        if held or self.dropped:
            self._log.info(
                "sent %d session event(s) held during the outage (%d to servers gone since, "
                "not sent; %d dropped past %d held)",
                sent,
                gone,
                self.dropped,
                self._limit,
            )
        self.dropped = 0

    def forget(self) -> None:
        """The server stops before the transport came back: what is held is lost (said)."""
        if self._held or self.dropped:
            self._log.warning(
                "%d session event(s) held during the NATS outage not sent: the server stops",
                len(self._held) + self.dropped,
            )
        self._held.clear()
        self.dropped = 0

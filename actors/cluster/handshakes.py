"""Handshakes on backends: sent once per session and server, not with every message.

A backend handler reads ``session.handshake`` (the client's handshake ``{"sys", "user"}``),
but the handshake may be large (up to ``max_handshake_size``) and a session sends many
small messages. So a frontend of ours sends it in the request metadata (``py.session``,
``actors.cluster.codec``) only with the session's first message to each backend server (the
servers it has sent to are the keys of ``Session.served_by``); later requests say
"handshake omitted" (``SessionSnapshot.handshake_omitted``). The backend keeps each
handshake it received here, by (frontend id, session id), until the session's close event
(which our frontends send to the backends that served the session) or until it is evicted
(least recently used first, past :data:`MAX_HANDSHAKES` entries).

When a request says "omitted" and the handshake is not here (evicted, this backend restarted,
a gRPC call overtook the first one, a user RPC from another backend), the backend asks the
frontend once with the ``pysys.handshake`` control (``actors.cluster.control``) before the
handler runs, and keeps the answer. Measured with a 900 KiB handshake (issue 18.4): NATS
bytes per forwarded 22-byte notify went from ~0.9 MB to ~0.2 KB after the first message.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

MAX_HANDSHAKES = 10_000
"""Handshakes a backend keeps (with the default ``max_handshake_size`` of 8 KiB: at most
about 80 MiB, far less for real handshakes)."""

MAX_HANDSHAKE_BYTES = 64 * 1024 * 1024
"""JSON bytes of the handshakes a backend keeps, whatever their number: a frontend's
``max_handshake_size`` is not this server's to check, and a peer on NATS sent 10 handshakes
of 878 KiB that held 200 MiB. Past it the least recently used go (fetched again if needed)."""


class HandshakeCache:
    """Handshakes by (frontend id, session id), least recently used evicted first, within
    ``max_entries`` and ``max_bytes`` (of their JSON text)."""

    def __init__(
        self, max_entries: int = MAX_HANDSHAKES, max_bytes: int = MAX_HANDSHAKE_BYTES
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        """JSON bytes of the handshakes kept."""
        self._entries: OrderedDict[tuple[str, int], tuple[dict[str, Any], int]] = OrderedDict()

    def get(self, frontend_id: str, session_id: int) -> dict[str, Any] | None:
        key = (frontend_id, session_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, frontend_id: str, session_id: int, handshake: dict[str, Any]) -> None:
        try:
            size = len(json.dumps(handshake, separators=(",", ":"), ensure_ascii=False))
        except (TypeError, ValueError, RecursionError):
            return  # decoded from JSON, so not expected: then it is simply not kept
        self.drop(frontend_id, session_id)
        if size > self.max_bytes:
            return  # not kept: fetched from the frontend when a handler reads it
        entries = self._entries
        entries[(frontend_id, session_id)] = (handshake, size)
        self.bytes += size
        while len(entries) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, evicted) = entries.popitem(last=False)
            self.bytes -= evicted

    def drop(self, frontend_id: str, session_id: int) -> None:
        """The session closed: its handshake is not needed any more."""
        entry = self._entries.pop((frontend_id, session_id), None)
        if entry is not None:
            self.bytes -= entry[1]

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["MAX_HANDSHAKES", "MAX_HANDSHAKE_BYTES", "HandshakeCache"]

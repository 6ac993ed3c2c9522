"""Counters of what a server refuses or drops rather than serves.

One object per app, handed to the pieces that count (session actors, the gateway, the rate
limiter): they get the counters, not the app.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class AppStats:
    """Counters of events that are refused or dropped rather than served."""

    refused_connections: int = 0
    dropped_notifies: int = 0
    rate_limited: int = 0
    """Client messages over their connection's rate limit (dropped, or answered PIT-429)."""
    mailbox_overflows: int = 0
    """Clients disconnected because their session actor's mailbox was full."""

"""Whether a server can serve now, and why not: what ``GET /ready`` answers.

A readiness probe (a Kubernetes Service, a load balancer) takes a server that answers 503 out
of service. So a server is not ready only for reasons of its own that stop it serving:
starting, draining, stopping, its RPC transport down, not (or no longer) in discovery. An
outage of a service every server shares (etcd) leaves it ready but *degraded*: taking every
server out at once would turn an etcd blip into a full outage while players are served.

The status code is the contract (200 ready, degraded or not; 503 not ready); the body's one
line says why, for a human::

    ready
    ready (degraded: discovery unreachable, serving from the last known server table)
    not ready: draining
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Readiness"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """``ready`` and ``reason``: why not, or, when ready, what is degraded ("" for nothing).

    True in a boolean context when ready, so a check that returned a bool can return one.
    """

    ready: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ready

    def line(self) -> str:
        """``ready``, ``ready (degraded: <reason>)`` or ``not ready[: <reason>]``."""
        if self.ready:
            return f"ready (degraded: {self.reason})" if self.reason else "ready"
        return f"not ready: {self.reason}" if self.reason else "not ready"

"""How a peer's address is written: ``host:port``, ``[v6]:port`` for IPv6.

One spelling for log lines and ``Connection.remote_address``, whether the address is the
socket's own peer or the client a PROXY header named (:mod:`transport.proxygate`).
"""

from __future__ import annotations

import asyncio

__all__ = ["format_address", "format_peer", "peer_host"]


def format_address(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` when ``host`` is an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peer(transport: asyncio.BaseTransport) -> str:
    """The transport's peer as :func:`format_address` writes it (``str`` of anything else,
    such as a UNIX socket's path)."""
    peer = transport.get_extra_info("peername")
    if not isinstance(peer, tuple) or len(peer) < 2:
        return str(peer)
    return format_address(str(peer[0]), int(peer[1]))


def peer_host(transport: asyncio.BaseTransport) -> str:
    """The host of the transport's peer (``str`` of anything else, such as a UNIX socket's
    path): what a trusted network is checked against."""
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)

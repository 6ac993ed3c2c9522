"""The byte links under :class:`transport.client.Client`: TCP and WebSocket.

The client's protocol logic does not care how packets travel, so it talks to a
:class:`Channel`: raw bytes over a TCP stream, or one whole packet per binary frame over
WebSocket (Pitaya's WebSocket acceptor reads exactly one packet per frame). Keeping the two
links here leaves ``client.py`` with the request/push logic only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from typing import Protocol

import websockets.exceptions
from websockets.asyncio.client import ClientConnection as _WebSocket
from websockets.asyncio.client import connect as _ws_connect

from transport.errors import ConnectionClosed, ProtocolError
from transport.packet import HEADER_SIZE

__all__ = ["CLOSE_TIMEOUT", "Channel", "TcpChannel", "WebSocketChannel", "open_channel"]

#: How long closing a link may take before we give up on a polite close.
CLOSE_TIMEOUT = 2.0
_READ_SIZE = 65536


class Channel(Protocol):
    """One packet stream: raw bytes over TCP, one packet per binary frame over WebSocket."""

    async def send(self, data: bytes) -> None:
        """Write ``data``; raises OSError or websockets' ConnectionClosed if the link is gone."""

    async def receive(self) -> bytes:
        """The next bytes from the server; ``b""`` once it is gone."""
        ...

    async def close(self) -> None:
        """Close the link (idempotent)."""


class TcpChannel:
    """A TCP (or TLS) stream; packet boundaries are found by the decoder, not here."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def receive(self) -> bytes:
        return await self._reader.read(_READ_SIZE)

    async def close(self) -> None:
        self._writer.close()
        # Reset by the peer, or it does not answer: the socket is gone either way.
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT)


class WebSocketChannel:
    """A WebSocket connection carrying one packet per binary frame."""

    def __init__(self, ws: _WebSocket) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        await self._ws.send(data)

    async def receive(self) -> bytes:
        try:
            frame = await self._ws.recv()
        except websockets.exceptions.ConnectionClosed:
            return b""
        if isinstance(frame, str):
            raise ProtocolError("the server sent a text frame; packets travel in binary frames")
        return frame

    async def close(self) -> None:
        await self._ws.close()


async def open_channel(
    host: str,
    port: int,
    *,
    websocket: bool,
    path: str,
    ssl: ssl_module.SSLContext | None,
    max_packet_size: int,
) -> Channel:
    """Open a TCP stream, or a WebSocket to ``ws[s]://host:port/path`` (no time limit here:
    the caller bounds the whole connection setup)."""
    if not websocket:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
        return TcpChannel(reader, writer)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scheme = "wss" if ssl is not None else "ws"
    try:
        ws = await _ws_connect(
            f"{scheme}://{netloc}/{path.lstrip('/')}",
            ssl=ssl,
            compression=None,
            max_size=max_packet_size + HEADER_SIZE,
            open_timeout=None,
            close_timeout=CLOSE_TIMEOUT,
        )
    except websockets.exceptions.InvalidHandshake as exc:
        # E.g. a server at its connection limit drops the socket before its 101 answer:
        # the caller sees the same error as for a TCP connection closed during setup.
        raise ConnectionClosed(f"WebSocket upgrade failed: {exc}") from exc
    return WebSocketChannel(ws)

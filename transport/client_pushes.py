"""Pushes on the client side: decoding by route, callbacks, and a buffered iterator.

A push carries a route but no type, so with a typed serializer (protobuf) the client can only
decode the bodies of routes it was told about: ``push_types={"onMessage": ChatMessage}`` on
:meth:`transport.client.Client.connect`. Pushes on other routes are delivered as the raw
``bytes`` for the application to decode. Schemaless serializers (JSON, msgpack) decode every
push as before and ignore the types.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from transport.errors import SerializationError
from transport.protobuf import ProtobufSerializer
from transport.serializers import Serializer

__all__ = ["Push", "PushDispatcher", "decode_body"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Push:
    """A message pushed by the server, body already unmarshalled (raw bytes for a protobuf
    push whose route has no declared type)."""

    route: str
    body: Any


def decode_body(serializer: Serializer, data: bytes, into: type[Any] | None) -> Any:
    """Unmarshal a response or push body; protobuf without a type gives the bytes back."""
    if into is None and isinstance(serializer, ProtobufSerializer):
        return data
    return serializer.unmarshal(data, into)


class PushDispatcher:
    """Decodes each push once, buffers it for :meth:`iterate` and calls the route's callbacks.

    Pushes are buffered from the moment the client connects, so an iterator started later
    misses none; the buffer keeps the newest ``buffer`` pushes. Several iterators share it.
    """

    def __init__(self, buffer: int, types: Mapping[str, type[Any]]) -> None:
        self._types = dict(types)
        self._callbacks: dict[str, list[Callable[[Any], object]]] = {}
        self._buffer: deque[Push] = deque(maxlen=buffer)
        self._ready = asyncio.Event()
        self._closed = False

    def on_push(self, route: str, callback: Callable[[Any], object]) -> None:
        self._callbacks.setdefault(route, []).append(callback)

    def deliver(self, route: str, data: bytes, serializer: Serializer) -> None:
        """Decode and hand out one push; an undecodable one is logged and dropped."""
        try:
            body = decode_body(serializer, data, self._types.get(route))
        except SerializationError as exc:
            logger.warning("dropping a push on %r: %s", route, exc)
            return
        self._buffer.append(Push(route, body))
        self._ready.set()
        for callback in self._callbacks.get(route, ()):
            try:
                callback(body)
            except Exception:
                logger.exception("push callback for %r failed", route)

    def close(self) -> None:
        """End the iterators once they have drained the buffer."""
        self._closed = True
        self._ready.set()

    def routes(self) -> list[str]:
        """The routes of the buffered pushes, oldest first."""
        return [push.route for push in self._buffer]

    async def take(self, route: str | None) -> Push | None:
        """The oldest buffered push on ``route`` (any route if None), waiting for one; the
        others stay buffered. None once the connection is closed and none is left."""
        while True:
            for index, push in enumerate(self._buffer):
                if route is None or push.route == route:
                    del self._buffer[index]
                    return push
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()

    async def iterate(self) -> AsyncIterator[Push]:
        while True:
            while self._buffer:
                yield self._buffer.popleft()
            if self._closed:
                return
            self._ready.clear()
            await self._ready.wait()

"""Serializers: how handler arguments and replies become message data.

A serializer's ``name`` is announced in the handshake (``"serializer": "json"``), so a client
knows how to read the data of responses and pushes. Pitaya ships ``json`` and ``protobuf``;
we ship ``json``, ``msgpack`` and ``protobuf`` (:mod:`transport.protobuf`) and let users
register their own.

Empty data and ``None``: a response must carry a body that the client can parse — pomelo's
JS client ``JSON.parse``-s every body and libpitaya treats an empty response body as a
decode error — so ``marshal(None)`` is the serializer's encoding of null (``b"null"`` for
JSON, ``b"\\xc0"`` for msgpack), never ``b""``. In the other direction, clients often send a
request or notify with no data at all, so ``unmarshal(b"")`` returns ``None``.

Example::

    serializer = get_serializer("json")
    serializer.marshal({"name": "a"})  # -> b'{"name":"a"}'
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import msgpack

from transport.bounded import (
    DEFAULT_MAX_CONTAINERS,
    LARGE_BODY,
    ContainerCounter,
    check_json_text,
    collector_paused,
    container_limit,
    finite_float,
    refuse_constant,
)
from transport.errors import SerializationError
from transport.jsonwire import WireJson
from transport.protobuf import ProtobufSerializer

__all__ = [
    "JsonSerializer",
    "MsgpackSerializer",
    "ProtobufSerializer",
    "Serializer",
    "get_serializer",
    "register_serializer",
]


@runtime_checkable
class Serializer(Protocol):
    """The seam for payload formats (Pitaya's ``serialize.Serializer``)."""

    @property
    def name(self) -> str:
        """The name announced in the handshake, e.g. ``"json"``."""
        ...

    def marshal(self, value: Any) -> bytes:
        """Encode ``value``; raise :class:`SerializationError` if it cannot be encoded."""
        ...

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        """Decode ``data`` (``b""`` gives None).

        ``into`` lets typed serializers (protobuf) decode to a given class; schemaless ones
        ignore it. ``into=ErrorBody`` asks for the data of an error response: a typed
        serializer returns an :class:`~transport.errorbody.ErrorBody`, a schemaless one the
        map it decoded (read with ``ErrorBody.from_value``). Raises
        :class:`SerializationError` on malformed data.
        """
        ...


def _plain(value: Any) -> Any:
    """Fallback for values the encoders do not know: dataclass instances become dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not serializable")


_JSON = WireJson(_plain, refuse_constant, finite_float)
_JSON_ENCODER = _JSON.encoder
_JSON_DECODER = _JSON.decoder
_json_text = _JSON.dumps
_json_value = _JSON.loads


class JsonSerializer:
    """Compact UTF-8 JSON (``ensure_ascii=False``); NaN and infinities are refused.

    ``unmarshal`` accepts only what ``marshal`` can write back (no unpaired surrogate
    escapes such as ``"\\ud800"``, no ``NaN`` or ``Infinity``, no number too large for a
    float such as ``1e999``) and at most
    ``max_containers`` arrays and objects per body (see :mod:`transport.bounded`); anything
    else is a :class:`SerializationError`.
    """

    name = "json"

    def __init__(self, max_containers: int = DEFAULT_MAX_CONTAINERS) -> None:
        self.max_containers = max_containers

    def marshal(self, value: Any) -> bytes:
        try:
            return _json_text(value).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(f"cannot encode {type(value).__name__} as JSON") from exc

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        if not data:
            return None
        try:
            size = len(data)
            if size < LARGE_BODY and size < 2 * self.max_containers:  # the common case
                value = _json_value(data.decode("utf-8"))
            else:
                container_limit(data, self.max_containers)
                with collector_paused(len(data)):
                    value = _JSON_DECODER.decode(data.decode("utf-8"))
            if b"\\u" in data:
                check_json_text(data, value, _JSON_ENCODER.encode)
            return value
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            # Not chained: a JSONDecodeError holds the whole text, which must not outlive this.
            raise SerializationError(f"malformed JSON data: {exc}") from None


class MsgpackSerializer:
    """MessagePack with str/bin distinguished; maps may have non-string keys.

    ``unmarshal`` stops at ``max_containers`` arrays and maps per body (see
    :mod:`transport.bounded`); strings are strict UTF-8, so what it returns can be written back.
    """

    name = "msgpack"

    def __init__(self, max_containers: int = DEFAULT_MAX_CONTAINERS) -> None:
        self.max_containers = max_containers

    def marshal(self, value: Any) -> bytes:
        try:
            data: bytes = msgpack.packb(value, use_bin_type=True, default=_plain)
            return data
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise SerializationError(f"cannot encode {type(value).__name__} as msgpack") from exc

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        if not data:
            return None
        try:
            size = len(data)
            if size < LARGE_BODY and size <= self.max_containers:  # the common case
                return msgpack.unpackb(data, raw=False, strict_map_key=False)
            # Counted only if it could pass the limit: a container takes at least one byte.
            counter = ContainerCounter(self.max_containers) if size > self.max_containers else None
            with collector_paused(size):
                return msgpack.unpackb(
                    data,
                    raw=False,
                    strict_map_key=False,
                    list_hook=counter,
                    object_hook=counter,
                )
        except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
            raise SerializationError(f"malformed msgpack data: {exc}") from None


_registry: dict[str, Serializer] = {}


def register_serializer(serializer: Serializer, *, replace: bool = False) -> None:
    """Make ``serializer`` available to :func:`get_serializer` under its ``name``.

    Registering a second serializer with a taken name raises ValueError unless ``replace``.
    """
    name = serializer.name
    if name in _registry and not replace and _registry[name] is not serializer:
        raise ValueError(f"a serializer named {name!r} is already registered")
    _registry[name] = serializer


def get_serializer(name: str) -> Serializer:
    """The registered serializer called ``name``; ValueError naming the known ones if none."""
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise ValueError(f"unknown serializer {name!r}; registered: {known}") from None


register_serializer(JsonSerializer())
register_serializer(MsgpackSerializer())
register_serializer(ProtobufSerializer())

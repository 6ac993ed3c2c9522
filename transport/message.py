"""Messages: the body of a ``DATA`` packet (sans-I/O).

Layout (Pitaya's ``conn/message`` package, from pomelo)::

    flag:u8 | [id: base-128 varint] | [route] | data

    flag = type << 1 | 0x01 if the route is a u16 dictionary code
                     | 0x10 if data is zlib-deflated
                     | 0x20 if this is an error response

Requests and responses carry the id (7-bit groups, least significant first, high bit = more).
Requests, notifies and pushes carry the route, either as a big-endian u16 code from the route
dictionary agreed in the handshake or as ``len:u8 | UTF-8``. Responses carry no route.

Like Pitaya, the decoder ignores the two high flag bits (0x40, 0x80) and the route-compressed
bit on a response; unlike Pitaya it rejects varints that overflow 64 bits, empty routes on
requests and notifies, non-UTF-8 routes, and inflated data above a size limit — each with a
:class:`~transport.errors.MalformedMessage` or :class:`~transport.errors.InvalidRoute`.

Example::

    body = encode_message(Message(MessageType.REQUEST, id=1, route="room.join", data=b"{}"))
    decode_message(body)  # -> Message(type=REQUEST, id=1, route="room.join", data=b"{}")
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum

from transport.errors import InvalidRoute, MalformedMessage

__all__ = [
    "DEFAULT_MAX_INFLATED_SIZE",
    "MAX_ROUTE_LENGTH",
    "Message",
    "MessageType",
    "RouteDictionary",
    "decode_message",
    "encode_message",
    "inflate_message",
]

FLAG_ROUTE_COMPRESSED = 0x01
FLAG_DATA_COMPRESSED = 0x10
FLAG_ERROR = 0x20
_TYPE_SHIFT = 1
_TYPE_MASK = 0x07

#: A route travels with a one-byte length.
MAX_ROUTE_LENGTH = 255
#: Default bound on inflated data, so a small compressed message cannot expand without limit.
DEFAULT_MAX_INFLATED_SIZE = 1024 * 1024
_MAX_ID = (1 << 64) - 1
_MAX_VARINT_BYTES = 10  # ceil(64 / 7)
_MAX_CODE = 0xFFFF


# Plain ints for the decoder's comparisons (cheaper than enum attribute lookups).
_REQUEST, _NOTIFY, _RESPONSE, _PUSH = 0, 1, 2, 3


class MessageType(IntEnum):
    """Bits 1..3 of the flag byte."""

    REQUEST = 0
    NOTIFY = 1
    RESPONSE = 2
    PUSH = 3


_TYPES: tuple[MessageType, ...] = tuple(MessageType)


# Hot path: built per message; not frozen because a frozen dataclass is ~5x slower to
# construct. Treat it as immutable all the same.
@dataclass(slots=True)
class Message:
    """A decoded message. ``id`` is 0 for notify/push; ``route`` is "" for a response."""

    type: MessageType
    id: int = 0
    route: str = ""
    data: bytes = b""
    error: bool = False
    compressed: bool = False
    """``data`` is still zlib-deflated (decoded with ``inflate=False``): see
    :func:`inflate_message`."""


class RouteDictionary:
    """The route <-> u16 code map announced in the handshake ("dict").

    Codes are 1..65535 and unique. A route with a code travels as 2 bytes instead of
    ``1 + len(route)``; both directions are looked up per message, so both are dicts.

    Example::

        routes = RouteDictionary.from_routes(["room.room.join", "chat.room.say"])
        routes.code("chat.room.say")  # -> 1 (codes follow sorted order)
    """

    __slots__ = ("_codes", "_routes")

    def __init__(self, mapping: Mapping[str, int] | None = None) -> None:
        self._codes: dict[str, int] = {}
        self._routes: dict[int, str] = {}
        for route, code in (mapping or {}).items():
            if not isinstance(route, str) or not route:
                raise ValueError(f"route dictionary key {route!r} is not a non-empty string")
            if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= _MAX_CODE:
                raise ValueError(f"route {route!r} has code {code!r}; codes are 1..{_MAX_CODE}")
            if code in self._routes:
                raise ValueError(
                    f"code {code} is used by both {self._routes[code]!r} and {route!r}"
                )
            self._codes[route] = code
            self._routes[code] = route

    @classmethod
    def from_routes(cls, routes: Iterable[str]) -> RouteDictionary:
        """Assign codes 1..n to the distinct ``routes`` in sorted order (deterministic)."""
        return cls({route: code for code, route in enumerate(sorted(set(routes)), start=1)})

    def extended(self, routes: Iterable[str]) -> RouteDictionary:
        """This dictionary with codes for the ``routes`` it lacks: in sorted order, each the
        lowest code above this dictionary's codes that is free (deterministic, so servers
        given the same dictionary and routes announce the same codes)."""
        codes = dict(self._codes)
        code = max(self._routes, default=0)
        for route in sorted(set(routes) - codes.keys()):
            code += 1
            if code > _MAX_CODE:
                raise ValueError(f"more than {_MAX_CODE} routes: no code left for {route!r}")
            codes[route] = code
        return RouteDictionary(codes)

    def code(self, route: str) -> int | None:
        """The code of ``route``, or None if it has none."""
        return self._codes.get(route)

    def route(self, code: int) -> str | None:
        """The route of ``code``, or None if the code is unknown."""
        return self._routes.get(code)

    def as_dict(self) -> dict[str, int]:
        """A copy of the route -> code map, as sent in the handshake."""
        return dict(self._codes)

    def __len__(self) -> int:
        return len(self._codes)

    def __contains__(self, route: object) -> bool:
        return route in self._codes

    def __iter__(self) -> Iterator[str]:
        return iter(self._codes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RouteDictionary):
            return NotImplemented
        return self._codes == other._codes

    def __repr__(self) -> str:
        return f"RouteDictionary({self._codes!r})"


def _encode_varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def encode_message(
    msg: Message, *, routes: RouteDictionary | None = None, compress: bool = False
) -> bytes:
    """Encode ``msg`` as the body of a ``DATA`` packet.

    The route is sent as a dictionary code when ``routes`` has one. With ``compress`` the
    data is zlib-deflated, and the 0x10 flag set, only when that makes it shorter (as Pitaya
    does). Raises :class:`InvalidRoute` for an empty, non-encodable or over-255-byte route
    on a request/notify/push, :class:`MalformedMessage` for an id outside 0..2**64-1.
    """
    type_bits = int(msg.type)
    if not 0 <= type_bits <= _PUSH:
        raise MalformedMessage(f"unknown message type {msg.type!r}")
    head = bytearray(((type_bits << _TYPE_SHIFT) | (FLAG_ERROR if msg.error else 0),))
    if not type_bits & 1:  # REQUEST (0) and RESPONSE (2) carry an id
        msg_id = msg.id
        if 0 <= msg_id < 0x80:
            head.append(msg_id)
        elif 0 <= msg_id <= _MAX_ID:
            _encode_varint(msg_id, head)
        else:
            raise MalformedMessage(f"message id {msg_id} is outside 0..2**64-1")
    if type_bits != _RESPONSE:
        _encode_route(msg.route, _TYPES[type_bits], routes, head)
    data = msg.data
    if msg.compressed:
        head[0] |= FLAG_DATA_COMPRESSED
    elif compress and data:
        deflated = zlib.compress(data)
        if len(deflated) < len(data):
            head[0] |= FLAG_DATA_COMPRESSED
            data = deflated
    return b"".join((head, data))  # copies the data once


def _encode_route(
    route: str, msg_type: MessageType, routes: RouteDictionary | None, out: bytearray
) -> None:
    code = routes._codes.get(route) if routes is not None else None
    if code is not None:
        out[0] |= FLAG_ROUTE_COMPRESSED
        out += code.to_bytes(2, "big")
        return
    try:
        raw = route.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRoute(f"route {route!r} cannot be encoded as UTF-8") from exc
    if not raw:
        raise InvalidRoute(f"a {msg_type.name.lower()} needs a non-empty route")
    if len(raw) > MAX_ROUTE_LENGTH:
        raise InvalidRoute(
            f"route of {len(raw)} bytes exceeds the limit of {MAX_ROUTE_LENGTH} bytes"
        )
    out.append(len(raw))
    out += raw


def decode_message(
    body: bytes,
    *,
    routes: RouteDictionary | None = None,
    max_route_length: int = MAX_ROUTE_LENGTH,
    max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE,
    inflate: bool = True,
) -> Message:
    """Decode the body of a ``DATA`` packet; inverse of :func:`encode_message`.

    Every malformed input raises :class:`MalformedMessage` (or its subclass
    :class:`InvalidRoute`), never an ``IndexError``, ``UnicodeDecodeError`` or
    ``zlib.error``. With ``inflate=False`` compressed data is left as it came
    (``Message.compressed``), for a server that inflates it only once the message may be
    handled (:func:`inflate_message`): a queued or refused message then costs only its bytes.
    """
    size = len(body)
    if size == 0:
        raise MalformedMessage("empty message (no flag byte)")
    flag = body[0]
    type_bits = (flag >> _TYPE_SHIFT) & _TYPE_MASK
    if type_bits > _PUSH:
        raise MalformedMessage(f"unknown message type {type_bits} in flag byte 0x{flag:02x}")
    offset = 1
    msg_id = 0
    if not type_bits & 1:  # REQUEST (0) and RESPONSE (2) carry an id
        if size > 1 and body[1] < 0x80:  # ids below 128: one byte, the common case
            msg_id = body[1]
            offset = 2
        else:
            msg_id, offset = _decode_varint(body, offset)
    route = ""
    if type_bits != _RESPONSE:
        if flag & FLAG_ROUTE_COMPRESSED:
            if offset + 2 > size:
                raise MalformedMessage("compressed route code is truncated")
            code = (body[offset] << 8) | body[offset + 1]
            offset += 2
            if routes is None:
                raise InvalidRoute(f"compressed route code {code} but no route dictionary")
            found = routes._routes.get(code)
            if found is None:
                raise InvalidRoute(f"unknown compressed route code {code}")
            route = found
        else:
            if offset >= size:
                raise MalformedMessage("route length is missing")
            length = body[offset]
            offset += 1
            if length > max_route_length:
                raise InvalidRoute(
                    f"route of {length} bytes exceeds the limit of {max_route_length} bytes"
                )
            end = offset + length
            if end > size:
                raise MalformedMessage(f"route of {length} bytes is truncated")
            try:
                route = body[offset:end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRoute("route is not valid UTF-8") from exc
            offset = end
            if not route and type_bits != _PUSH:
                kind = _TYPES[type_bits].name.lower()
                raise InvalidRoute(f"a {kind} needs a non-empty route")
    data = body[offset:] if offset < size else b""
    if flag & FLAG_DATA_COMPRESSED:
        if not inflate:
            return Message(_TYPES[type_bits], msg_id, route, data, flag & FLAG_ERROR != 0, True)
        data = _inflate(data, max_inflated_size)
    return Message(_TYPES[type_bits], msg_id, route, bytes(data), flag & FLAG_ERROR != 0)


def inflate_message(msg: Message, max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE) -> Message:
    """``msg`` with its data inflated (``msg`` itself when it was not compressed).

    Raises :class:`MalformedMessage` for data that is not zlib, is truncated or has trailing
    bytes, or inflates to more than ``max_inflated_size`` bytes (never producing more).
    """
    if not msg.compressed:
        return msg
    return Message(msg.type, msg.id, msg.route, _inflate(msg.data, max_inflated_size), msg.error)


def _decode_varint(body: bytes, offset: int) -> tuple[int, int]:
    """Read a base-128 varint id at ``offset``; return it and the offset after it."""
    size = len(body)
    value = 0
    shift = 0
    for _ in range(_MAX_VARINT_BYTES):
        if offset >= size:
            raise MalformedMessage("message id varint is truncated")
        byte = body[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value > _MAX_ID:
                raise MalformedMessage("message id does not fit in 64 bits")
            return value, offset
        shift += 7
    raise MalformedMessage(f"message id varint is longer than {_MAX_VARINT_BYTES} bytes")


def _inflate(data: bytes, limit: int) -> bytes:
    """Inflate zlib ``data`` without ever producing more than ``limit`` bytes (zip bombs)."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MalformedMessage(f"compressed data is not valid zlib: {exc}") from exc
    if len(out) > limit:
        raise MalformedMessage(f"inflated data exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise MalformedMessage("compressed data is truncated")
    if inflater.unused_data:
        raise MalformedMessage("trailing bytes after the compressed data")
    return out

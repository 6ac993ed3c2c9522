"""Handshake bodies: the JSON carried by ``HANDSHAKE`` packets (sans-I/O).

Client -> server: ``{"sys": {...}, "user": {...}}``. ``sys`` describes the client library;
Pitaya reads ``platform``, ``libVersion``, ``clientBuildNumber`` and ``clientVersion`` from it
(its ``session.HandshakeClientData``), pomelo's JS client sends ``type`` and ``version``.
``user`` is application data, stored in the session and seen by handshake validators.

Server -> client: ``{"code": 200, "sys": {"dict": {...}, "heartbeat": 30, "serializer":
"json"}}``; any other code is a rejection and the server closes the connection.

Pitaya encodes the response with Go's ``encoding/json``: keys sorted, and the heartbeat is a
float of seconds, printed without a fraction when integral (``30``, ``0.5``). We do the same.
Clients read the heartbeat as an integer number of seconds (libpitaya uses ``valueint``,
Pitaya's Go client an ``int`` field), so production servers should announce whole seconds.
Pitaya may zlib-compress the response body; :func:`decode_handshake_response` accepts both.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from transport.bounded import check_json_text, container_limit, finite_float, refuse_constant
from transport.errors import HandshakeError

__all__ = [
    "DEFAULT_MAX_HANDSHAKE_SIZE",
    "HANDSHAKE_OK",
    "HandshakeRequest",
    "HandshakeResponse",
    "decode_handshake_request",
    "decode_handshake_response",
    "encode_handshake_error",
    "encode_handshake_request",
    "encode_handshake_response",
]

HANDSHAKE_OK = 200
DEFAULT_MAX_HANDSHAKE_SIZE = 8 * 1024
"""Bytes a client's handshake body may have (``Config.max_handshake_size``): a session keeps
it for its whole life, so it must stay small. Real clients send a few hundred bytes."""
MAX_HANDSHAKE_CONTAINERS = 256
"""Objects and arrays a client's handshake may hold (real ones hold three)."""
_MAX_INFLATED_HANDSHAKE = 1024 * 1024
_MAX_CODE = 0xFFFF


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def _loads_object(body: bytes, what: str) -> dict[str, Any]:
    """Parse ``body`` as a JSON object, turning every failure into :class:`HandshakeError`."""
    try:
        value = json.loads(body, parse_constant=refuse_constant, parse_float=finite_float)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise HandshakeError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise HandshakeError(f"{what} is a JSON {type(value).__name__}, not an object")
    return value


def _object_field(parent: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    """``parent[key]`` as a dict; missing or null give {} (as Go's decoder does)."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HandshakeError(f"{what}.{key} is a JSON {type(value).__name__}, not an object")
    return value


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """What a client sent in its handshake. Properties read the well-known ``sys`` keys."""

    sys: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)

    def _sys_str(self, *keys: str) -> str:
        for key in keys:
            value = self.sys.get(key)
            if isinstance(value, str):
                return value
        return ""

    @property
    def platform(self) -> str:
        """``sys.platform`` (Pitaya clients) or ``sys.type`` (pomelo's JS client); "" if absent."""
        return self._sys_str("platform", "type")

    @property
    def lib_version(self) -> str:
        """``sys.libVersion`` (Pitaya clients) or ``sys.version`` (pomelo's JS client)."""
        return self._sys_str("libVersion", "version")

    @property
    def client_version(self) -> str:
        """``sys.clientVersion``: the game's version, for validators that refuse old builds."""
        return self._sys_str("clientVersion")

    @property
    def client_build_number(self) -> str:
        """``sys.clientBuildNumber``."""
        return self._sys_str("clientBuildNumber")


def decode_handshake_request(body: bytes) -> HandshakeRequest:
    """Parse a client's handshake body.

    An empty body or missing/null ``sys``/``user`` give empty dicts (Pitaya answers 400 to
    an empty body; we accept it so minimal clients work). Non-JSON, a non-object, a
    ``sys``/``user`` that is not an object, more than ``MAX_HANDSHAKE_CONTAINERS`` objects and
    arrays, or text that cannot be written back (an unpaired surrogate escape: the handshake
    travels on to other servers) raise :class:`HandshakeError`. Its size is bounded before
    this, by the packet decoder (``max_handshake_size``).
    """
    if not body.strip():
        return HandshakeRequest({}, {})
    try:
        container_limit(body, MAX_HANDSHAKE_CONTAINERS)
    except ValueError as exc:
        raise HandshakeError(f"handshake request: {exc}") from None
    value = _loads_object(body, "handshake request")
    try:
        check_json_text(body, value)
    except ValueError as exc:
        raise HandshakeError(f"handshake request: {exc}") from None
    return HandshakeRequest(
        _object_field(value, "sys", "handshake"), _object_field(value, "user", "handshake")
    )


def encode_handshake_request(sys: Mapping[str, Any], user: Mapping[str, Any]) -> bytes:
    """The body a client sends; ``user`` is omitted when empty (like Pitaya's client)."""
    value: dict[str, Any] = {"sys": dict(sys)}
    if user:
        value["user"] = dict(user)
    try:
        return _dumps(value)
    except (TypeError, ValueError) as exc:
        raise HandshakeError(f"handshake data is not JSON-serializable: {exc}") from exc


def _heartbeat_value(heartbeat: float) -> int | float:
    if not math.isfinite(heartbeat) or heartbeat < 0:
        raise ValueError(f"heartbeat must be a finite number of seconds >= 0, not {heartbeat}")
    return int(heartbeat) if float(heartbeat).is_integer() else float(heartbeat)


def encode_handshake_response(
    *,
    heartbeat: float,
    routes: Mapping[str, int] | None,
    serializer: str,
    code: int = HANDSHAKE_OK,
) -> bytes:
    """The body of the server's handshake answer.

    ``heartbeat`` is in seconds (0 disables heartbeats on pomelo/libpitaya clients).
    ``dict`` is omitted when there are no routes; clients treat a missing dict as empty.

    >>> encode_handshake_response(heartbeat=30, routes={"a.b.c": 1}, serializer="json")
    b'{"code":200,"sys":{"dict":{"a.b.c":1},"heartbeat":30,"serializer":"json"}}'
    """
    sys: dict[str, Any] = {"heartbeat": _heartbeat_value(heartbeat), "serializer": serializer}
    if routes:
        sys["dict"] = dict(routes)
    return _dumps({"code": code, "sys": sys})


def encode_handshake_error(code: int = 400, message: str = "") -> bytes:
    """A rejection body: ``{"code":400}``, plus ``"msg"`` when a message is given.

    Clients only look at ``code``; the message helps a human reading a capture.
    """
    value: dict[str, Any] = {"code": code}
    if message:
        value["msg"] = message
    return _dumps(value)


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """The server's answer, as a client sees it. ``heartbeat`` 0 means no heartbeats."""

    code: int
    heartbeat: float = 0.0
    routes: dict[str, int] = field(default_factory=dict)
    serializer: str = "json"
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the server accepted the handshake (code 200)."""
        return self.code == HANDSHAKE_OK


def _looks_zlib(body: bytes) -> bool:
    # RFC 1950 header: deflate method (low nibble 8) and a header checksum divisible by 31.
    # A JSON text never starts with byte 0x78 ("x"), so this cannot misfire on plain JSON.
    return len(body) > 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def _inflate_handshake(body: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, _MAX_INFLATED_HANDSHAKE + 1)
    except zlib.error as exc:
        raise HandshakeError(f"compressed handshake response is not valid zlib: {exc}") from exc
    if len(out) > _MAX_INFLATED_HANDSHAKE or not inflater.eof:
        raise HandshakeError("compressed handshake response is truncated or too large")
    return out


def decode_handshake_response(body: bytes) -> HandshakeResponse:
    """Parse the server's handshake answer (plain or zlib-compressed JSON).

    Raises :class:`HandshakeError` if it is not a JSON object with an integer ``code``, or if
    a present ``sys`` field has the wrong shape. A missing serializer means ``"json"`` (as
    libpitaya assumes); a missing heartbeat means 0 (none).
    """
    if _looks_zlib(body):
        body = _inflate_handshake(body)
    value = _loads_object(body, "handshake response")
    code = value.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise HandshakeError(f"handshake response code {code!r} is not an integer")
    message = value.get("msg", value.get("message", ""))
    sys = _object_field(value, "sys", "handshake response")
    heartbeat = sys.get("heartbeat", 0)
    if (
        isinstance(heartbeat, bool)
        or not isinstance(heartbeat, int | float)
        or not math.isfinite(heartbeat)
        or heartbeat < 0
    ):
        raise HandshakeError(f"handshake heartbeat {heartbeat!r} is not a number >= 0")
    serializer = sys.get("serializer", "json")
    if not isinstance(serializer, str):
        raise HandshakeError(f"handshake serializer {serializer!r} is not a string")
    routes = _object_field(sys, "dict", "handshake response sys")
    for route, route_code in routes.items():
        if isinstance(route_code, bool) or not isinstance(route_code, int):
            raise HandshakeError(f"route {route!r} has a non-integer code {route_code!r}")
        if not route or not 1 <= route_code <= _MAX_CODE:
            raise HandshakeError(f"route {route!r} has code {route_code}, outside 1..{_MAX_CODE}")
    if len(set(routes.values())) != len(routes):
        raise HandshakeError("handshake route dictionary has duplicate codes")
    return HandshakeResponse(
        code=code,
        heartbeat=float(heartbeat),
        routes=routes,
        serializer=serializer,
        message=message if isinstance(message, str) else str(message),
    )

"""The cluster envelope: what servers send each other over NATS (sans-I/O).

Every envelope is a msgpack map with a version ``v`` and a kind ``k``. Decoding rejects an
unknown version or a malformed map with :class:`EnvelopeError` (a ``ProtocolError``): a bad
message from a peer never crashes the bridge that reads it.

Kinds:

* ``RpcRequest``: a sys RPC (a client message forwarded by a frontend) or a user RPC, with a
  snapshot of the caller's session and tracing metadata;
* ``RpcResponse``: the answer, payload or Pitaya error;
* ``UserPush`` / ``UserKick``: to a bound user's frontend (``pitaya/<type>/user/<uid>/...``);
* ``BindNotice``: a uid was bound on a frontend (``pitaya/<type>/bindings``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from transport.errorbody import ErrorBody
from transport.errors import ProtocolError

ENVELOPE_VERSION = 1


class EnvelopeError(ProtocolError):
    """Bytes from a peer that are not an envelope this version understands."""


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """The part of a frontend session that travels with a forwarded message."""

    id: int
    frontend_id: str
    frontend_type: str
    uid: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    handshake: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """``kind`` is ``"sys"`` (forwarded client message) or ``"user"`` (app RPC)."""

    kind: str
    route: str
    data: bytes
    session: SessionSnapshot | None = None
    notify: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RpcResponse:
    data: bytes = b""
    error: ErrorBody | None = None


@dataclass(frozen=True, slots=True)
class UserPush:
    uid: str
    route: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UserKick:
    uid: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BindNotice:
    uid: str
    frontend_id: str


Envelope = RpcRequest | RpcResponse | UserPush | UserKick | BindNotice


def encode_envelope(envelope: Envelope) -> bytes:
    """Serialize ``envelope``; raises EnvelopeError if session data is not msgpack-able."""
    try:
        return msgpack.packb(_to_map(envelope), use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise EnvelopeError(f"cannot encode {type(envelope).__name__}: {exc}") from exc


def decode_envelope(data: bytes) -> Envelope:
    """Parse bytes from a peer; every malformed input raises EnvelopeError."""
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise EnvelopeError(f"not a msgpack envelope: {exc}") from exc
    if not isinstance(value, dict):
        raise EnvelopeError(f"envelope must be a map, got {type(value).__name__}")
    version = value.get("v")
    if version != ENVELOPE_VERSION:
        raise EnvelopeError(
            f"unsupported envelope version {version!r} (this server speaks {ENVELOPE_VERSION})"
        )
    kind = value.get("k")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise EnvelopeError(f"unknown envelope kind {kind!r}")
    try:
        return decoder(value)
    except EnvelopeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError(f"malformed {kind} envelope: {exc!r}") from exc


# -- maps ---------------------------------------------------------------------------------


def _to_map(envelope: Envelope) -> dict[str, Any]:
    if isinstance(envelope, RpcRequest):
        out: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "k": "req",
            "kind": envelope.kind,
            "route": envelope.route,
            "data": envelope.data,
        }
        if envelope.session is not None:
            s = envelope.session
            out["session"] = {
                "id": s.id,
                "fid": s.frontend_id,
                "ftype": s.frontend_type,
                "uid": s.uid,
                "data": s.data,
                "hs": s.handshake,
            }
        if envelope.notify:
            out["notify"] = True
        if envelope.metadata:
            out["meta"] = envelope.metadata
        return out
    if isinstance(envelope, RpcResponse):
        out = {"v": ENVELOPE_VERSION, "k": "res", "data": envelope.data}
        if envelope.error is not None:
            out["error"] = envelope.error.to_value()
        return out
    if isinstance(envelope, UserPush):
        return {
            "v": ENVELOPE_VERSION,
            "k": "push",
            "uid": envelope.uid,
            "route": envelope.route,
            "data": envelope.data,
        }
    if isinstance(envelope, UserKick):
        return {"v": ENVELOPE_VERSION, "k": "kick", "uid": envelope.uid, "reason": envelope.reason}
    return {"v": ENVELOPE_VERSION, "k": "bind", "uid": envelope.uid, "fid": envelope.frontend_id}


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise EnvelopeError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def _bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise EnvelopeError(f"field {name!r} must be bytes, got {type(value).__name__}")
    return value


def _dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EnvelopeError(f"field {name!r} must be a map, got {type(value).__name__}")
    return value


def _request(value: dict[str, Any]) -> RpcRequest:
    kind = _str(value["kind"], "kind")
    if kind not in ("sys", "user"):
        raise EnvelopeError(f"unknown rpc kind {kind!r}")
    session = None
    raw = value.get("session")
    if raw is not None:
        raw = _dict(raw, "session")
        session_id = raw["id"]
        if not isinstance(session_id, int) or isinstance(session_id, bool):
            raise EnvelopeError("field 'session.id' must be an integer")
        uid = raw.get("uid")
        if uid is not None:
            uid = _str(uid, "session.uid")
        handshake = raw.get("hs")
        session = SessionSnapshot(
            id=session_id,
            frontend_id=_str(raw["fid"], "session.fid"),
            frontend_type=_str(raw["ftype"], "session.ftype"),
            uid=uid,
            data=_dict(raw.get("data") or {}, "session.data"),
            handshake=_dict(handshake, "session.hs") if handshake is not None else None,
        )
    metadata = _dict(value.get("meta") or {}, "meta")
    return RpcRequest(
        kind=kind,
        route=_str(value["route"], "route"),
        data=_bytes(value["data"], "data"),
        session=session,
        notify=bool(value.get("notify", False)),
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


def _response(value: dict[str, Any]) -> RpcResponse:
    error = value.get("error")
    return RpcResponse(
        data=_bytes(value.get("data", b""), "data"),
        error=ErrorBody.from_value(error) if error is not None else None,
    )


def _push(value: dict[str, Any]) -> UserPush:
    return UserPush(
        uid=_str(value["uid"], "uid"),
        route=_str(value["route"], "route"),
        data=_bytes(value["data"], "data"),
    )


def _kick(value: dict[str, Any]) -> UserKick:
    return UserKick(uid=_str(value["uid"], "uid"), reason=_str(value.get("reason", ""), "reason"))


def _bind(value: dict[str, Any]) -> BindNotice:
    return BindNotice(uid=_str(value["uid"], "uid"), frontend_id=_str(value["fid"], "fid"))


_DECODERS: dict[str, Callable[[dict[str, Any]], Envelope]] = {
    "req": _request,
    "res": _response,
    "push": _push,
    "kick": _kick,
    "bind": _bind,
}

"""The cluster's wire codec: the one place that knows how envelopes become bytes.

Every cluster module encodes and decodes through these names, never through
``transport.envelope`` directly, so replacing the protocol (Pitaya's protobuf ``Request`` /
``Response`` for Go interop) changes this module and ``actors.cluster.control`` only.

* :func:`encode` / :func:`decode`: an envelope to bytes and back (``EnvelopeError`` on bad
  input);
* answers: :data:`ACK`, :func:`encode_answer`, :func:`encode_error`, and :func:`read_answer`
  on the caller's side (the payload, or the remote's error raised as a ``PitayaError``);
* :func:`snapshot`: the part of a session that travels with a request;
* :data:`RPC_SERIALIZER`: how user RPC arguments and results travel.

::

    snap = snapshot(session, "connector-1", "connector")
    answer = await rpc_client.call(server, encode(RpcRequest("user", route, b"", snap)), 5)
    payload = read_answer(answer)  # raises PitayaError("PIT-404", ...) if the route is unknown
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from actors.errors import InternalError, PitayaError, as_pitaya_error
from transport.envelope import (
    BindNotice,
    Envelope,
    EnvelopeError,
    RpcRequest,
    RpcResponse,
    SessionSnapshot,
    UserKick,
    UserPush,
)
from transport.envelope import decode_envelope as decode
from transport.envelope import encode_envelope as encode
from transport.errorbody import ErrorBody
from transport.serializers import MsgpackSerializer

if TYPE_CHECKING:
    from transport.handshake import HandshakeRequest

RPC_SERIALIZER = MsgpackSerializer()
"""User RPC arguments and results travel as msgpack between servers."""

ACK = encode(RpcResponse())
"""The empty answer: a notify handled, a control done."""


def encode_answer(data: bytes) -> bytes:
    """A successful answer carrying ``data``."""
    return encode(RpcResponse(data=data)) if data else ACK


def encode_error(error: BaseException) -> bytes:
    """An error answer: ``error`` as Pitaya's code, message and metadata."""
    pitaya = as_pitaya_error(error)
    return encode(RpcResponse(error=ErrorBody(pitaya.code, pitaya.msg, pitaya.metadata)))


def read_answer(data: bytes) -> bytes:
    """The payload of an answer; its error raised as a PitayaError (InternalError when the
    bytes are not an answer)."""
    try:
        response = decode(data)
    except Exception as exc:
        raise InternalError(f"malformed RPC response: {exc}") from exc
    if not isinstance(response, RpcResponse):
        raise InternalError("RPC answered with a non-response envelope")
    if response.error is not None:
        e = response.error
        raise PitayaError(e.code, e.msg, e.metadata)
    return response.data


def is_refusal(data: bytes) -> bool | None:
    """Of an answer to a push or kick by uid: True when it is an error (the frontend no
    longer holds the uid), False when it acknowledged, None when it is not an answer."""
    try:
        response = decode(data)
    except EnvelopeError:
        return None
    return isinstance(response, RpcResponse) and response.error is not None


class SessionFields(Protocol):
    """What :func:`snapshot` reads of a session (``actors.session.Session`` has it)."""

    @property
    def id(self) -> int: ...

    @property
    def uid(self) -> str | None: ...

    @property
    def data(self) -> dict[str, Any]: ...

    @property
    def handshake(self) -> HandshakeRequest | None: ...


def snapshot(session: SessionFields, frontend_id: str, frontend_type: str) -> SessionSnapshot:
    """What travels of ``session``; a backend session keeps its own frontend's id and type,
    a frontend's session takes ``frontend_id``/``frontend_type`` (this server)."""
    handshake = session.handshake
    return SessionSnapshot(
        id=session.id,
        frontend_id=getattr(session, "frontend_id", frontend_id),
        frontend_type=getattr(session, "frontend_type", frontend_type),
        uid=session.uid,
        data=session.data,
        handshake={"sys": handshake.sys, "user": handshake.user} if handshake else None,
    )


__all__ = [
    "ACK",
    "RPC_SERIALIZER",
    "BindNotice",
    "Envelope",
    "EnvelopeError",
    "RpcRequest",
    "RpcResponse",
    "SessionFields",
    "SessionSnapshot",
    "UserKick",
    "UserPush",
    "decode",
    "encode",
    "encode_answer",
    "encode_error",
    "is_refusal",
    "read_answer",
    "snapshot",
]

"""The cluster's wire codec: Pitaya's protobuf protocol, and the one place that knows its bytes.

Servers talk Go Pitaya v3's messages (``transport/protos/pitaya.proto``, package ``protos``),
byte for byte, so a Python server can sit in a Go Pitaya cluster. Every cluster module encodes
and decodes through the names here, never through ``pitaya_pb2`` directly.

* A request (:class:`RpcRequest`) is a ``protos.Request``: ``type`` Sys for a client message a
  frontend forwards, User for an RPC server code makes; ``msg`` {id, route, data, type
  Request/Notify}; ``session`` {id, uid, data: a JSON object}; ``frontendID``; ``metadata``:
  a JSON object that always holds ``peer.id``, ``peer.service`` and ``reqTimeout`` (a Go
  duration, ``"5s"``), and the trace carrier under ``otel-span`` when tracing (an empty one
  makes a Go server answer PIT-500). :func:`encode_request` / :func:`decode_request`.
* An answer is a ``protos.Response``: ``data``, or ``error`` {code, msg, metadata}. A notify
  is answered :data:`ACK` (``data = "ack"``, as Go's handler pool does); Pitaya's frontend
  controls (``sys.bindsession``, ``sys.pushsession``, ``sys.kick``) answer a Response whose
  data is itself a marshalled ``Response``/``KickAnswer`` (:data:`CONTROL_ACK`,
  :func:`encode_kick_answer`), as Go's ``remote.Sys`` does through its user RPC path.
* Push and kick by uid: a ``protos.Push`` / ``protos.KickMsg``; a bind broadcast: a
  ``protos.BindMsg``.

What we offer beyond Pitaya rides on the same messages (a Go peer ignores it, and is never
sent our extra routes: see ``actors.cluster.control``):

* metadata key :data:`SESSION_KEY` (``"py.session"``): ``{"ftype": <the session's frontend
  type>, "hs": <its handshake {"sys", "user"} or null>}``, on requests that carry a session
  held by one of our frontends (a backend sees the handshake; its presence also says the
  session's frontend understands our extra routes). Without ``"hs"`` the handshake was
  omitted: the receiver got it before or fetches it (``actors.cluster.handshakes``);
* metadata key :data:`ARGS_KEY` (``"py.args": "msgpack"``): a user RPC whose argument (and
  answer) is msgpack, not protobuf (:data:`RPC_SERIALIZER`, between our servers only);
* discovery metadata :data:`EXTRAS_KEY` (``"pitayaActors": "1"``): this server understands
  the extras (the extra sys routes, acknowledged push and kick by uid).

::

    wire = encode_request(RpcRequest("user", "room.room.count", b""), "connector-1",
                          "connector", 5.0)
    answer = await rpc_client.call(server, wire, 5)
    payload = read_answer(answer)  # raises PitayaError("PIT-404", ...) if the route is unknown
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.unknown_fields import UnknownFieldSet

from actors.cluster import protowire
from actors.errors import InternalError, PitayaError, as_pitaya_error
from actors.propagation import EMPTY as EMPTY_PROPAGATED
from actors.propagation import propagated_of
from transport import goduration
from transport.bounded import (
    DEFAULT_MAX_CONTAINERS,
    container_limit,
    finite_float,
    refuse_constant,
)
from transport.errors import ProtocolError, SerializationError
from transport.jsonwire import WireJson
from transport.message import MAX_ROUTE_LENGTH
from transport.protobuf import is_message_class
from transport.protos import pitaya_pb2 as pb
from transport.serializers import MsgpackSerializer

if TYPE_CHECKING:
    from transport.handshake import HandshakeRequest

SYS = "sys"
""":attr:`RpcRequest.kind` of a client message forwarded by a frontend (``RPCType.Sys``)."""
USER = "user"
""":attr:`RpcRequest.kind` of an RPC made by server code (``RPCType.User``)."""

PEER_ID_KEY = "peer.id"
PEER_SERVICE_KEY = "peer.service"
TIMEOUT_KEY = "reqTimeout"
SPAN_KEY = "otel-span"
"""Go Pitaya's metadata keys: the sender's id and type, its timeout, the trace carrier."""

SESSION_KEY = "py.session"
"""Our metadata key: the session's frontend type and handshake (see the module docstring)."""
PIPELINED_KEY = "py.pipelined"
"""Our metadata key: ``true`` on a forwarded message sent before the previous one of its
session to the same server was answered (``actors.cluster.carry``)."""
ARGS_KEY = "py.args"
"""Our metadata key: ``"msgpack"`` when a user RPC's argument and answer are msgpack."""
MSGPACK_ARGS = "msgpack"
_EXTRA_PREFIX = "py."
"""Our metadata keys start with it."""
EXTRAS_KEY = "pitayaActors"
"""Discovery metadata key a server of ours advertises (value :data:`EXTRAS_VERSION`)."""
EXTRAS_VERSION = "1"
INCARNATION_KEY = "pitayaActorsIncarnation"
"""Discovery metadata key: a token a server of ours draws when it starts (a restart with the
same id has another: ``actors.cluster.served_sessions``)."""
SENDER_INCARNATION_KEY = "py.inc"
"""Our metadata key: the sending server's incarnation (:data:`INCARNATION_KEY`), on every
request to a server of ours: a backend tells a restarted frontend's sessions, whose ids begin
from 1 again, from the old process's before its discovery shows the restart."""


class CodecError(ProtocolError):
    """Bytes from a peer that are not the Pitaya message expected there, or a value this
    server cannot put in one (session data that is not a JSON object)."""


_Request = pb.Request
_SYS = pb.Sys
_USER = pb.User
_NOTIFY = pb.MsgNotify

# -- requests ---------------------------------------------------------------------------------


@dataclass(slots=True)
class SessionSnapshot:
    """The part of a frontend session that travels with a request.

    ``extras``: the session's frontend is one of ours (it takes our extra routes);
    ``handshake_omitted``: the session has a handshake, not sent with this request (the
    receiver keeps or fetches it, see ``actors.cluster.handshakes``).

    A value, though not frozen: a frozen dataclass sets each field through
    ``object.__setattr__``, about 1 µs per snapshot on Python 3.11, and one or two are made
    per forwarded message. Only the receiver that decoded it fills in a kept handshake.
    ``data`` of a decoded snapshot may be shared with others of the same bytes: read only.
    """

    id: int
    frontend_id: str
    frontend_type: str
    uid: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    handshake: dict[str, Any] | None = None
    extras: bool = True
    handshake_omitted: bool = False


@dataclass(slots=True)
class RpcRequest:
    """``kind`` is :data:`SYS` (forwarded client message) or :data:`USER` (RPC); ``mid``: the
    client's message id of a forwarded request; ``metadata``: what travels beside Pitaya's own
    keys (the trace carrier under ``otel-span``, our ``py.*`` keys); the encoder adds
    ``peer.id``, ``peer.service`` and ``reqTimeout``. A value, not frozen for the same reason
    as :class:`SessionSnapshot`; ``metadata`` of a decoded request is shared: read only."""

    kind: str
    route: str
    data: bytes
    session: SessionSnapshot | None = None
    notify: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    mid: int = 0
    propagated: Mapping[str, Any] | None = field(default=None, compare=False)
    """Of a decoded request: the values its sender propagated (``actors.propagation``), which
    the handler it reaches passes on (None: none); read from ``metadata``, so not compared.
    To send some, put them in ``metadata``."""


def encode_request(
    request: RpcRequest,
    sender_id: str,
    sender_type: str,
    timeout: float,
    extras: bool = True,
    incarnation: str = "",
) -> bytes:
    """``request`` as the ``protos.Request`` bytes a Go server reads; ``sender_*``: this
    server; ``timeout``: the caller's, as ``reqTimeout``; ``extras``: the target is one of
    ours (else no ``py.*`` key is written: a Go server never sees our extras);
    ``incarnation``: this server's (:data:`SENDER_INCARNATION_KEY`, to ours). Raises
    CodecError when the session's data is not a JSON object."""
    # The metadata is written as text: its fixed part is made once per sender and timeout,
    # and a session's py.session entry once per session; the message itself is written by
    # hand (actors.cluster.protowire): this is the hot path of forwarding.
    metadata = _metadata_head(sender_id, sender_type, timeout, incarnation if extras else "")
    try:
        if request.metadata:
            metadata += "".join(
                f",{_json_text(key)}:{_json_text(value)}"
                for key, value in request.metadata.items()
                if extras or not key.startswith(_EXTRA_PREFIX)
            )
        session = request.session
        wire_session = None
        frontend_id = ""
        if session is not None:
            frontend_id = session.frontend_id
            data = session.data
            wire_session = (
                session.id,
                session.uid or "",
                _json_text(data).encode() if data else _EMPTY_OBJECT,
            )
            if session.extras and extras:
                text = (
                    _omitted_text(session.frontend_type)
                    if session.handshake_omitted
                    else _session_extras(session)
                )
                metadata += f',"{SESSION_KEY}":{text}'
        return protowire.encode_request(
            request.kind != SYS,
            request.mid,
            request.route,
            request.data,
            request.notify,
            wire_session,
            frontend_id,
            (metadata + "}").encode(),
        )
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise CodecError(f"cannot encode the request for {request.route}: {exc}") from exc


_EMPTY_OBJECT = b"{}"
"""Session data that is an empty object (most sessions')."""


def decode_request(data: bytes) -> RpcRequest:
    """A ``protos.Request`` from a peer (Go or ours); every malformed input raises CodecError.

    Without our ``py.session`` key (a Go frontend) the session's frontend type is the
    sender's ``peer.service`` when the sender is that frontend, else empty (found in
    discovery).
    """
    try:
        message = _Request.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise CodecError(f"not a protos.Request: {exc}") from exc
    if not message.HasField("msg"):
        raise CodecError("protos.Request without msg")
    msg = message.msg
    route = msg.route
    if not route:
        raise CodecError("protos.Request without a route")
    kind = message.type
    if kind != _SYS and kind != _USER:
        raise CodecError(f"unknown RPC type {kind}")
    raw = message.metadata
    metadata, extras, propagated = _metadata(raw) if raw else _NO_METADATA
    session = None
    if message.HasField("session"):
        session = _decode_session(message.session, message.frontendID, metadata, extras)
    return RpcRequest(
        SYS if kind == _SYS else USER,
        route,
        msg.data,
        session,
        msg.type == _NOTIFY,
        metadata,
        msg.id,
        propagated,
    )


_Extras = tuple[str, "dict[str, Any] | None", bool] | str | None
"""What a request's metadata says of its session, read once per metadata: our ``py.session``
as (frontend type, handshake, omitted); None without it (a Go frontend); the error text when
it is malformed (raised only if the request carries a session)."""

_NO_METADATA: tuple[dict[str, Any], _Extras, Mapping[str, Any]] = ({}, None, EMPTY_PROPAGATED)


def _session_extras_of(metadata: dict[str, Any]) -> _Extras:
    extras = metadata.get(SESSION_KEY)
    if extras is None:
        return None
    if not isinstance(extras, dict):
        return f"metadata {SESSION_KEY} must be an object"
    frontend_type = extras.get("ftype")
    handshake = extras.get("hs")
    if not isinstance(frontend_type, str):
        return f"metadata {SESSION_KEY}.ftype must be a string"
    if handshake is not None and not isinstance(handshake, dict):
        return f"metadata {SESSION_KEY}.hs must be an object"
    return (frontend_type, handshake, "hs" not in extras)


def _decode_session(
    wire: Any, frontend_id: str, metadata: dict[str, Any], extras: _Extras
) -> SessionSnapshot:
    if type(extras) is tuple:
        frontend_type, handshake, omitted = extras
    elif extras is None:
        same = metadata.get(PEER_ID_KEY) == frontend_id
        peer_type = metadata.get(PEER_SERVICE_KEY)
        frontend_type = peer_type if same and isinstance(peer_type, str) else ""
        handshake, omitted = None, False
    else:
        raise CodecError(str(extras))
    data = wire.data
    return SessionSnapshot(
        wire.id,
        frontend_id,
        frontend_type,
        wire.uid or None,
        _session_data(data) if data and data != _EMPTY_OBJECT else {},
        handshake,
        extras is not None,
        omitted,
    )


# -- JSON, with the C coders called directly (this is per forwarded message) -------------------


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_JSON = WireJson(_not_json, refuse_constant, finite_float)
"""Session data and metadata come from peers: what a client body may not hold (NaN, a number
too large for a float), they may not either; an answer holding one could not be written."""
_json_text = _JSON.dumps
_json_value = _JSON.loads


@lru_cache(maxsize=256)
def _metadata_head(sender_id: str, sender_type: str, timeout: float, incarnation: str) -> str:
    """The JSON text of Go's metadata keys (and the sender's incarnation, to one of ours),
    without the closing brace."""
    head: dict[str, Any] = {
        PEER_ID_KEY: sender_id,
        PEER_SERVICE_KEY: sender_type,
        TIMEOUT_KEY: go_duration(timeout),
    }
    if incarnation:
        head[SENDER_INCARNATION_KEY] = incarnation
    return _json_text(head)[:-1]


_EXTRAS_CACHE: dict[int, tuple[Any, str, str]] = {}
_EXTRAS_CACHE_SIZE = 4096


def _session_extras(session: SessionSnapshot) -> str:
    """The JSON text of ``py.session`` for ``session``, kept per handshake object (a
    session's handshake does not change, and its snapshot reuses the object)."""
    handshake = session.handshake
    if handshake is None:
        return _extras_text(session.frontend_type, None)
    cached = _EXTRAS_CACHE.get(id(handshake))
    if cached is not None and cached[0] is handshake and cached[1] == session.frontend_type:
        return cached[2]
    text = _extras_text(session.frontend_type, handshake)
    if len(_EXTRAS_CACHE) >= _EXTRAS_CACHE_SIZE:
        _EXTRAS_CACHE.clear()
    _EXTRAS_CACHE[id(handshake)] = (handshake, session.frontend_type, text)
    return text


def _extras_text(frontend_type: str, handshake: dict[str, Any] | None) -> str:
    return _json_text({"ftype": frontend_type, "hs": handshake})


@lru_cache(maxsize=64)
def _omitted_text(frontend_type: str) -> str:
    """``py.session`` without ``"hs"``: the handshake was omitted."""
    return _json_text({"ftype": frontend_type})


def without_handshake(session: SessionSnapshot) -> SessionSnapshot:
    """``session`` sent without its handshake (the receiver has it, or fetches it); the same
    snapshot when there is no handshake to leave out."""
    if session.handshake is None or not session.extras:
        return session
    # Built directly: dataclasses.replace costs several times more, once per forward.
    return SessionSnapshot(
        session.id,
        session.frontend_id,
        session.frontend_type,
        session.uid,
        session.data,
        None,
        True,
        True,
    )


def with_handshake(session: SessionSnapshot, handshake: dict[str, Any] | None) -> SessionSnapshot:
    """``session`` with the ``handshake`` the receiver kept or fetched for it (no longer
    omitted)."""
    return SessionSnapshot(
        session.id,
        session.frontend_id,
        session.frontend_type,
        session.uid,
        session.data,
        handshake,
        session.extras,
        False,
    )


_METADATA: dict[bytes, tuple[dict[str, Any], _Extras, Mapping[str, Any]]] = {}
_METADATA_SIZE = 1024
_SMALL_METADATA = 1024
"""Metadata up to this size is decoded once for the same bytes (the peer, the timeout, the
session's frontend type: a few hundred bytes, repeated by every request of a session);
larger metadata (a session's first message, with its handshake) is decoded each time. A
cache of any size let a peer pin 1,024 decodes of a megabyte each: 22 GB."""


def _metadata(raw: bytes) -> tuple[dict[str, Any], _Extras, Mapping[str, Any]]:
    """The metadata object of ``raw``, what it says of the session and the values it
    propagates, read once for the same small bytes: one session's requests repeat theirs.
    The dicts are shared: read only."""
    cached = _METADATA.get(raw)
    if cached is None:
        metadata = _json_object(raw, "metadata")
        cached = (metadata, _session_extras_of(metadata), propagated_of(metadata))
        if len(raw) <= _SMALL_METADATA:
            if len(_METADATA) >= _METADATA_SIZE:
                _METADATA.clear()
            _METADATA[raw] = cached
    return cached


_SESSION_DATA: dict[bytes, dict[str, Any]] = {}
_SESSION_DATA_SIZE = 1024
_SMALL_SESSION_DATA = 256
"""Session data up to this size is decoded once for the same bytes (most sessions carry
``{}`` or a few keys that rarely change); larger data is decoded each time."""


def _session_data(raw: bytes) -> dict[str, Any]:
    """The session data object of ``raw``. Small ones are decoded once for the same bytes and
    shared: read only (:class:`~actors.cluster.backend_session.BackendSession` copies it)."""
    if len(raw) > _SMALL_SESSION_DATA:
        return _json_object(raw, "session data")
    data = _SESSION_DATA.get(raw)
    if data is None:
        data = _json_object(raw, "session data")
        if len(_SESSION_DATA) >= _SESSION_DATA_SIZE:
            _SESSION_DATA.clear()
        _SESSION_DATA[raw] = data
    return data


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        container_limit(data, DEFAULT_MAX_CONTAINERS)  # as a client body's (amplification)
        value = _json_value(data.decode())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CodecError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CodecError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


# -- durations (Go's time.Duration strings) -----------------------------------------------------

go_duration = goduration.short
"""``seconds`` as Go reads it back (``transport.goduration.short``): a request's timeout."""


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string (``"5s"``, ``"1m30s"``, ``"250ms"``); CodecError
    otherwise."""
    value = goduration.seconds(text)
    if value is None:
        raise CodecError(f"not a Go duration: {text!r}")
    return value


# -- answers ----------------------------------------------------------------------------------

ACK: bytes = pb.Response(data=b"ack").SerializeToString()
"""The answer to a notify (Go answers forwarded notifies, and its pushes by uid, "ack")."""

CONTROL_ACK: bytes = pb.Response(data=ACK).SerializeToString()
"""The answer of ``sys.bindsession``/``sys.pushsession``: Go's Sys remote returns a
``Response{data: "ack"}``, which its user RPC path marshals into the data of the answer."""


encode_answer = protowire.encode_data_answer
"""A successful ``protos.Response`` carrying ``data`` (protowire's own function: every
answer is made with it)."""


def encode_error(error: BaseException) -> bytes:
    """An error ``protos.Response``: ``error`` as Pitaya's code, message and metadata."""
    pitaya = as_pitaya_error(error)
    message = pb.Response()
    message.error.code = pitaya.code
    message.error.msg = pitaya.msg
    for key, value in pitaya.metadata.items():
        message.error.metadata[str(key)] = str(value)
    return message.SerializeToString()  # type: ignore[no-any-return]


def encode_kick_answer(kicked: bool = True) -> bytes:
    """The answer of ``sys.kick``: a Response whose data is a ``KickAnswer`` (Go's)."""
    return encode_answer(pb.KickAnswer(kicked=kicked).SerializeToString())


def _response(data: bytes) -> Any:
    try:
        return pb.Response.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InternalError(f"malformed RPC response: {exc}") from exc


def read_answer(data: bytes) -> bytes:
    """The payload of an answer; its error raised as a PitayaError (an error without a code
    is Go's ``PIT-000``; InternalError when the bytes are not a Response)."""
    payload = protowire.data_of_answer(data)
    if payload is not None:  # only data: nearly every answer
        return payload
    response = _response(data)
    if response.HasField("error"):
        error = response.error
        raise PitayaError(error.code or "PIT-000", error.msg, dict(error.metadata))
    return response.data  # type: ignore[no-any-return]


def is_refusal(data: bytes) -> bool | None:
    """Of an answer to a push or kick by uid: True when it is an error (the frontend no
    longer holds the uid), False when it acknowledged, None when it is not an answer."""
    try:
        return _response(data).HasField("error")  # type: ignore[no-any-return]
    except InternalError:
        return None


def kick_answer_of(answer: bytes) -> bytes:
    """gRPC ``KickUser`` returns a bare ``KickAnswer``: the one of a successful answer
    (raises the PitayaError of an error answer)."""
    read_answer(answer)
    return pb.KickAnswer(kicked=True).SerializeToString()  # type: ignore[no-any-return]


def read_kick_answer(data: bytes) -> bool:
    """``kicked`` of a bare ``KickAnswer`` (gRPC ``KickUser``)."""
    try:
        return pb.KickAnswer.FromString(data).kicked  # type: ignore[no-any-return]
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InternalError(f"malformed KickAnswer: {exc}") from exc


# -- push, kick, bind by uid ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserPush:
    """A ``protos.Push``: ``data`` (serialized) on ``route`` to the client of ``uid``."""

    uid: str
    route: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UserKick:
    """A ``protos.KickMsg``: kick the client of ``uid``, telling it ``reason``."""

    uid: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BindNotice:
    """A ``protos.BindMsg``: ``uid`` was bound on the frontend ``frontend_id``."""

    uid: str
    frontend_id: str


def encode_push(push: UserPush) -> bytes:
    return pb.Push(route=push.route, uid=push.uid, data=push.data).SerializeToString()  # type: ignore[no-any-return]


def decode_push(data: bytes, *, uid_required: bool = True) -> UserPush:
    """A ``protos.Push``; its uid may be empty only when not ``uid_required`` (a push to an
    unbound session, ``pysys.push``)."""
    message = _parse(pb.Push, data)
    if not message.route or (uid_required and not message.uid):
        raise CodecError("protos.Push needs a uid and a route")
    # A route no client message can carry (one length byte) must be refused here: found
    # later, while framing the push, it raised out of the bridge (a traceback per message,
    # and an acknowledged push never answered).
    if len(message.route.encode("utf-8", "surrogatepass")) > MAX_ROUTE_LENGTH:
        raise CodecError(f"protos.Push route is longer than {MAX_ROUTE_LENGTH} bytes")
    return UserPush(message.uid, message.route, message.data)


KICK_REASON_FIELD = 2
"""The field of a ``protos.KickMsg`` that carries the kick's reason between our servers. Go's
message has only ``userId`` (1): a Go server skips this one as an unknown field, and a Go
server's kick has none (the reason is empty)."""
_KICK_REASON_TAG = protowire.varint(KICK_REASON_FIELD << 3 | 2)  # length-delimited


def encode_kick(kick: UserKick) -> bytes:
    message: bytes = pb.KickMsg(userId=kick.uid).SerializeToString()
    if not kick.reason:
        return message
    reason = kick.reason.encode("utf-8", "backslashreplace")
    return message + _KICK_REASON_TAG + protowire.varint(len(reason)) + reason


def decode_kick(data: bytes) -> UserKick:
    message = _parse(pb.KickMsg, data)
    if not message.userId:
        raise CodecError("protos.KickMsg needs a userId")
    reason = ""
    for extra in UnknownFieldSet(message):
        if extra.field_number == KICK_REASON_FIELD and isinstance(extra.data, bytes):
            reason = extra.data.decode("utf-8", "replace")
    return UserKick(message.userId, reason)


def encode_bind(notice: BindNotice) -> bytes:
    return pb.BindMsg(uid=notice.uid, fid=notice.frontend_id).SerializeToString()  # type: ignore[no-any-return]


def decode_bind(data: bytes) -> BindNotice:
    message = _parse(pb.BindMsg, data)
    if not message.uid or not message.fid:
        raise CodecError("protos.BindMsg needs a uid and a fid")
    return BindNotice(message.uid, message.fid)


def _parse(cls: Any, data: bytes) -> Any:
    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise CodecError(f"not a protos.{cls.__name__}: {exc}") from exc


# -- control bodies (``actors.cluster.control``) ------------------------------------------------


def encode_session_body(sid: int, uid: str | None, data: dict[str, Any] | None) -> bytes:
    """The ``protos.Session`` argument of ``sys.bindsession`` (no data) and
    ``sys.pushsession``; CodecError when ``data`` is not a JSON object."""
    message = pb.Session(id=sid, uid=uid or "")
    if data is not None:
        try:
            message.data = _json_text(data).encode()
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise CodecError(f"session data is not a JSON object: {exc}") from exc
    return message.SerializeToString()  # type: ignore[no-any-return]


def decode_session_body(body: bytes) -> tuple[int, str | None, dict[str, Any] | None]:
    """``(id, uid, data)`` of a ``protos.Session`` argument; data None when absent."""
    message = _parse(pb.Session, body)
    data = _json_object(message.data, "session data") if message.data else None
    return message.id, message.uid or None, data


def encode_json_body(value: dict[str, Any]) -> bytes:
    """The body of one of our extra routes that is no Pitaya message (a session event)."""
    return _json_text(value).encode()


def decode_json_body(body: bytes) -> dict[str, Any]:
    return _json_object(body, "body")


def encode_text_body(text: str) -> bytes:
    return text.encode()


def decode_text_body(body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError as exc:
        raise CodecError(f"body is not UTF-8: {exc}") from exc


def has_extras(metadata: Mapping[str, str]) -> bool:
    """A server's discovery ``metadata`` says it is one of ours (takes the extras)."""
    return metadata.get(EXTRAS_KEY) == EXTRAS_VERSION


# -- user RPC arguments -------------------------------------------------------------------------

RPC_SERIALIZER = MsgpackSerializer()
"""User RPC arguments and results between our servers when the argument is no protobuf
message (marked ``py.args: msgpack``): any msgpack value."""


class ProtobufRpcSerializer:
    """User RPC arguments and results as Pitaya's: protobuf messages only (a Go caller, or
    ours calling with a protobuf message or bytes). Anything else is refused with a message
    that says what to declare."""

    name = "protobuf"

    def marshal(self, value: Any) -> bytes:
        if isinstance(value, ProtoMessage):
            return value.SerializeToString()  # type: ignore[no-any-return]
        if value is None:
            return b""
        raise SerializationError(
            f"this RPC's caller reads protobuf (Pitaya's remotes): return a protobuf message "
            f"or bytes, not {type(value).__name__}"
        )

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        if into is not None and is_message_class(into):
            try:
                return into.FromString(data)
            except (DecodeError, RuntimeError, ValueError) as exc:
                raise SerializationError(f"not a {into.__name__}: {exc}") from exc
        if not data:
            return None
        raise SerializationError(
            "the caller sent a protobuf argument (Pitaya's remotes): declare the remote's "
            "parameter as a protobuf message class or bytes"
        )


PROTOBUF_RPC_SERIALIZER = ProtobufRpcSerializer()


def rpc_serializer(request: RpcRequest) -> Any:
    """The serializer of a user RPC's argument and answer: msgpack when the caller marked it
    (one of ours), else Pitaya's protobuf."""
    if request.metadata.get(ARGS_KEY) == MSGPACK_ARGS:
        return RPC_SERIALIZER
    return PROTOBUF_RPC_SERIALIZER


# -- sessions ---------------------------------------------------------------------------------


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


def snapshot(
    session: SessionFields, frontend_id: str, frontend_type: str, omit_handshake: bool = False
) -> SessionSnapshot:
    """What travels of ``session``; a backend session keeps its own frontend's id, type and
    ``extras``, a frontend's session takes ``frontend_id``/``frontend_type`` (this server).
    ``omit_handshake``: as :func:`without_handshake` (built once: this is per forward)."""
    handshake = session.handshake
    extras = getattr(session, "frontend_extras", True)
    omitted = omit_handshake and handshake is not None and extras
    return SessionSnapshot(
        session.id,
        getattr(session, "frontend_id", frontend_id),
        getattr(session, "frontend_type", frontend_type),
        session.uid,
        session.data,
        None if omitted or handshake is None else _handshake_value(handshake),
        extras,
        omitted,
    )


_HANDSHAKES: dict[int, tuple[Any, dict[str, Any]]] = {}


def _handshake_value(handshake: HandshakeRequest) -> dict[str, Any]:
    """``{"sys", "user"}`` of ``handshake``, the same dict for the same handshake (so its
    JSON text is cached too, see :func:`_session_extras`)."""
    cached = _HANDSHAKES.get(id(handshake))
    if cached is not None and cached[0] is handshake:
        return cached[1]
    value = {"sys": handshake.sys, "user": handshake.user}
    if len(_HANDSHAKES) >= _EXTRAS_CACHE_SIZE:
        _HANDSHAKES.clear()
    _HANDSHAKES[id(handshake)] = (handshake, value)
    return value


__all__ = [
    "ACK",
    "ARGS_KEY",
    "CONTROL_ACK",
    "EXTRAS_KEY",
    "EXTRAS_VERSION",
    "MSGPACK_ARGS",
    "PIPELINED_KEY",
    "PROTOBUF_RPC_SERIALIZER",
    "RPC_SERIALIZER",
    "SESSION_KEY",
    "SPAN_KEY",
    "SYS",
    "USER",
    "BindNotice",
    "CodecError",
    "ProtobufRpcSerializer",
    "RpcRequest",
    "SessionFields",
    "SessionSnapshot",
    "UserKick",
    "UserPush",
    "decode_bind",
    "decode_json_body",
    "decode_kick",
    "decode_push",
    "decode_request",
    "decode_session_body",
    "decode_text_body",
    "encode_answer",
    "encode_bind",
    "encode_error",
    "encode_json_body",
    "encode_kick",
    "encode_kick_answer",
    "encode_push",
    "encode_request",
    "encode_session_body",
    "encode_text_body",
    "go_duration",
    "has_extras",
    "is_refusal",
    "kick_answer_of",
    "parse_go_duration",
    "read_answer",
    "read_kick_answer",
    "rpc_serializer",
    "snapshot",
    "with_handshake",
    "without_handshake",
]

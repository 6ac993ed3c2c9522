"""The cluster codec: Go Pitaya's protobuf messages, as Go builds and reads them.

Round trips (hypothesis), bytes built by hand from the ``protos`` classes as a Go server sends
them, the metadata's JSON shape, session data as a JSON object, answers, and garbage: every
malformed input is a :class:`CodecError` (or, for answers, an ``InternalError``), never
anything else.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.cluster import codec
from actors.cluster.codec import (
    ACK,
    CONTROL_ACK,
    EXTRAS_KEY,
    PROTOBUF_RPC_SERIALIZER,
    RPC_SERIALIZER,
    SENDER_INCARNATION_KEY,
    SESSION_KEY,
    SYS,
    USER,
    BindNotice,
    CodecError,
    RpcRequest,
    SessionSnapshot,
    UserKick,
    UserPush,
    decode_bind,
    decode_json_body,
    decode_kick,
    decode_push,
    decode_request,
    decode_session_body,
    decode_text_body,
    encode_answer,
    encode_bind,
    encode_error,
    encode_json_body,
    encode_kick,
    encode_kick_answer,
    encode_push,
    encode_request,
    encode_session_body,
    encode_text_body,
    go_duration,
    has_extras,
    is_refusal,
    kick_answer_of,
    parse_go_duration,
    read_answer,
    read_kick_answer,
    rpc_serializer,
    snapshot,
    with_handshake,
    without_handshake,
)
from actors.errors import InternalError, PitayaError, RouteNotFound, UserNotHere
from transport.errors import ProtocolError, SerializationError
from transport.handshake import HandshakeRequest
from transport.protos import pitaya_pb2 as pb

text = st.text(max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
snapshots = st.builds(
    SessionSnapshot,
    id=st.integers(0, 2**63 - 1),
    frontend_id=text.filter(bool),
    frontend_type=text,
    uid=st.none() | text.filter(bool),
    data=st.dictionaries(text, json_values, max_size=4),
    handshake=st.none() | st.fixed_dictionaries({"sys": st.dictionaries(text, json_values)}),
    extras=st.just(True),
)
requests = st.builds(
    RpcRequest,
    kind=st.sampled_from([SYS, USER]),
    route=text.filter(bool),
    data=st.binary(max_size=64),
    session=st.none() | snapshots,
    notify=st.booleans(),
    metadata=st.dictionaries(st.sampled_from(["otel-span", "py.args", "x"]), json_values),
    mid=st.integers(0, 2**64 - 1),
)


@given(requests)
def test_every_request_round_trips(request: RpcRequest) -> None:
    decoded = decode_request(encode_request(request, "connector-1", "connector", 5.0))
    metadata = {
        "peer.id": "connector-1",
        "peer.service": "connector",
        "reqTimeout": "5s",
        **request.metadata,
    }
    if request.session is not None:
        s = request.session
        metadata[SESSION_KEY] = {"ftype": s.frontend_type, "hs": s.handshake}
    assert decoded == RpcRequest(
        request.kind,
        request.route,
        request.data,
        request.session,
        request.notify,
        metadata,
        request.mid,
    )
    # What the sender propagates: its metadata but Go's per-hop keys and ours.
    expected = {k: v for k, v in request.metadata.items() if k != "py.args"}
    assert dict(decoded.propagated or {}) == expected


def test_a_forwarded_request_is_the_protos_request_go_reads() -> None:
    session = SessionSnapshot(
        7, "connector-1", "connector", "ann", {"room": "a"}, {"sys": {"platform": "web"}}
    )
    request = RpcRequest(SYS, "room.room.join", b'{"n":1}', session, notify=True, mid=3)
    request.metadata["otel-span"] = {"traceparent": "00-abc-def-01"}
    message = pb.Request.FromString(encode_request(request, "connector-1", "connector", 2.5))
    assert message.type == pb.Sys
    assert (message.msg.id, message.msg.route, message.msg.data) == (
        3,
        "room.room.join",
        b'{"n":1}',
    )
    assert message.msg.type == pb.MsgNotify
    assert message.frontendID == "connector-1"
    assert (message.session.id, message.session.uid) == (7, "ann")
    assert json.loads(message.session.data) == {"room": "a"}
    assert json.loads(message.metadata) == {
        "peer.id": "connector-1",
        "peer.service": "connector",
        "reqTimeout": "2500ms",
        "otel-span": {"traceparent": "00-abc-def-01"},
        SESSION_KEY: {"ftype": "connector", "hs": {"sys": {"platform": "web"}}},
    }


def test_a_user_rpc_without_session_has_no_session_and_non_empty_metadata() -> None:
    message = pb.Request.FromString(
        encode_request(RpcRequest(USER, "room.r.count", b""), "room-1", "room", 5)
    )
    assert message.type == pb.User and message.msg.type == pb.MsgRequest
    assert not message.HasField("session") and message.frontendID == ""
    # An empty metadata makes a Go server answer PIT-500: ours always carries the peer.
    assert json.loads(message.metadata) == {
        "peer.id": "room-1",
        "peer.service": "room",
        "reqTimeout": "5s",
    }


def test_a_request_built_as_a_go_frontend_builds_it_decodes() -> None:
    go = pb.Request(
        type=pb.Sys,
        session=pb.Session(id=42, uid="", data=b'{"level":3}'),
        msg=pb.Msg(id=9, route="room.room.join", data=b"{}", type=pb.MsgRequest),
        frontendID="go-connector-1",
        metadata=json.dumps(
            {"peer.id": "go-connector-1", "peer.service": "connector", "reqTimeout": "5s"}
        ).encode(),
    ).SerializeToString()
    request = decode_request(go)
    assert (request.kind, request.route, request.data, request.notify, request.mid) == (
        SYS,
        "room.room.join",
        b"{}",
        False,
        9,
    )
    assert request.session == SessionSnapshot(
        42, "go-connector-1", "connector", None, {"level": 3}, None, extras=False
    )


def test_a_go_session_relayed_by_another_server_has_no_known_frontend_type() -> None:
    go = pb.Request(
        type=pb.Sys,
        session=pb.Session(id=1),
        msg=pb.Msg(route="room.room.join"),
        frontendID="connector-1",
        metadata=b'{"peer.id":"gate-1","peer.service":"gate"}',
    ).SerializeToString()
    session = decode_request(go).session
    assert session is not None
    assert (session.frontend_type, session.data, session.extras) == ("", {}, False)


def test_session_data_that_json_cannot_carry_is_a_codec_error() -> None:
    session = SessionSnapshot(1, "f", "t", data={"when": object()})
    with pytest.raises(
        CodecError, match=r"^cannot encode the request for r: object is not JSON serializable$"
    ):
        encode_request(RpcRequest(SYS, "r", b"", session), "f", "t", 5)
    with pytest.raises(
        CodecError, match=r"^session data is not a JSON object: bytes is not JSON serializable$"
    ):
        encode_session_body(1, "ann", {"raw": b"bytes"})


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (pb.Request(), "protos.Request without msg"),
        (pb.Request(msg=pb.Msg()), "protos.Request without a route"),
        (pb.Request(type=7, msg=pb.Msg(route="r")), "unknown RPC type 7"),  # type: ignore[arg-type]
        (pb.Request(msg=pb.Msg(route="r"), metadata=b"{not json"), "metadata is not JSON"),
        (
            pb.Request(msg=pb.Msg(route="r"), metadata=b"[1]"),
            "metadata must be a JSON object, got list",
        ),
        (
            pb.Request(msg=pb.Msg(route="r"), session=pb.Session(id=1, data=b'"x"')),
            "session data must be a JSON object, got str",
        ),
        (
            pb.Request(
                msg=pb.Msg(route="r"), session=pb.Session(id=1), metadata=b'{"py.session":3}'
            ),
            "metadata py.session must be an object",
        ),
        (
            pb.Request(
                msg=pb.Msg(route="r"),
                session=pb.Session(id=1),
                metadata=b'{"py.session":{"ftype":1}}',
            ),
            "metadata py.session.ftype must be a string",
        ),
        (
            pb.Request(msg=pb.Msg(route="r"), session=pb.Session(id=1, data=b'{"x":NaN}')),
            "session data is not JSON: NaN is not a JSON value",
        ),
        (
            pb.Request(msg=pb.Msg(route="r"), session=pb.Session(id=1, data=b'{"x":1e999}')),
            "session data is not JSON: number 1e999 is too large for a float",
        ),
        (
            pb.Request(msg=pb.Msg(route="r"), metadata=b'{"k":' + b"[" * 300_000 + b"]}"),
            "metadata is not JSON: body may hold 300001 arrays and objects; the limit is 100000",
        ),
    ],
)
def test_malformed_requests_say_what_is_wrong(message: Any, error: str) -> None:
    with pytest.raises(CodecError, match="^" + re.escape(error)):
        decode_request(message.SerializeToString())


def test_bytes_that_are_no_request_say_so() -> None:
    with pytest.raises(CodecError, match=r"^not a protos\.Request: "):
        decode_request(b"\xff\xff")


def test_only_small_metadata_is_kept_decoded() -> None:
    """A session's requests repeat their small metadata (decoded once); a large one, a
    session's first message with its handshake, is decoded each time: kept, a peer's
    megabyte of metadata per message piled up to gigabytes."""
    codec._METADATA.clear()
    small = pb.Request(msg=pb.Msg(route="r"), metadata=b'{"peer.id":"c-1"}')
    large = pb.Request(msg=pb.Msg(route="r"), metadata=b'{"k":"' + b"x" * 2000 + b'"}')
    first = decode_request(small.SerializeToString())
    assert decode_request(small.SerializeToString()).metadata is first.metadata
    assert len(codec._METADATA) == 1
    decode_request(large.SerializeToString())
    assert len(codec._METADATA) == 1


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)


@given(texts.filter(bool), texts)
def test_a_kick_by_uid_carries_its_reason_and_go_reads_its_uid(uid: str, reason: str) -> None:
    """A kick by uid from another server lost its reason (Go's KickMsg has none): the
    kicked player was not told why. It rides in a field Go's message has not."""
    encoded = encode_kick(UserKick(uid, reason))
    assert decode_kick(encoded) == UserKick(uid, reason)
    assert pb.KickMsg.FromString(encoded).userId == uid  # what a Go server reads
    assert decode_kick(pb.KickMsg(userId=uid).SerializeToString()) == UserKick(uid, "")


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    for decode in (decode_request, decode_push, decode_kick, decode_bind, decode_session_body):
        with contextlib.suppress(CodecError):
            decode(data)


@given(requests, st.data())
def test_a_truncated_request_decodes_or_raises_codec_error(
    request: RpcRequest, data: st.DataObject
) -> None:
    encoded = encode_request(request, "a", "b", 1)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with contextlib.suppress(CodecError):
        decode_request(encoded[:cut])


def test_codec_error_is_a_protocol_error() -> None:
    assert issubclass(CodecError, ProtocolError)


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"), [(5.0, "5s"), (2, "2s"), (0.25, "250ms"), (1.5, "1500ms"), (120, "120s")]
)
def test_timeouts_are_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
    assert parse_go_duration(text) == pytest.approx(seconds)


def test_go_durations_parse_as_go_writes_them() -> None:
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("1h0m0.5s") == pytest.approx(3600.5)
    assert parse_go_duration("300µs") == pytest.approx(0.0003)
    assert parse_go_duration("0") == 0
    for bad in ("", "5", "s", "5 s", "5x", "1m30"):
        with pytest.raises(CodecError, match="not a Go duration"):
            parse_go_duration(bad)


# -- answers ----------------------------------------------------------------------------------


def test_an_answer_reads_back_as_its_payload() -> None:
    assert read_answer(encode_answer(b"payload")) == b"payload"
    assert pb.Response.FromString(encode_answer(b"payload")).data == b"payload"
    assert read_answer(encode_answer(b"")) == b""


def test_the_acks_are_gos() -> None:
    assert pb.Response.FromString(ACK).data == b"ack"  # forwarded notifies, pushes by uid
    inner = pb.Response.FromString(pb.Response.FromString(CONTROL_ACK).data)  # sys.bindsession
    assert inner.data == b"ack"
    kick = pb.KickAnswer.FromString(read_answer(encode_kick_answer()))  # sys.kick
    assert kick.kicked is True
    assert read_kick_answer(kick_answer_of(ACK)) is True  # gRPC KickUser


def test_an_error_answer_is_raised_with_its_pitaya_code() -> None:
    answer = encode_error(RouteNotFound("room.room.nope"))
    error = pb.Response.FromString(answer).error
    assert (error.code, error.msg, dict(error.metadata)) == (
        "PIT-404",
        "pitaya/handler: room.room.nope not found",
        {"route": "room.room.nope"},
    )
    with pytest.raises(PitayaError) as info:
        read_answer(answer)
    assert (info.value.code, info.value.metadata) == ("PIT-404", {"route": "room.room.nope"})
    with pytest.raises(PitayaError) as info:
        read_answer(encode_error(ValueError("boom")))  # any exception becomes Pitaya's body
    assert info.value.code.startswith("PIT-")
    with pytest.raises(PitayaError) as info:
        kick_answer_of(answer)
    assert info.value.code == "PIT-404"


def test_a_go_error_without_code_is_pit_000() -> None:
    go = pb.Response(error=pb.Error(msg="session not found")).SerializeToString()
    with pytest.raises(PitayaError) as info:
        read_answer(go)
    assert (info.value.code, info.value.msg) == ("PIT-000", "session not found")


def test_bytes_that_are_no_answer_raise_an_internal_error() -> None:
    with pytest.raises(InternalError, match="malformed RPC response"):
        read_answer(b"\xff\xff\xff")
    with pytest.raises(InternalError, match="malformed KickAnswer"):
        read_kick_answer(b"\xff\xff")


def test_a_refusal_is_an_error_answer() -> None:
    assert is_refusal(encode_error(UserNotHere("ann"))) is True
    assert is_refusal(ACK) is False
    assert is_refusal(b"\xff\xff") is None


# -- push, kick, bind, session bodies ---------------------------------------------------------


@given(text.filter(bool), text.filter(bool), st.binary(max_size=32))
def test_pushes_round_trip_as_protos_push(uid: str, route: str, data: bytes) -> None:
    encoded = encode_push(UserPush(uid, route, data))
    assert pb.Push.FromString(encoded) == pb.Push(route=route, uid=uid, data=data)
    assert decode_push(encoded) == UserPush(uid, route, data)


def test_kicks_and_binds_are_gos_messages() -> None:
    assert pb.KickMsg.FromString(encode_kick(UserKick("ann"))).userId == "ann"
    assert decode_kick(pb.KickMsg(userId="ann").SerializeToString()) == UserKick("ann")
    bind = pb.BindMsg(uid="ann", fid="connector-1").SerializeToString()
    assert encode_bind(BindNotice("ann", "connector-1")) == bind
    assert decode_bind(bind) == BindNotice("ann", "connector-1")


def test_empty_push_kick_and_bind_are_refused() -> None:
    with pytest.raises(CodecError, match=r"^protos\.Push needs a uid and a route$"):
        decode_push(pb.Push(route="r").SerializeToString())
    assert decode_push(pb.Push(route="r").SerializeToString(), uid_required=False).route == "r"
    with pytest.raises(CodecError, match=r"^protos\.KickMsg needs a userId$"):
        decode_kick(b"")
    with pytest.raises(CodecError, match=r"^protos\.BindMsg needs a uid and a fid$"):
        decode_bind(pb.BindMsg(uid="ann").SerializeToString())


@pytest.mark.parametrize(
    ("decode", "name"),
    [
        (decode_push, "Push"),
        (decode_kick, "KickMsg"),
        (decode_bind, "BindMsg"),
        (decode_session_body, "Session"),
    ],
)
def test_bytes_that_are_no_push_kick_bind_or_session_name_the_message(
    decode: Any, name: str
) -> None:
    with pytest.raises(CodecError, match=rf"^not a protos\.{name}: "):
        decode(b"\xff\xff")


def test_session_bodies_are_protos_session_with_json_data() -> None:
    body = encode_session_body(7, "ann", {"level": 3})
    message = pb.Session.FromString(body)
    assert (message.id, message.uid, json.loads(message.data)) == (7, "ann", {"level": 3})
    assert decode_session_body(body) == (7, "ann", {"level": 3})
    assert decode_session_body(encode_session_body(7, "ann", None)) == (7, "ann", None)
    unbound = encode_session_body(7, None, None)  # no uid: Go's empty string
    assert pb.Session.FromString(unbound) == pb.Session(id=7)
    assert decode_session_body(unbound) == (7, None, None)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"{", "session data is not JSON: "),
        (b"[1]", "session data must be a JSON object, got list"),
    ],
)
def test_a_session_body_whose_data_is_no_json_object_says_so(data: bytes, error: str) -> None:
    with pytest.raises(CodecError, match="^" + re.escape(error)):
        decode_session_body(pb.Session(id=7, data=data).SerializeToString())


def test_json_and_text_bodies_round_trip_and_name_what_is_wrong() -> None:
    assert decode_json_body(encode_json_body({"uid": "ann", "n": 1})) == {"uid": "ann", "n": 1}
    with pytest.raises(CodecError, match=r"^body is not JSON: "):
        decode_json_body(b"{")
    with pytest.raises(CodecError, match=r"^body must be a JSON object, got int$"):
        decode_json_body(b"3")
    assert decode_text_body(encode_text_body("bye \u00e9")) == "bye \u00e9"
    with pytest.raises(CodecError, match=r"^body is not UTF-8: "):
        decode_text_body(b"\xff")


# -- user RPC serializers and discovery -------------------------------------------------------


def test_user_rpc_arguments_are_protobuf_unless_marked_msgpack() -> None:
    assert rpc_serializer(RpcRequest(USER, "r", b"")) is PROTOBUF_RPC_SERIALIZER
    marked = RpcRequest(USER, "r", b"", metadata={"py.args": "msgpack"})
    assert rpc_serializer(marked) is RPC_SERIALIZER
    push = pb.Push(route="r", uid="u")
    assert PROTOBUF_RPC_SERIALIZER.marshal(push) == push.SerializeToString()
    assert PROTOBUF_RPC_SERIALIZER.unmarshal(push.SerializeToString(), pb.Push) == push
    assert PROTOBUF_RPC_SERIALIZER.unmarshal(b"") is None
    assert PROTOBUF_RPC_SERIALIZER.marshal(None) == b""  # a remote returning nothing
    declare = re.escape(
        "the caller sent a protobuf argument (Pitaya's remotes): declare the remote's "
        "parameter as a protobuf message class or bytes"
    )
    with pytest.raises(SerializationError, match=f"^{declare}$"):
        PROTOBUF_RPC_SERIALIZER.unmarshal(b"\x0a\x01r")
    # A parameter of a class that is no protobuf message is no message to parse into.
    assert PROTOBUF_RPC_SERIALIZER.unmarshal(b"", dict) is None
    with pytest.raises(SerializationError, match=f"^{declare}$"):
        PROTOBUF_RPC_SERIALIZER.unmarshal(b"\x0a\x01r", dict)
    with pytest.raises(SerializationError, match=r"return a protobuf message or bytes, not dict$"):
        PROTOBUF_RPC_SERIALIZER.marshal({"n": 1})
    with pytest.raises(SerializationError, match="not a Push"):
        PROTOBUF_RPC_SERIALIZER.unmarshal(b"\xff\xff", pb.Push)


def test_our_servers_advertise_the_extras() -> None:
    assert has_extras({EXTRAS_KEY: "1"})
    assert not has_extras({"grpcHost": "h"})


# -- snapshots --------------------------------------------------------------------------------


class FrontendSession:
    def __init__(self) -> None:
        self.id = 7
        self.uid: str | None = "ann"
        self.data = {"level": 3}
        self.handshake: HandshakeRequest | None = HandshakeRequest(
            sys={"platform": "web"}, user={"v": 1}
        )


def test_a_snapshot_takes_this_server_as_the_frontend_of_a_frontend_session() -> None:
    snap = snapshot(FrontendSession(), "connector-1", "connector")
    assert (snap.id, snap.uid, snap.data) == (7, "ann", {"level": 3})
    assert (snap.frontend_id, snap.frontend_type, snap.extras) == (
        "connector-1",
        "connector",
        True,
    )
    assert snap.handshake == {"sys": {"platform": "web"}, "user": {"v": 1}}


def test_a_backend_session_keeps_its_own_frontend() -> None:
    session = FrontendSession()
    session.handshake = None
    session.frontend_id, session.frontend_type = "connector-2", "gate"  # type: ignore[attr-defined]
    session.frontend_extras = False  # type: ignore[attr-defined]
    snap = snapshot(session, "room-1", "room")
    assert (snap.frontend_id, snap.frontend_type, snap.handshake, snap.extras) == (
        "connector-2",
        "gate",
        None,
        False,
    )
    # A session of a Go frontend travels without our key: the next server sees no extras.
    wire = encode_request(RpcRequest(USER, "x.y.z", b"", snap), "room-1", "room", 5)
    assert SESSION_KEY not in json.loads(pb.Request.FromString(wire).metadata)


def test_answers_are_byte_identical_to_go_pitayas() -> None:
    """As recorded from Go Pitaya v3.0.0-beta.6 on NATS (tests/interop/capture.py): a
    forwarded notify's answer, sys.bindsession's and sys.pushsession's, sys.kick's."""
    assert ACK.hex() == "0a0361636b"
    assert CONTROL_ACK.hex() == "0a050a0361636b"
    assert encode_kick_answer().hex() == "0a020801"


def test_a_server_that_is_not_ours_is_sent_no_extras() -> None:
    session = SessionSnapshot(7, "c-1", "connector", "ann", {}, {"sys": {"platform": "web"}})
    request = RpcRequest(USER, "room.r.x", b"", session, metadata={"py.args": "msgpack", "k": 1})
    wire = encode_request(request, "c-1", "connector", 5, extras=False)
    assert json.loads(pb.Request.FromString(wire).metadata) == {
        "peer.id": "c-1",
        "peer.service": "connector",
        "reqTimeout": "5s",
        "k": 1,
    }
    ours = json.loads(pb.Request.FromString(encode_request(request, "c-1", "c", 5)).metadata)
    assert {SESSION_KEY, "py.args"} <= ours.keys()


def test_only_small_session_data_is_kept_decoded() -> None:
    """Session data up to 256 bytes is decoded once for the same bytes; larger data, each
    time (and, malformed, is still named in the error)."""
    codec._SESSION_DATA.clear()

    def data_of(raw: bytes) -> dict[str, Any]:
        wire = pb.Request(msg=pb.Msg(route="r"), session=pb.Session(id=1, data=raw))
        request = decode_request(wire.SerializeToString())
        assert request.session is not None
        return request.session.data

    small = b'{"k":"' + b"x" * 248 + b'"}'
    large = b'{"k":"' + b"x" * 249 + b'"}'
    assert (len(small), len(large)) == (256, 257)
    assert data_of(small) == {"k": "x" * 248}
    assert data_of(small) is data_of(small)
    assert data_of(large) == {"k": "x" * 249}
    assert data_of(large) is not data_of(large)
    assert list(codec._SESSION_DATA) == [small]
    with pytest.raises(CodecError, match=r"^session data is not JSON"):
        data_of(large[:-1] + b" ")  # 257 bytes, unclosed


def test_a_sessions_handshake_is_written_for_its_own_frontend_type_each_time() -> None:
    """The text of ``py.session`` is kept per handshake object: the same object sent again,
    or by a session of another frontend type, reads as it was sent."""
    handshake = {"sys": {"platform": "web"}}

    def extras_of(frontend_type: str) -> Any:
        session = SessionSnapshot(7, "c-1", frontend_type, "ann", {}, handshake)
        wire = encode_request(RpcRequest(USER, "room.r.x", b"", session), "c-1", "c", 5)
        return json.loads(pb.Request.FromString(wire).metadata)[SESSION_KEY]

    for _ in range(2):
        assert extras_of("connector") == {"ftype": "connector", "hs": handshake}
        assert extras_of("gate") == {"ftype": "gate", "hs": handshake}


def test_a_handshake_left_out_and_put_back_keeps_every_other_field() -> None:
    data = {"level": 3}
    handshake = {"sys": {"platform": "web"}, "user": {"v": 1}}
    full = SessionSnapshot(7, "c-1", "connector", "ann", data, handshake)
    omitted = without_handshake(full)
    assert omitted == SessionSnapshot(7, "c-1", "connector", "ann", data, None, True, True)
    assert omitted.data is data  # shared, read only: not copied per forward
    kept = with_handshake(omitted, handshake)
    assert kept == SessionSnapshot(7, "c-1", "connector", "ann", data, handshake, True, False)
    assert kept == full and kept.data is data
    assert with_handshake(omitted, None) == SessionSnapshot(
        7, "c-1", "connector", "ann", data, None, True, False
    )  # fetched, and the session turned out to have none


# -- what is made once per handshake, and the caches' bounds ------------------------------------


def test_a_snapshot_of_the_same_handshake_reuses_its_value_and_text() -> None:
    """A handshake's ``{"sys", "user"}`` is made once per handshake object, and its
    ``py.session`` text once per handshake and frontend type (per forward, they would be
    rebuilt and re-encoded)."""
    session = FrontendSession()
    first = snapshot(session, "connector-1", "connector")
    second = snapshot(session, "connector-1", "connector")
    assert first.handshake is not None and first.handshake is second.handshake
    assert codec._session_extras(first) is codec._session_extras(second)
    assert json.loads(codec._session_extras(first)) == {
        "ftype": "connector",
        "hs": {"sys": {"platform": "web"}, "user": {"v": 1}},
    }
    other = FrontendSession()  # an equal handshake, another object: its own value
    assert snapshot(other, "connector-1", "connector").handshake is not first.handshake


def test_an_entry_left_by_a_dead_handshake_at_the_same_id_is_not_taken() -> None:
    """The caches are keyed by id(); a handshake freed and another allocated at its address
    must not be read as the old one (simulated: an entry for another object at that id)."""
    session = FrontendSession()
    assert session.handshake is not None
    codec._HANDSHAKES[id(session.handshake)] = (object(), {"sys": {"platform": "stale"}})
    snap = snapshot(session, "connector-1", "connector")
    assert snap.handshake == {"sys": {"platform": "web"}, "user": {"v": 1}}
    assert snap.handshake is not None
    codec._EXTRAS_CACHE[id(snap.handshake)] = (object(), "connector", '{"ftype":"stale"}')
    wire = encode_request(RpcRequest(USER, "room.r.x", b"", snap), "connector-1", "connector", 5)
    assert json.loads(pb.Request.FromString(wire).metadata)[SESSION_KEY] == {
        "ftype": "connector",
        "hs": snap.handshake,
    }


def test_the_handshake_caches_hold_at_most_their_size() -> None:
    codec._HANDSHAKES.clear()
    codec._EXTRAS_CACHE.clear()
    sessions = []
    for _ in range(codec._EXTRAS_CACHE_SIZE + 1):
        session = FrontendSession()  # each its own handshake object, alive to the end
        sessions.append(session)
        snap = snapshot(session, "connector-1", "connector")
        encode_request(RpcRequest(USER, "r", b"", snap), "connector-1", "connector", 5)
        assert len(codec._HANDSHAKES) <= codec._EXTRAS_CACHE_SIZE
        assert len(codec._EXTRAS_CACHE) <= codec._EXTRAS_CACHE_SIZE
    assert len(sessions) == codec._EXTRAS_CACHE_SIZE + 1


def test_decoded_metadata_and_session_data_are_kept_up_to_their_bounds() -> None:
    """At most 1,024 metadata and 1,024 session data are kept; metadata of exactly 1,024
    bytes is still small (kept), of 1,025 not."""
    codec._METADATA.clear()
    codec._SESSION_DATA.clear()
    for n in range(codec._METADATA_SIZE + 1):
        wire = pb.Request(
            msg=pb.Msg(route="r"),
            session=pb.Session(id=1, data=f'{{"n":{n}}}'.encode()),
            metadata=f'{{"n":{n}}}'.encode(),
        )
        assert decode_request(wire.SerializeToString()).metadata == {"n": n}
        assert len(codec._METADATA) <= codec._METADATA_SIZE
        assert len(codec._SESSION_DATA) <= codec._SESSION_DATA_SIZE
    codec._METADATA.clear()
    for size, kept in ((1024, True), (1025, False)):
        raw = b'{"k":"' + b"x" * (size - 8) + b'"}'
        assert len(raw) == size
        wire = pb.Request(msg=pb.Msg(route="r"), metadata=raw).SerializeToString()
        assert (decode_request(wire).metadata is decode_request(wire).metadata) is kept


def test_the_senders_incarnation_goes_to_servers_of_ours_only() -> None:
    """A backend tells a restarted frontend's sessions from the old process's by it; a Go
    server never sees our keys."""
    request = RpcRequest(SYS, "room.room.join", b"{}", SessionSnapshot(1, "c-1", "connector"))
    ours = decode_request(encode_request(request, "c-1", "connector", 5.0, True, "a1b2"))
    assert ours.metadata[SENDER_INCARNATION_KEY] == "a1b2"
    assert SENDER_INCARNATION_KEY not in (ours.propagated or {})  # not a propagated value
    go = decode_request(encode_request(request, "c-1", "connector", 5.0, False, "a1b2"))
    assert SENDER_INCARNATION_KEY not in go.metadata
    unnamed = decode_request(encode_request(request, "c-1", "connector", 5.0))
    assert SENDER_INCARNATION_KEY not in unnamed.metadata

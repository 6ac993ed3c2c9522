"""The cluster envelope codec: round trips (hypothesis), the bytes on the wire, and garbage.

Whatever a peer sends, :func:`decode_envelope` returns an envelope or raises
:class:`EnvelopeError`, never anything else: a bad message must not crash the bridge.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.envelope import (
    ENVELOPE_VERSION,
    BindNotice,
    Envelope,
    EnvelopeError,
    RpcRequest,
    RpcResponse,
    SessionSnapshot,
    UserKick,
    UserPush,
    decode_envelope,
    encode_envelope,
)
from transport.errorbody import ErrorBody
from transport.errors import ProtocolError

# -- strategies ---------------------------------------------------------------------------

text = st.text(max_size=20)
# What session data may hold: msgpack round-trips these unchanged (arrays come back as
# lists, so no tuples; NaN is not equal to itself, so no NaN).
session_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | text
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
snapshots = st.builds(
    SessionSnapshot,
    id=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    frontend_id=text,
    frontend_type=text,
    uid=st.none() | text,
    data=st.dictionaries(text, session_values, max_size=5),
    handshake=st.none() | st.dictionaries(text, session_values, max_size=3),
)
requests = st.builds(
    RpcRequest,
    kind=st.sampled_from(["sys", "user"]),
    route=text,
    data=st.binary(max_size=64),
    session=st.none() | snapshots,
    notify=st.booleans(),
    metadata=st.dictionaries(text, text, max_size=4),
)
errors = st.builds(
    ErrorBody,
    code=st.text(min_size=1, max_size=10),  # an empty code reads back as PIT-000
    msg=text,
    metadata=st.dictionaries(text, text, max_size=3),
)
responses = st.builds(RpcResponse, data=st.binary(max_size=64), error=st.none() | errors)
envelopes: st.SearchStrategy[Envelope] = st.one_of(
    requests,
    responses,
    st.builds(UserPush, uid=text, route=text, data=st.binary(max_size=64)),
    st.builds(UserKick, uid=text, reason=text),
    st.builds(BindNotice, uid=text, frontend_id=text),
)
# Any value msgpack can carry in a map (keys must be strings: strict_map_key).
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | text | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(text | st.binary(max_size=4), children, max_size=4)
    ),
    max_leaves=16,
)
FIELDS = ["kind", "route", "data", "session", "notify", "meta", "error", "uid", "reason", "fid"]
SESSION_FIELDS = ["id", "fid", "ftype", "uid", "data", "hs"]


# -- round trips --------------------------------------------------------------------------


@given(envelopes)
def test_every_envelope_round_trips(envelope: Envelope) -> None:
    assert decode_envelope(encode_envelope(envelope)) == envelope


@given(envelopes)
def test_encoding_is_deterministic(envelope: Envelope) -> None:
    assert encode_envelope(envelope) == encode_envelope(envelope)


def test_the_bytes_on_the_wire() -> None:
    # The format other servers of this version read: a msgpack map, version and kind first,
    # defaults left out (no session, notify false, no metadata).
    assert encode_envelope(RpcRequest("sys", "room.room.join", b"{}")) == msgpack.packb(
        {"v": 1, "k": "req", "kind": "sys", "route": "room.room.join", "data": b"{}"},
        use_bin_type=True,
    )
    assert encode_envelope(RpcResponse(error=ErrorBody("PIT-404"))) == msgpack.packb(
        {"v": 1, "k": "res", "data": b"", "error": {"code": "PIT-404"}}, use_bin_type=True
    )
    assert encode_envelope(UserKick("u1")) == msgpack.packb(
        {"v": 1, "k": "kick", "uid": "u1", "reason": ""}, use_bin_type=True
    )


def test_a_session_travels_whole() -> None:
    session = SessionSnapshot(7, "connector-1", "connector", "u1", {"room": "a"}, {"sys": {}})
    request = RpcRequest("sys", "room.room.join", b"x", session, True, {"peer.id": "c"})
    raw = msgpack.unpackb(encode_envelope(request))
    assert raw["session"] == {
        "id": 7,
        "fid": "connector-1",
        "ftype": "connector",
        "uid": "u1",
        "data": {"room": "a"},
        "hs": {"sys": {}},
    }
    assert raw["notify"] is True and raw["meta"] == {"peer.id": "c"}
    assert decode_envelope(encode_envelope(request)) == request


def test_session_data_that_msgpack_cannot_carry_is_an_envelope_error() -> None:
    session = SessionSnapshot(1, "f", "t", data={"when": object()})
    with pytest.raises(EnvelopeError, match="cannot encode RpcRequest"):
        encode_envelope(RpcRequest("sys", "r", b"", session))


# -- garbage ------------------------------------------------------------------------------


def _decodes_or_rejects(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode_envelope(data)


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_envelope_error(data: bytes) -> None:
    _decodes_or_rejects(data)


@given(msgpack_values)
def test_any_msgpack_value_decodes_or_raises_envelope_error(value: Any) -> None:
    _decodes_or_rejects(msgpack.packb(value, use_bin_type=True))


@given(
    kind=st.sampled_from(["req", "res", "push", "kick", "bind"]),
    fields=st.dictionaries(st.sampled_from(FIELDS), msgpack_values, max_size=8),
    session=st.dictionaries(st.sampled_from(SESSION_FIELDS), msgpack_values, max_size=6),
)
def test_envelopes_with_wrong_fields_decode_or_raise_envelope_error(
    kind: str, fields: dict[str, Any], session: dict[str, Any]
) -> None:
    value = {"v": ENVELOPE_VERSION, "k": kind, **fields}
    if kind == "req" and "session" not in fields:
        value["session"] = session
    _decodes_or_rejects(msgpack.packb(value, use_bin_type=True))


@given(envelopes, st.data())
def test_a_truncated_envelope_raises_envelope_error(
    envelope: Envelope, data: st.DataObject
) -> None:
    encoded = encode_envelope(envelope)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(EnvelopeError):
        decode_envelope(encoded[:cut])


def test_envelope_error_is_a_protocol_error() -> None:
    assert issubclass(EnvelopeError, ProtocolError)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ([1, 2], "envelope must be a map, got list"),
        ({"k": "req"}, "unsupported envelope version None"),
        ({"v": 2, "k": "req"}, "unsupported envelope version 2"),
        ({"v": 1}, "unknown envelope kind None"),
        ({"v": 1, "k": "gossip"}, "unknown envelope kind 'gossip'"),
        ({"v": 1, "k": "req", "kind": "admin", "route": "r", "data": b""}, "unknown rpc kind"),
        ({"v": 1, "k": "req", "kind": "sys", "route": 5, "data": b""}, "field 'route' must be"),
        ({"v": 1, "k": "req", "kind": "sys", "route": "r", "data": "x"}, "field 'data' must be"),
        ({"v": 1, "k": "req", "kind": "sys", "route": "r"}, "malformed req envelope"),
        ({"v": 1, "k": "push", "uid": "u", "route": "r", "data": []}, "field 'data' must be"),
        ({"v": 1, "k": "kick", "uid": None}, "field 'uid' must be a string"),
        ({"v": 1, "k": "bind", "uid": "u"}, "malformed bind envelope"),
    ],
)
def test_a_rejection_names_what_is_wrong(value: Any, says: str) -> None:
    with pytest.raises(EnvelopeError, match=says):
        decode_envelope(msgpack.packb(value, use_bin_type=True))


@pytest.mark.parametrize(
    ("session", "says"),
    [
        ("x", "field 'session' must be a map"),
        ({"id": "7", "fid": "f", "ftype": "t"}, "field 'session.id' must be an integer"),
        ({"id": True, "fid": "f", "ftype": "t"}, "field 'session.id' must be an integer"),
        ({"id": 7, "fid": 1, "ftype": "t"}, "field 'session.fid' must be a string"),
        ({"id": 7, "fid": "f", "ftype": "t", "uid": 3}, "field 'session.uid' must be"),
        ({"id": 7, "fid": "f", "ftype": "t", "data": [1]}, "field 'session.data' must be"),
        ({"id": 7, "fid": "f", "ftype": "t", "hs": "x"}, "field 'session.hs' must be a map"),
        ({"fid": "f", "ftype": "t"}, "malformed req envelope"),
    ],
)
def test_a_bad_session_names_its_field(session: Any, says: str) -> None:
    value = {"v": 1, "k": "req", "kind": "sys", "route": "r", "data": b"", "session": session}
    with pytest.raises(EnvelopeError, match=says):
        decode_envelope(msgpack.packb(value, use_bin_type=True))


def test_a_foreign_error_body_is_read_as_pitaya_does() -> None:
    # An error a peer wrote without a code still reads as an error: PIT-000, as Pitaya does.
    raw = msgpack.packb({"v": 1, "k": "res", "data": b"", "error": "boom"}, use_bin_type=True)
    response = decode_envelope(raw)
    assert isinstance(response, RpcResponse)
    assert response.error == ErrorBody("PIT-000", "boom")

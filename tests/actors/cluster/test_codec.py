"""The cluster codec seam: answers, errors and session snapshots as the cluster sends them."""

from __future__ import annotations

import pytest

from actors.cluster.codec import (
    ACK,
    BindNotice,
    RpcResponse,
    encode,
    encode_answer,
    encode_error,
    is_refusal,
    read_answer,
    snapshot,
)
from actors.errors import InternalError, PitayaError, RouteNotFound, UserNotHere
from transport.handshake import HandshakeRequest


def test_an_answer_reads_back_as_its_payload_and_an_empty_one_is_the_ack() -> None:
    assert read_answer(encode_answer(b"payload")) == b"payload"
    assert encode_answer(b"") == ACK == encode(RpcResponse())
    assert read_answer(ACK) == b""


def test_an_error_answer_is_raised_with_its_pitaya_code() -> None:
    with pytest.raises(PitayaError) as info:
        read_answer(encode_error(RouteNotFound("room.room.nope")))
    assert info.value.code == "PIT-404"
    with pytest.raises(PitayaError) as info:
        read_answer(encode_error(ValueError("boom")))  # any exception becomes Pitaya's body
    assert info.value.code.startswith("PIT-")


def test_bytes_that_are_no_answer_raise_an_internal_error() -> None:
    with pytest.raises(InternalError, match="malformed RPC response"):
        read_answer(b"\xc1 not msgpack")
    with pytest.raises(InternalError, match="non-response envelope"):
        read_answer(encode(BindNotice("ann", "connector-1")))


def test_a_refusal_is_an_error_answer() -> None:
    assert is_refusal(encode_error(UserNotHere("ann"))) is True
    assert is_refusal(ACK) is False
    assert is_refusal(b"\xc1") is None


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
    assert (snap.frontend_id, snap.frontend_type) == ("connector-1", "connector")
    assert snap.handshake == {"sys": {"platform": "web"}, "user": {"v": 1}}


def test_a_backend_session_keeps_its_own_frontend() -> None:
    session = FrontendSession()
    session.handshake = None
    session.frontend_id, session.frontend_type = "connector-2", "gate"  # type: ignore[attr-defined]
    snap = snapshot(session, "room-1", "room")
    assert (snap.frontend_id, snap.frontend_type, snap.handshake) == ("connector-2", "gate", None)

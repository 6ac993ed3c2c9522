"""Connection state machines: both ends driven against each other, and hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.connection import (
    MAX_KICK_REASON,
    ClientConnection,
    ClientState,
    HandshakeAcked,
    HandshakeReceived,
    HandshakeResponseReceived,
    HeartbeatReceived,
    KickReceived,
    MessageReceived,
    ServerConnection,
    ServerState,
    encode_response_packet,
)
from transport.errors import (
    HandshakeError,
    HandshakeTooLarge,
    InvalidPacketType,
    InvalidRoute,
    InvalidState,
    PacketTooLarge,
    ProtocolError,
    UnexpectedPacket,
)
from transport.handshake import HandshakeRequest, HandshakeResponse
from transport.message import Message, MessageType, RouteDictionary, encode_message
from transport.packet import (
    HANDSHAKE_ACK_PACKET,
    HEARTBEAT_PACKET,
    KICK_PACKET,
    PacketType,
    encode_packet,
)

ROUTES = RouteDictionary({"room.room.join": 1, "room.room.say": 2})
HANDSHAKE = encode_packet(PacketType.HANDSHAKE, b'{"sys":{"platform":"test"},"user":{"k":1}}')


def state_of(conn: ServerConnection | ClientConnection) -> ServerState | ClientState:
    """Read the state through a call, so mypy does not narrow it across transitions."""
    return conn.state


def working_pair(
    routes: RouteDictionary | None = ROUTES,
) -> tuple[ServerConnection, ClientConnection]:
    server, client = ServerConnection(), ClientConnection()
    (received,) = server.receive_data(client.handshake({"platform": "test"}, {"k": 1}))
    assert received == HandshakeReceived(HandshakeRequest({"platform": "test"}, {"k": 1}))
    assert state_of(server) is ServerState.HANDSHAKE_RECEIVED
    answer = server.accept_handshake(heartbeat=30, routes=routes, serializer="json")
    assert state_of(server) is ServerState.AWAITING_ACK
    (response,) = client.receive_data(answer)
    assert isinstance(response, HandshakeResponseReceived) and response.response.ok
    assert state_of(client) is ClientState.RESPONSE_RECEIVED
    assert server.receive_data(client.ack()) == [HandshakeAcked()]
    assert state_of(server) is ServerState.WORKING and state_of(client) is ClientState.WORKING
    return server, client


def test_full_exchange() -> None:
    server, client = working_pair()
    request = Message(MessageType.REQUEST, 1, "room.room.join", b"{}")
    packet = client.encode(request)
    assert packet[4] == 0x01  # compressed route: the client uses the announced dictionary
    assert server.receive_data(packet) == [MessageReceived(request)]
    response = Message(MessageType.RESPONSE, 1, data=b'{"ok":true}')
    push = Message(MessageType.PUSH, route="room.room.say", data=b"[]")
    data = server.encode(response) + server.encode(push, compress=True) + server.heartbeat()
    assert client.receive_data(data) == [
        MessageReceived(response),
        MessageReceived(push),
        HeartbeatReceived(),
    ]
    assert server.receive_data(client.heartbeat()) == [HeartbeatReceived()]


def test_handshake_response_bytes() -> None:
    server = ServerConnection()
    server.receive_data(HANDSHAKE)
    answer = server.accept_handshake(heartbeat=30, routes=ROUTES, serializer="json")
    assert answer[0] == PacketType.HANDSHAKE
    assert json.loads(answer[4:]) == {
        "code": 200,
        "sys": {"heartbeat": 30, "dict": ROUTES.as_dict(), "serializer": "json"},
    }
    assert server.routes == ROUTES
    assert server.handshake == HandshakeRequest({"platform": "test"}, {"k": 1})


def test_client_without_route_dict_sends_full_routes() -> None:
    server, client = ServerConnection(), ClientConnection(use_route_dict=False)
    server.receive_data(client.handshake({}, {}))
    client.receive_data(server.accept_handshake(heartbeat=1, routes=ROUTES, serializer="json"))
    server.receive_data(client.ack())
    packet = client.encode(Message(MessageType.NOTIFY, route="room.room.join"))
    assert packet[4] == 0x02 and packet[5] == len("room.room.join")
    # ... yet it still decodes compressed routes the server sends
    push = server.encode(Message(MessageType.PUSH, route="room.room.say"))
    assert push[4] == 0x07
    (event,) = client.receive_data(push)
    assert event == MessageReceived(Message(MessageType.PUSH, route="room.room.say"))


def test_without_routes_messages_use_full_routes() -> None:
    server, client = working_pair(routes=None)
    assert client.routes is None and server.routes is None
    packet = client.encode(Message(MessageType.NOTIFY, route="room.room.join"))
    assert packet[4] == 0x02
    # a client that sends a compressed route anyway is breaking the protocol
    with pytest.raises(InvalidRoute):
        server.receive_data(encode_packet(PacketType.DATA, b"\x03\x00\x01"))
    assert server.state is ServerState.CLOSED


def test_heartbeat_is_allowed_in_every_open_state() -> None:
    server = ServerConnection()
    assert server.receive_data(HEARTBEAT_PACKET) == [HeartbeatReceived()]
    server.receive_data(HANDSHAKE)
    assert server.receive_data(HEARTBEAT_PACKET) == [HeartbeatReceived()]
    server.accept_handshake(heartbeat=1, routes=None, serializer="json")
    assert server.receive_data(HEARTBEAT_PACKET) == [HeartbeatReceived()]


def test_data_before_handshake() -> None:
    server = ServerConnection()
    with pytest.raises(UnexpectedPacket, match="DATA packet not allowed"):
        server.receive_data(encode_packet(PacketType.DATA, b"\x02\x01a"))
    assert server.state is ServerState.CLOSED


def test_data_before_ack_closes() -> None:
    server = ServerConnection()
    server.receive_data(HANDSHAKE)
    server.accept_handshake(heartbeat=1, routes=None, serializer="json")
    with pytest.raises(UnexpectedPacket):
        server.receive_data(encode_packet(PacketType.DATA, b"\x02\x01a"))
    assert server.state is ServerState.CLOSED
    assert server.receive_data(HANDSHAKE_ACK_PACKET) == []  # ignored once closed


def test_data_in_the_same_chunk_as_the_ack_is_accepted() -> None:
    server = ServerConnection()
    server.receive_data(HANDSHAKE)
    server.accept_handshake(heartbeat=1, routes=None, serializer="json")
    data = HANDSHAKE_ACK_PACKET + encode_packet(PacketType.DATA, b"\x02\x01a")
    assert server.receive_data(data) == [
        HandshakeAcked(),
        MessageReceived(Message(MessageType.NOTIFY, route="a")),
    ]


@pytest.mark.parametrize("accepted", [False, True])
def test_double_handshake(accepted: bool) -> None:
    server = ServerConnection()
    server.receive_data(HANDSHAKE)
    if accepted:
        server.accept_handshake(heartbeat=1, routes=None, serializer="json")
    with pytest.raises(UnexpectedPacket, match="HANDSHAKE"):
        server.receive_data(HANDSHAKE)
    assert server.state is ServerState.CLOSED


def test_handshake_after_working() -> None:
    server, _ = working_pair()
    with pytest.raises(UnexpectedPacket):
        server.receive_data(HANDSHAKE)


@pytest.mark.parametrize("packet", [KICK_PACKET, HANDSHAKE_ACK_PACKET])
def test_out_of_place_control_packets(packet: bytes) -> None:
    server = ServerConnection()
    with pytest.raises(UnexpectedPacket):
        server.receive_data(packet)
    server, _ = working_pair()
    with pytest.raises(UnexpectedPacket):
        server.receive_data(packet)


@pytest.mark.parametrize("msg_type", [MessageType.RESPONSE, MessageType.PUSH])
def test_server_refuses_responses_and_pushes_from_clients(msg_type: MessageType) -> None:
    server, _ = working_pair()
    body = encode_message(Message(msg_type, route="a"))
    with pytest.raises(UnexpectedPacket, match=msg_type.name):
        server.receive_data(encode_packet(PacketType.DATA, body))


def test_malformed_handshake_still_gets_a_400() -> None:
    server = ServerConnection()
    with pytest.raises(HandshakeError):
        server.receive_data(encode_packet(PacketType.HANDSHAKE, b"{nope"))
    assert server.state is ServerState.CLOSED
    answer = server.reject_handshake()
    assert answer == encode_packet(PacketType.HANDSHAKE, b'{"code":400}')


def test_reject_handshake() -> None:
    server, client = ServerConnection(), ClientConnection()
    server.receive_data(client.handshake({}, {}))
    answer = server.reject_handshake(403, "too old")
    assert server.state is ServerState.CLOSED
    events = client.receive_data(answer + HEARTBEAT_PACKET)
    assert events == [HandshakeResponseReceived(HandshakeResponse(403, message="too old"))]
    assert client.state is ClientState.CLOSED
    with pytest.raises(InvalidState):
        client.ack()


def test_reject_after_accept_is_a_bug() -> None:
    server, _ = working_pair()
    with pytest.raises(InvalidState):
        server.reject_handshake()


def test_kick() -> None:
    server, client = working_pair()
    kick = server.kick()
    assert kick == encode_packet(PacketType.KICK, b'{"reason": ""}')
    assert server.state is ServerState.CLOSED
    push = encode_packet(PacketType.DATA, b"\x06\x01a")
    assert client.receive_data(kick + push) == [KickReceived()]
    assert client.state is ClientState.CLOSED
    assert client.receive_data(push) == []


@pytest.mark.parametrize(
    ("reason", "body"),
    [
        ("bye", b'{"reason": "bye"}'),
        ("à+1", b'{"reason": "\\u00e0+1"}'),
        ("\ud800", b'{"reason": "\\ud800"}'),  # a lone surrogate: no UTF-8, still sent
    ],
)
def test_a_kick_carries_its_reason_as_pomelo_s_json(reason: str, body: bytes) -> None:
    """pomelo's web client parses the kick's body as JSON (pomelo servers send the reason):
    an empty body, as Go Pitaya sends, made it fail before it told the application."""
    server, client = working_pair()
    assert server.kick(reason) == encode_packet(PacketType.KICK, body)
    assert json.loads(body) == {"reason": reason}
    assert client.receive_data(KICK_PACKET) == [KickReceived()]  # an empty one still reads


@pytest.mark.parametrize("reason", ["cheating", "à+1", "\ud800", "x" * MAX_KICK_REASON])
def test_the_client_reads_the_kick_s_reason(reason: str) -> None:
    """The client dropped the reason the server sent: a kicked player could not be told
    why (cheating, logged in elsewhere)."""
    server, client = working_pair()
    assert client.receive_data(server.kick(reason)) == [KickReceived(reason)]


@pytest.mark.parametrize(
    "body",
    [
        *(b"", b"{}", b"not json", b"\xff\xfe", b"[1]", b'{"reason": 7}', b'"bye"', b"null"),
        b"[" * 100_000,  # nested past the recursion limit: it raised out of receive_data
    ],
)
def test_a_kick_without_a_readable_reason_still_closes(body: bytes) -> None:
    _, client = working_pair()
    assert client.receive_data(encode_packet(PacketType.KICK, body)) == [KickReceived("")]
    assert client.state is ClientState.CLOSED


def test_a_kick_s_reason_is_cut_to_its_limit() -> None:
    server, _ = working_pair()
    kick = server.kick("x" * (MAX_KICK_REASON + 10))
    assert json.loads(kick[4:]) == {"reason": "x" * MAX_KICK_REASON}


def test_close_ignores_further_data() -> None:
    server, _ = working_pair()
    server.close()
    assert server.receive_data(b"\xff\xff") == []


def test_local_misuse_raises_invalid_state() -> None:
    server = ServerConnection()
    with pytest.raises(InvalidState):
        server.accept_handshake(heartbeat=1, routes=None, serializer="json")
    with pytest.raises(InvalidState):
        server.encode(Message(MessageType.PUSH, route="a"))
    client = ClientConnection()
    with pytest.raises(InvalidState):
        client.encode(Message(MessageType.NOTIFY, route="a"))
    with pytest.raises(InvalidState):
        client.ack()
    client.handshake({}, {})
    with pytest.raises(InvalidState):
        client.handshake({}, {})
    server.close()
    with pytest.raises(InvalidState):
        server.encode(Message(MessageType.PUSH, route="a"))


def test_limits_are_enforced() -> None:
    server = ServerConnection(max_packet_size=16)
    with pytest.raises(PacketTooLarge):
        server.receive_data(b"\x01\x00\x00\x11")
    server = ServerConnection(max_route_length=3)
    server.receive_data(HANDSHAKE)
    server.accept_handshake(heartbeat=1, routes=None, serializer="json")
    server.receive_data(HANDSHAKE_ACK_PACKET)
    with pytest.raises(InvalidRoute):
        server.receive_data(encode_packet(PacketType.DATA, b"\x02\x04abcd"))


def test_client_rejects_unexpected_packets() -> None:
    client = ClientConnection()
    client.handshake({}, {})
    with pytest.raises(UnexpectedPacket):
        client.receive_data(encode_packet(PacketType.DATA, b"\x06\x01a"))
    _, client = working_pair()
    with pytest.raises(UnexpectedPacket, match="REQUEST"):
        client.receive_data(encode_packet(PacketType.DATA, b"\x00\x01\x01a"))
    _, client = working_pair()
    with pytest.raises(UnexpectedPacket):
        client.receive_data(HANDSHAKE_ACK_PACKET)


def test_client_bad_handshake_response() -> None:
    client = ClientConnection()
    client.handshake({}, {})
    with pytest.raises(HandshakeError):
        client.receive_data(encode_packet(PacketType.HANDSHAKE, b"[]"))
    assert client.state is ClientState.CLOSED


def test_protocol_error_in_a_chunk() -> None:
    server, _ = working_pair()
    with pytest.raises(InvalidPacketType):
        server.receive_data(HEARTBEAT_PACKET + b"\x09")
    assert server.state is ServerState.CLOSED


# -- hostile input ------------------------------------------------------------------------


@given(chunks=st.lists(st.binary(max_size=40), max_size=6), handshake_first=st.booleans())
def test_garbage_into_server_raises_only_protocol_errors(
    chunks: list[bytes], handshake_first: bool
) -> None:
    server = ServerConnection(max_packet_size=4096)
    if handshake_first:
        server.receive_data(HANDSHAKE)
        server.accept_handshake(heartbeat=1, routes=ROUTES, serializer="json")
        server.receive_data(HANDSHAKE_ACK_PACKET)
    for chunk in chunks:
        try:
            server.receive_data(chunk)
        except ProtocolError:
            assert server.state is ServerState.CLOSED
            return


packet_types = st.sampled_from([t.value for t in PacketType])


@given(
    frames=st.lists(st.tuples(packet_types, st.binary(max_size=30)), max_size=8),
    cut=st.integers(min_value=1, max_value=7),
)
def test_well_framed_garbage_raises_only_protocol_errors(
    frames: list[tuple[int, bytes]], cut: int
) -> None:
    # Valid framing with random bodies reaches the message and handshake decoders.
    stream = b"".join(encode_packet(PacketType(t), body) for t, body in frames)
    for conn in (ServerConnection(), working_pair()[0], working_pair()[1]):
        try:
            for i in range(0, len(stream), cut):
                conn.receive_data(stream[i : i + cut])
        except ProtocolError:
            pass


# -- rules pinned by mutation testing (tests/README.md) -------------------------------------


def test_misuse_errors_name_the_method_and_the_state() -> None:
    def reason(call: object) -> str:
        assert callable(call)
        with pytest.raises(InvalidState) as info:
            call()
        return str(info.value)

    server = ServerConnection()
    accept = server.accept_handshake
    assert (
        reason(lambda: accept(heartbeat=1, routes=None, serializer="json"))
        == "accept_handshake in state 'awaiting handshake'"
    )
    push = Message(MessageType.PUSH, route="a")
    assert reason(lambda: server.encode(push)) == "encode in state 'awaiting handshake'"
    client = ClientConnection()
    notify = Message(MessageType.NOTIFY, route="a")
    assert reason(lambda: client.encode(notify)) == "encode in state 'initial'"
    assert reason(client.ack) == "ack in state 'initial'"
    client.handshake({}, {})
    assert (
        reason(lambda: client.handshake({}, {}))
        == "handshake in state 'awaiting handshake response'"
    )
    server, _ = working_pair()
    assert reason(server.reject_handshake) == "reject_handshake after the handshake was accepted"


def test_nothing_is_known_before_the_handshake() -> None:
    server, client = ServerConnection(), ClientConnection()
    assert (server.routes, server.handshake) == (None, None)
    assert (client.routes, client.handshake_response) == (None, None)


def test_an_empty_route_dictionary_is_no_dictionary() -> None:
    server, client = working_pair(routes=RouteDictionary())
    assert server.routes is None and client.routes is None


@pytest.mark.parametrize("side", ["server", "client"])
def test_compression_only_when_asked(side: str) -> None:
    server, client = working_pair()
    if side == "server":
        msg = Message(MessageType.PUSH, route="room.room.say", data=b"bla" * 20)
        plain, packed = server.encode(msg), server.encode(msg, compress=True)
        assert client.receive_data(packed) == [MessageReceived(msg)]
    else:
        msg = Message(MessageType.NOTIFY, route="room.room.say", data=b"bla" * 20)
        plain, packed = client.encode(msg), client.encode(msg, compress=True)
        assert server.receive_data(packed) == [MessageReceived(msg)]
    assert plain == encode_packet(PacketType.DATA, encode_message(msg, routes=ROUTES))
    assert packed == encode_packet(
        PacketType.DATA, encode_message(msg, routes=ROUTES, compress=True)
    )
    assert len(packed) < len(plain)


def test_server_inflates_no_more_than_its_limit() -> None:
    server = ServerConnection(max_inflated_size=100)
    server.receive_data(HANDSHAKE)
    server.accept_handshake(heartbeat=1, routes=None, serializer="json")
    server.receive_data(HANDSHAKE_ACK_PACKET)
    fits = Message(MessageType.NOTIFY, route="a", data=b"x" * 100)
    too_big = Message(MessageType.NOTIFY, route="a", data=b"x" * 101)
    assert server.receive_data(encode_packet(PacketType.DATA, encode_message(fits, compress=True)))
    with pytest.raises(ProtocolError, match="exceeds the limit of 100 bytes"):
        server.receive_data(encode_packet(PacketType.DATA, encode_message(too_big, compress=True)))


def test_client_enforces_its_route_and_inflate_limits() -> None:
    def working_client(**limits: int) -> ClientConnection:
        client = ClientConnection(**limits)  # type: ignore[arg-type]
        client.handshake({}, {})
        client.receive_data(encode_packet(PacketType.HANDSHAKE, b'{"code":200}'))
        client.ack()
        return client

    long_route = encode_packet(PacketType.DATA, b"\x06\x04abcd")
    assert working_client().receive_data(long_route)
    with pytest.raises(InvalidRoute, match="exceeds the limit of 3 bytes"):
        working_client(max_route_length=3).receive_data(long_route)
    push = Message(MessageType.PUSH, route="a", data=b"y" * 101)
    packed = encode_packet(PacketType.DATA, encode_message(push, compress=True))
    assert working_client(max_inflated_size=101).receive_data(packed) == [MessageReceived(push)]
    with pytest.raises(ProtocolError, match="exceeds the limit of 100 bytes"):
        working_client(max_inflated_size=100).receive_data(packed)


def test_client_close_ignores_further_data() -> None:
    _, client = working_pair()
    client.close()
    assert client.state is ClientState.CLOSED
    assert client.receive_data(b"\xff\xff") == []


def test_the_server_bounds_the_handshake_from_its_header() -> None:
    server = ServerConnection(max_handshake_size=20)
    with pytest.raises(HandshakeTooLarge):
        server.receive_data(b"\x01\x00\x00\x15")  # 21 bytes announced
    assert server.state is ServerState.CLOSED
    assert ServerConnection(max_handshake_size=len(HANDSHAKE) - 4).receive_data(HANDSHAKE)


def test_a_server_that_does_not_inflate_hands_compressed_messages_over_as_they_are() -> None:
    def working(**options: Any) -> ServerConnection:
        server = ServerConnection(**options)
        server.receive_data(HANDSHAKE)
        server.accept_handshake(heartbeat=1, routes=None, serializer="json")
        server.receive_data(HANDSHAKE_ACK_PACKET)
        return server

    msg = Message(MessageType.REQUEST, 1, "a.b.c", b"bla" * 20)
    packet = encode_packet(PacketType.DATA, encode_message(msg, compress=True))
    assert working().receive_data(packet) == [MessageReceived(msg)]  # inflated by default
    server = working(inflate=False)
    (event,) = server.receive_data(packet)
    assert isinstance(event, MessageReceived) and event.message.compressed
    assert server.inflate(event.message) == msg
    plain = Message(MessageType.NOTIFY, route="a.b.c", data=b"x")
    assert server.inflate(plain) is plain
    broken = Message(MessageType.NOTIFY, route="a.b.c", data=b"not zlib", compressed=True)
    with pytest.raises(ProtocolError):
        server.inflate(broken)
    assert server.state is ServerState.CLOSED
    bounded = working(inflate=False, max_inflated_size=59)
    (event,) = bounded.receive_data(packet)
    assert isinstance(event, MessageReceived)
    with pytest.raises(ProtocolError, match="exceeds the limit of 59 bytes"):
        bounded.inflate(event.message)


@given(
    st.integers(min_value=0, max_value=2**64 - 1) | st.integers(min_value=0, max_value=200),
    st.binary(max_size=300),
    st.booleans(),
)
def test_the_response_fast_path_writes_the_same_bytes_as_the_general_one(
    message_id: int, data: bytes, error: bool
) -> None:
    general = encode_packet(
        PacketType.DATA,
        encode_message(Message(MessageType.RESPONSE, message_id, data=data, error=error)),
    )
    assert encode_response_packet(message_id, data, error=error) == general
    server = ServerConnection()
    server._state = ServerState.WORKING
    assert server.encode_response(message_id, data, error=error) == general
    assert server.encode(Message(MessageType.RESPONSE, message_id, data=data, error=error)) == (
        general
    )


def test_encode_response_needs_an_accepted_handshake() -> None:
    with pytest.raises(InvalidState):
        ServerConnection().encode_response(1, b"{}")

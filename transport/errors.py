"""Typed errors of the transport layer.

Every malformed input that reaches a codec raises a subclass of :class:`ProtocolError` naming
the rule that was broken, so a caller can close the connection with a precise log line instead
of catching ``IndexError`` or ``ValueError`` from deep inside a parser.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base class of every error raised by ``transport``."""


class ProtocolError(TransportError):
    """Bytes that do not follow the Pitaya/pomelo wire protocol."""


class PacketTooLarge(ProtocolError):
    """A packet header announces a body longer than the configured maximum."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"packet body of {length} bytes exceeds the limit of {limit} bytes")
        self.length = length
        self.limit = limit


class InvalidPacketType(ProtocolError):
    """The first byte of a packet is not one of the five known packet types."""

    def __init__(self, value: int) -> None:
        super().__init__(f"invalid packet type {value} (expected 1..5)")
        self.value = value


class MalformedMessage(ProtocolError):
    """The body of a data packet is not a well-formed message."""


class InvalidRoute(MalformedMessage):
    """A route is empty, too long, not UTF-8, or a compressed code is unknown."""


class HandshakeError(ProtocolError):
    """A handshake request or response is not the JSON object the protocol expects."""


class HandshakeTooLarge(HandshakeError, PacketTooLarge):
    """A handshake packet announces a body longer than ``max_handshake_size``.

    A handshake error (the server answers it with code 400) raised from the header alone,
    before the body is buffered.
    """

    def __init__(self, length: int, limit: int) -> None:
        PacketTooLarge.__init__(self, length, limit)
        self.args = (f"handshake of {length} bytes exceeds the limit of {limit} bytes",)


class ProxyHeaderError(ProtocolError):
    """The bytes a connection began with are not a valid PROXY protocol header
    (:mod:`transport.proxyheader`); ``reason`` says which rule they broke. It never quotes
    them: they come from a peer and may be anything."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad PROXY header: {reason}")
        self.reason = reason


class UnexpectedPacket(ProtocolError):
    """A packet arrived in a connection state where it is not allowed (e.g. data before ack)."""


class SerializationError(TransportError):
    """A payload cannot be serialized or deserialized by the chosen serializer."""


class ConnectionClosed(TransportError):
    """The peer closed the connection, or it was closed locally, while an operation waited."""


class InvalidState(TransportError):
    """A connection method was called in a state that does not allow it.

    This is a bug in the caller (e.g. ``encode`` before the handshake was accepted), not
    something the peer did, so it is not a :class:`ProtocolError`.
    """

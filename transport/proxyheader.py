"""The PROXY protocol header (HAProxy's, versions 1 and 2), parsed sans-I/O.

A load balancer that speaks the PROXY protocol (AWS NLB, HAProxy, Envoy) opens every TCP
connection to the server with one header naming the client it relays; without reading it the
server sees only the balancer's address, and would take the header for a broken packet.

Two forms exist (HAProxy's ``proxy-protocol.txt``):

- v1, one text line of at most 107 bytes: ``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n``
  (``TCP6`` with IPv6 addresses; ``PROXY UNKNOWN ...\\r\\n`` relays no address);
- v2, binary: the 12-byte signature ``\\r\\n\\r\\n\\x00\\r\\nQUIT\\n``, a version/command byte
  (``0x21`` PROXY, ``0x20`` LOCAL), a family/transport byte, a 2-byte big-endian length, then
  that many bytes: the addresses (IPv4 12 bytes, IPv6 36, UNIX 216) and TLVs, skipped here.

LOCAL (v2), UNKNOWN (v1), and an unspecified or UNIX family relay no client address: the
balancer speaks for itself (a health check), and the socket's own address stands. Such a
header has ``source`` None.

Nothing here touches a socket: bytes go in, and out comes "not yet" (None), the header, or a
:class:`ProxyHeaderError` naming the rule that was broken::

    parser = ProxyHeaderParser()
    header = parser.feed(chunk)          # None: send more
    if header is not None:
        client = header.source or socket_peer
        protocol.receive_data(header.rest)   # what followed the header in that chunk

:attr:`ProxyHeaderParser.wanted` is how many bytes certainly still belong to the header. A
reader that reads no more than that never takes a byte past the header from the socket,
which is what lets TLS start on the same socket afterwards (the TLS layer reads its own).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from transport.errors import InvalidState, ProxyHeaderError

__all__ = [
    "V1_MAX_LENGTH",
    "V2_DEFAULT_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderParser",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The first 12 bytes of every v2 header."""

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107
"""The longest v1 line, CRLF included (the spec's bound: a TCP6 line at its longest)."""

V1_MIN_LENGTH = len(b"PROXY UNKNOWN\r\n")
"""The shortest header of either version (v2's is 16 bytes)."""

V2_FIXED_LENGTH = 16
"""Signature, version/command, family/transport, length."""

V2_DEFAULT_MAX_LENGTH = 4096
"""The most bytes a v2 header may announce after its 16 fixed ones (addresses and TLVs).
The format allows 65,535; real balancers send well under a kilobyte (AWS NLB: addresses and
a VPC endpoint TLV), and a peer must not make the server buffer 64 KiB before it says a
word of its own."""

_V2_ADDRESS_LENGTHS = {0x1: 12, 0x2: 36, 0x3: 216}
"""Bytes of the address block per family (INET, INET6, UNIX)."""

_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
_V2_TRANSPORTS = (0x0, 0x1, 0x2)
"""UNSPEC, STREAM, DGRAM: any other value is undefined and the spec says to drop the peer."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A whole PROXY header.

    ``source``/``destination``: the client's and the balancer's listening ``(host, port)``
    as the balancer saw them; both None when the header relays no address (v1 UNKNOWN, v2
    LOCAL, UNSPEC or UNIX). ``rest``: the bytes that came after the header in the chunk
    that completed it, which belong to the protocol that follows.
    """

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    rest: bytes = b""


class ProxyHeaderParser:
    """Reads one PROXY header (v1 or v2) from the start of a byte stream; see the module.

    ``max_v2_length`` bounds the part of a v2 header after its 16 fixed bytes.
    """

    __slots__ = ("_buffer", "_done", "_max_v2_length")

    def __init__(self, *, max_v2_length: int = V2_DEFAULT_MAX_LENGTH) -> None:
        self._buffer = bytearray()
        self._done = False
        self._max_v2_length = max_v2_length

    @property
    def wanted(self) -> int:
        """Bytes that certainly still belong to the header (at least 1 until it is whole).

        Reading no more than this leaves every byte after the header on the socket.
        """
        buffer = self._buffer
        if self._done:
            return 0
        size = len(buffer)
        if size == 0:
            return V1_MIN_LENGTH  # the shorter of the two shortest headers
        if buffer[0] == V2_SIGNATURE[0]:
            if size < V2_FIXED_LENGTH:
                return V2_FIXED_LENGTH - size
            return V2_FIXED_LENGTH + int.from_bytes(buffer[14:16], "big") - size
        # v1: the line ends with CRLF; a CR last may be followed by the LF at once.
        return max(V1_MIN_LENGTH - size, 1 if buffer[-1] == 0x0D else 2)

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add bytes; the header once it is whole, else None (send more).

        Raises :class:`ProxyHeaderError` as soon as the bytes cannot begin a valid header
        (a wrong first byte fails at once, not after 107 bytes), and
        :class:`~transport.errors.InvalidState` if fed again after the header was returned.
        """
        if self._done:
            raise InvalidState("the PROXY header was already read")
        buffer = self._buffer
        buffer += data
        if not buffer:
            return None
        header = self._v2(buffer) if buffer[0] == V2_SIGNATURE[0] else self._v1(buffer)
        if header is not None:
            self._done = True
            self._buffer = bytearray()
        return header

    # -- version 1 -----------------------------------------------------------------------

    def _v1(self, buffer: bytearray) -> ProxyHeader | None:
        if not buffer.startswith(V1_PREFIX[: len(buffer)]):
            raise ProxyHeaderError("neither the v1 'PROXY ' prefix nor the v2 signature")
        end = buffer.find(b"\n", 0, V1_MAX_LENGTH)
        if end < 0:
            if len(buffer) >= V1_MAX_LENGTH:
                raise ProxyHeaderError(f"v1 line without CRLF in its first {V1_MAX_LENGTH} bytes")
            return None
        if buffer[end - 1] != 0x0D:
            raise ProxyHeaderError("v1 line ends with LF without CR")
        line = bytes(buffer[: end - 1])
        rest = bytes(buffer[end + 1 :])
        source, destination = _v1_addresses(line)
        return ProxyHeader(1, source, destination, rest)

    # -- version 2 -----------------------------------------------------------------------

    def _v2(self, buffer: bytearray) -> ProxyHeader | None:
        head = buffer[:V2_FIXED_LENGTH]
        if not V2_SIGNATURE.startswith(head[:12]):
            raise ProxyHeaderError("neither the v1 'PROXY ' prefix nor the v2 signature")
        if len(head) > 12:
            version, command = head[12] >> 4, head[12] & 0x0F
            if version != 2:
                raise ProxyHeaderError(f"v2 signature with version {version}")
            if command not in _V2_COMMANDS:
                raise ProxyHeaderError(f"v2 command {command} (neither LOCAL nor PROXY)")
        if len(head) > 13:
            family, transport = head[13] >> 4, head[13] & 0x0F
            if (family != 0 and family not in _V2_ADDRESS_LENGTHS) or (
                transport not in _V2_TRANSPORTS
            ):
                raise ProxyHeaderError(f"v2 family/transport byte 0x{head[13]:02x}")
        if len(head) < V2_FIXED_LENGTH:
            return None
        length = int.from_bytes(head[14:16], "big")
        if length > self._max_v2_length:
            raise ProxyHeaderError(
                f"v2 header announces {length} bytes (limit {self._max_v2_length})"
            )
        end = V2_FIXED_LENGTH + length
        if len(buffer) < end:
            return None
        body = bytes(buffer[V2_FIXED_LENGTH:end])
        rest = bytes(buffer[end:])
        family = head[13] >> 4
        if head[12] & 0x0F == 0x0:  # LOCAL: the balancer's own connection (health check)
            return ProxyHeader(2, None, None, rest)
        needed = _V2_ADDRESS_LENGTHS.get(family, 0)
        if length < needed:
            raise ProxyHeaderError(
                f"v2 family {family} needs {needed} address bytes, the header has {length}"
            )
        if family == 0x1:
            source = (str(ipaddress.IPv4Address(body[0:4])), _port(body[8:10]))
            destination = (str(ipaddress.IPv4Address(body[4:8])), _port(body[10:12]))
        elif family == 0x2:
            source = (str(ipaddress.IPv6Address(body[0:16])), _port(body[32:34]))
            destination = (str(ipaddress.IPv6Address(body[16:32])), _port(body[34:36]))
        else:  # UNSPEC or UNIX: no IP address to relay; the socket's own stands
            return ProxyHeader(2, None, None, rest)
        return ProxyHeader(2, source, destination, rest)


def _port(two: bytes) -> int:
    return int.from_bytes(two, "big")


_V1_FAMILIES: dict[str, type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]] = {
    "TCP4": ipaddress.IPv4Address,
    "TCP6": ipaddress.IPv6Address,
}


def _v1_addresses(
    line: bytes,
) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """Source and destination of a v1 line (CRLF removed); None, None for UNKNOWN."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 line is not ASCII") from None
    fields = text.split(" ")
    # fields[0] is "PROXY": the caller checked the prefix.
    protocol = fields[1] if len(fields) > 1 else ""
    if protocol == "UNKNOWN":
        return None, None  # the rest of the line is to be ignored (spec)
    family = _V1_FAMILIES.get(protocol)
    if family is None:
        raise ProxyHeaderError("v1 protocol is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 6:
        raise ProxyHeaderError(f"v1 {protocol} line has {len(fields)} fields, not 6")
    source = (_v1_host(fields[2], family, protocol), _v1_port(fields[4]))
    destination = (_v1_host(fields[3], family, protocol), _v1_port(fields[5]))
    return source, destination


def _v1_host(
    text: str,
    family: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address],
    protocol: str,
) -> str:
    if "%" in text:  # a scope id names an interface of the balancer, not a client address
        raise ProxyHeaderError(f"v1 {protocol} address with a scope id")
    try:
        return str(family(text))
    except ValueError:
        raise ProxyHeaderError(f"v1 {protocol} address is not valid") from None


def _v1_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise ProxyHeaderError("v1 port is not a number from 0 to 65535")
    return int(text)

"""PROXY headers as a balancer writes them, built by hand for the tests (never by the code
under test): v1 lines and v2 binary headers with or without TLVs."""

from __future__ import annotations

import ipaddress
import struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source: tuple[str, int] | None, destination: tuple[str, int] | None = None) -> bytes:
    """``PROXY TCP4|TCP6 ...\\r\\n`` (by the source's family), or ``PROXY UNKNOWN\\r\\n``."""
    if source is None:
        return b"PROXY UNKNOWN\r\n"
    destination = destination or (("10.0.0.1", 3250) if ":" not in source[0] else ("::1", 3250))
    family = "TCP6" if ":" in source[0] else "TCP4"
    line = f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    return line.encode("ascii")


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack(">BH", kind, len(value)) + value


def v2(
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None = None,
    *,
    local: bool = False,
    tlvs: bytes = b"",
) -> bytes:
    """A v2 header: PROXY over TCP with IPv4 or IPv6 addresses (by the source's family), or
    LOCAL (``local=True`` or no source) with no address block; ``tlvs`` appended."""
    if local or source is None:
        return SIGNATURE + bytes((0x20, 0x00)) + struct.pack(">H", len(tlvs)) + tlvs
    six = ":" in source[0]
    destination = destination or (("::1", 3250) if six else ("10.0.0.1", 3250))
    src = ipaddress.ip_address(source[0]).packed
    dst = ipaddress.ip_address(destination[0]).packed
    block = src + dst + struct.pack(">HH", source[1], destination[1]) + tlvs
    family = 0x21 if six else 0x11
    return SIGNATURE + bytes((0x21, family)) + struct.pack(">H", len(block)) + block

"""The PROXY header parser (sans-I/O): fixed vectors, limits, and properties over chunking
and garbage."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.transport.proxyheaders import SIGNATURE, tlv, v1, v2
from transport.errors import InvalidState
from transport.proxyheader import (
    V1_MAX_LENGTH,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
)


def parse(data: bytes) -> ProxyHeader | None:
    return ProxyHeaderParser().feed(data)


# -- fixed vectors ---------------------------------------------------------------------------


def test_v1_tcp4() -> None:
    header = parse(b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 3250\r\nrest")
    assert header == ProxyHeader(1, ("192.0.2.7", 56324), ("10.0.0.1", 3250), b"rest")


def test_v1_tcp6_is_normalised() -> None:
    header = parse(b"PROXY TCP6 2001:DB8:0:0::7 ::1 65535 0\r\n")
    assert header == ProxyHeader(1, ("2001:db8::7", 65535), ("::1", 0), b"")


def test_v1_unknown_relays_no_address_and_ignores_the_rest_of_its_line() -> None:
    assert parse(b"PROXY UNKNOWN\r\n\x01") == ProxyHeader(1, None, None, b"\x01")
    assert parse(b"PROXY UNKNOWN ffff::1 whatever 1 2\r\n") == ProxyHeader(1, None, None, b"")


def test_v2_proxy_ipv4_with_tlvs_skipped() -> None:
    data = bytes.fromhex(
        "0d0a0d0a000d0a515549540a"  # signature
        "21"  # v2, PROXY
        "11"  # INET, STREAM
        "0013"  # 19 bytes: 12 of addresses, one TLV of 7
        "c0000207"
        "0a000001"
        "dc04"
        "0cb2"  # 192.0.2.7 -> 10.0.0.1, 56324 -> 3250
        "ea0004"
        "76706365"  # TLV 0xEA (AWS VPC endpoint), 4 bytes
    )
    assert parse(data + b"\x01\x00") == ProxyHeader(
        2, ("192.0.2.7", 56324), ("10.0.0.1", 3250), b"\x01\x00"
    )


def test_v2_proxy_ipv6() -> None:
    header = parse(v2(("2001:db8::7", 4000), ("2001:db8::1", 3250)))
    assert header == ProxyHeader(2, ("2001:db8::7", 4000), ("2001:db8::1", 3250), b"")


def test_v2_local_relays_no_address_and_skips_its_body() -> None:
    assert parse(v2(None, tlvs=tlv(0x04, b"noop")) + b"X") == ProxyHeader(2, None, None, b"X")


def test_v2_local_ignores_the_addresses_it_carries() -> None:
    """LOCAL speaks for the balancer itself: its address block, if any, means nothing (and
    may be shorter than its family's, as it is never read)."""
    proxy = v2(("192.0.2.7", 1))
    local = proxy[:12] + b"\x20" + proxy[13:]
    assert parse(local) == ProxyHeader(2, None, None, b"")
    short = SIGNATURE + b"\x20\x21\x00\x04" + bytes(4)  # INET6 family, 4 bytes
    assert parse(short) == ProxyHeader(2, None, None, b"")


@pytest.mark.parametrize("family", [0x00, 0x30, 0x01, 0x32])
def test_v2_unspec_and_unix_families_relay_no_address(family: int) -> None:
    body = bytes(216 if family >> 4 == 3 else 0)
    data = SIGNATURE + bytes((0x21, family)) + struct.pack(">H", len(body)) + body
    assert parse(data) == ProxyHeader(2, None, None, b"")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "neither the v1 'PROXY ' prefix nor the v2 signature"),
        (b"\x01\x00\x00\x02{}", "neither the v1 'PROXY ' prefix nor the v2 signature"),
        (b"PROXI", "neither the v1 'PROXY ' prefix nor the v2 signature"),
        (b"\r\n\r\n\x00\r\nQUIX", "neither the v1 'PROXY ' prefix nor the v2 signature"),
        (b"PROXY TCP4 " + b"1" * 100, f"v1 line without CRLF in its first {V1_MAX_LENGTH} bytes"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1 line ends with LF without CR"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1 protocol is not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY\r\n", "neither the v1 'PROXY ' prefix nor the v2 signature"),
        (b"PROXY \r\n", "v1 protocol is not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1 TCP4 line has 5 fields, not 6"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1 TCP4 line has 7 fields, not 6"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "v1 TCP4 address is not valid"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "v1 TCP4 address is not valid"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1 TCP6 address is not valid"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "v1 TCP6 address with a scope id"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1 port is not a number from 0 to 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "v1 port is not a number from 0 to 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xd9\xa3\r\n", "v1 line is not ASCII"),
        (SIGNATURE + b"\x11", "v2 signature with version 1"),
        (SIGNATURE + b"\x22", "v2 command 2 (neither LOCAL nor PROXY)"),
        (SIGNATURE + b"\x21\x41", "v2 family/transport byte 0x41"),
        (SIGNATURE + b"\x21\x13", "v2 family/transport byte 0x13"),
        (SIGNATURE + b"\x21\x11\x10\x01", "v2 header announces 4097 bytes (limit 4096)"),
        (
            SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12),
            "v2 family 2 needs 36 address bytes, the header has 12",
        ),
    ],
)
def test_malformed_headers_raise_the_typed_error_naming_the_rule(data: bytes, reason: str) -> None:
    with pytest.raises(ProxyHeaderError) as caught:
        parse(data)
    assert caught.value.reason == reason


def test_a_wrong_first_byte_fails_at_once_not_after_107_bytes() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError):
        parser.feed(b"\x01")


def test_the_v2_length_limit_is_configurable() -> None:
    header = v2(("192.0.2.7", 1), tlvs=tlv(0x20, bytes(100)))
    with pytest.raises(ProxyHeaderError, match="limit 64"):
        ProxyHeaderParser(max_v2_length=64).feed(header)
    assert ProxyHeaderParser(max_v2_length=200).feed(header) is not None


def test_feeding_after_the_header_is_a_caller_bug() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(v1(("192.0.2.7", 1))) is not None
    assert parser.wanted == 0
    with pytest.raises(InvalidState):
        parser.feed(b"x")


def test_a_v1_line_of_107_bytes_is_accepted_and_one_of_108_is_not() -> None:
    six = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY UNKNOWN {six} {six} 65535 65535\r\n".encode()
    assert len(line) == V1_MAX_LENGTH  # the spec's worst case
    assert parse(line) == ProxyHeader(1, None, None, b"")
    with pytest.raises(ProxyHeaderError, match="without CRLF"):
        parse(line.replace(b"PROXY UNKNOWN", b"PROXY UNKNOWN "))
    tcp6 = f"PROXY TCP6 {six} {six} 65535 65535\r\n".encode()
    assert parse(tcp6) == ProxyHeader(1, (six, 65535), (six, 65535), b"")


# -- properties ------------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)
tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4).map(
    lambda items: b"".join(tlv(kind, value) for kind, value in items)
)


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, tuple[str, int] | None]:
    """A valid header of any kind and the source it relays."""
    kind = draw(st.sampled_from(["v1", "v1-unknown", "v2", "v2-local"]))
    hosts = draw(st.sampled_from([ipv4, ipv6]))
    source = (draw(hosts), draw(ports))
    destination = (draw(hosts), draw(ports))
    if kind == "v1":
        return v1(source, destination), source
    if kind == "v1-unknown":
        return v1(None), None
    if kind == "v2":
        return v2(source, destination, tlvs=draw(tlvs)), source
    return v2(None, tlvs=draw(tlvs)), None


def normalised(source: tuple[str, int] | None) -> tuple[str, int] | None:
    return None if source is None else (str(ipaddress.ip_address(source[0])), source[1])


@given(headers(), st.binary(max_size=64), st.data())
def test_any_split_parses_the_same(
    case: tuple[bytes, tuple[str, int] | None], after: bytes, data: st.DataObject
) -> None:
    header, source = case
    stream = header + after
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    parser = ProxyHeaderParser()
    result = None
    fed = 0
    while result is None and fed < len(chunks):
        result = parser.feed(chunks[fed])
        fed += 1
    assert result is not None, "a whole header was not recognised"
    whole = ProxyHeaderParser().feed(stream)
    assert whole is not None
    assert result.source == whole.source == normalised(source)
    assert result.destination == whole.destination
    # What followed the header is handed back, whatever the chunking.
    assert result.rest + b"".join(chunks[fed:]) == after == whole.rest


@given(headers(), st.binary(max_size=64))
def test_reading_only_what_is_wanted_never_takes_a_byte_past_the_header(
    case: tuple[bytes, tuple[str, int] | None], after: bytes
) -> None:
    header, _ = case
    stream = header + after
    parser = ProxyHeaderParser()
    offset = 0
    result = None
    while result is None:
        wanted = parser.wanted
        assert wanted >= 1
        result = parser.feed(stream[offset : offset + wanted])
        offset += wanted
    assert offset == len(header)
    assert result.rest == b""


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_random_bytes_give_need_more_a_header_or_the_typed_error(chunks: list[bytes]) -> None:
    parser = ProxyHeaderParser()
    try:
        for chunk in chunks:
            if parser.feed(chunk) is not None:
                return
    except ProxyHeaderError:
        return


@given(headers(), st.data())
def test_corrupted_headers_give_need_more_a_header_or_the_typed_error(
    case: tuple[bytes, tuple[str, int] | None], data: st.DataObject
) -> None:
    header, _ = case
    index = data.draw(st.integers(0, len(header) - 1))
    corrupted = bytearray(header)
    corrupted[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ProxyHeaderError):
        ProxyHeaderParser().feed(bytes(corrupted))


@given(st.binary(min_size=1, max_size=300))
def test_prefixed_garbage_is_bounded(garbage: bytes) -> None:
    """However long a v1-looking line without CRLF gets, it fails by byte 107."""
    parser = ProxyHeaderParser()
    stream = b"PROXY " + garbage.replace(b"\n", b"") + b"x" * V1_MAX_LENGTH
    with pytest.raises(ProxyHeaderError):
        for start in range(0, len(stream), 7):
            if parser.feed(stream[start : start + 7]) is not None:
                pytest.fail("garbage accepted")
    assert start < V1_MAX_LENGTH

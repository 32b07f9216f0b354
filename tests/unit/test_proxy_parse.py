"""The sans-IO PROXY protocol parser, against headers written by hand from the specification
("The PROXY protocol, Versions 1 & 2", haproxy.org): never built with the code under test.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wrenmq.transport.proxy import (
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    parse_header,
)

SIG = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
CONNECT = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"  # MQTT 3.1.1 CONNECT, empty client id


def v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIG + bytes((ver_cmd, fam)) + struct.pack("!H", len(body)) + body


def ipv4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


V2_TCP4 = v2(0x21, 0x11, ipv4("192.0.2.1") + ipv4("198.51.100.2") + struct.pack("!HH", 56324, 1883))
V2_TCP6 = v2(
    0x21,
    0x21,
    bytes.fromhex("20010db8000000000000000000000001")
    + bytes.fromhex("20010db8000000000000000000000002")
    + struct.pack("!HH", 4000, 8883),
)
# TLVs: PP2_TYPE_ALPN (0x01) "mqtt", PP2_TYPE_AUTHORITY (0x02) "broker.example", NOOP (0x04).
TLVS = b"\x01\x00\x04mqtt" + b"\x02\x00\x0ebroker.example" + b"\x04\x00\x00"
V2_TCP4_TLVS = v2(
    0x21, 0x11, ipv4("203.0.113.9") + ipv4("10.0.0.1") + struct.pack("!HH", 1, 2) + TLVS
)

VALID = [
    (
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 1883\r\n",
        ProxyHeader(1, ("192.0.2.1", 56324), ("198.51.100.2", 1883)),
    ),
    (
        b"PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 4000 8883\r\n",
        ProxyHeader(1, ("2001:db8::1", 4000), ("2001:db8::2", 8883)),
    ),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, None, None)),
    (
        # 2.1: the worst case, 107 bytes with the CRLF; UNKNOWN ignores what follows it.
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        ProxyHeader(1, None, None),
    ),
    (b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", None),
    (V2_TCP4, ProxyHeader(2, ("192.0.2.1", 56324), ("198.51.100.2", 1883))),
    (V2_TCP6, ProxyHeader(2, ("2001:db8::1", 4000), ("2001:db8::2", 8883))),
    (
        V2_TCP4_TLVS,
        ProxyHeader(
            2,
            ("203.0.113.9", 1),
            ("10.0.0.1", 2),
            tlvs=((0x01, b"mqtt"), (0x02, b"broker.example"), (0x04, b"")),
        ),
    ),
    # UDP over IPv4 (0x12): valid, the addresses are still the client's.
    (
        v2(0x21, 0x12, ipv4("192.0.2.7") + ipv4("192.0.2.8") + struct.pack("!HH", 7, 8)),
        ProxyHeader(2, ("192.0.2.7", 7), ("192.0.2.8", 8)),
    ),
    # LOCAL: the proxy's own connection (health check); addresses, if any, are ignored.
    (v2(0x20, 0x00, b""), ProxyHeader(2, None, None, local=True)),
    (
        v2(0x20, 0x11, ipv4("192.0.2.1") + ipv4("192.0.2.2") + b"\x00\x01\x00\x02"),
        ProxyHeader(2, None, None, local=True),
    ),
    # PROXY with AF_UNSPEC, and with AF_UNIX: no IP address, the socket's own peer stands.
    (v2(0x21, 0x00, b"\x01\x00\x00"), ProxyHeader(2, None, None, tlvs=((1, b""),))),
    (v2(0x21, 0x31, b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")), None),
]


@pytest.mark.parametrize(("header", "expected"), VALID)
def test_valid_headers(header: bytes, expected: ProxyHeader | None) -> None:
    parsed = parse_header(header + CONNECT)
    assert parsed is not None
    got, length = parsed
    assert length == len(header)
    if expected is None:
        assert got.version in (1, 2)
    else:
        assert got == expected


def test_the_longest_v1_header_is_107_bytes() -> None:
    header = VALID[3][0]
    assert len(header) == 107
    too_long = header.replace(b"UNKNOWN ", b"UNKNOWN  ")
    with pytest.raises(ProxyProtocolError, match="CRLF"):
        parse_header(too_long)


@pytest.mark.parametrize(("header", "expected"), VALID)
def test_byte_at_a_time_equals_one_chunk(header: bytes, expected: ProxyHeader | None) -> None:
    reader = ProxyHeaderReader()
    data = header + CONNECT
    results = [reader.feed(data[i : i + 1]) for i in range(len(header))]
    assert all(r is None for r in results[:-1])
    assert results[-1] == parse_header(data)[0]  # type: ignore[index]
    assert reader.rest == b""
    one = ProxyHeaderReader()
    assert one.feed(data) == results[-1]
    assert one.rest == CONNECT


def test_rest_keeps_what_follows_the_header() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r") is None
    header = reader.feed(b"\n" + CONNECT + CONNECT)
    assert header is not None and header.source == ("192.0.2.1", 1)
    assert reader.rest == CONNECT + CONNECT
    with pytest.raises(RuntimeError):
        reader.feed(b"more")


@pytest.mark.parametrize(
    "prefix",
    [b"", b"P", b"PROXY", b"PROXY ", b"PROXY TCP4 1.2.3.4", SIG[:1], SIG[:11], SIG, V2_TCP4[:15]],
)
def test_incomplete_headers_need_more(prefix: bytes) -> None:
    assert parse_header(prefix) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # not a PROXY header at all: refused on the first byte that differs
        (CONNECT, "no PROXY protocol signature"),
        (b"\x10", "no PROXY protocol signature"),
        (b"GET /mqtt HTTP/1.1\r\n", "no PROXY protocol signature"),
        (b"PROXX", "no PROXY protocol signature"),
        (b"proxy TCP4", "no PROXY protocol signature"),
        (SIG[:5] + b"x", "no PROXY protocol signature"),
        # v1
        (b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n", "unknown protocol family"),
        (b"PROXY \r\n", "unknown protocol family"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n", "needs 4 address fields"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n", "needs 4 address fields"),
        (b"PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n", "needs 4 address fields"),
        (b"PROXY TCP4 256.2.3.4 1.2.3.5 1 2\r\n", "bad IP address"),
        (b"PROXY TCP4 01.2.3.4 1.2.3.5 1 2\r\n", "bad IP address"),
        (b"PROXY TCP4 host 1.2.3.5 1 2\r\n", "bad IP address"),
        (b"PROXY TCP4 ::1 1.2.3.5 1 2\r\n", "is not an IPv4 address"),
        (b"PROXY TCP6 ::1 1.2.3.5 1 2\r\n", "is not an IPv6 address"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 +1 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 \r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 123456 2\r\n", "bad port"),
        ("PROXY TCP4 1.2.3.4 1.2.3.5 \uff11 2\r\n".encode(), "non-ASCII"),  # fullwidth 1
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n", "bare CR or LF"),
        (b"PROXY TCP4 1.2.3.4\r1.2.3.5 1 2", "bare CR or LF"),
        (b"PROXY UNKNOWN " + b"x" * 100, "without CRLF"),
        # v2
        (SIG + b"\x11\x11", "version 1"),
        (SIG + b"\x22\x11", "unknown command"),
        (SIG + b"\x21\x41", "unknown address family"),
        (SIG + b"\x21\x13", "unknown address family"),
        (v2(0x21, 0x11, b"\x01\x02\x03\x04"), "too short for its addresses"),
        (v2(0x21, 0x21, bytes(12)), "too short for its addresses"),
        (v2(0x21, 0x11, bytes(12) + b"\x01\x00"), "truncated TLV"),
        (v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05abc"), "runs past the header"),
    ],
)
def test_malformed_headers(data: bytes, reason: str) -> None:
    with pytest.raises(ProxyProtocolError, match=reason):
        parse_header(data)
    reader = ProxyHeaderReader()
    with pytest.raises(ProxyProtocolError, match=reason):
        for i in range(len(data)):
            reader.feed(data[i : i + 1])


@given(st.binary(max_size=300))
def test_garbage_parses_needs_more_or_is_refused(data: bytes) -> None:
    for candidate in (data, b"PROXY " + data, SIG + data):
        try:
            parse_header(candidate)
        except ProxyProtocolError:
            pass


@given(st.binary(min_size=1, max_size=120), st.integers(min_value=1, max_value=50))
def test_chunking_does_not_change_the_outcome(data: bytes, step: int) -> None:
    candidate = (b"PROXY " if data[0] % 2 else SIG) + data
    try:
        expected: object = parse_header(candidate)
    except ProxyProtocolError as exc:
        expected = type(exc)
    reader = ProxyHeaderReader()
    got: object = None
    try:
        for i in range(0, len(candidate), step):
            got = reader.feed(candidate[i : i + step])
            if got is not None:
                break
    except ProxyProtocolError as exc:
        got = type(exc)
    if expected is None:
        assert got is None
    elif expected is ProxyProtocolError:
        assert got is ProxyProtocolError
    else:
        assert isinstance(expected, tuple)
        assert got == expected[0]
        assert reader.rest == candidate[expected[1] :]

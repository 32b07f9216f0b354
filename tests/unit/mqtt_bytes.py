"""Hand-written MQTT wire builders for the golden and malformed-packet tests.

Written from the packet layouts of MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019), not from
``wrenmq.codec``: nothing here imports wrenmq, so a test comparing the codec's bytes with these can
fail (STYLE rule 11). Shared by ``test_codec_golden.py`` and ``test_codec_malformed.py``.
"""

from __future__ import annotations

# Fixed header first bytes: packet type in the high nibble, flags in the low one (2.1.2, 2.1.3).
CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30  # | DUP 0x08 | QoS << 1 | RETAIN 0x01
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x62  # flags 0010 are required
PUBCOMP = 0x70
SUBSCRIBE = 0x82  # flags 0010 are required
SUBACK = 0x90
UNSUBSCRIBE = 0xA2  # flags 0010 are required
UNSUBACK = 0xB0
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0
AUTH = 0xF0

# CONNECT flags (3.1.2.3).
USERNAME_FLAG = 0x80
PASSWORD_FLAG = 0x40
WILL_RETAIN = 0x20
WILL_QOS_1 = 0x08
WILL_QOS_2 = 0x10
WILL_FLAG = 0x04
CLEAN = 0x02
RESERVED = 0x01

# Property identifiers (MQTT 5.0, table 2-4).
PAYLOAD_FORMAT_INDICATOR = 0x01
MESSAGE_EXPIRY_INTERVAL = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_IDENTIFIER = 0x0B
SESSION_EXPIRY_INTERVAL = 0x11
ASSIGNED_CLIENT_IDENTIFIER = 0x12
SERVER_KEEP_ALIVE = 0x13
AUTHENTICATION_METHOD = 0x15
AUTHENTICATION_DATA = 0x16
REQUEST_PROBLEM_INFORMATION = 0x17
WILL_DELAY_INTERVAL = 0x18
REQUEST_RESPONSE_INFORMATION = 0x19
RESPONSE_INFORMATION = 0x1A
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


def varint(n: int) -> bytes:
    """Variable Byte Integer, with the encoding algorithm of section 1.5.5 as the spec prints it."""
    assert 0 <= n <= 268_435_455
    out = bytearray()
    while True:
        encoded = n % 128
        n //= 128
        if n > 0:
            encoded |= 128
        out.append(encoded)
        if n == 0:
            return bytes(out)


def u8(n: int) -> bytes:
    """One byte."""
    return bytes([n])


def u16(n: int) -> bytes:
    """Two Byte Integer, big-endian (1.5.2)."""
    return bytes([n >> 8, n & 0xFF])


def u32(n: int) -> bytes:
    """Four Byte Integer, big-endian (1.5.3)."""
    return bytes([(n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF])


def s(text: str | bytes) -> bytes:
    """UTF-8 Encoded String with its two-byte length (1.5.4); ``bytes`` are used as they are.

    Passing raw bytes is how the malformed tests write ill-formed UTF-8.
    """
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return u16(len(raw)) + raw


def bin_(data: bytes) -> bytes:
    """Binary Data with its two-byte length (1.5.6)."""
    return u16(len(data)) + data


def fixed(first_byte: int, body: bytes) -> bytes:
    """A whole packet: first byte, Remaining Length, then the variable header and payload."""
    return bytes([first_byte]) + varint(len(body)) + body


def props(*items: bytes) -> bytes:
    """A property block: Property Length followed by the properties (2.2.2.1)."""
    body = b"".join(items)
    return varint(len(body)) + body


# One property each: identifier (a one-byte Variable Byte Integer for every defined id) + value.
def p_byte(ident: int, value: int) -> bytes:
    """A Byte property."""
    return bytes([ident, value])


def p_u16(ident: int, value: int) -> bytes:
    """A Two Byte Integer property."""
    return bytes([ident]) + u16(value)


def p_u32(ident: int, value: int) -> bytes:
    """A Four Byte Integer property."""
    return bytes([ident]) + u32(value)


def p_varint(ident: int, value: int) -> bytes:
    """A Variable Byte Integer property."""
    return bytes([ident]) + varint(value)


def p_str(ident: int, value: str | bytes) -> bytes:
    """A UTF-8 Encoded String property."""
    return bytes([ident]) + s(value)


def p_bin(ident: int, value: bytes) -> bytes:
    """A Binary Data property."""
    return bytes([ident]) + bin_(value)


def p_user(key: str | bytes, value: str | bytes) -> bytes:
    """A User Property: a UTF-8 String Pair (1.5.7)."""
    return bytes([USER_PROPERTY]) + s(key) + s(value)


def connect(
    level: int,
    flags: int,
    keepalive: int,
    rest: bytes,
    *,
    name: str | bytes | None = None,
    properties: bytes | None = None,
) -> bytes:
    """CONNECT: protocol name and level, connect flags, keep alive, [properties], then ``rest``.

    ``rest`` is the payload in spec order: client id, [will properties], will topic, will payload,
    user name, password. The name defaults to ``MQIsdp`` for level 3 and ``MQTT`` otherwise; the
    property block defaults to an empty one at level 5 and to nothing below it.
    """
    if name is None:
        name = "MQIsdp" if level == 3 else "MQTT"
    if properties is None:
        properties = b"\x00" if level == 5 else b""
    return fixed(CONNECT, s(name) + bytes([level, flags]) + u16(keepalive) + properties + rest)

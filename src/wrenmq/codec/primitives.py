"""Wire primitives: variable byte integers, two-byte integers, UTF-8 strings and binary data.

Decoders take a buffer, a position and the end of the packet, and return ``(value, new_pos)``;
running past ``end`` is a Malformed Packet. stdlib only; no IO, no clock.
"""

from __future__ import annotations

from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_VARINT",
    "decode_binary",
    "decode_string",
    "decode_varint",
    "encode_binary",
    "encode_string",
    "encode_varint",
    "malformed",
]

MAX_VARINT = 268_435_455  # the largest value four variable-byte-integer bytes can hold

_VARINT_CACHE = [bytes([n]) for n in range(128)]


def malformed(message: str) -> RemoteProtocolError:
    """A Malformed Packet error (0x81) with ``message``."""
    return RemoteProtocolError(ReasonCode.MALFORMED_PACKET, message)


def encode_varint(value: int) -> bytes:
    """Encode a variable byte integer (1.5.5)."""
    if value < 128:
        if value < 0:
            raise LocalProtocolError(ReasonCode.MALFORMED_PACKET, f"negative varint {value}")
        return _VARINT_CACHE[value]
    if value > MAX_VARINT:
        raise LocalProtocolError(
            ReasonCode.PACKET_TOO_LARGE, f"varint {value} exceeds {MAX_VARINT}"
        )
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode a variable byte integer at ``pos``; at most four bytes [MQTT-1.5.5-1]."""
    value = 0
    shift = 0
    for _ in range(4):
        if pos >= end:
            raise malformed("variable byte integer runs past the end of the packet")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if not byte and shift:
                raise malformed("variable byte integer is not minimally encoded")  # [MQTT-1.5.5-1]
            return value, pos
        shift += 7
    raise malformed("variable byte integer longer than four bytes")


def encode_string(value: str) -> bytes:
    """Encode a UTF-8 string with its two-byte length prefix (1.5.4)."""
    raw = value.encode("utf-8")
    n = len(raw)
    if n > 0xFFFF:
        raise LocalProtocolError(ReasonCode.MALFORMED_PACKET, "string longer than 65535 bytes")
    return n.to_bytes(2, "big") + raw


def encode_binary(value: bytes | bytearray | memoryview) -> bytes:
    """Encode binary data with its two-byte length prefix (1.5.6)."""
    n = len(value)
    if n > 0xFFFF:
        raise LocalProtocolError(ReasonCode.MALFORMED_PACKET, "binary data longer than 65535 bytes")
    return n.to_bytes(2, "big") + bytes(value)


def decode_string(buf: bytes | memoryview, pos: int, end: int) -> tuple[str, int]:
    """Decode a length-prefixed UTF-8 string, rejecting what [MQTT-1.5.4-1..2] forbid."""
    if pos + 2 > end:
        raise malformed("string length runs past the end of the packet")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("string runs past the end of the packet")
    try:
        # Python's strict UTF-8 codec rejects overlong forms and encoded surrogates [MQTT-1.5.4-1].
        text = str(buf[pos + 2 : stop], "utf-8")
    except UnicodeDecodeError as exc:
        raise malformed("string is not well-formed UTF-8") from exc
    if "\x00" in text:
        raise malformed("string contains U+0000")  # [MQTT-1.5.4-2]
    return text, stop


def decode_binary(buf: bytes | memoryview, pos: int, end: int) -> tuple[bytes, int]:
    """Decode length-prefixed binary data."""
    if pos + 2 > end:
        raise malformed("binary length runs past the end of the packet")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("binary data runs past the end of the packet")
    return bytes(buf[pos + 2 : stop]), stop

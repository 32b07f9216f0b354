"""Raw-socket peer and hand-written packet builders/parsers for the conformance tests.

Nothing here imports ``wrenmq``: the bytes sent and the bytes expected are written from the MQTT
3.1.1 and 5.0 packet layouts (STYLE rule 11), on top of the primitives of
``tests/unit/mqtt_bytes.py``. Parsing is deliberately strict: a response the tests cannot take apart
completely is a failure, so an encoder bug cannot hide behind a lenient parser.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unit.mqtt_bytes import CLEAN, fixed, props, s, u16, varint
from unit.mqtt_bytes import connect as _connect

TIMEOUT = 2.0

# ---------------------------------------------------------------------------------------------
# Builders: one line per packet layout.


def connect(
    level: int = 4,
    client_id: str = "c",
    *,
    clean: bool = True,
    keepalive: int = 60,
    properties: Iterable[bytes] = (),
    flags: int = 0,
    name: str | bytes | None = None,
    rest: bytes = b"",
) -> bytes:
    """CONNECT; ``flags`` are ORed into the connect flags, ``rest`` follows the client id."""
    cflags = flags | (CLEAN if clean else 0)
    block = props(*properties) if level == 5 else None
    return _connect(level, cflags, keepalive, s(client_id) + rest, name=name, properties=block)


def publish(
    topic: str | bytes,
    payload: bytes = b"",
    *,
    qos: int = 0,
    packet_id: int = 0,
    v5: bool = False,
    properties: Iterable[bytes] = (),
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    """PUBLISH (a QoS 3 or DUP-on-QoS-0 packet is allowed on purpose)."""
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = s(topic) + (u16(packet_id) if qos else b"")
    if v5:
        body += props(*properties)
    return fixed(first, body + payload)


def subscribe(
    packet_id: int,
    *filters: tuple[str | bytes, int],
    v5: bool = False,
    properties: Iterable[bytes] = (),
) -> bytes:
    """SUBSCRIBE; each filter comes with its raw options byte."""
    body = u16(packet_id) + (props(*properties) if v5 else b"")
    body += b"".join(s(f) + bytes([opts]) for f, opts in filters)
    return fixed(0x82, body)


def unsubscribe(packet_id: int, *filters: str, v5: bool = False) -> bytes:
    """UNSUBSCRIBE."""
    body = u16(packet_id) + (b"\x00" if v5 else b"") + b"".join(s(f) for f in filters)
    return fixed(0xA2, body)


def ack(first: int, packet_id: int) -> bytes:
    """A two-byte acknowledgement: PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70."""
    return bytes([first, 2]) + u16(packet_id)


def disconnect_v5(reason: int = 0, properties: Iterable[bytes] = ()) -> bytes:
    """An MQTT 5 DISCONNECT with a reason code and properties."""
    return fixed(0xE0, bytes([reason]) + props(*properties))


PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
NO_PROBLEM_INFO = b"\x17\x00"  # Request Problem Information = 0: no reason strings

# ---------------------------------------------------------------------------------------------
# Parsers.

# Property identifier -> wire type (MQTT 5.0 table 2-4).
_BYTE, _TWO, _FOUR, _VAR, _STR, _BIN, _PAIR = range(7)
_TYPES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _STR, 0x08: _STR, 0x09: _BIN, 0x0B: _VAR, 0x11: _FOUR,
    0x12: _STR, 0x13: _TWO, 0x15: _STR, 0x16: _BIN, 0x17: _BYTE, 0x18: _FOUR, 0x19: _BYTE,
    0x1A: _STR, 0x1C: _STR, 0x1F: _STR, 0x21: _TWO, 0x22: _TWO, 0x23: _TWO, 0x24: _BYTE,
    0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A Variable Byte Integer at ``pos``: (value, position after it)."""
    value = shift = 0
    for i in range(4):
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise AssertionError(f"variable byte integer longer than 4 bytes at {pos}: {data.hex()}")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    n = (data[pos] << 8) | data[pos + 1]
    assert pos + 2 + n <= len(data), f"string runs past the packet: {data.hex()}"
    return data[pos + 2 : pos + 2 + n], pos + 2 + n


def parse_props(data: bytes, pos: int) -> tuple[dict[int, list[Any]], int]:
    """A property block at ``pos``: ({identifier: [values in order]}, position after it)."""
    length, pos = read_varint(data, pos)
    stop = pos + length
    assert stop <= len(data), f"property length runs past the packet: {data.hex()}"
    out: dict[int, list[Any]] = {}
    while pos < stop:
        ident = data[pos]
        pos += 1
        kind = _TYPES[ident]
        value: Any
        if kind == _BYTE:
            value, pos = data[pos], pos + 1
        elif kind == _TWO:
            value, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif kind == _FOUR:
            value, pos = int.from_bytes(data[pos : pos + 4], "big"), pos + 4
        elif kind == _VAR:
            value, pos = read_varint(data, pos)
        elif kind == _STR:
            raw, pos = _string(data, pos)
            value = raw.decode("utf-8")
        elif kind == _BIN:
            value, pos = _string(data, pos)
        else:
            key, pos = _string(data, pos)
            val, pos = _string(data, pos)
            value = (key.decode("utf-8"), val.decode("utf-8"))
        out.setdefault(ident, []).append(value)
    assert pos == stop, f"property block overruns its length: {data.hex()}"
    return out, stop


def body_of(packet: bytes) -> tuple[int, bytes]:
    """(first byte, variable header + payload) of one whole packet."""
    length, pos = read_varint(packet, 1)
    assert len(packet) == pos + length
    return packet[0], packet[pos:]


def reason_and_props(packet: bytes, first: int) -> tuple[int, dict[int, list[Any]]]:
    """An MQTT 5 DISCONNECT (or AUTH): reason code (0 if omitted) and properties."""
    got_first, body = body_of(packet)
    assert got_first == first, f"expected a 0x{first:02x} packet, got {packet.hex()}"
    if not body:
        return 0, {}
    if len(body) == 1:
        return body[0], {}
    properties, end = parse_props(body, 1)
    assert end == len(body), packet.hex()
    return body[0], properties


def disconnect_reason(packet: bytes) -> int:
    """The reason code of an MQTT 5 DISCONNECT (its only allowed properties are checked too)."""
    reason, properties = reason_and_props(packet, 0xE0)
    # A server's DISCONNECT may carry a reason string, user properties or a server reference;
    # never a session expiry interval [MQTT-3.14.2-2].
    assert set(properties) <= {0x1F, 0x26, 0x1C}, properties
    return reason


@dataclass
class ConnAck:
    """A parsed CONNACK."""

    session_present: int
    reason: int
    properties: dict[int, list[Any]]


def parse_connack(packet: bytes, v5: bool) -> ConnAck:
    """A CONNACK of either protocol family."""
    first, body = body_of(packet)
    assert first == 0x20, packet.hex()
    assert body[0] in (0, 1), f"CONNACK reserved flags set: {packet.hex()}"  # [MQTT-3.2.2-1]
    if not v5:
        assert len(body) == 2, packet.hex()
        return ConnAck(body[0], body[1], {})
    properties, end = parse_props(body, 2)
    assert end == len(body), packet.hex()
    return ConnAck(body[0], body[1], properties)


@dataclass
class Message:
    """A parsed PUBLISH."""

    dup: bool
    qos: int
    retain: bool
    topic: str
    packet_id: int
    properties: dict[int, list[Any]]
    payload: bytes


def parse_publish(packet: bytes, v5: bool) -> Message:
    """A PUBLISH received from the broker."""
    first, body = body_of(packet)
    assert first >> 4 == 3, f"expected PUBLISH, got {packet.hex()}"
    qos = (first >> 1) & 3
    topic, pos = _string(body, 0)
    packet_id = 0
    if qos:
        packet_id = (body[pos] << 8) | body[pos + 1]
        pos += 2
    properties: dict[int, list[Any]] = {}
    if v5:
        properties, pos = parse_props(body, pos)
    return Message(
        bool(first & 8), qos, bool(first & 1), topic.decode(), packet_id, properties, body[pos:]
    )


# ---------------------------------------------------------------------------------------------
# The peer.


class PeerClosed(AssertionError):
    """The broker closed the connection while a packet was expected."""


class Peer:
    """A blocking TCP client speaking bytes: send what the test built, read whole packets."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = port

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (no DISCONNECT: an abrupt loss, as a test usually wants)."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise PeerClosed(f"connection closed after {bytes(buf).hex()!r}")
            buf += chunk
        return bytes(buf)

    def recv(self) -> bytes:
        """One whole packet (fixed header included)."""
        head = bytearray(self._exact(2))
        while head[-1] & 0x80:
            assert len(head) < 5, f"remaining length longer than 4 bytes: {head.hex()}"
            head += self._exact(1)
        length, _ = read_varint(bytes(head), 1)
        return bytes(head) + self._exact(length)

    def expect(self, data: bytes) -> None:
        """The next packet is exactly ``data``."""
        got = self.recv()
        assert got == data, f"expected {data.hex(' ')}, got {got.hex(' ')}"

    def expect_closed(self) -> None:
        """The broker closes the connection without sending anything more."""
        try:
            rest = self.sock.recv(4096)
        except ConnectionResetError:
            rest = b""
        except TimeoutError as exc:
            raise AssertionError("the broker did not close the connection") from exc
        assert rest == b"", f"expected a close, got {rest.hex(' ')}"

    def sync(self) -> None:
        """PINGREQ -> PINGRESP: everything the broker sent before it has been read."""
        self.send(PINGREQ)
        self.expect(PINGRESP)

    def connect(self, level: int = 4, client_id: str = "c", **kwargs: Any) -> bytes:
        """Send CONNECT, return the CONNACK bytes."""
        self.send(connect(level, client_id, **kwargs))
        return self.recv()

    def connect_ok(self, level: int = 4, client_id: str = "c", **kwargs: Any) -> ConnAck:
        """CONNECT that must be accepted; returns the parsed CONNACK."""
        ack = parse_connack(self.connect(level, client_id, **kwargs), level == 5)
        assert ack.reason == 0, ack
        return ack


__all__ = [
    "CONNACK_ACCEPTED",
    "DISCONNECT",
    "NO_PROBLEM_INFO",
    "PINGREQ",
    "PINGRESP",
    "ConnAck",
    "Message",
    "Peer",
    "PeerClosed",
    "ack",
    "body_of",
    "connect",
    "disconnect_reason",
    "disconnect_v5",
    "fixed",
    "parse_connack",
    "parse_props",
    "parse_publish",
    "publish",
    "read_varint",
    "reason_and_props",
    "subscribe",
    "u16",
    "unsubscribe",
    "varint",
]

"""A raw-socket MQTT peer with hand-written packet builders, for the integration tests.

Used where paho cannot misbehave on purpose: never acknowledging, going silent, closing the socket
without DISCONNECT, sending a topic alias with an empty topic. Written from the packet layouts of
MQTT 3.1.1 and 5.0; nothing here imports wrenmq, so the broker's bytes are checked independently.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

TIMEOUT = 5.0

# Packet types (high nibble of the first byte).
CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, UNSUBACK, PINGRESP, DISCONNECT, AUTH = 9, 11, 13, 14, 15

# Property identifiers used by the tests (MQTT 5.0 table 2-4).
MESSAGE_EXPIRY_INTERVAL = 0x02
SUBSCRIPTION_IDENTIFIER = 0x0B
SESSION_EXPIRY_INTERVAL = 0x11
WILL_DELAY_INTERVAL = 0x18
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_PACKET_SIZE = 0x27

_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_U16 = {0x13, 0x21, 0x22, 0x23}
_U32 = {0x02, 0x11, 0x18, 0x27}
_VARINT = {0x0B}
_STRING = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_BINARY = {0x09, 0x16}
_PAIR = {0x26}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


def prop(ident: int, value: int | str | bytes) -> bytes:
    """One property, typed by its identifier."""
    if ident in _BYTE:
        return bytes((ident, value))  # type: ignore[arg-type]
    if ident in _U16:
        return bytes((ident,)) + struct.pack("!H", value)
    if ident in _U32:
        return bytes((ident,)) + struct.pack("!I", value)
    if ident in _VARINT:
        return bytes((ident,)) + varint(value)  # type: ignore[arg-type]
    assert isinstance(value, str | bytes)
    return bytes((ident,)) + string(value)


def props(*items: bytes) -> bytes:
    body = b"".join(items)
    return varint(len(body)) + body


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    props: bytes = b""  # v5 will properties, without the length


def connect(
    client_id: str,
    *,
    version: int = 4,
    keepalive: int = 60,
    clean: bool = True,
    will: Will | None = None,
    properties: bytes = b"",
) -> bytes:
    flags = 0x02 if clean else 0
    payload = string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if version == 5:
            payload += props(will.props)
        payload += string(will.topic) + string(will.payload)
    head = string("MQTT") + bytes((version, flags)) + struct.pack("!H", keepalive)
    if version == 5:
        head += props(properties)
    return _packet(0x10, head + payload)


def publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 0,
    retain: bool = False,
    dup: bool = False,
    version: int = 4,
    properties: bytes = b"",
) -> bytes:
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = string(topic) + (struct.pack("!H", packet_id) if qos else b"")
    if version == 5:
        body += props(properties)
    return _packet(first, body + payload)


def subscribe(
    packet_id: int, filters: list[tuple[str, int]], *, version: int = 4, properties: bytes = b""
) -> bytes:
    """SUBSCRIBE; each filter comes with its options byte (QoS | NL 0x04 | RAP 0x08 | RH << 4)."""
    body = struct.pack("!H", packet_id)
    if version == 5:
        body += props(properties)
    for topic_filter, options in filters:
        body += string(topic_filter) + bytes((options,))
    return _packet(0x82, body)


def ack(kind: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP with reason Success."""
    return bytes(((kind << 4) | (2 if kind == PUBREL else 0), 2)) + struct.pack("!H", packet_id)


PINGREQ = b"\xc0\x00"


def disconnect(*, version: int = 4, reason: int = 0, properties: bytes = b"") -> bytes:
    if version < 5:
        return b"\xe0\x00"
    return _packet(0xE0, bytes((reason,)) + props(properties))


def parse_props(data: bytes) -> tuple[list[tuple[int, object]], bytes]:
    """Split a property block off ``data``: ([(identifier, value)], rest)."""
    length, i = _read_varint(data, 0)
    end = i + length
    out: list[tuple[int, object]] = []
    while i < end:
        ident = data[i]
        i += 1
        value: object
        if ident in _BYTE:
            value, i = data[i], i + 1
        elif ident in _U16:
            value, i = struct.unpack_from("!H", data, i)[0], i + 2
        elif ident in _U32:
            value, i = struct.unpack_from("!I", data, i)[0], i + 4
        elif ident in _VARINT:
            value, i = _read_varint(data, i)
        elif ident in _STRING | _BINARY:
            n = struct.unpack_from("!H", data, i)[0]
            raw = data[i + 2 : i + 2 + n]
            value, i = (raw.decode() if ident in _STRING else raw), i + 2 + n
        elif ident in _PAIR:
            k = struct.unpack_from("!H", data, i)[0]
            key = data[i + 2 : i + 2 + k].decode()
            i += 2 + k
            v = struct.unpack_from("!H", data, i)[0]
            value = (key, data[i + 2 : i + 2 + v].decode())
            i += 2 + v
        else:
            raise AssertionError(f"unknown property 0x{ident:02x}")
        out.append((ident, value))
    return out, data[end:]


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    """(value, index after it) for the Variable Byte Integer at ``data[i]``."""
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


@dataclass(frozen=True)
class Packet:
    first: int
    body: bytes

    @property
    def type(self) -> int:
        return self.first >> 4


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    packet_id: int
    dup: bool
    retain: bool
    properties: list[tuple[int, object]] = field(default_factory=list)


def parse_publish(pkt: Packet, *, version: int = 4) -> Message:
    assert pkt.type == PUBLISH, pkt
    qos = (pkt.first >> 1) & 3
    n = struct.unpack_from("!H", pkt.body)[0]
    topic = pkt.body[2 : 2 + n].decode()
    rest = pkt.body[2 + n :]
    packet_id = 0
    if qos:
        packet_id = struct.unpack_from("!H", rest)[0]
        rest = rest[2:]
    properties: list[tuple[int, object]] = []
    if version == 5:
        properties, rest = parse_props(rest)
    return Message(
        topic, rest, qos, packet_id, bool(pkt.first & 0x08), bool(pkt.first & 1), properties
    )


class Raw:
    """A blocking MQTT peer over a plain socket."""

    def __init__(self, port: int, *, version: int = 4, source: str | None = None) -> None:
        """Connect to 127.0.0.1:``port``, from the loopback address ``source`` if given."""
        self.version = version
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0) if source else None
        )
        self._buf = b""

    def send(self, *chunks: bytes) -> None:
        self.sock.sendall(b"".join(chunks))

    def connect(self, client_id: str, **kwargs: object) -> Packet:
        """Send CONNECT and return the CONNACK."""
        self.send(connect(client_id, version=self.version, **kwargs))  # type: ignore[arg-type]
        pkt = self.recv()
        assert pkt is not None and pkt.type == CONNACK, pkt
        return pkt

    def _fill(self, n: int, deadline: float) -> bool:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no data within {TIMEOUT} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return False
            self._buf += chunk
        return True

    def recv(self, timeout: float = TIMEOUT) -> Packet | None:
        """The next packet, or None if the broker closed the connection."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        i, length, shift = 1, 0, 0
        while True:
            if not self._fill(i + 1, deadline):
                return None
            b = self._buf[i]
            i += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if not self._fill(i + length, deadline):
            return None
        pkt = Packet(self._buf[0], self._buf[i : i + length])
        self._buf = self._buf[i + length :]
        return pkt

    def recv_publish(self, timeout: float = TIMEOUT) -> Message:
        pkt = self.recv(timeout)
        assert pkt is not None, "connection closed, PUBLISH expected"
        return parse_publish(pkt, version=self.version)

    def silent(self, seconds: float) -> bool:
        """True if nothing arrives (and the connection stays open) for ``seconds``."""
        try:
            pkt = self.recv(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"expected silence, got {pkt}")

    def until_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Read until the broker closes the connection; the packets it sent before."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            pkt = self.recv(max(0.0, deadline - time.monotonic()))
            if pkt is None:
                return got
            got.append(pkt)

    def close(self) -> None:
        self.sock.close()

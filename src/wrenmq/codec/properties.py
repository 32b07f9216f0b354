"""MQTT 5 properties (section 2.2.2): the metadata table, the value class, encode and decode.

One row per property: identifier, attribute name, wire type, and the packets allowed to carry it
(``WILL`` stands for the will properties inside CONNECT). Decoding is a table lookup, so a property
the packet may not carry is a table miss. stdlib only; no IO, no clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from wrenmq.codec.primitives import (
    decode_binary,
    decode_string,
    decode_varint,
    encode_binary,
    encode_string,
    encode_varint,
    malformed,
)
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.types import PacketType
from wrenmq.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "NO_PROPERTIES",
    "PROPERTY_TABLE",
    "WILL",
    "Properties",
    "PropertySpec",
    "check_allowed",
    "decode_properties",
    "encode_properties",
    "encode_properties_body",
]

WILL: Final = 16  # pseudo packet type for will properties

# Wire types.
BYTE, TWO, FOUR, VARINT, STRING, BINARY, PAIR = range(7)

_P = PacketType


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One row of the property table."""

    identifier: int
    name: str
    wire_type: int
    packets: frozenset[int]
    repeatable: bool = False


_ROWS: list[tuple[int, str, int, set[int]]] = [
    (0x01, "payload_format_indicator", BYTE, {_P.PUBLISH, WILL}),
    (0x02, "message_expiry_interval", FOUR, {_P.PUBLISH, WILL}),
    (0x03, "content_type", STRING, {_P.PUBLISH, WILL}),
    (0x08, "response_topic", STRING, {_P.PUBLISH, WILL}),
    (0x09, "correlation_data", BINARY, {_P.PUBLISH, WILL}),
    (0x0B, "subscription_identifiers", VARINT, {_P.PUBLISH, _P.SUBSCRIBE}),
    (0x11, "session_expiry_interval", FOUR, {_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    (0x12, "assigned_client_identifier", STRING, {_P.CONNACK}),
    (0x13, "server_keep_alive", TWO, {_P.CONNACK}),
    (0x15, "authentication_method", STRING, {_P.CONNECT, _P.CONNACK, _P.AUTH}),
    (0x16, "authentication_data", BINARY, {_P.CONNECT, _P.CONNACK, _P.AUTH}),
    (0x17, "request_problem_information", BYTE, {_P.CONNECT}),
    (0x18, "will_delay_interval", FOUR, {WILL}),
    (0x19, "request_response_information", BYTE, {_P.CONNECT}),
    (0x1A, "response_information", STRING, {_P.CONNACK}),
    (0x1C, "server_reference", STRING, {_P.CONNACK, _P.DISCONNECT}),
    (
        0x1F,
        "reason_string",
        STRING,
        {
            _P.CONNACK, _P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP,
            _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH,
        },
    ),
    (0x21, "receive_maximum", TWO, {_P.CONNECT, _P.CONNACK}),
    (0x22, "topic_alias_maximum", TWO, {_P.CONNECT, _P.CONNACK}),
    (0x23, "topic_alias", TWO, {_P.PUBLISH}),
    (0x24, "maximum_qos", BYTE, {_P.CONNACK}),
    (0x25, "retain_available", BYTE, {_P.CONNACK}),
    (0x26, "user_properties", PAIR, set(PacketType) | {WILL}),
    (0x27, "maximum_packet_size", FOUR, {_P.CONNECT, _P.CONNACK}),
    (0x28, "wildcard_subscription_available", BYTE, {_P.CONNACK}),
    (0x29, "subscription_identifier_available", BYTE, {_P.CONNACK}),
    (0x2A, "shared_subscription_available", BYTE, {_P.CONNACK}),
]  # fmt: skip

PROPERTY_TABLE: Final[dict[int, PropertySpec]] = {
    # Only User Property and (in PUBLISH) Subscription Identifier may repeat [2.2.2.2].
    ident: PropertySpec(ident, name, wtype, frozenset(int(p) for p in pkts), ident in (0x0B, 0x26))
    for ident, name, wtype, pkts in _ROWS
}
_BY_NAME: Final[dict[str, PropertySpec]] = {s.name: s for s in PROPERTY_TABLE.values()}

# Properties whose value must be 0 or 1; any other value is a Protocol Error.
_BOOLEAN_BYTES: Final = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
# Properties for which 0 is a Protocol Error.
_NON_ZERO: Final = frozenset({0x0B, 0x21, 0x27})


@dataclass(frozen=True, slots=True, repr=False)
class Properties:
    """The MQTT 5 properties of one packet; ``None`` (or ``()``) means absent.

    Immutable, so one instance can be shared; make a changed copy with ``dataclasses.replace``.
    User properties keep their order and may repeat [MQTT-3.3.2-18].
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in _FIELDS
            if getattr(self, name) is not None and getattr(self, name) != ()
        )
        return f"Properties({shown})"

    def __bool__(self) -> bool:
        return self is not NO_PROPERTIES and self != NO_PROPERTIES

    def replace(self, **changes: Any) -> Properties:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


NO_PROPERTIES: Final = Properties()
_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Properties))
_ENCODE_ORDER: Final = tuple(sorted(PROPERTY_TABLE.values(), key=lambda s: s.identifier))


def decode_properties(
    buf: bytes | memoryview, pos: int, end: int, packet_type: int
) -> tuple[Properties, int]:
    """Decode a property length and the properties after it, validating them for ``packet_type``."""
    length, pos = decode_varint(buf, pos, end)
    if not length:
        return NO_PROPERTIES, pos
    stop = pos + length
    if stop > end:
        raise malformed("property length runs past the end of the packet")
    values: dict[str, Any] = {}
    user: list[tuple[str, str]] = []
    sub_ids: list[int] = []
    while pos < stop:
        ident = buf[pos]
        pos += 1
        spec = PROPERTY_TABLE.get(ident)
        if spec is None:
            raise malformed(f"unknown property identifier 0x{ident:02X}")
        if packet_type not in spec.packets:
            # 2.2.2.2: an identifier not valid for the packet type makes it a Malformed Packet.
            raise malformed(f"property {spec.name} is not allowed in this packet")
        wtype = spec.wire_type
        value: Any
        if wtype == BYTE:
            if pos >= stop:
                raise malformed("property value runs past the property length")
            value = buf[pos]
            pos += 1
        elif wtype == TWO:
            if pos + 2 > stop:
                raise malformed("property value runs past the property length")
            value = (buf[pos] << 8) | buf[pos + 1]
            pos += 2
        elif wtype == FOUR:
            if pos + 4 > stop:
                raise malformed("property value runs past the property length")
            value = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
        elif wtype == VARINT:
            value, pos = decode_varint(buf, pos, stop)
        elif wtype == STRING:
            value, pos = decode_string(buf, pos, stop)
        elif wtype == BINARY:
            value, pos = decode_binary(buf, pos, stop)
        else:
            key, pos = decode_string(buf, pos, stop)
            val, pos = decode_string(buf, pos, stop)
            user.append((key, val))
            continue
        if ident in _BOOLEAN_BYTES and value > 1:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, f"property {spec.name} must be 0 or 1, got {value}"
            )
        if ident in _NON_ZERO and value == 0:
            raise RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, f"property {spec.name} is 0")
        if ident == 0x0B:
            if sub_ids and packet_type != PacketType.PUBLISH:
                raise RemoteProtocolError(
                    ReasonCode.PROTOCOL_ERROR, "subscription_identifiers given more than once"
                )
            sub_ids.append(value)
            continue
        if spec.name in values:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, f"property {spec.name} given more than once"
            )
        values[spec.name] = value
    if pos != stop:
        raise malformed("property runs past the property length")
    if user:
        values["user_properties"] = tuple(user)
    if sub_ids:
        values["subscription_identifiers"] = tuple(sub_ids)
    return Properties(**values), stop


def _encode_value(spec: PropertySpec, value: Any) -> bytes:
    wtype = spec.wire_type
    ident = bytes([spec.identifier])
    if wtype == BYTE:
        return ident + bytes([value])
    if wtype == TWO:
        return ident + int(value).to_bytes(2, "big")
    if wtype == FOUR:
        return ident + int(value).to_bytes(4, "big")
    if wtype == VARINT:
        return ident + encode_varint(value)
    if wtype == STRING:
        return ident + encode_string(value)
    if wtype == BINARY:
        return ident + encode_binary(value)
    key, val = value
    return ident + encode_string(key) + encode_string(val)


def encode_properties_body(props: Properties) -> bytes:
    """Encode the properties without their length prefix, in identifier order."""
    parts: list[bytes] = []
    for spec in _ENCODE_ORDER:
        value = getattr(props, spec.name)
        if value is None or value == ():
            continue
        if spec.repeatable:
            parts.extend(_encode_value(spec, item) for item in value)
        else:
            parts.append(_encode_value(spec, value))
    return b"".join(parts)


def encode_properties(props: Properties) -> bytes:
    """Encode the property length followed by the properties."""
    if props is NO_PROPERTIES:
        return b"\x00"
    body = encode_properties_body(props)
    return encode_varint(len(body)) + body


def check_allowed(props: Properties, packet_type: int) -> None:
    """Raise ``LocalProtocolError`` if ``props`` holds a property ``packet_type`` may not carry."""
    if props is NO_PROPERTIES:
        return
    for name in _FIELDS:
        value = getattr(props, name)
        if value is None or value == ():
            continue
        if packet_type not in _BY_NAME[name].packets:
            raise LocalProtocolError(
                ReasonCode.PROTOCOL_ERROR, f"property {name} is not allowed in this packet"
            )

"""Encoding packets to bytes for a given protocol level, and encode-once PUBLISH fan-out.

``encode(packet, version)`` validates what this side is about to send (a violation is a
``LocalProtocolError``) and returns the wire bytes. ``PublishTemplate`` encodes a PUBLISH's topic,
properties and payload once; each receiver then costs one copy with the packet identifier and
fixed-header bits patched in, never a re-encode. stdlib only; no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from wrenmq.codec.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from wrenmq.codec.primitives import encode_binary, encode_string, encode_varint
from wrenmq.codec.properties import (
    NO_PROPERTIES,
    WILL,
    Properties,
    check_allowed,
    encode_properties,
    encode_properties_body,
)
from wrenmq.codec.reason_codes import CONNACK_V3_FROM_V5, ReasonCode
from wrenmq.codec.types import PacketType
from wrenmq.errors import LocalProtocolError

__all__ = ["PublishTemplate", "encode"]

_PINGREQ: Final = b"\xc0\x00"
_PINGRESP: Final = b"\xd0\x00"
_DISCONNECT_V3: Final = b"\xe0\x00"


def _local(message: str, code: ReasonCode = ReasonCode.PROTOCOL_ERROR) -> LocalProtocolError:
    return LocalProtocolError(code, message)


def _frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + encode_varint(len(body)) + body


def _props(props: Properties, packet_type: int) -> bytes:
    if props is NO_PROPERTIES:
        return b"\x00"
    check_allowed(props, packet_type)
    return encode_properties(props)


def _check_packet_id(packet_id: int) -> bytes:
    if not 0 < packet_id <= 0xFFFF:
        raise _local(f"packet identifier {packet_id} is not in 1..65535")
    return packet_id.to_bytes(2, "big")


def _connect(p: Connect, version: int) -> bytes:
    level = p.protocol_level
    if level not in (3, 4, 5):
        raise _local(f"protocol level {level}", ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)
    name = b"\x00\x06MQIsdp" if level == 3 else b"\x00\x04MQTT"
    flags = 0x02 if p.clean_start else 0
    will = p.will
    if will is not None:
        if will.qos not in (0, 1, 2):
            raise _local(f"will QoS {will.qos}")
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if p.username is not None:
        flags |= 0x80
    if p.password is not None:
        if level < 5 and p.username is None:
            raise _local("a password needs a user name before MQTT 5")  # [MQTT-3.1.2-22]
        flags |= 0x40
    if not 0 <= p.keepalive <= 0xFFFF:
        raise _local(f"keep alive {p.keepalive} is not in 0..65535")
    parts = [name, bytes([level, flags]), p.keepalive.to_bytes(2, "big")]
    if level == 5:
        parts.append(_props(p.properties, PacketType.CONNECT))
    parts.append(encode_string(p.client_id))
    if will is not None:
        if level == 5:
            parts.append(_props(will.properties, WILL))
        parts.append(encode_string(will.topic))
        parts.append(encode_binary(will.payload))
    if p.username is not None:
        parts.append(encode_string(p.username))
    if p.password is not None:
        parts.append(encode_binary(p.password))
    return _frame(0x10, b"".join(parts))


def _connack(p: ConnAck, version: int) -> bytes:
    if version == 5:
        # [MQTT-3.2.2-6]: session present is 0 whenever the reason code is not 0.
        present = 1 if p.session_present and not p.reason_code else 0
        body = bytes([present, p.reason_code]) + _props(p.properties, PacketType.CONNACK)
        return _frame(0x20, body)
    code = CONNACK_V3_FROM_V5[ReasonCode(p.reason_code)]
    # [MQTT-3.2.2-4]: session present is 0 whenever the return code is not 0.
    # In MQTT 3.1 the whole acknowledge flags byte is reserved.
    present = 1 if p.session_present and not code and version >= 4 else 0
    return bytes([0x20, 2, present, code])


def _publish(p: Publish, version: int) -> bytes:
    qos = p.qos
    if qos not in (0, 1, 2):
        raise _local(f"QoS {qos}", ReasonCode.MALFORMED_PACKET)
    if p.dup and not qos:
        raise _local("DUP on a QoS 0 PUBLISH", ReasonCode.MALFORMED_PACKET)
    topic = p.topic
    if "+" in topic or "#" in topic:
        raise _local(f"wildcard in topic name {topic!r}", ReasonCode.TOPIC_NAME_INVALID)
    raw_topic = encode_string(topic)
    pid = _check_packet_id(p.packet_id) if qos else b""
    props = b""
    if version == 5:
        if not topic and p.properties.topic_alias is None:
            raise _local("empty topic without a topic alias")
        props = _props(p.properties, PacketType.PUBLISH)
    elif not topic:
        raise _local("empty topic", ReasonCode.TOPIC_NAME_INVALID)
    payload = p.payload
    first = 0x30 | (0x08 if p.dup else 0) | (qos << 1) | (0x01 if p.retain else 0)
    length = len(raw_topic) + len(pid) + len(props) + len(payload)
    # One join: the payload is copied exactly once.
    return b"".join((bytes((first,)), encode_varint(length), raw_topic, pid, props, payload))


def _ack(first: int, ptype: int) -> Callable[[Any, int], bytes]:
    def encode_ack(p: PubAck, version: int) -> bytes:
        pid = _check_packet_id(p.packet_id)
        if version == 5 and (p.reason_code or p.properties is not NO_PROPERTIES):
            if p.properties is NO_PROPERTIES or not p.properties:
                # 3.4.2.1: no properties -> the property length may be omitted.
                return bytes([first, 3]) + pid + bytes([p.reason_code])
            return _frame(first, pid + bytes([p.reason_code]) + _props(p.properties, ptype))
        return bytes([first, 2]) + pid

    return encode_ack


def _subscribe(p: Subscribe, version: int) -> bytes:
    if not p.subscriptions:
        raise _local("SUBSCRIBE needs at least one topic filter")
    parts = [_check_packet_id(p.packet_id)]
    if version == 5:
        parts.append(_props(p.properties, PacketType.SUBSCRIBE))
    for sub in p.subscriptions:
        if sub.qos not in (0, 1, 2) or sub.retain_handling not in (0, 1, 2):
            raise _local(f"invalid subscription options {sub}", ReasonCode.MALFORMED_PACKET)
        opts = sub.qos
        if version == 5:
            opts |= (
                (0x04 if sub.no_local else 0)
                | (0x08 if sub.retain_as_published else 0)
                | (sub.retain_handling << 4)
            )
        parts.append(encode_string(sub.topic_filter))
        parts.append(bytes([opts]))
    return _frame(0x82, b"".join(parts))


def _suback(p: SubAck, version: int) -> bytes:
    parts = [_check_packet_id(p.packet_id)]
    if version == 5:
        parts.append(_props(p.properties, PacketType.SUBACK))
        parts.append(bytes(p.reason_codes))
    else:
        # 3.1.1 knows only 0x00-0x02 and 0x80 Failure [MQTT-3.9.3-2].
        parts.append(bytes(c if c < 0x80 else 0x80 for c in p.reason_codes))
    return _frame(0x90, b"".join(parts))


def _unsubscribe(p: Unsubscribe, version: int) -> bytes:
    if not p.topic_filters:
        raise _local("UNSUBSCRIBE needs at least one topic filter")
    parts = [_check_packet_id(p.packet_id)]
    if version == 5:
        parts.append(_props(p.properties, PacketType.UNSUBSCRIBE))
    parts.extend(encode_string(f) for f in p.topic_filters)
    return _frame(0xA2, b"".join(parts))


def _unsuback(p: UnsubAck, version: int) -> bytes:
    pid = _check_packet_id(p.packet_id)
    if version != 5:
        return b"\xb0\x02" + pid
    return _frame(0xB0, pid + _props(p.properties, PacketType.UNSUBACK) + bytes(p.reason_codes))


def _pingreq(p: PingReq, version: int) -> bytes:
    return _PINGREQ


def _pingresp(p: PingResp, version: int) -> bytes:
    return _PINGRESP


def _reason_and_props(first: int, ptype: int, code: int, props: Properties) -> bytes:
    if props is NO_PROPERTIES or not props:
        if not code:
            return bytes([first, 0])  # 3.14.2.1 / 3.15.2.1: both may be omitted
        return bytes([first, 1, code])
    return _frame(first, bytes([code]) + _props(props, ptype))


def _disconnect(p: Disconnect, version: int) -> bytes:
    if version != 5:
        return _DISCONNECT_V3
    return _reason_and_props(0xE0, PacketType.DISCONNECT, p.reason_code, p.properties)


def _auth(p: Auth, version: int) -> bytes:
    if version != 5:
        raise _local("AUTH exists only in MQTT 5")
    if p.reason_code and not p.properties:
        # 3.15.2.1: only Success may drop the Property Length; AUTH, unlike DISCONNECT
        # (3.14.2.2.1), has no "Remaining Length < 2" rule, so 0x18/0x19 carry an empty one.
        return bytes([0xF0, 2, p.reason_code, 0])
    return _reason_and_props(0xF0, PacketType.AUTH, p.reason_code, p.properties)


_ENCODERS: Final[dict[type, Callable[[Any, int], bytes]]] = {
    Connect: _connect,
    ConnAck: _connack,
    Publish: _publish,
    PubAck: _ack(0x40, PacketType.PUBACK),
    PubRec: _ack(0x50, PacketType.PUBREC),
    PubRel: _ack(0x62, PacketType.PUBREL),
    PubComp: _ack(0x70, PacketType.PUBCOMP),
    Subscribe: _subscribe,
    SubAck: _suback,
    Unsubscribe: _unsubscribe,
    UnsubAck: _unsuback,
    PingReq: _pingreq,
    PingResp: _pingresp,
    Disconnect: _disconnect,
    Auth: _auth,
}


def encode(packet: Packet, version: int) -> bytes:
    """Encode ``packet`` for protocol level ``version`` (3, 4 or 5)."""
    return _ENCODERS[type(packet)](packet, version)


class PublishTemplate:
    """A PUBLISH encoded once and specialised cheaply per receiver.

    The topic, the shared properties and the payload are encoded once per protocol family (3.x or
    5); ``for_receiver`` returns the wire bytes for one receiver, patching only the fixed header
    bits and the packet identifier, and appending per-receiver properties (subscription
    identifiers, a topic alias) in MQTT 5. QoS 0 variants are cached and shared as-is.
    """

    __slots__ = ("_cache", "_payload", "_props_v5", "_topic", "message_id", "properties", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview,
        properties: Properties = NO_PROPERTIES,
    ) -> None:
        self.topic = topic
        self.properties = properties
        self.message_id = 0  # an id its owner may give it (the broker's store does)
        self._topic = encode_string(topic)
        self._payload = bytes(payload)
        self._props_v5 = b"" if properties is NO_PROPERTIES else encode_properties_body(properties)
        # (v5, qos, retain, dup, extra props) -> (bytes, offset of the packet id or -1)
        self._cache: dict[tuple[bool, int, bool, bool, bytes, bool], tuple[bytes, int]] = {}

    @classmethod
    def from_publish(cls, publish: Publish) -> PublishTemplate:
        """Build a template from a PUBLISH (its own QoS, flags and packet id are ignored)."""
        return cls(publish.topic, publish.payload, publish.properties)

    def with_properties(self, properties: Properties) -> PublishTemplate:
        """A template of the same message with other properties (the payload is shared)."""
        return PublishTemplate(self.topic, self._payload, properties)

    @property
    def payload(self) -> bytes:
        """The payload, as bytes."""
        return self._payload

    def _variant(
        self, v5: bool, qos: int, retain: bool, dup: bool, extra: bytes, alias_only: bool
    ) -> tuple[bytes, int]:
        key = (v5, qos, retain, dup, extra, alias_only)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
        topic = b"\x00\x00" if alias_only else self._topic
        pid = b"\x00\x00" if qos else b""
        if v5:
            props = self._props_v5 + extra
            props = encode_varint(len(props)) + props
        else:
            props = b""
        body = len(topic) + len(pid) + len(props) + len(self._payload)
        head = bytes([first]) + encode_varint(body)
        entry = (
            b"".join((head, topic, pid, props, self._payload)),
            len(head) + len(topic) if qos else -1,
        )
        if len(self._cache) < 64:
            self._cache[key] = entry
        return entry

    def for_receiver(
        self,
        version: int,
        qos: int,
        packet_id: int = 0,
        *,
        retain: bool = False,
        dup: bool = False,
        subscription_identifiers: tuple[int, ...] = (),
        topic_alias: int | None = None,
        topic_alias_only: bool = False,
    ) -> bytes | bytearray:
        """The wire bytes of this PUBLISH for one receiver.

        Args:
            version: the receiver's protocol level.
            qos: the QoS of this delivery (the minimum of published and granted QoS).
            packet_id: the receiver's packet identifier (ignored for QoS 0).
            retain: the RETAIN bit for this delivery.
            dup: the DUP bit (a resend).
            subscription_identifiers: MQTT 5 identifiers of the matching subscriptions.
            topic_alias: MQTT 5 topic alias to send with the message.
            topic_alias_only: send an empty topic name with ``topic_alias`` (alias already known).
        """
        v5 = version == 5
        extra = b""
        if v5:
            if subscription_identifiers:
                extra = b"".join(b"\x0b" + encode_varint(s) for s in subscription_identifiers)
            if topic_alias is not None:
                extra += b"\x23" + topic_alias.to_bytes(2, "big")
        data, offset = self._variant(
            v5, qos, retain, dup, extra, topic_alias_only and topic_alias is not None and v5
        )
        if offset < 0:
            return data
        out = bytearray(data)
        out[offset] = packet_id >> 8
        out[offset + 1] = packet_id & 0xFF
        return out

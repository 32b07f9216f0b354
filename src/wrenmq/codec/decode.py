"""Incremental decoding of MQTT packets from a byte stream.

``StreamDecoder.feed(data)`` takes any chunking of the stream (one byte at a time or thousands of
packets at once) and returns the complete packets; a malformed or illegal packet stops the decoder
and is reported through ``decoder.error`` after the good packets before it have been returned. The
maximum packet size is enforced as soon as a fixed header is read, before the body is buffered.
PUBLISH payloads are ``memoryview`` slices of the received bytes: no copy. stdlib only; no IO.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

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
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from wrenmq.codec.primitives import MAX_VARINT, decode_binary, decode_string, malformed
from wrenmq.codec.properties import NO_PROPERTIES, WILL, Properties, decode_properties
from wrenmq.codec.reason_codes import CONNACK_V5_FROM_V3, ReasonCode
from wrenmq.codec.types import PacketType
from wrenmq.errors import RemoteProtocolError

__all__ = ["MAX_PACKET_SIZE", "StreamDecoder", "decode_packet"]

MAX_PACKET_SIZE: Final = MAX_VARINT + 5  # fixed header byte + 4 length bytes + body

_Buf = bytes | memoryview
_Decoder = Callable[[int, _Buf, int, int, int], Packet]

_PROTOCOL_NAMES: Final = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}
# Fixed header flags every packet but PUBLISH must carry [MQTT-2.1.3-1].
_FIXED_FLAGS: Final = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0,
                       13: 0, 14: 0, 15: 0}  # fmt: skip
_VALID_REASONS: Final = frozenset(int(c) for c in ReasonCode)
# The only SUBACK return codes of MQTT 3.1 / 3.1.1: granted QoS 0-2 and 0x80 Failure.
_V3_SUBACK_CODES: Final = frozenset(
    {ReasonCode.GRANTED_QOS_0, ReasonCode.GRANTED_QOS_1, ReasonCode.GRANTED_QOS_2,
     ReasonCode.UNSPECIFIED_ERROR}
)  # fmt: skip


def _protocol(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, message)


def _reason(value: int) -> ReasonCode:
    if value not in _VALID_REASONS:
        raise malformed(f"unknown reason code 0x{value:02X}")
    return ReasonCode(value)


def _packet_id(buf: _Buf, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise malformed("packet identifier runs past the end of the packet")
    pid = (buf[pos] << 8) | buf[pos + 1]
    if not pid:
        raise _protocol("packet identifier 0")  # [MQTT-2.2.1-3]
    return pid


def _expect_end(pos: int, end: int) -> None:
    if pos != end:
        raise malformed("bytes left over after the packet's last field")


def _connect(flags: int, buf: _Buf, pos: int, end: int, version: int) -> Connect:
    name, pos = decode_string(buf, pos, end)
    if pos >= end:
        raise malformed("CONNECT ends before the protocol level")
    level = buf[pos]
    pos += 1
    if name not in ("MQTT", "MQIsdp"):
        raise RemoteProtocolError(
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, f"unknown protocol name {name!r}"
        )
    if _PROTOCOL_NAMES.get(level) != name:
        raise RemoteProtocolError(
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
            f"unsupported protocol level {level} for {name!r}",
            protocol_level=level if level in (3, 4, 5) else 4,
        )
    try:
        return _connect_body(buf, pos, end, level)
    except RemoteProtocolError as exc:
        exc.protocol_level = level
        raise


def _connect_body(buf: _Buf, pos: int, end: int, level: int) -> Connect:
    if pos + 3 > end:
        raise malformed("CONNECT ends before keep alive")
    cflags = buf[pos]
    keepalive = (buf[pos + 1] << 8) | buf[pos + 2]
    pos += 3
    if cflags & 0x01:
        raise malformed("CONNECT reserved flag is set")  # [MQTT-3.1.2-3]
    clean = bool(cflags & 0x02)
    will_flag = cflags & 0x04
    will_qos = (cflags >> 3) & 0x03
    will_retain = bool(cflags & 0x20)
    has_password = cflags & 0x40
    has_username = cflags & 0x80
    if not will_flag and (will_qos or will_retain):
        raise malformed("will QoS or will retain set without the will flag")  # [MQTT-3.1.2-11/13]
    if will_qos == 3:
        raise malformed("will QoS 3")  # [MQTT-3.1.2-12]
    if level < 5 and has_password and not has_username:
        raise _protocol("password flag without user name flag")  # [MQTT-3.1.2-22]
    props = NO_PROPERTIES
    if level == 5:
        props, pos = decode_properties(buf, pos, end, PacketType.CONNECT)
    client_id, pos = decode_string(buf, pos, end)
    if level == 3 and not 1 <= len(client_id) <= 23:
        raise RemoteProtocolError(
            ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "MQTT 3.1 client id must be 1-23 characters"
        )
    if level == 4 and not client_id and not clean:
        # [MQTT-3.1.3-8]: a zero-byte client id needs clean session.
        raise RemoteProtocolError(
            ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id without clean session"
        )
    will = None
    if will_flag:
        will_props = NO_PROPERTIES
        if level == 5:
            will_props, pos = decode_properties(buf, pos, end, WILL)
        will_topic, pos = decode_string(buf, pos, end)
        if not will_topic or "+" in will_topic or "#" in will_topic:
            raise RemoteProtocolError(ReasonCode.TOPIC_NAME_INVALID, "invalid will topic")
        will_payload, pos = decode_binary(buf, pos, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    username = None
    password = None
    if has_username:
        username, pos = decode_string(buf, pos, end)
    if has_password:
        password, pos = decode_binary(buf, pos, end)
    _expect_end(pos, end)
    return Connect(client_id, level, clean, keepalive, username, password, will, props)


def _connack(flags: int, buf: _Buf, pos: int, end: int, version: int) -> ConnAck:
    if pos + 2 > end:
        raise malformed("CONNACK shorter than two bytes")
    ack_flags = buf[pos]
    if ack_flags & 0xFE:
        raise malformed("CONNACK reserved flags set")  # [MQTT-3.2.2-1]
    code = buf[pos + 1]
    pos += 2
    props = NO_PROPERTIES
    if version == 5:
        reason = _reason(code)
        props, pos = decode_properties(buf, pos, end, PacketType.CONNACK)
    else:
        v5 = CONNACK_V5_FROM_V3.get(code)
        if v5 is None:
            raise malformed(f"unknown CONNACK return code {code}")
        reason = v5
    _expect_end(pos, end)
    return ConnAck(bool(ack_flags), reason, props)


def _publish(flags: int, buf: _Buf, pos: int, end: int, version: int) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise malformed("PUBLISH with QoS 3")  # [MQTT-3.3.1-4]
    dup = flags & 0x08
    if dup and not qos:
        raise malformed("DUP set on a QoS 0 PUBLISH")  # [MQTT-3.3.1-2]
    if pos + 2 > end:
        raise malformed("PUBLISH ends before the topic")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("topic runs past the end of the packet")
    try:
        topic = str(buf[pos + 2 : stop], "utf-8")
    except UnicodeDecodeError as exc:
        raise malformed("topic is not well-formed UTF-8") from exc
    if "+" in topic or "#" in topic:
        raise RemoteProtocolError(ReasonCode.TOPIC_NAME_INVALID, "wildcard in a topic name")
    if "\x00" in topic:
        raise malformed("topic contains U+0000")
    pos = stop
    packet_id = 0
    if qos:
        packet_id = _packet_id(buf, pos, end)
        pos += 2
    props = NO_PROPERTIES
    if version == 5:
        if pos < end and buf[pos] == 0:
            pos += 1
        else:
            props, pos = decode_properties(buf, pos, end, PacketType.PUBLISH)
            if props.topic_alias == 0:
                raise RemoteProtocolError(ReasonCode.TOPIC_ALIAS_INVALID, "topic alias 0")
        if not topic and props.topic_alias is None:
            raise _protocol("empty topic without a topic alias")
    elif not topic:
        raise _protocol("empty topic")  # [MQTT-4.7.3-1]
    return Publish(topic, buf[pos:end], qos, bool(flags & 0x01), bool(dup), packet_id, props)


def _ack_fields(
    buf: _Buf, pos: int, end: int, version: int, ptype: int
) -> tuple[int, ReasonCode, Properties]:
    packet_id = _packet_id(buf, pos, end)
    pos += 2
    reason = ReasonCode.SUCCESS
    props = NO_PROPERTIES
    if version == 5 and pos < end:
        # 3.4.2.1: the reason code and properties may be omitted.
        reason = _reason(buf[pos])
        pos += 1
        if pos < end:
            props, pos = decode_properties(buf, pos, end, ptype)
    _expect_end(pos, end)
    return packet_id, reason, props


def _puback(flags: int, buf: _Buf, pos: int, end: int, version: int) -> PubAck:
    return PubAck(*_ack_fields(buf, pos, end, version, PacketType.PUBACK))


def _pubrec(flags: int, buf: _Buf, pos: int, end: int, version: int) -> PubRec:
    return PubRec(*_ack_fields(buf, pos, end, version, PacketType.PUBREC))


def _pubrel(flags: int, buf: _Buf, pos: int, end: int, version: int) -> PubRel:
    return PubRel(*_ack_fields(buf, pos, end, version, PacketType.PUBREL))


def _pubcomp(flags: int, buf: _Buf, pos: int, end: int, version: int) -> PubComp:
    return PubComp(*_ack_fields(buf, pos, end, version, PacketType.PUBCOMP))


def _subscribe(flags: int, buf: _Buf, pos: int, end: int, version: int) -> Subscribe:
    packet_id = _packet_id(buf, pos, end)
    pos += 2
    props = NO_PROPERTIES
    if version == 5:
        props, pos = decode_properties(buf, pos, end, PacketType.SUBSCRIBE)
    subs: list[Subscription] = []
    while pos < end:
        topic_filter, pos = decode_string(buf, pos, end)
        if pos >= end:
            raise malformed("subscription options missing")
        opts = buf[pos]
        pos += 1
        qos = opts & 0x03
        if qos == 3:
            raise malformed("subscription QoS 3")  # [MQTT-3-8.3-4]
        if version == 5:
            if opts & 0xC0:
                raise malformed("reserved subscription option bits set")  # [MQTT-3.8.3-5]
            retain_handling = (opts >> 4) & 0x03
            if retain_handling == 3:
                raise _protocol("retain handling 3")
            subs.append(
                Subscription(
                    topic_filter, qos, bool(opts & 0x04), bool(opts & 0x08), retain_handling
                )
            )
        else:
            if opts & 0xFC:
                raise malformed("reserved bits of the requested QoS byte set")  # [MQTT-3-8.3-4]
            subs.append(Subscription(topic_filter, qos))
    if not subs:
        raise _protocol("SUBSCRIBE without topic filters")  # [MQTT-3.8.3-3]
    return Subscribe(packet_id, subs, props)


def _suback(flags: int, buf: _Buf, pos: int, end: int, version: int) -> SubAck:
    packet_id = _packet_id(buf, pos, end)
    pos += 2
    props = NO_PROPERTIES
    if version == 5:
        props, pos = decode_properties(buf, pos, end, PacketType.SUBACK)
    codes = [_reason(buf[i]) for i in range(pos, end)]
    if version != 5 and any(c not in _V3_SUBACK_CODES for c in codes):
        raise malformed("3.1.1 SUBACK return code other than 0x00-0x02 or 0x80")  # [MQTT-3.9.3-2]
    return SubAck(packet_id, codes, props)


def _unsubscribe(flags: int, buf: _Buf, pos: int, end: int, version: int) -> Unsubscribe:
    packet_id = _packet_id(buf, pos, end)
    pos += 2
    props = NO_PROPERTIES
    if version == 5:
        props, pos = decode_properties(buf, pos, end, PacketType.UNSUBSCRIBE)
    filters: list[str] = []
    while pos < end:
        topic_filter, pos = decode_string(buf, pos, end)
        filters.append(topic_filter)
    if not filters:
        raise _protocol("UNSUBSCRIBE without topic filters")  # [MQTT-3.10.3-2]
    return Unsubscribe(packet_id, filters, props)


def _unsuback(flags: int, buf: _Buf, pos: int, end: int, version: int) -> UnsubAck:
    packet_id = _packet_id(buf, pos, end)
    pos += 2
    props = NO_PROPERTIES
    codes: list[ReasonCode] = []
    if version == 5:
        props, pos = decode_properties(buf, pos, end, PacketType.UNSUBACK)
        codes = [_reason(buf[i]) for i in range(pos, end)]
    else:
        _expect_end(pos, end)
    return UnsubAck(packet_id, codes, props)


def _pingreq(flags: int, buf: _Buf, pos: int, end: int, version: int) -> PingReq:
    _expect_end(pos, end)
    return PingReq()


def _pingresp(flags: int, buf: _Buf, pos: int, end: int, version: int) -> PingResp:
    _expect_end(pos, end)
    return PingResp()


def _disconnect(flags: int, buf: _Buf, pos: int, end: int, version: int) -> Disconnect:
    if version != 5:
        _expect_end(pos, end)
        return Disconnect()
    reason = ReasonCode.NORMAL_DISCONNECTION
    props = NO_PROPERTIES
    if pos < end:
        reason = _reason(buf[pos])
        pos += 1
        if pos < end:
            props, pos = decode_properties(buf, pos, end, PacketType.DISCONNECT)
    _expect_end(pos, end)
    return Disconnect(reason, props)


def _auth(flags: int, buf: _Buf, pos: int, end: int, version: int) -> Auth:
    if version != 5:
        raise malformed("AUTH exists only in MQTT 5")
    reason = ReasonCode.SUCCESS
    props = NO_PROPERTIES
    if pos < end:
        reason = _reason(buf[pos])
        pos += 1
        if pos < end:
            props, pos = decode_properties(buf, pos, end, PacketType.AUTH)
    _expect_end(pos, end)
    return Auth(reason, props)


_DECODERS: Final[dict[int, _Decoder]] = {
    1: _connect, 2: _connack, 3: _publish, 4: _puback, 5: _pubrec, 6: _pubrel, 7: _pubcomp,
    8: _subscribe, 9: _suback, 10: _unsubscribe, 11: _unsuback, 12: _pingreq, 13: _pingresp,
    14: _disconnect, 15: _auth,
}  # fmt: skip


class StreamDecoder:
    """Turns a byte stream into packets.

    Args:
        version: protocol level of the stream (3, 4 or 5); ``None`` on the server side before
            CONNECT, in which case the first packet must be CONNECT and sets the level.
        max_packet_size: largest whole packet accepted (fixed header included); larger ones raise
            ``PACKET_TOO_LARGE`` as soon as their header is read [MQTT-3.1.2-24].
    """

    __slots__ = ("_buf", "_need", "error", "max_packet_size", "version")

    def __init__(self, *, version: int | None = None, max_packet_size: int = MAX_PACKET_SIZE):
        self.version = version
        self.max_packet_size = max_packet_size
        self.error: RemoteProtocolError | None = None
        self._buf = bytearray()
        self._need = 0  # bytes the buffered partial packet needs before parsing is worth trying

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned packet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Add ``data`` and return every packet now complete, in order.

        A protocol violation sets ``self.error`` and stops decoding: the packets before the bad one
        are returned, and any further call raises the same error.
        """
        if self.error is not None:
            raise self.error
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            data = bytes(self._buf)
            self._buf = bytearray()
        elif not isinstance(data, bytes):
            data = bytes(data)
        out: list[Packet] = []
        n = len(data)
        mv = memoryview(data)
        pos = 0
        version = self.version
        max_size = self.max_packet_size
        need = 0
        try:
            while pos < n:
                if n - pos < 2:
                    break
                first = data[pos]
                length = data[pos + 1]
                body = pos + 2
                if length & 0x80:
                    length &= 0x7F
                    shift = 7
                    while True:
                        if body >= n:
                            length = -1  # the length itself is not complete yet
                            break
                        byte = data[body]
                        body += 1
                        length |= (byte & 0x7F) << shift
                        if not byte & 0x80:
                            if not byte:
                                # [MQTT-1.5.5-1]: the minimum number of bytes, so no final 0x00.
                                raise malformed("remaining length is not minimally encoded")
                            break
                        shift += 7
                        if shift > 21:
                            raise malformed("remaining length longer than four bytes")
                    if length < 0:
                        break
                end = body + length
                if end - pos > max_size:
                    raise RemoteProtocolError(
                        ReasonCode.PACKET_TOO_LARGE,
                        f"packet of {end - pos} bytes exceeds the maximum of {max_size}",
                    )
                if end > n:
                    need = end - pos
                    break
                ptype = first >> 4
                flags = first & 0x0F
                if ptype == 3:
                    if version is None:
                        raise _protocol("the first packet must be CONNECT")
                    out.append(_publish(flags, mv, body, end, version))
                else:
                    fixed = _FIXED_FLAGS.get(ptype)
                    if fixed is None:
                        raise malformed("packet type 0 is reserved")
                    if flags != fixed:
                        raise malformed("reserved fixed header flags")  # [MQTT-2.1.3-1]
                    if version is None:
                        if ptype != 1:
                            raise _protocol("the first packet must be CONNECT")
                        packet = _connect(flags, mv, body, end, 0)
                        version = self.version = packet.protocol_level
                        out.append(packet)
                    else:
                        out.append(_DECODERS[ptype](flags, mv, body, end, version))
                pos = end
        except RemoteProtocolError as exc:
            self.error = exc
            return out
        if pos < n:
            self._buf = bytearray(mv[pos:])
        self._need = need
        return out


def decode_packet(data: bytes, version: int | None = None) -> Packet:
    """Decode exactly one whole packet from ``data``."""
    decoder = StreamDecoder(version=version)
    packets = decoder.feed(data)
    if decoder.error is not None:
        raise decoder.error
    if len(packets) != 1 or decoder.buffered:
        raise malformed(
            f"expected one whole packet, got {len(packets)} and {decoder.buffered} bytes"
        )
    return packets[0]

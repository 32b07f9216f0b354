"""Malformed and illegal packets: each hand-built case must raise exactly one reason code.

Table-driven: ``(wire bytes, protocol version, expected ReasonCode)``; ``decode_packet`` must raise
``RemoteProtocolError`` carrying that code. Version ``None`` is a server decoder before CONNECT.
The bytes come from the hand-written builders in ``mqtt_bytes``, never from our encoder. The
``StreamDecoder`` tests at the end cover what only a stream shows: the packet size limit applied
from the fixed header alone, good packets before a bad one, the sticky error, zero-copy payloads
and the version switch on CONNECT.
"""

from __future__ import annotations

from typing import Any

import pytest
from mqtt_bytes import (
    ASSIGNED_CLIENT_IDENTIFIER,
    AUTH,
    AUTHENTICATION_METHOD,
    CLEAN,
    CONNACK,
    CONTENT_TYPE,
    DISCONNECT,
    MAXIMUM_PACKET_SIZE,
    MAXIMUM_QOS,
    MESSAGE_EXPIRY_INTERVAL,
    PASSWORD_FLAG,
    PAYLOAD_FORMAT_INDICATOR,
    PINGREQ,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    REQUEST_PROBLEM_INFORMATION,
    REQUEST_RESPONSE_INFORMATION,
    RESERVED,
    RESPONSE_TOPIC,
    RETAIN_AVAILABLE,
    SERVER_KEEP_ALIVE,
    SESSION_EXPIRY_INTERVAL,
    SHARED_SUBSCRIPTION_AVAILABLE,
    SUBACK,
    SUBSCRIBE,
    SUBSCRIPTION_IDENTIFIER,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    TOPIC_ALIAS,
    TOPIC_ALIAS_MAXIMUM,
    UNSUBACK,
    UNSUBSCRIBE,
    USERNAME_FLAG,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    WILL_DELAY_INTERVAL,
    WILL_FLAG,
    WILL_QOS_1,
    WILL_QOS_2,
    WILL_RETAIN,
    bin_,
    connect,
    fixed,
    p_byte,
    p_str,
    p_u16,
    p_u32,
    p_user,
    p_varint,
    props,
    s,
    u16,
)

from wrenmq.codec import (
    Connect,
    PingReq,
    PubAck,
    Publish,
    ReasonCode,
    StreamDecoder,
    Subscribe,
    Subscription,
    decode_packet,
)
from wrenmq.codec.properties import Properties
from wrenmq.errors import RemoteProtocolError

RC = ReasonCode
MALFORMED = RC.MALFORMED_PACKET
PROTOCOL = RC.PROTOCOL_ERROR
UNSUPPORTED = RC.UNSUPPORTED_PROTOCOL_VERSION
BAD_CLIENT_ID = RC.CLIENT_IDENTIFIER_NOT_VALID
TOPIC_INVALID = RC.TOPIC_NAME_INVALID
ALIAS_INVALID = RC.TOPIC_ALIAS_INVALID


def bad(wire: bytes, version: int | None, code: ReasonCode, id: str) -> Any:
    return pytest.param(wire, version, code, id=id)


def v5_connect(properties: bytes, rest: bytes = s("c"), flags: int = CLEAN) -> bytes:
    return connect(5, flags, 60, rest, properties=properties)


def v5_publish(properties: bytes, topic: str | bytes = "t", payload: bytes = b"p") -> bytes:
    return fixed(PUBLISH, s(topic) + properties + payload)


def v5_will(will_properties: bytes) -> bytes:
    return connect(5, WILL_FLAG | CLEAN, 60, s("c") + will_properties + s("w") + bin_(b"x"))


def v5_subscribe(options: int) -> bytes:
    return fixed(SUBSCRIBE, u16(1) + b"\x00" + s("a/b") + bytes([options]))


BAD_UTF8 = [
    (b"a\xffb", "invalid-byte"),
    (b"a\x00b", "u0000"),
    (b"\xed\xa0\x80", "surrogate"),  # U+D800 encoded as UTF-8 [MQTT-1.5.4-1]
    (b"\xc0\x80", "overlong-nul"),
    (b"\xe2\x82", "truncated-sequence"),
]

# fmt: off
CASES = [
    # --- Fixed header: reserved flag bits [MQTT-2.1.3-1] -------------------------------------
    bad(bytes([0x60, 2, 0, 1]), 4, MALFORMED, "pubrel-flags-0-v4"),
    bad(bytes([0x60, 2, 0, 1]), 5, MALFORMED, "pubrel-flags-0-v5"),
    bad(fixed(0x80, u16(1) + s("a") + b"\x00"), 4, MALFORMED, "subscribe-flags-0"),
    bad(fixed(0x83, u16(1) + s("a") + b"\x00"), 4, MALFORMED, "subscribe-flags-3"),
    bad(fixed(0xA0, u16(1) + s("a")), 4, MALFORMED, "unsubscribe-flags-0"),
    bad(bytes([0xC1, 0]), 4, MALFORMED, "pingreq-flags-1"),
    bad(bytes([0xD8, 0]), 4, MALFORMED, "pingresp-flags-8"),
    bad(bytes([0x42, 2, 0, 1]), 4, MALFORMED, "puback-flags-2"),
    bad(bytes([0x52, 2, 0, 1]), 5, MALFORMED, "pubrec-flags-2"),
    bad(bytes([0x71, 2, 0, 1]), 4, MALFORMED, "pubcomp-flags-1"),
    bad(bytes([0x21, 2, 0, 0]), 4, MALFORMED, "connack-flags-1"),
    bad(bytes([0xE2, 0]), 5, MALFORMED, "disconnect-flags-2"),
    bad(bytes([0xF1, 0]), 5, MALFORMED, "auth-flags-1"),
    bad(bytes([0x11]) + connect(4, CLEAN, 60, s("c"))[1:], None, MALFORMED, "connect-flags-1"),
    # --- Fixed header: packet type, Remaining Length ------------------------------------------
    bad(b"\x00\x00", 4, MALFORMED, "packet-type-0-v4"),
    bad(b"\x00\x00", 5, MALFORMED, "packet-type-0-v5"),
    bad(b"\x00\x00", None, MALFORMED, "packet-type-0-before-connect"),
    bad(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]), 4, MALFORMED, "remaining-length-5-bytes"),
    bad(bytes([0xC0, 0x80, 0x80, 0x80, 0x80, 0x01]), 5, MALFORMED, "remaining-length-5-bytes-v5"),
    # --- PUBLISH flags -------------------------------------------------------------------------
    bad(fixed(0x36, s("t") + u16(1)), 4, MALFORMED, "publish-qos3"),  # [MQTT-3.3.1-4]
    bad(fixed(0x37, s("t") + u16(1) + b"\x00"), 5, MALFORMED, "publish-qos3-retain-v5"),
    bad(fixed(0x38, s("t")), 4, MALFORMED, "publish-dup-qos0"),  # [MQTT-3.3.1-2]
    bad(fixed(0x39, s("t") + b"\x00"), 5, MALFORMED, "publish-dup-qos0-v5"),
    # --- A field running past the Remaining Length, or bytes left over -------------------------
    bad(bytes([0x30, 4, 0, 5]) + b"ab", 4, MALFORMED, "publish-topic-past-end"),
    bad(bytes([0x30, 1, 0]), 4, MALFORMED, "publish-topic-length-cut"),
    bad(fixed(0x32, s("t") + b"\x01"), 4, MALFORMED, "publish-packet-id-cut"),
    bad(fixed(PUBLISH, s("t")), 5, MALFORMED, "publish-v5-no-property-length"),
    bad(v5_publish(b"\x0a" + p_u16(TOPIC_ALIAS, 1), payload=b""), 5, MALFORMED,
        "publish-property-length-past-end"),
    bad(v5_publish(b"\x03" + p_u32(MESSAGE_EXPIRY_INTERVAL, 1)[:3], payload=b"xyz"), 5, MALFORMED,
        "publish-property-value-past-property-length"),
    bad(v5_publish(b"\x04" + p_user("k", "v")[:4], payload=b"vvv"), 5, MALFORMED,
        "publish-user-property-past-property-length"),
    bad(connect(4, CLEAN, 60, u16(10) + b"abc"), None, MALFORMED, "connect-client-id-past-end"),
    bad(fixed(0x10, s("MQTT") + bytes([4, CLEAN, 0])), None, MALFORMED, "connect-keepalive-cut"),
    bad(fixed(0x10, s("MQTT")), None, MALFORMED, "connect-level-missing"),
    bad(connect(4, WILL_FLAG | CLEAN, 60, s("c") + s("w") + u16(5) + b"x"), None, MALFORMED,
        "connect-will-payload-past-end"),
    bad(connect(4, USERNAME_FLAG | CLEAN, 60, s("c")), None, MALFORMED, "connect-username-missing"),
    bad(connect(4, USERNAME_FLAG | PASSWORD_FLAG | CLEAN, 60, s("c") + s("u") + u16(3) + b"p"),
        None, MALFORMED, "connect-password-past-end"),
    bad(connect(4, CLEAN, 60, s("c") + b"\x00"), None, MALFORMED, "connect-trailing-byte"),
    bad(fixed(SUBSCRIBE, u16(1) + s("a/b")), 4, MALFORMED, "subscribe-options-missing"),
    bad(fixed(SUBSCRIBE, u16(1) + u16(9) + b"a/b"), 4, MALFORMED, "subscribe-filter-past-end"),
    bad(fixed(UNSUBSCRIBE, u16(1) + u16(9) + b"a/b"), 4, MALFORMED, "unsubscribe-filter-past-end"),
    bad(bytes([PUBACK, 1, 0]), 4, MALFORMED, "puback-packet-id-cut"),
    bad(bytes([PUBACK, 3, 0, 1, 0]), 4, MALFORMED, "puback-v4-trailing-byte"),
    bad(bytes([UNSUBACK, 3, 0, 1, 0]), 4, MALFORMED, "unsuback-v4-trailing-byte"),
    bad(bytes([CONNACK, 3, 0, 0, 0]), 4, MALFORMED, "connack-v4-trailing-byte"),
    bad(bytes([CONNACK, 2, 0, 0]), 5, MALFORMED, "connack-v5-no-property-length"),
    bad(bytes([CONNACK, 1, 0]), 4, MALFORMED, "connack-cut"),
    bad(bytes([PINGREQ, 1, 0]), 4, MALFORMED, "pingreq-with-body"),
    bad(bytes([DISCONNECT, 1, 0]), 4, MALFORMED, "disconnect-v4-with-body"),
    bad(bytes([PUBACK, 5, 0, 1, 0, 0, 0xFF]), 5, MALFORMED, "puback-v5-trailing-after-properties"),
    # --- Unknown or reserved codes in fixed-meaning bytes --------------------------------------
    bad(bytes([CONNACK, 2, 0, 6]), 4, MALFORMED, "connack-v4-return-code-6"),
    bad(bytes([CONNACK, 3, 0, 0x03, 0]), 5, MALFORMED, "connack-v5-unknown-reason"),
    bad(bytes([CONNACK, 2, 0x02, 0]), 4, MALFORMED, "connack-reserved-ack-flags"),  # [MQTT-3.2.2-1]
    bad(bytes([PUBACK, 3, 0, 1, 0x03]), 5, MALFORMED, "puback-unknown-reason"),
    bad(bytes([DISCONNECT, 1, 0x05]), 5, MALFORMED, "disconnect-unknown-reason"),
    bad(fixed(SUBACK, u16(1) + b"\x00\x03"), 5, MALFORMED, "suback-unknown-reason"),
    # [MQTT-3.9.3-2]: 3.1.1 SUBACK knows only 0x00-0x02 and 0x80.
    bad(fixed(SUBACK, u16(1) + b"\x00\x87"), 4, MALFORMED, "suback-v4-return-code-0x87"),
    # --- UTF-8: ill-formed, U+0000, surrogates [MQTT-1.5.4-1/2] -------------------------------
    *[bad(fixed(PUBLISH, s(raw)), 4, MALFORMED, f"topic-{name}") for raw, name in BAD_UTF8],
    *[bad(v5_publish(b"\x00", topic=raw), 5, MALFORMED, f"topic-v5-{name}")
      for raw, name in BAD_UTF8],
    *[bad(connect(4, CLEAN, 60, s(raw)), None, MALFORMED, f"client-id-{name}")
      for raw, name in BAD_UTF8],
    *[bad(v5_publish(props(p_user(raw, "v"))), 5, MALFORMED, f"user-property-key-{name}")
      for raw, name in BAD_UTF8],
    *[bad(v5_publish(props(p_user("k", raw))), 5, MALFORMED, f"user-property-value-{name}")
      for raw, name in BAD_UTF8],
    bad(connect(4, USERNAME_FLAG | CLEAN, 60, s("c") + s(b"\xed\xbf\xbf")), None, MALFORMED,
        "username-surrogate"),
    bad(connect(4, WILL_FLAG | CLEAN, 60, s("c") + s(b"w\x00") + bin_(b"")), None, MALFORMED,
        "will-topic-u0000"),
    bad(fixed(SUBSCRIBE, u16(1) + s(b"a/\xff") + b"\x00"), 4, MALFORMED, "topic-filter-invalid"),
    bad(fixed(UNSUBSCRIBE, u16(1) + s(b"\xed\xa0\x80")), 4, MALFORMED,
        "unsubscribe-filter-surrogate"),
    bad(v5_publish(props(p_str(CONTENT_TYPE, b"\xff"))), 5, MALFORMED, "content-type-invalid"),
    bad(fixed(PUBACK, u16(1) + b"\x80" + props(p_str(REASON_STRING, b"a\x00"))), 5, MALFORMED,
        "reason-string-u0000"),
    # --- Topic names ---------------------------------------------------------------------------
    bad(fixed(PUBLISH, s("a/+")), 4, TOPIC_INVALID, "publish-topic-plus"),  # [MQTT-3.3.2-2]
    bad(fixed(PUBLISH, s("a/#")), 4, TOPIC_INVALID, "publish-topic-hash"),
    bad(v5_publish(b"\x00", topic="#"), 5, TOPIC_INVALID, "publish-topic-hash-v5"),
    bad(fixed(PUBLISH | 0x02, s("+") + u16(1)), 3, TOPIC_INVALID, "publish-topic-plus-v3"),
    bad(connect(4, WILL_FLAG | CLEAN, 60, s("c") + s("w/#") + bin_(b"")), None, TOPIC_INVALID,
        "will-topic-wildcard"),
    bad(v5_publish(b"\x00", topic=""), 5, PROTOCOL, "publish-v5-empty-topic-no-alias"),
    bad(v5_publish(props(p_str(CONTENT_TYPE, "c")), topic=""), 5, PROTOCOL,
        "publish-v5-empty-topic-other-properties"),
    # Codec choice: 3.1.1 only says a topic name has at least one character [MQTT-4.7.3-1].
    bad(fixed(PUBLISH, s("")), 4, PROTOCOL, "publish-v4-empty-topic"),
    bad(v5_publish(props(p_u16(TOPIC_ALIAS, 0))), 5, ALIAS_INVALID, "topic-alias-0"),
    bad(v5_publish(props(p_u16(TOPIC_ALIAS, 0)), topic=""), 5, ALIAS_INVALID,
        "topic-alias-0-empty-topic"),
    # --- Properties: duplicates, wrong packet, unknown ids [2.2.2.2] ---------------------------
    bad(v5_publish(props(p_u32(MESSAGE_EXPIRY_INTERVAL, 1), p_u32(MESSAGE_EXPIRY_INTERVAL, 2))),
        5, PROTOCOL, "duplicate-message-expiry"),
    bad(v5_publish(props(p_u16(TOPIC_ALIAS, 1), p_u16(TOPIC_ALIAS, 1))), 5, PROTOCOL,
        "duplicate-topic-alias"),
    bad(v5_publish(props(p_str(CONTENT_TYPE, "a"), p_user("k", "v"), p_str(CONTENT_TYPE, "a"))),
        5, PROTOCOL, "duplicate-content-type-not-adjacent"),
    bad(v5_connect(props(p_u32(SESSION_EXPIRY_INTERVAL, 1), p_u32(SESSION_EXPIRY_INTERVAL, 1))),
        None, PROTOCOL, "duplicate-session-expiry"),
    bad(v5_connect(props(p_u16(RECEIVE_MAXIMUM, 5), p_u16(RECEIVE_MAXIMUM, 6))), None, PROTOCOL,
        "duplicate-receive-maximum"),
    bad(v5_will(props(p_u32(WILL_DELAY_INTERVAL, 1), p_u32(WILL_DELAY_INTERVAL, 2))), None,
        PROTOCOL, "duplicate-will-delay"),
    bad(fixed(CONNACK, b"\x00\x00" + props(p_byte(MAXIMUM_QOS, 1), p_byte(MAXIMUM_QOS, 0))), 5,
        PROTOCOL, "duplicate-maximum-qos"),
    bad(fixed(PUBACK, u16(1) + b"\x00" + props(p_str(REASON_STRING, "a"),
                                               p_str(REASON_STRING, "b"))),
        5, PROTOCOL, "duplicate-reason-string"),
    bad(fixed(AUTH, b"\x18" + props(p_str(AUTHENTICATION_METHOD, "a"),
                                    p_str(AUTHENTICATION_METHOD, "a"))),
        5, PROTOCOL, "duplicate-authentication-method"),
    bad(fixed(SUBSCRIBE, u16(1) + props(p_varint(SUBSCRIPTION_IDENTIFIER, 1),
                                        p_varint(SUBSCRIPTION_IDENTIFIER, 2)) + s("a") + b"\x00"),
        5, PROTOCOL, "subscribe-two-subscription-identifiers"),
    bad(v5_connect(props(p_u16(TOPIC_ALIAS, 1))), None, MALFORMED, "topic-alias-in-connect"),
    bad(v5_connect(props(p_u32(WILL_DELAY_INTERVAL, 1))), None, MALFORMED,
        "will-delay-in-connect-properties"),
    bad(v5_connect(props(p_str(ASSIGNED_CLIENT_IDENTIFIER, "x"))), None, MALFORMED,
        "assigned-client-id-in-connect"),
    bad(v5_connect(props(p_byte(MAXIMUM_QOS, 1))), None, MALFORMED, "maximum-qos-in-connect"),
    bad(v5_will(props(p_u32(SESSION_EXPIRY_INTERVAL, 1))), None, MALFORMED,
        "session-expiry-in-will-properties"),
    bad(v5_publish(props(p_str(REASON_STRING, "r"))), 5, MALFORMED, "reason-string-in-publish"),
    bad(v5_publish(props(p_u16(TOPIC_ALIAS_MAXIMUM, 1))), 5, MALFORMED,
        "topic-alias-maximum-in-publish"),
    bad(fixed(UNSUBSCRIBE, u16(1) + props(p_varint(SUBSCRIPTION_IDENTIFIER, 1)) + s("a")), 5,
        MALFORMED, "subscription-identifier-in-unsubscribe"),
    bad(fixed(DISCONNECT, b"\x00" + props(p_u16(SERVER_KEEP_ALIVE, 1))), 5, MALFORMED,
        "server-keep-alive-in-disconnect"),
    bad(fixed(SUBACK, u16(1) + props(p_str(RESPONSE_TOPIC, "r")) + b"\x00"), 5, MALFORMED,
        "response-topic-in-suback"),
    bad(v5_publish(props(bytes([0x04, 0]))), 5, MALFORMED, "unknown-property-0x04"),
    bad(v5_connect(props(bytes([0x00, 0]))), None, MALFORMED, "unknown-property-0x00"),
    bad(fixed(CONNACK, b"\x00\x00" + props(bytes([0x2B, 0]))), 5, MALFORMED,
        "unknown-property-0x2b"),
    bad(fixed(SUBSCRIBE, u16(1) + props(bytes([0x7F, 0])) + s("a") + b"\x00"), 5, MALFORMED,
        "unknown-property-0x7f"),
    # --- Property values out of range ----------------------------------------------------------
    bad(v5_publish(props(p_byte(PAYLOAD_FORMAT_INDICATOR, 2))), 5, PROTOCOL,
        "payload-format-indicator-2"),
    bad(v5_will(props(p_byte(PAYLOAD_FORMAT_INDICATOR, 2))), None, PROTOCOL,
        "will-payload-format-indicator-2"),
    bad(v5_connect(props(p_u16(RECEIVE_MAXIMUM, 0))), None, PROTOCOL, "receive-maximum-0"),
    bad(fixed(CONNACK, b"\x00\x00" + props(p_u16(RECEIVE_MAXIMUM, 0))), 5, PROTOCOL,
        "connack-receive-maximum-0"),
    bad(v5_connect(props(p_u32(MAXIMUM_PACKET_SIZE, 0))), None, PROTOCOL, "maximum-packet-size-0"),
    bad(fixed(SUBSCRIBE, u16(1) + props(p_varint(SUBSCRIPTION_IDENTIFIER, 0)) + s("a") + b"\x00"),
        5, PROTOCOL, "subscription-identifier-0"),
    bad(v5_publish(props(p_varint(SUBSCRIPTION_IDENTIFIER, 0))), 5, PROTOCOL,
        "publish-subscription-identifier-0"),
    bad(v5_connect(props(p_byte(REQUEST_PROBLEM_INFORMATION, 2))), None, PROTOCOL,
        "request-problem-information-2"),
    bad(v5_connect(props(p_byte(REQUEST_RESPONSE_INFORMATION, 2))), None, PROTOCOL,
        "request-response-information-2"),
    *[bad(fixed(CONNACK, b"\x00\x00" + props(p_byte(ident, 2))), 5, PROTOCOL, f"connack-{name}-2")
      for ident, name in [
          (MAXIMUM_QOS, "maximum-qos"),
          (RETAIN_AVAILABLE, "retain-available"),
          (WILDCARD_SUBSCRIPTION_AVAILABLE, "wildcard-subscription-available"),
          (SUBSCRIPTION_IDENTIFIER_AVAILABLE, "subscription-identifier-available"),
          (SHARED_SUBSCRIPTION_AVAILABLE, "shared-subscription-available"),
      ]],
    # --- Packet identifiers [MQTT-2.2.1-3] -----------------------------------------------------
    bad(fixed(PUBLISH | 0x02, s("t") + u16(0)), 4, PROTOCOL, "publish-qos1-packet-id-0"),
    bad(fixed(PUBLISH | 0x04, s("t") + u16(0) + b"\x00"), 5, PROTOCOL, "publish-qos2-packet-id-0"),
    bad(fixed(SUBSCRIBE, u16(0) + s("a") + b"\x00"), 4, PROTOCOL, "subscribe-packet-id-0"),
    bad(fixed(UNSUBSCRIBE, u16(0) + s("a")), 4, PROTOCOL, "unsubscribe-packet-id-0"),
    *[bad(bytes([first, 2, 0, 0]), version, PROTOCOL, f"{name}-packet-id-0-v{version}")
      for first, name in [(PUBACK, "puback"), (PUBREC, "pubrec"), (PUBREL, "pubrel"),
                          (PUBCOMP, "pubcomp")]
      for version in (4, 5)],
    bad(fixed(SUBACK, u16(0) + b"\x00"), 4, PROTOCOL, "suback-packet-id-0"),
    bad(bytes([UNSUBACK, 2, 0, 0]), 4, PROTOCOL, "unsuback-packet-id-0"),
    # --- SUBSCRIBE / UNSUBSCRIBE payloads ------------------------------------------------------
    bad(fixed(SUBSCRIBE, u16(1)), 4, PROTOCOL, "subscribe-no-filters"),  # [MQTT-3.8.3-3]
    bad(fixed(SUBSCRIBE, u16(1) + b"\x00"), 5, PROTOCOL, "subscribe-no-filters-v5"),
    bad(fixed(SUBSCRIBE, u16(1) + props(p_varint(SUBSCRIPTION_IDENTIFIER, 1))), 5, PROTOCOL,
        "subscribe-properties-but-no-filters"),
    bad(fixed(UNSUBSCRIBE, u16(1)), 4, PROTOCOL, "unsubscribe-no-filters"),  # [MQTT-3.10.3-2]
    bad(fixed(UNSUBSCRIBE, u16(1) + b"\x00"), 5, PROTOCOL, "unsubscribe-no-filters-v5"),
    bad(v5_subscribe(0x40), 5, MALFORMED, "subscription-options-bit-6"),  # [MQTT-3.8.3-5]
    bad(v5_subscribe(0x80), 5, MALFORMED, "subscription-options-bit-7"),
    bad(v5_subscribe(0xC1), 5, MALFORMED, "subscription-options-bits-6-7"),
    bad(v5_subscribe(0x30), 5, PROTOCOL, "retain-handling-3"),
    bad(v5_subscribe(0x03), 5, MALFORMED, "subscription-qos-3-v5"),
    bad(fixed(SUBSCRIBE, u16(1) + s("a") + b"\x03"), 4, MALFORMED, "subscription-qos-3-v4"),
    # 3.1.1 has only the QoS in that byte: the 5.0 option bits are reserved there.
    bad(fixed(SUBSCRIBE, u16(1) + s("a") + b"\x04"), 4, MALFORMED, "subscription-no-local-bit-v4"),
    bad(fixed(SUBSCRIBE, u16(1) + s("a") + b"\x80"), 3, MALFORMED, "subscription-bit-7-v3"),
    # --- CONNECT -------------------------------------------------------------------------------
    bad(connect(4, CLEAN, 60, s("c"), name="MQTX"), None, UNSUPPORTED, "protocol-name-mqtx"),
    bad(connect(4, CLEAN, 60, s("c"), name="mqtt"), None, UNSUPPORTED, "protocol-name-lowercase"),
    bad(connect(6, CLEAN, 60, s("c")), None, UNSUPPORTED, "protocol-level-6"),
    bad(connect(0, CLEAN, 60, s("c"), name="MQTT"), None, UNSUPPORTED, "protocol-level-0"),
    bad(connect(4, CLEAN, 60, s("c"), name="MQIsdp"), None, UNSUPPORTED, "mqisdp-level-4"),
    bad(connect(3, CLEAN, 60, s("c"), name="MQTT"), None, UNSUPPORTED, "mqtt-level-3"),
    bad(connect(4, CLEAN | RESERVED, 60, s("c")), None, MALFORMED, "connect-reserved-flag"),
    bad(connect(5, RESERVED, 60, s("c")), None, MALFORMED, "connect-reserved-flag-v5"),
    # [MQTT-3.1.2-11] / [MQTT-3.1.2-13] / [MQTT-3.1.2-12] / [MQTT-3.1.2-15]
    bad(connect(4, CLEAN | WILL_QOS_1, 60, s("c")), None, MALFORMED, "will-qos-without-will-flag"),
    bad(connect(4, CLEAN | WILL_QOS_2, 60, s("c")), None, MALFORMED, "will-qos2-without-will-flag"),
    bad(connect(4, CLEAN | WILL_RETAIN, 60, s("c")), None, MALFORMED,
        "will-retain-without-will-flag"),
    bad(connect(4, CLEAN | WILL_FLAG | WILL_QOS_1 | WILL_QOS_2, 60,
                s("c") + s("w") + bin_(b"")), None, MALFORMED, "will-qos-3"),
    # [MQTT-3.1.2-22]: 3.1.1 needs a user name for a password (5.0 dropped the rule).
    bad(connect(4, CLEAN | PASSWORD_FLAG, 60, s("c") + bin_(b"p")), None, PROTOCOL,
        "password-without-username-v4"),
    bad(connect(3, CLEAN | PASSWORD_FLAG, 60, s("c") + bin_(b"p")), None, PROTOCOL,
        "password-without-username-v3"),
    # MQTT 3.1: the client id is 1 to 23 characters.
    bad(connect(3, CLEAN, 60, s("c" * 24)), None, BAD_CLIENT_ID, "v3-client-id-24-chars"),
    bad(connect(3, CLEAN, 60, s("")), None, BAD_CLIENT_ID, "v3-client-id-empty"),
    bad(connect(4, 0, 60, s("")), None, BAD_CLIENT_ID, "v4-empty-client-id-persistent"),  # 3.1.3-8
    # --- Ordering and version ------------------------------------------------------------------
    bad(fixed(PUBLISH, s("t")), None, PROTOCOL, "publish-before-connect"),
    bad(bytes([PINGREQ, 0]), None, PROTOCOL, "pingreq-before-connect"),
    bad(bytes([CONNACK, 2, 0, 0]), None, PROTOCOL, "connack-before-connect"),
    bad(fixed(SUBSCRIBE, u16(1) + s("a") + b"\x00"), None, PROTOCOL, "subscribe-before-connect"),
    bad(bytes([AUTH, 0]), None, PROTOCOL, "auth-before-connect"),
    bad(bytes([AUTH, 0]), 4, MALFORMED, "auth-v4"),
    bad(bytes([AUTH, 2, 0x18, 0]), 4, MALFORMED, "auth-v4-with-body"),
    bad(bytes([AUTH, 0]), 3, MALFORMED, "auth-v3"),
]
# fmt: on


@pytest.mark.parametrize(("wire", "version", "code"), CASES)
def test_malformed(wire: bytes, version: int | None, code: ReasonCode) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_packet(wire, version)
    assert info.value.reason_code is code, info.value


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


# Near misses of the cases above that the spec allows: they must decode.
# fmt: off
ACCEPTED = [
    pytest.param(connect(5, CLEAN | PASSWORD_FLAG, 60, s("c") + bin_(b"p")), None,
                 id="password-without-username-v5"),
    pytest.param(connect(3, CLEAN, 60, s("c" * 23)), None, id="v3-client-id-23-chars"),
    pytest.param(connect(4, CLEAN, 60, s("")), None, id="v4-empty-client-id-clean"),
    pytest.param(connect(5, 0, 60, s("")), None, id="v5-empty-client-id-persistent"),
    pytest.param(connect(4, CLEAN, 60, s("c" * 100)), None, id="v4-long-client-id"),
    pytest.param(v5_connect(props(p_u16(TOPIC_ALIAS_MAXIMUM, 0))), None,
                 id="topic-alias-maximum-0"),
    pytest.param(v5_publish(props(p_varint(SUBSCRIPTION_IDENTIFIER, 268_435_455),
                                  p_varint(SUBSCRIPTION_IDENTIFIER, 1))), 5,
                 id="publish-repeated-subscription-identifiers"),
    pytest.param(v5_publish(props(p_u16(TOPIC_ALIAS, 1)), topic=""), 5,
                 id="empty-topic-with-alias"),
    pytest.param(v5_publish(props(p_user("k", "v"), p_user("k", "v"))), 5,
                 id="repeated-identical-user-property"),
    pytest.param(fixed(PUBLISH, s("a/b c/\u00e9")), 4, id="topic-with-space-and-accent"),
    pytest.param(fixed(PUBLISH, s("\U0001f600")), 4, id="topic-astral-plane"),
    pytest.param(fixed(SUBSCRIBE, u16(1) + s("#") + b"\x02"), 4, id="subscribe-qos2"),
    pytest.param(v5_subscribe(0x2E), 5, id="subscription-options-all-legal-bits"),
    pytest.param(fixed(PUBLISH | 0x08 | 0x02, s("t") + u16(1)), 4, id="publish-dup-qos1"),
]
# fmt: on


@pytest.mark.parametrize(("wire", "version"), ACCEPTED)
def test_accepted_near_misses(wire: bytes, version: int | None) -> None:
    decode_packet(wire, version)


@pytest.mark.parametrize(
    ("wire", "level"),
    [
        # An unknown name means "not MQTT at all": no level to answer in, so the server closes.
        pytest.param(connect(4, CLEAN, 60, s("c"), name="MQTX"), None, id="unknown-name"),
        # An unknown level is answered in 3.1.1 form (return code 1) [MQTT-3.1.2-2].
        pytest.param(connect(6, CLEAN, 60, s("c")), 4, id="mqtt-level-6"),
        pytest.param(connect(3, CLEAN, 60, s("c"), name="MQTT"), 3, id="mqtt-level-3"),
        pytest.param(connect(4, CLEAN, 60, s("c"), name="MQIsdp"), 4, id="mqisdp-level-4"),
        # Errors after the level was read carry it, so the CONNACK speaks the client's version.
        pytest.param(connect(3, CLEAN, 60, s("c" * 24)), 3, id="v3-client-id"),
        pytest.param(connect(4, 0, 60, s("")), 4, id="v4-client-id"),
        pytest.param(connect(4, CLEAN | RESERVED, 60, s("c")), 4, id="v4-reserved-flag"),
        pytest.param(v5_connect(props(p_u16(TOPIC_ALIAS, 1))), 5, id="v5-property"),
        pytest.param(v5_connect(b"\x00", rest=s(b"\xff")), 5, id="v5-client-id-utf8"),
    ],
)
def test_connect_errors_carry_protocol_level(wire: bytes, level: int | None) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_packet(wire, None)
    assert info.value.protocol_level == level


# ---------------------------------------------------------------------------------------------
# StreamDecoder

BIG_PUBLISH = fixed(PUBLISH, s("t") + bytes(200))  # 30 CB 01 ...: 206 bytes on the wire


def test_maximum_packet_size_enforced_from_the_fixed_header() -> None:
    decoder = StreamDecoder(version=4, max_packet_size=100)
    assert decoder.feed(BIG_PUBLISH[:5]) == []
    assert decoder.error is not None
    assert decoder.error.reason_code is RC.PACKET_TOO_LARGE
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(BIG_PUBLISH[5:])
    assert info.value is decoder.error


def test_maximum_packet_size_byte_at_a_time() -> None:
    decoder = StreamDecoder(version=4, max_packet_size=100)
    assert decoder.feed(BIG_PUBLISH[:1]) == []
    assert decoder.feed(BIG_PUBLISH[1:2]) == []  # 0xCB: the length is not complete yet
    assert decoder.error is None
    assert decoder.feed(BIG_PUBLISH[2:3]) == []
    assert decoder.error is not None
    assert decoder.error.reason_code is RC.PACKET_TOO_LARGE


def test_maximum_packet_size_counts_the_whole_packet() -> None:
    limit = len(BIG_PUBLISH)
    assert len(StreamDecoder(version=4, max_packet_size=limit).feed(BIG_PUBLISH)) == 1
    decoder = StreamDecoder(version=4, max_packet_size=limit - 1)
    assert decoder.feed(BIG_PUBLISH) == []
    assert decoder.error is not None
    assert decoder.error.reason_code is RC.PACKET_TOO_LARGE


def test_good_packets_before_a_bad_one_are_returned() -> None:
    bad_pubrel = bytes([0x60, 2, 0, 1])  # flags 0 instead of 2
    stream = bytes([PINGREQ, 0]) + bytes([PUBACK, 2, 0, 1]) + bad_pubrel + bytes([PINGREQ, 0])
    decoder = StreamDecoder(version=4)
    assert decoder.feed(stream) == [PingReq(), PubAck(1)]
    assert decoder.error is not None
    assert decoder.error.reason_code is MALFORMED


def test_good_packets_before_an_oversized_one_are_returned() -> None:
    decoder = StreamDecoder(version=4, max_packet_size=100)
    assert decoder.feed(bytes([PINGREQ, 0]) + BIG_PUBLISH[:3]) == [PingReq()]
    assert decoder.error is not None
    assert decoder.error.reason_code is RC.PACKET_TOO_LARGE


def test_feed_after_error_raises_the_same_error() -> None:
    decoder = StreamDecoder(version=4)
    assert decoder.feed(b"\x00\x00") == []
    error = decoder.error
    assert error is not None
    for data in (bytes([PINGREQ, 0]), b""):
        with pytest.raises(RemoteProtocolError) as info:
            decoder.feed(data)
        assert info.value is error
    assert decoder.error is error


def test_publish_payload_is_a_zero_copy_memoryview() -> None:
    data = fixed(PUBLISH | 0x02, s("t") + u16(1) + b"payload")
    (packet,) = StreamDecoder(version=4).feed(data)
    assert isinstance(packet, Publish)
    assert isinstance(packet.payload, memoryview)
    assert packet.payload.readonly
    assert packet.payload.obj is data  # a view of the caller's own bytes, not a copy
    assert bytes(packet.payload) == b"payload"


def test_publish_payload_split_across_feeds_is_a_memoryview() -> None:
    data = fixed(PUBLISH, s("t") + b"0123456789")
    decoder = StreamDecoder(version=4)
    assert decoder.feed(data[:6]) == []
    (packet,) = decoder.feed(data[6:])
    assert isinstance(packet, Publish)
    assert isinstance(packet.payload, memoryview)
    assert bytes(packet.payload) == b"0123456789"


V5_CONNECT = connect(5, CLEAN, 60, s("c5"))
V5_PUBLISH = fixed(PUBLISH, s("t") + props(p_u32(MESSAGE_EXPIRY_INTERVAL, 9)) + b"hi")


@pytest.mark.parametrize("chunk", [1, 3, 1000], ids=["byte-at-a-time", "chunks-of-3", "one-chunk"])
def test_version_none_switches_to_the_connect_level(chunk: int) -> None:
    stream = V5_CONNECT + V5_PUBLISH + bytes([AUTH, 0])
    decoder = StreamDecoder()
    out = []
    for i in range(0, len(stream), chunk):
        out.extend(decoder.feed(stream[i : i + chunk]))
    assert decoder.error is None
    assert decoder.version == 5
    assert len(out) == 3
    assert out[0] == Connect("c5", protocol_level=5)
    assert out[1] == Publish("t", b"hi", properties=Properties(message_expiry_interval=9))


def test_version_none_switches_to_level_4() -> None:
    # The same PUBLISH bytes read as 3.1.1: no properties, so the 0x00 belongs to the payload.
    publish = fixed(PUBLISH, s("t") + b"\x00hi")
    decoder = StreamDecoder()
    packets = decoder.feed(connect(4, CLEAN, 60, s("c4")) + publish + bytes([AUTH, 0]))
    assert decoder.version == 4
    assert packets[1] == Publish("t", b"\x00hi")
    # And AUTH, legal in 5.0, is not a 3.1.1 packet.
    assert decoder.error is not None
    assert decoder.error.reason_code is MALFORMED


def test_version_none_switches_to_level_3() -> None:
    decoder = StreamDecoder()
    subscribe = fixed(SUBSCRIBE, u16(1) + s("a/#") + b"\x01")
    packets = decoder.feed(connect(3, CLEAN, 60, s("c3")) + subscribe)
    assert decoder.version == 3
    assert packets == [Connect("c3", protocol_level=3), Subscribe(1, [Subscription("a/#", 1)])]


def test_stream_connect_error_carries_protocol_level() -> None:
    decoder = StreamDecoder()
    assert decoder.feed(v5_connect(props(p_u16(TOPIC_ALIAS, 1)))) == []
    assert decoder.error is not None
    assert decoder.error.reason_code is MALFORMED
    assert decoder.error.protocol_level == 5

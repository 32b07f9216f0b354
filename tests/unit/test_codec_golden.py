"""Golden wire vectors: every packet type at every protocol level it exists in (3, 4, 5).

The expected bytes come from the hand-written builders in ``mqtt_bytes`` (never from our encoder),
and each vector is checked both ways: ``encode(packet, v) == wire`` and
``decode_packet(wire, v) == packet``. A few literal hex vectors pin the builders themselves.
"""

from __future__ import annotations

from typing import Any

import pytest
from mqtt_bytes import (
    ASSIGNED_CLIENT_IDENTIFIER,
    AUTH,
    AUTHENTICATION_DATA,
    AUTHENTICATION_METHOD,
    CLEAN,
    CONNACK,
    CONTENT_TYPE,
    CORRELATION_DATA,
    DISCONNECT,
    MAXIMUM_PACKET_SIZE,
    MAXIMUM_QOS,
    MESSAGE_EXPIRY_INTERVAL,
    PASSWORD_FLAG,
    PAYLOAD_FORMAT_INDICATOR,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    REQUEST_PROBLEM_INFORMATION,
    REQUEST_RESPONSE_INFORMATION,
    RESPONSE_INFORMATION,
    RESPONSE_TOPIC,
    RETAIN_AVAILABLE,
    SERVER_KEEP_ALIVE,
    SERVER_REFERENCE,
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
    p_bin,
    p_byte,
    p_str,
    p_u16,
    p_u32,
    p_user,
    p_varint,
    props,
    s,
    u16,
    varint,
)

from wrenmq.codec import (
    NO_PROPERTIES,
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
    PublishTemplate,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    decode_packet,
    encode,
)
from wrenmq.codec.properties import Properties

RC = ReasonCode
V3, V4, V5 = 3, 4, 5


def vec(packet: Packet, version: int, wire: bytes, id: str) -> Any:
    return pytest.param(packet, version, wire, id=f"v{version}-{id}")


def v3_and_v4(packet: Packet, wire: bytes, id: str) -> list[Any]:
    return [vec(packet, V3, wire, id), vec(packet, V4, wire, id)]


# ---------------------------------------------------------------------------------------------
# The builders themselves, against the spec's own examples


@pytest.mark.parametrize(
    ("n", "wire"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_varint_builder_matches_spec_table_1_5_5(n: int, wire: bytes) -> None:
    assert varint(n) == wire


def test_string_builder_matches_spec_example_1_5_4() -> None:
    # Figure 1-1 (5.0) / 1.5.3 (3.1.1): "A\u2a6d4" is 00 05 41 F0 AA 9B 94.
    assert s("A\U0002a6d4") == bytes.fromhex("0005 41 F0AA9B94")


# ---------------------------------------------------------------------------------------------
# CONNECT

WILL_V5_PROPS = Properties(
    payload_format_indicator=1,
    message_expiry_interval=3600,
    content_type="text/plain",
    response_topic="resp/t",
    correlation_data=b"\x01\x02",
    will_delay_interval=10,
    user_properties=(("k", "v"),),
)
CONNECT_V5_PROPS = Properties(
    session_expiry_interval=0xFFFFFFFF,
    authentication_method="SCRAM-SHA-1",
    authentication_data=b"\xde\xad",
    request_problem_information=0,
    request_response_information=1,
    receive_maximum=20,
    topic_alias_maximum=10,
    user_properties=(("a", "1"), ("a", "2"), ("b", "")),
    maximum_packet_size=1_048_576,
)

CONNECT_VECTORS = [
    # MQTT 3.1: protocol name MQIsdp, level 3. Literal bytes to pin the builders too.
    vec(
        Connect("c1", protocol_level=3, keepalive=60),
        V3,
        bytes.fromhex("1010 0006 4d5149736470 03 02 003c 0002 6331"),
        "connect-mqisdp-literal",
    ),
    vec(
        Connect(
            "client-31",
            protocol_level=3,
            clean_start=False,
            keepalive=10,
            username="u",
            password=b"p",
            will=Will("w/t", b"gone", qos=1, retain=False),
        ),
        V3,
        connect(
            3,
            USERNAME_FLAG | PASSWORD_FLAG | WILL_QOS_1 | WILL_FLAG,
            10,
            s("client-31") + s("w/t") + bin_(b"gone") + s("u") + bin_(b"p"),
        ),
        "connect-will-user-password",
    ),
    # MQTT 3.1.1: an empty client id with clean session, keep alive 0.
    vec(
        Connect("", protocol_level=4, keepalive=0),
        V4,
        bytes.fromhex("100c 0004 4d515454 04 02 0000 0000"),
        "connect-minimal-literal",
    ),
    vec(
        Connect("dev", protocol_level=4, clean_start=False, keepalive=0xFFFF),
        V4,
        connect(4, 0x00, 0xFFFF, s("dev")),
        "connect-persistent-session",
    ),
    vec(
        Connect("dev", protocol_level=4, username="alice"),
        V4,
        connect(4, USERNAME_FLAG | CLEAN, 60, s("dev") + s("alice")),
        "connect-username-only",
    ),
    vec(
        Connect("dev", protocol_level=4, username="alice", password=b"\x00s3cr\xffet"),
        V4,
        connect(
            4,
            USERNAME_FLAG | PASSWORD_FLAG | CLEAN,
            60,
            s("dev") + s("alice") + bin_(b"\x00s3cr\xffet"),
        ),
        "connect-username-password",
    ),
    vec(
        Connect("dev", protocol_level=4, will=Will("status/dev", b"offline", qos=2, retain=True)),
        V4,
        connect(
            4,
            WILL_RETAIN | WILL_QOS_2 | WILL_FLAG | CLEAN,
            60,
            s("dev") + s("status/dev") + bin_(b"offline"),
        ),
        "connect-will-qos2-retain",
    ),
    vec(
        Connect("dev", protocol_level=4, will=Will("status/dev", b"", qos=0)),
        V4,
        connect(4, WILL_FLAG | CLEAN, 60, s("dev") + s("status/dev") + bin_(b"")),
        "connect-will-qos0-empty-payload",
    ),
    # MQTT 5.
    vec(
        Connect("", protocol_level=5),
        V5,
        bytes.fromhex("100d 0004 4d515454 05 02 003c 00 0000"),
        "connect-minimal-literal",
    ),
    vec(
        Connect(
            "wren-5",
            protocol_level=5,
            clean_start=False,
            keepalive=30,
            username="user",
            password=b"\x00pw",
            will=Will("will/topic", b"bye", qos=2, retain=True, properties=WILL_V5_PROPS),
            properties=CONNECT_V5_PROPS,
        ),
        V5,
        connect(
            5,
            USERNAME_FLAG | PASSWORD_FLAG | WILL_RETAIN | WILL_QOS_2 | WILL_FLAG,
            30,
            s("wren-5")
            + props(
                p_byte(PAYLOAD_FORMAT_INDICATOR, 1),
                p_u32(MESSAGE_EXPIRY_INTERVAL, 3600),
                p_str(CONTENT_TYPE, "text/plain"),
                p_str(RESPONSE_TOPIC, "resp/t"),
                p_bin(CORRELATION_DATA, b"\x01\x02"),
                p_u32(WILL_DELAY_INTERVAL, 10),
                p_user("k", "v"),
            )
            + s("will/topic")
            + bin_(b"bye")
            + s("user")
            + bin_(b"\x00pw"),
            properties=props(
                p_u32(SESSION_EXPIRY_INTERVAL, 0xFFFFFFFF),
                p_str(AUTHENTICATION_METHOD, "SCRAM-SHA-1"),
                p_bin(AUTHENTICATION_DATA, b"\xde\xad"),
                p_byte(REQUEST_PROBLEM_INFORMATION, 0),
                p_byte(REQUEST_RESPONSE_INFORMATION, 1),
                p_u16(RECEIVE_MAXIMUM, 20),
                p_u16(TOPIC_ALIAS_MAXIMUM, 10),
                p_user("a", "1"),
                p_user("a", "2"),
                p_user("b", ""),
                p_u32(MAXIMUM_PACKET_SIZE, 1_048_576),
            ),
        ),
        "connect-properties-will-properties",
    ),
    vec(
        Connect("c", protocol_level=5, will=Will("w", b"x", qos=1)),
        V5,
        connect(5, WILL_QOS_1 | WILL_FLAG | CLEAN, 60, s("c") + b"\x00" + s("w") + bin_(b"x")),
        "connect-will-no-properties",
    ),
    # [MQTT-3.1.2-22] is gone in 5.0: a password without a user name is legal.
    vec(
        Connect("c", protocol_level=5, password=b"token"),
        V5,
        connect(5, PASSWORD_FLAG | CLEAN, 60, s("c") + bin_(b"token")),
        "connect-password-without-username",
    ),
]

# ---------------------------------------------------------------------------------------------
# CONNACK

V3_RETURN_CODES = [
    (RC.UNSUPPORTED_PROTOCOL_VERSION, 1),
    (RC.CLIENT_IDENTIFIER_NOT_VALID, 2),
    (RC.SERVER_UNAVAILABLE, 3),
    (RC.BAD_USER_NAME_OR_PASSWORD, 4),
    (RC.NOT_AUTHORIZED, 5),
]

CONNACK_VECTORS = [
    *v3_and_v4(ConnAck(), bytes.fromhex("2002 00 00"), "connack-accepted"),
    vec(ConnAck(session_present=True), V4, bytes.fromhex("2002 01 00"), "connack-session-present"),
    *[
        v
        for code, rc in V3_RETURN_CODES
        for v in v3_and_v4(ConnAck(reason_code=code), bytes([CONNACK, 2, 0, rc]), f"connack-{rc}")
    ],
    vec(ConnAck(), V5, bytes.fromhex("2003 00 00 00"), "connack-success"),
    vec(
        ConnAck(True, RC.SUCCESS, Properties(session_expiry_interval=0)),
        V5,
        fixed(CONNACK, b"\x01\x00" + props(p_u32(SESSION_EXPIRY_INTERVAL, 0))),
        "connack-session-present-expiry-0",
    ),
    vec(
        ConnAck(
            False,
            RC.SUCCESS,
            Properties(
                session_expiry_interval=7200,
                assigned_client_identifier="auto-1f3a",
                server_keep_alive=120,
                authentication_method="SCRAM-SHA-1",
                authentication_data=b"\x00\x01",
                response_information="resp/",
                server_reference="other:1883",
                reason_string="welcome",
                receive_maximum=100,
                topic_alias_maximum=65535,
                maximum_qos=1,
                retain_available=0,
                user_properties=(("node", "n1"), ("node", "n2")),
                maximum_packet_size=268_435_460,
                wildcard_subscription_available=1,
                subscription_identifier_available=0,
                shared_subscription_available=1,
            ),
        ),
        V5,
        fixed(
            CONNACK,
            b"\x00\x00"
            + props(
                p_u32(SESSION_EXPIRY_INTERVAL, 7200),
                p_str(ASSIGNED_CLIENT_IDENTIFIER, "auto-1f3a"),
                p_u16(SERVER_KEEP_ALIVE, 120),
                p_str(AUTHENTICATION_METHOD, "SCRAM-SHA-1"),
                p_bin(AUTHENTICATION_DATA, b"\x00\x01"),
                p_str(RESPONSE_INFORMATION, "resp/"),
                p_str(SERVER_REFERENCE, "other:1883"),
                p_str(REASON_STRING, "welcome"),
                p_u16(RECEIVE_MAXIMUM, 100),
                p_u16(TOPIC_ALIAS_MAXIMUM, 65535),
                p_byte(MAXIMUM_QOS, 1),
                p_byte(RETAIN_AVAILABLE, 0),
                p_user("node", "n1"),
                p_user("node", "n2"),
                p_u32(MAXIMUM_PACKET_SIZE, 268_435_460),
                p_byte(WILDCARD_SUBSCRIPTION_AVAILABLE, 1),
                p_byte(SUBSCRIPTION_IDENTIFIER_AVAILABLE, 0),
                p_byte(SHARED_SUBSCRIPTION_AVAILABLE, 1),
            ),
        ),
        "connack-all-properties",
    ),
    vec(
        ConnAck(False, RC.NOT_AUTHORIZED, Properties(reason_string="denied")),
        V5,
        fixed(CONNACK, b"\x00\x87" + props(p_str(REASON_STRING, "denied"))),
        "connack-not-authorized",
    ),
    vec(
        ConnAck(False, RC.BANNED),
        V5,
        bytes.fromhex("2003 00 8a 00"),
        "connack-banned",
    ),
]

# ---------------------------------------------------------------------------------------------
# PUBLISH

BIG = bytes(range(256)) * 79  # 20224 bytes: a three-byte Remaining Length
PUBLISH_V5_PROPS = Properties(
    payload_format_indicator=1,
    message_expiry_interval=60,
    content_type="application/json",
    response_topic="reply/1",
    correlation_data=b"corr",
    user_properties=(("z", "1"), ("a", "2"), ("z", "3")),
)

PUBLISH_VECTORS = [
    *v3_and_v4(
        Publish("a/b", b"hello"),
        bytes.fromhex("300a 0003 612f62 68656c6c6f"),
        "publish-qos0-literal",
    ),
    *v3_and_v4(Publish("t", b""), fixed(PUBLISH, s("t")), "publish-qos0-empty-payload"),
    *v3_and_v4(
        Publish("t", b"x", qos=1, retain=True, packet_id=1),
        fixed(PUBLISH | 0x02 | 0x01, s("t") + u16(1) + b"x"),
        "publish-qos1-retain",
    ),
    *v3_and_v4(
        Publish("t", b"x", qos=2, dup=True, packet_id=0xFFFF),
        fixed(PUBLISH | 0x08 | 0x04, s("t") + u16(0xFFFF) + b"x"),
        "publish-qos2-dup",
    ),
    *v3_and_v4(
        Publish("t", b"x", qos=1, dup=True, retain=True, packet_id=0x1234),
        bytes.fromhex("3b06 0001 74 1234 78"),
        "publish-qos1-dup-retain-literal",
    ),
    vec(
        Publish("temp/\u6e29\u5ea6/\u20ac", "\u00e9".encode()),
        V4,
        fixed(PUBLISH, s("temp/\u6e29\u5ea6/\u20ac") + b"\xc3\xa9"),
        "publish-utf8-topic",
    ),
    vec(
        Publish("big", bytes(200), qos=1, packet_id=9),
        V4,
        b"\x32\xcf\x01" + s("big") + u16(9) + bytes(200),  # 5 + 2 + 200 = 207 = CF 01
        "publish-two-byte-remaining-length",
    ),
    vec(
        Publish("big", BIG),
        V4,
        fixed(PUBLISH, s("big") + BIG),
        "publish-three-byte-remaining-length",
    ),
    vec(Publish("a", b"hi"), V5, fixed(PUBLISH, s("a") + b"\x00" + b"hi"), "publish-qos0"),
    vec(
        Publish("a/b", b"{}", qos=1, packet_id=10, properties=PUBLISH_V5_PROPS),
        V5,
        fixed(
            PUBLISH | 0x02,
            s("a/b")
            + u16(10)
            + props(
                p_byte(PAYLOAD_FORMAT_INDICATOR, 1),
                p_u32(MESSAGE_EXPIRY_INTERVAL, 60),
                p_str(CONTENT_TYPE, "application/json"),
                p_str(RESPONSE_TOPIC, "reply/1"),
                p_bin(CORRELATION_DATA, b"corr"),
                # User properties keep their order and may repeat a key [MQTT-3.3.2-18].
                p_user("z", "1"),
                p_user("a", "2"),
                p_user("z", "3"),
            )
            + b"{}",
        ),
        "publish-qos1-properties",
    ),
    vec(
        Publish(
            "s/1",
            b"",
            qos=2,
            retain=True,
            dup=True,
            packet_id=77,
            properties=Properties(subscription_identifiers=(1, 128, 268_435_455)),
        ),
        V5,
        fixed(
            PUBLISH | 0x08 | 0x04 | 0x01,
            s("s/1")
            + u16(77)
            + props(
                p_varint(SUBSCRIPTION_IDENTIFIER, 1),
                p_varint(SUBSCRIPTION_IDENTIFIER, 128),
                p_varint(SUBSCRIPTION_IDENTIFIER, 268_435_455),
            ),
        ),
        "publish-qos2-dup-retain-subscription-identifiers",
    ),
    vec(
        Publish("long/topic", b"1", properties=Properties(topic_alias=3)),
        V5,
        fixed(PUBLISH, s("long/topic") + props(p_u16(TOPIC_ALIAS, 3)) + b"1"),
        "publish-set-topic-alias",
    ),
    vec(
        Publish("", b"2", properties=Properties(topic_alias=3)),
        V5,
        bytes.fromhex("3007 0000 03 230003 32"),
        "publish-topic-alias-only-literal",
    ),
]

# ---------------------------------------------------------------------------------------------
# PUBACK, PUBREC, PUBREL, PUBCOMP

ACKS: list[tuple[type[PubAck | PubRec | PubRel | PubComp], int, str, ReasonCode]] = [
    (PubAck, PUBACK, "puback", RC.NO_MATCHING_SUBSCRIBERS),
    (PubRec, PUBREC, "pubrec", RC.QUOTA_EXCEEDED),
    (PubRel, PUBREL, "pubrel", RC.PACKET_IDENTIFIER_NOT_FOUND),
    (PubComp, PUBCOMP, "pubcomp", RC.PACKET_IDENTIFIER_NOT_FOUND),
]
ACK_PROPS = Properties(reason_string="why", user_properties=(("k", "v"), ("k", "w")))
ACK_PROPS_WIRE = props(p_str(REASON_STRING, "why"), p_user("k", "v"), p_user("k", "w"))

ACK_VECTORS = [
    v
    for cls, first, name, code in ACKS
    for v in [
        *v3_and_v4(cls(1), bytes([first, 2, 0, 1]), f"{name}"),
        *v3_and_v4(cls(0xABCD), bytes([first, 2, 0xAB, 0xCD]), f"{name}-high-id"),
        # 5.0 3.4.2.1: Success with no properties is sent as the short form, packet id only.
        vec(cls(7), V5, bytes([first, 2, 0, 7]), f"{name}-short"),
        vec(cls(7, code), V5, bytes([first, 3, 0, 7, code]), f"{name}-reason"),
        vec(
            cls(7, code, ACK_PROPS),
            V5,
            fixed(first, u16(7) + bytes([code]) + ACK_PROPS_WIRE),
            f"{name}-reason-properties",
        ),
        vec(
            cls(7, RC.SUCCESS, Properties(reason_string="ok")),
            V5,
            fixed(first, u16(7) + b"\x00" + props(p_str(REASON_STRING, "ok"))),
            f"{name}-success-properties",
        ),
    ]
]

# ---------------------------------------------------------------------------------------------
# SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK

SUBSCRIBE_VECTORS = [
    *v3_and_v4(
        Subscribe(10, [Subscription("a/b", 0), Subscription("c/#", 1), Subscription("+/d", 2)]),
        fixed(SUBSCRIBE, u16(10) + s("a/b") + b"\x00" + s("c/#") + b"\x01" + s("+/d") + b"\x02"),
        "subscribe",
    ),
    *v3_and_v4(
        Subscribe(1, [Subscription("a", 1)]),
        bytes.fromhex("8206 0001 000161 01"),
        "subscribe-literal",
    ),
    vec(
        Subscribe(2, [Subscription("a", 0)]),
        V5,
        bytes.fromhex("8207 0002 00 000161 00"),
        "subscribe-literal",
    ),
    vec(
        Subscribe(
            11,
            [
                Subscription("a", 1, no_local=True),
                Subscription("b", 2, retain_as_published=True, retain_handling=1),
                Subscription("$share/g/c", 0, retain_handling=2),
                Subscription("d/+", 0, no_local=True, retain_as_published=True, retain_handling=2),
            ],
            Properties(subscription_identifiers=(300,), user_properties=(("k", "v"),)),
        ),
        V5,
        fixed(
            SUBSCRIBE,
            u16(11)
            + props(p_varint(SUBSCRIPTION_IDENTIFIER, 300), p_user("k", "v"))
            # Options byte (3.8.3.1): bits 0-1 QoS, 2 No Local, 3 RAP, 4-5 Retain Handling.
            + s("a")
            + bytes([0b00_00_0_1_01])
            + s("b")
            + bytes([0b00_01_1_0_10])
            + s("$share/g/c")
            + bytes([0b00_10_0_0_00])
            + s("d/+")
            + bytes([0b00_10_1_1_00]),
        ),
        "subscribe-options-subscription-identifier",
    ),
]

SUBACK_VECTORS = [
    *v3_and_v4(
        SubAck(10, [RC.GRANTED_QOS_0, RC.GRANTED_QOS_1, RC.GRANTED_QOS_2, RC.UNSPECIFIED_ERROR]),
        bytes.fromhex("9006 000a 00 01 02 80"),
        "suback",
    ),
    vec(
        SubAck(11, [RC.GRANTED_QOS_1]),
        V5,
        bytes.fromhex("9004 000b 00 01"),
        "suback",
    ),
    vec(
        SubAck(
            11,
            [
                RC.GRANTED_QOS_2,
                RC.NOT_AUTHORIZED,
                RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
                RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ],
            Properties(reason_string="partial", user_properties=(("x", "y"),)),
        ),
        V5,
        fixed(
            SUBACK,
            u16(11)
            + props(p_str(REASON_STRING, "partial"), p_user("x", "y"))
            + bytes([0x02, 0x87, 0x9E, 0xA1, 0xA2]),
        ),
        "suback-failures-properties",
    ),
]

UNSUBSCRIBE_VECTORS = [
    *v3_and_v4(
        Unsubscribe(12, ["a/b", "c/#"]),
        fixed(UNSUBSCRIBE, u16(12) + s("a/b") + s("c/#")),
        "unsubscribe",
    ),
    vec(
        Unsubscribe(12, ["a"]),
        V5,
        bytes.fromhex("a206 000c 00 000161"),
        "unsubscribe-literal",
    ),
    vec(
        Unsubscribe(13, ["x/+", "$share/g/y"], Properties(user_properties=(("k", "v"),))),
        V5,
        fixed(UNSUBSCRIBE, u16(13) + props(p_user("k", "v")) + s("x/+") + s("$share/g/y")),
        "unsubscribe-user-property",
    ),
]

UNSUBACK_VECTORS = [
    # 3.x: no payload, no reason codes.
    *v3_and_v4(UnsubAck(12), bytes.fromhex("b002 000c"), "unsuback"),
    vec(UnsubAck(12, [RC.SUCCESS]), V5, bytes.fromhex("b004 000c 00 00"), "unsuback"),
    vec(
        UnsubAck(
            13,
            [RC.SUCCESS, RC.NO_SUBSCRIPTION_EXISTED, RC.NOT_AUTHORIZED, RC.TOPIC_FILTER_INVALID],
            Properties(reason_string="r"),
        ),
        V5,
        fixed(UNSUBACK, u16(13) + props(p_str(REASON_STRING, "r")) + bytes([0, 0x11, 0x87, 0x8F])),
        "unsuback-reasons-properties",
    ),
]

# ---------------------------------------------------------------------------------------------
# PINGREQ, PINGRESP, DISCONNECT, AUTH

PING_VECTORS = [
    v
    for version in (V3, V4, V5)
    for v in [
        vec(PingReq(), version, bytes([PINGREQ, 0]), "pingreq"),
        vec(PingResp(), version, bytes([PINGRESP, 0]), "pingresp"),
    ]
]

DISCONNECT_VECTORS = [
    *v3_and_v4(Disconnect(), bytes.fromhex("e000"), "disconnect"),
    # 5.0 3.14.2.1: reason code 0 with no properties may be sent as Remaining Length 0.
    vec(Disconnect(), V5, bytes.fromhex("e000"), "disconnect-normal"),
    vec(
        Disconnect(RC.DISCONNECT_WITH_WILL_MESSAGE),
        V5,
        bytes.fromhex("e001 04"),
        "disconnect-with-will",
    ),
    vec(
        Disconnect(
            RC.SERVER_MOVED,
            Properties(
                session_expiry_interval=0,
                server_reference="other:1883",
                reason_string="moved",
                user_properties=(("a", "b"),),
            ),
        ),
        V5,
        fixed(
            DISCONNECT,
            b"\x9d"
            + props(
                p_u32(SESSION_EXPIRY_INTERVAL, 0),
                p_str(SERVER_REFERENCE, "other:1883"),
                p_str(REASON_STRING, "moved"),
                p_user("a", "b"),
            ),
        ),
        "disconnect-reason-properties",
    ),
    vec(
        Disconnect(RC.NORMAL_DISCONNECTION, Properties(session_expiry_interval=30)),
        V5,
        fixed(DISCONNECT, b"\x00" + props(p_u32(SESSION_EXPIRY_INTERVAL, 30))),
        "disconnect-normal-session-expiry",
    ),
]

AUTH_VECTORS = [
    # 5.0 3.15.2.1: Success with no properties may be sent as Remaining Length 0.
    vec(Auth(), V5, bytes.fromhex("f000"), "auth-success-short"),
    vec(
        Auth(
            RC.CONTINUE_AUTHENTICATION,
            Properties(authentication_method="SCRAM-SHA-1", authentication_data=b"n,,n=user"),
        ),
        V5,
        fixed(
            AUTH,
            b"\x18"
            + props(
                p_str(AUTHENTICATION_METHOD, "SCRAM-SHA-1"),
                p_bin(AUTHENTICATION_DATA, b"n,,n=user"),
            ),
        ),
        "auth-continue",
    ),
    vec(
        Auth(
            RC.RE_AUTHENTICATE,
            Properties(
                authentication_method="X",
                reason_string="again",
                user_properties=(("k", "v"),),
            ),
        ),
        V5,
        fixed(
            AUTH,
            b"\x19"
            + props(
                p_str(AUTHENTICATION_METHOD, "X"), p_str(REASON_STRING, "again"), p_user("k", "v")
            ),
        ),
        "auth-reauthenticate",
    ),
    # 3.15.2.2.1 has no "Remaining Length < 2" rule (unlike DISCONNECT): a non-zero reason code
    # is always followed by a Property Length.
    vec(
        Auth(RC.CONTINUE_AUTHENTICATION), V5, bytes.fromhex("f002 18 00"), "auth-continue-no-props"
    ),
]

GOLDEN = [
    *CONNECT_VECTORS,
    *CONNACK_VECTORS,
    *PUBLISH_VECTORS,
    *ACK_VECTORS,
    *SUBSCRIBE_VECTORS,
    *SUBACK_VECTORS,
    *UNSUBSCRIBE_VECTORS,
    *UNSUBACK_VECTORS,
    *PING_VECTORS,
    *DISCONNECT_VECTORS,
    *AUTH_VECTORS,
]


@pytest.mark.parametrize(("packet", "version", "wire"), GOLDEN)
def test_encode_golden(packet: Packet, version: int, wire: bytes) -> None:
    assert encode(packet, version) == wire


@pytest.mark.parametrize(("packet", "version", "wire"), GOLDEN)
def test_decode_golden(packet: Packet, version: int, wire: bytes) -> None:
    assert decode_packet(wire, version) == packet
    if isinstance(packet, Connect):
        # A server decoder does not know the level yet; the CONNECT itself tells it.
        assert decode_packet(wire, None) == packet


def test_golden_covers_every_packet_type_at_every_level() -> None:
    seen = {(type(p.values[0]).__name__, p.values[1]) for p in GOLDEN}
    for cls in (
        Connect, ConnAck, Publish, PubAck, PubRec, PubRel, PubComp, Subscribe, SubAck,
        Unsubscribe, UnsubAck, PingReq, PingResp, Disconnect,
    ):  # fmt: skip
        for version in (V3, V4, V5):
            assert (cls.__name__, version) in seen
    assert ("Auth", V5) in seen


# ---------------------------------------------------------------------------------------------
# One-way vectors: encodings the spec allows on input that our encoder never produces, and
# values that only exist in one direction (3.x CONNACK return codes cover several 5.0 codes).

DECODE_ONLY = [
    # 3.4.2.1 / 3.4.2.2.1: reason code 0 and property length 0 may be present or absent.
    vec(PubAck(7), V5, bytes.fromhex("4003 0007 00"), "puback-success-no-property-length"),
    vec(PubRel(7), V5, bytes.fromhex("6204 0007 00 00"), "pubrel-success-empty-properties"),
    vec(Disconnect(), V5, bytes.fromhex("e001 00"), "disconnect-reason-only"),
    vec(Disconnect(), V5, bytes.fromhex("e002 00 00"), "disconnect-empty-properties"),
    vec(Auth(), V5, bytes.fromhex("f002 00 00"), "auth-empty-properties"),
    # Properties may come in any order (2.2.2.2 fixes none); only user-property order matters.
    vec(
        Publish(
            "t",
            b"",
            properties=Properties(content_type="c", user_properties=(("b", "1"), ("a", "2"))),
        ),
        V5,
        fixed(
            PUBLISH, s("t") + props(p_user("b", "1"), p_str(CONTENT_TYPE, "c"), p_user("a", "2"))
        ),
        "publish-properties-out-of-order",
    ),
    # The payload is whatever follows the header, even if it looks like more packets.
    vec(
        Publish("t", b"\xc0\x00"),
        V4,
        fixed(PUBLISH, s("t") + b"\xc0\x00"),
        "publish-payload-looks-like-ping",
    ),
]


@pytest.mark.parametrize(("packet", "version", "wire"), DECODE_ONLY)
def test_decode_only(packet: Packet, version: int, wire: bytes) -> None:
    assert decode_packet(wire, version) == packet


ENCODE_ONLY = [
    # 3.1.1 knows six CONNACK return codes; other 5.0 refusals map to the closest one.
    vec(ConnAck(reason_code=RC.BANNED), V4, bytes.fromhex("2002 00 05"), "connack-banned-is-5"),
    vec(
        ConnAck(reason_code=RC.BAD_AUTHENTICATION_METHOD),
        V4,
        bytes.fromhex("2002 00 04"),
        "connack-bad-auth-method-is-4",
    ),
    vec(ConnAck(reason_code=RC.SERVER_BUSY), V4, bytes.fromhex("2002 00 03"), "connack-busy-is-3"),
    # [MQTT-3.2.2-4]: session present is 0 on a refusal.
    vec(
        ConnAck(session_present=True, reason_code=RC.NOT_AUTHORIZED),
        V4,
        bytes.fromhex("2002 00 05"),
        "connack-refusal-clears-session-present",
    ),
    # [MQTT-3.2.2-6]: the same in 5.0.
    vec(
        ConnAck(session_present=True, reason_code=RC.NOT_AUTHORIZED),
        V5,
        bytes.fromhex("2003 00 87 00"),
        "connack-refusal-clears-session-present",
    ),
    # 3.1.1 SUBACK has only 0x80 for failure [MQTT-3.9.3-2].
    vec(
        SubAck(1, [RC.NOT_AUTHORIZED, RC.GRANTED_QOS_1]),
        V4,
        bytes.fromhex("9004 0001 80 01"),
        "suback-failure",
    ),
    # 3.x DISCONNECT and acks carry neither reason codes nor properties.
    vec(Disconnect(RC.SERVER_SHUTTING_DOWN), V4, bytes.fromhex("e000"), "disconnect-drops-reason"),
    vec(
        PubAck(5, RC.NOT_AUTHORIZED, ACK_PROPS),
        V4,
        bytes.fromhex("4002 0005"),
        "puback-drops-reason",
    ),
    # 3.x has no subscription options beyond QoS.
    vec(
        Subscribe(
            1, [Subscription("a", 1, no_local=True, retain_as_published=True, retain_handling=2)]
        ),
        V4,
        bytes.fromhex("8206 0001 000161 01"),
        "subscribe-drops-v5-options",
    ),
    # A 3.x QoS 0 PUBLISH has no packet id, whatever the dataclass holds.
    vec(
        Publish("t", b"", packet_id=5), V4, fixed(PUBLISH, s("t")), "publish-qos0-ignores-packet-id"
    ),
]


@pytest.mark.parametrize(("packet", "version", "wire"), ENCODE_ONLY)
def test_encode_only(packet: Packet, version: int, wire: bytes) -> None:
    assert encode(packet, version) == wire


def test_decoded_empty_properties_are_no_properties() -> None:
    packet = decode_packet(bytes.fromhex("2003 00 00 00"), V5)
    assert isinstance(packet, ConnAck)
    assert packet.properties is NO_PROPERTIES


# ---------------------------------------------------------------------------------------------
# PublishTemplate: encode once, patch per receiver


def test_template_qos0_v4() -> None:
    t = PublishTemplate("a/b", b"hello")
    assert bytes(t.for_receiver(V4, 0)) == bytes.fromhex("300a 0003 612f62 68656c6c6f")
    assert bytes(t.for_receiver(V3, 0, retain=True)) == bytes.fromhex("310a 0003 612f62 68656c6c6f")


def test_template_patches_packet_id_per_receiver() -> None:
    t = PublishTemplate("a/b", b"hello")
    first = t.for_receiver(V4, 1, 0x1234)
    second = t.for_receiver(V4, 1, 7)
    third = t.for_receiver(V4, 2, 0xFFFF, dup=True)
    assert bytes(first) == fixed(PUBLISH | 0x02, s("a/b") + u16(0x1234) + b"hello")
    assert bytes(second) == fixed(PUBLISH | 0x02, s("a/b") + u16(7) + b"hello")
    assert bytes(third) == fixed(PUBLISH | 0x08 | 0x04, s("a/b") + u16(0xFFFF) + b"hello")
    # Patching one receiver's copy must not leak into the cached variant or other receivers.
    assert bytes(first) == fixed(PUBLISH | 0x02, s("a/b") + u16(0x1234) + b"hello")
    assert bytes(t.for_receiver(V4, 1, 0x1234)) == bytes(first)


def test_template_v5_shared_properties_and_subscription_identifiers() -> None:
    t = PublishTemplate(
        "s/t", b"data", Properties(content_type="text/plain", user_properties=(("k", "v"),))
    )
    wire = bytes(t.for_receiver(V5, 1, 42, subscription_identifiers=(5, 200)))
    # The shared properties are encoded once, the receiver's own ones appended after them.
    expected = fixed(
        PUBLISH | 0x02,
        s("s/t")
        + u16(42)
        + props(
            p_str(CONTENT_TYPE, "text/plain"),
            p_user("k", "v"),
            p_varint(SUBSCRIPTION_IDENTIFIER, 5),
            p_varint(SUBSCRIPTION_IDENTIFIER, 200),
        )
        + b"data",
    )
    assert wire == expected
    assert decode_packet(wire, V5) == Publish(
        "s/t",
        b"data",
        qos=1,
        packet_id=42,
        properties=Properties(
            content_type="text/plain",
            user_properties=(("k", "v"),),
            subscription_identifiers=(5, 200),
        ),
    )
    # A 3.1.1 receiver of the same template gets no properties at all.
    assert bytes(t.for_receiver(V4, 0)) == fixed(PUBLISH, s("s/t") + b"data")


def test_template_v5_without_properties_has_zero_property_length() -> None:
    t = PublishTemplate("a", b"hi")
    assert bytes(t.for_receiver(V5, 0)) == fixed(PUBLISH, s("a") + b"\x00" + b"hi")
    assert bytes(t.for_receiver(V5, 2, 3, retain=True)) == fixed(
        PUBLISH | 0x04 | 0x01, s("a") + u16(3) + b"\x00" + b"hi"
    )


def test_template_topic_alias() -> None:
    t = PublishTemplate("long/topic/name", b"p")
    set_alias = bytes(t.for_receiver(V5, 1, 9, topic_alias=4))
    alias_only = bytes(t.for_receiver(V5, 1, 10, topic_alias=4, topic_alias_only=True))
    assert set_alias == fixed(
        PUBLISH | 0x02, s("long/topic/name") + u16(9) + props(p_u16(TOPIC_ALIAS, 4)) + b"p"
    )
    assert alias_only == fixed(
        PUBLISH | 0x02, s("") + u16(10) + props(p_u16(TOPIC_ALIAS, 4)) + b"p"
    )
    assert decode_packet(alias_only, V5) == Publish(
        "", b"p", qos=1, packet_id=10, properties=Properties(topic_alias=4)
    )
    # Aliases do not exist below 5.0: a 3.1.1 receiver always gets the full topic.
    assert bytes(t.for_receiver(V4, 0, topic_alias=4, topic_alias_only=True)) == fixed(
        PUBLISH, s("long/topic/name") + b"p"
    )


def test_template_from_publish_matches_encode() -> None:
    publish = Publish("x/y", b"z" * 300, qos=1, packet_id=513, properties=PUBLISH_V5_PROPS)
    t = PublishTemplate.from_publish(publish)
    assert bytes(t.for_receiver(V5, 1, 513)) == encode(publish, V5)
    assert bytes(t.for_receiver(V5, 1, 513)) == fixed(
        PUBLISH | 0x02,
        s("x/y")
        + u16(513)
        + props(
            p_byte(PAYLOAD_FORMAT_INDICATOR, 1),
            p_u32(MESSAGE_EXPIRY_INTERVAL, 60),
            p_str(CONTENT_TYPE, "application/json"),
            p_str(RESPONSE_TOPIC, "reply/1"),
            p_bin(CORRELATION_DATA, b"corr"),
            p_user("z", "1"),
            p_user("a", "2"),
            p_user("z", "3"),
        )
        + b"z" * 300,
    )

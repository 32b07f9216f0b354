"""Conformance: MQTT 5 properties (sections 2.2.2, 3.1.2.11, 3.2.2.3, 3.3.2.3, 3.8.2.1, 3.14.2.2).

What the broker announces in CONNACK, what it does with the client's announcements (Maximum
Packet Size, Receive Maximum), the properties it forwards, subscription identifiers, message
expiry and the session expiry rules of DISCONNECT. Every byte is hand-written (wire.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from brokerthread import BrokerThread
from unit.mqtt_bytes import (
    AUTHENTICATION_METHOD,
    CONTENT_TYPE,
    CORRELATION_DATA,
    MAXIMUM_PACKET_SIZE,
    MESSAGE_EXPIRY_INTERVAL,
    PAYLOAD_FORMAT_INDICATOR,
    RECEIVE_MAXIMUM,
    REQUEST_PROBLEM_INFORMATION,
    RESPONSE_TOPIC,
    SESSION_EXPIRY_INTERVAL,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    TOPIC_ALIAS_MAXIMUM,
    p_bin,
    p_byte,
    p_str,
    p_u16,
    p_u32,
    p_user,
    p_varint,
)

from .wire import (
    NO_PROBLEM_INFO,
    Peer,
    ack,
    connect,
    disconnect_reason,
    disconnect_v5,
    parse_connack,
    parse_publish,
    publish,
    subscribe,
)

SERVER_KEEP_ALIVE = 0x13
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
WILDCARD_AVAILABLE = 0x28
SUB_ID_AVAILABLE = 0x29
SHARED_AVAILABLE = 0x2A
ASSIGNED_CLIENT_ID = 0x12

# ---------------------------------------------------------------------------------------------
# CONNACK announcements.

CONNACK_PROPERTIES: list[Any] = [
    # (config, expected properties (None = must be absent))
    pytest.param({}, {RECEIVE_MAXIMUM: [20], TOPIC_ALIAS_MAXIMUM: [10], MAXIMUM_QOS: None,
                      RETAIN_AVAILABLE: None, MAXIMUM_PACKET_SIZE: None, SERVER_KEEP_ALIVE: None,
                      ASSIGNED_CLIENT_ID: None},
                 id="3.2.2.3-defaults"),
    pytest.param({"max_inflight_messages": 5}, {RECEIVE_MAXIMUM: [5]},
                 id="3.2.2.3.3-receive-maximum"),
    pytest.param({"max_topic_alias": 2}, {TOPIC_ALIAS_MAXIMUM: [2]},
                 id="3.2.2.3.8-topic-alias-maximum"),
    pytest.param({"max_topic_alias": 0}, {TOPIC_ALIAS_MAXIMUM: None},
                 id="3.2.2.3.8-no-topic-aliases"),
    pytest.param({"max_qos": 1}, {MAXIMUM_QOS: [1]}, id="MQTT-3.2.2-9-maximum-qos-1"),
    pytest.param({"max_qos": 0}, {MAXIMUM_QOS: [0]}, id="MQTT-3.2.2-9-maximum-qos-0"),
    pytest.param({"retain_available": False}, {RETAIN_AVAILABLE: [0]},
                 id="3.2.2.3.5-retain-available-0"),
    pytest.param({"max_packet_size": 1000}, {MAXIMUM_PACKET_SIZE: [1000]},
                 id="3.2.2.3.6-maximum-packet-size"),
    pytest.param({"wildcard_subscription_available": False}, {WILDCARD_AVAILABLE: [0]},
                 id="3.2.2.3.11-wildcard-subscription-available-0"),
    pytest.param({"subscription_identifier_available": False}, {SUB_ID_AVAILABLE: [0]},
                 id="3.2.2.3.12-subscription-identifier-available-0"),
    pytest.param({"shared_subscription_available": False}, {SHARED_AVAILABLE: [0]},
                 id="3.2.2.3.13-shared-subscription-available-0"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "expected"), CONNACK_PROPERTIES)
def test_connack_announces(
    start_broker: Callable[..., BrokerThread],
    config: dict[str, Any],
    expected: dict[int, list[Any] | None],
) -> None:
    bt = start_broker(**config)
    with Peer(bt.port) as peer:
        got = peer.connect_ok(5, "props").properties
    for ident, value in expected.items():
        assert got.get(ident) == value, (hex(ident), got)


SERVER_KEEP_ALIVE_CASES = [
    # (max_keepalive, client keep alive, expected Server Keep Alive or None)
    pytest.param(10, 60, [10], id="MQTT-3.2.2-21-keepalive-above-maximum"),
    pytest.param(10, 0, [10], id="MQTT-3.2.2-21-keepalive-0-with-a-maximum"),
    pytest.param(10, 10, None, id="MQTT-3.2.2-21-keepalive-at-maximum"),
    pytest.param(10, 5, None, id="MQTT-3.2.2-21-keepalive-below-maximum"),
]


@pytest.mark.parametrize(("max_keepalive", "keepalive", "expected"), SERVER_KEEP_ALIVE_CASES)
def test_server_keep_alive(
    start_broker: Callable[..., BrokerThread],
    max_keepalive: int,
    keepalive: int,
    expected: list[int] | None,
) -> None:
    bt = start_broker(max_keepalive=max_keepalive)
    with Peer(bt.port) as peer:
        got = peer.connect_ok(5, "ka", keepalive=keepalive).properties
        assert got.get(SERVER_KEEP_ALIVE) == expected


def test_v311_keepalive_above_maximum_is_still_accepted(
    start_broker: Callable[..., BrokerThread],
) -> None:
    bt = start_broker(max_keepalive=10)
    with Peer(bt.port) as peer:
        assert peer.connect(4, "ka", keepalive=60) == b"\x20\x02\x00\x00"


# ---------------------------------------------------------------------------------------------
# CONNECT property errors.

CONNECT_PROPERTY_ERRORS = [
    # (properties, CONNACK reason code)
    pytest.param([p_u16(RECEIVE_MAXIMUM, 0)], 0x82, id="3.1.2.11.3-receive-maximum-0"),
    pytest.param([p_u32(MAXIMUM_PACKET_SIZE, 0)], 0x82, id="3.1.2.11.4-maximum-packet-size-0"),
    pytest.param([p_u32(SESSION_EXPIRY_INTERVAL, 1), p_u32(SESSION_EXPIRY_INTERVAL, 2)], 0x82,
                 id="3.1.2.11.2-session-expiry-twice"),
    pytest.param([p_byte(REQUEST_PROBLEM_INFORMATION, 2)], 0x82,
                 id="3.1.2.11.7-request-problem-information-2"),
    pytest.param([b"\x7f\x00"], 0x81, id="2.2.2.2-unknown-property-identifier"),
    pytest.param([p_str(AUTHENTICATION_METHOD, "SCRAM-NOPE")], 0x8C,
                 id="4.12-unsupported-authentication-method"),
    pytest.param(
        [p_u16(TOPIC_ALIAS, 1)], 0x81,
        id="2.2.2.2-property-not-valid-for-connect",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("properties", "reason"), CONNECT_PROPERTY_ERRORS)
def test_connect_property_error_connack_reason(
    port: int, properties: list[bytes], reason: int, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.send(connect(5, "p", properties=properties))
        ack_ = parse_connack(peer.recv(), v5=True)
        assert (ack_.session_present, ack_.reason) == (0, reason)
        peer.expect_closed()


def test_publish_with_connect_only_property_is_malformed(port: int, broker_warns: None) -> None:
    with Peer(port) as peer:
        peer.connect_ok(5, "p", properties=[NO_PROBLEM_INFO])
        peer.send(publish("t", b"x", v5=True, properties=[p_u32(SESSION_EXPIRY_INTERVAL, 1)]))
        assert disconnect_reason(peer.recv()) == 0x81


def test_publish_duplicate_property_is_protocol_error(port: int, broker_warns: None) -> None:
    # 3.3.2.3.2: "It is a Protocol Error to include the Payload Format Indicator more than once."
    with Peer(port) as peer:
        peer.connect_ok(5, "p", properties=[NO_PROBLEM_INFO])
        pfi = p_byte(PAYLOAD_FORMAT_INDICATOR, 0)
        peer.send(publish("t", b"x", v5=True, properties=[pfi, pfi]))
        assert disconnect_reason(peer.recv()) == 0x82
        peer.expect_closed()


# ---------------------------------------------------------------------------------------------
# Forwarded properties.

FORWARDED = [
    # (PUBLISH properties, expected parsed properties at the subscriber)
    pytest.param([p_byte(PAYLOAD_FORMAT_INDICATOR, 1)], {PAYLOAD_FORMAT_INDICATOR: [1]},
                 id="MQTT-3.3.2-4-payload-format-indicator"),
    pytest.param([p_str(RESPONSE_TOPIC, "reply/here")], {RESPONSE_TOPIC: ["reply/here"]},
                 id="MQTT-3.3.2-15-response-topic"),
    pytest.param([p_bin(CORRELATION_DATA, b"\x00\x01\xff")], {CORRELATION_DATA: [b"\x00\x01\xff"]},
                 id="MQTT-3.3.2-16-correlation-data"),
    pytest.param([p_user("b", "2"), p_user("a", "1"), p_user("b", "1")],
                 {0x26: [("b", "2"), ("a", "1"), ("b", "1")]},
                 id="MQTT-3.3.2-17-18-user-properties-in-order"),
    pytest.param([p_str(CONTENT_TYPE, "text/plain")], {CONTENT_TYPE: ["text/plain"]},
                 id="MQTT-3.3.2-20-content-type"),
    pytest.param([p_u16(TOPIC_ALIAS, 3)], {}, id="MQTT-3.3.2-7-topic-alias-not-forwarded"),
]  # fmt: skip


@pytest.mark.parametrize(("properties", "expected"), FORWARDED)
def test_properties_forwarded_unaltered(
    port: int, unique_topic: str, properties: list[bytes], expected: dict[int, list[Any]]
) -> None:
    with Peer(port) as sub, Peer(port) as pub:
        sub.connect_ok(5, "sub")
        sub.send(subscribe(1, (unique_topic, 0), v5=True))
        sub.expect(b"\x90\x04\x00\x01\x00\x00")
        pub.connect_ok(5, "pub")
        pub.send(publish(unique_topic, b"payload", v5=True, properties=properties))
        msg = parse_publish(sub.recv(), v5=True)
        assert (msg.topic, msg.payload) == (unique_topic, b"payload")
        assert msg.properties == expected


def test_mqtt_3_3_2_6_message_expiry_forwarded_as_remaining_time(
    port: int, unique_topic: str
) -> None:
    with Peer(port) as sub, Peer(port) as pub:
        sub.connect_ok(5, "sub")
        sub.send(subscribe(1, (unique_topic, 0), v5=True))
        sub.expect(b"\x90\x04\x00\x01\x00\x00")
        pub.connect_ok(5, "pub")
        pub.send(publish(unique_topic, b"x", v5=True,
                         properties=[p_u32(MESSAGE_EXPIRY_INTERVAL, 60)]))  # fmt: skip
        msg = parse_publish(sub.recv(), v5=True)
        [left] = msg.properties[MESSAGE_EXPIRY_INTERVAL]
        assert 59 <= left <= 60


def test_mqtt_3_3_2_5_expired_message_not_delivered(port: int, unique_topic: str) -> None:
    expiry = [p_u32(SESSION_EXPIRY_INTERVAL, 60)]
    with Peer(port) as sub:
        sub.connect_ok(5, "offline", clean=False, properties=expiry)
        sub.send(subscribe(1, (unique_topic, 1), v5=True))
        sub.expect(b"\x90\x04\x00\x01\x00\x01")
        sub.send(disconnect_v5())
        sub.expect_closed()
    with Peer(port) as pub:
        pub.connect_ok(5, "pub")
        for payload, interval in ((b"short", 1), (b"long", 60)):
            pub.send(publish(unique_topic, payload, qos=1, packet_id=1, v5=True,
                             properties=[p_u32(MESSAGE_EXPIRY_INTERVAL, interval)]))  # fmt: skip
            pub.expect(b"\x40\x02\x00\x01")
    time.sleep(1.2)
    with Peer(port) as sub:
        assert sub.connect_ok(5, "offline", clean=False, properties=expiry).session_present
        msg = parse_publish(sub.recv(), v5=True)
        assert msg.payload == b"long"  # the expired one was dropped
        [left] = msg.properties[MESSAGE_EXPIRY_INTERVAL]
        assert 57 <= left <= 59
        sub.send(ack(0x40, msg.packet_id))
        sub.sync()


# ---------------------------------------------------------------------------------------------
# Subscription identifiers.


def test_mqtt_3_3_4_3_subscription_identifier_delivered(port: int, unique_topic: str) -> None:
    with Peer(port) as sub, Peer(port) as pub:
        sub.connect_ok(5, "sub")
        sub.send(subscribe(1, (unique_topic, 0), v5=True,
                           properties=[p_varint(SUBSCRIPTION_IDENTIFIER, 300)]))  # fmt: skip
        sub.expect(b"\x90\x04\x00\x01\x00\x00")
        sub.send(subscribe(2, (unique_topic + "/plain", 0), v5=True))
        sub.expect(b"\x90\x04\x00\x02\x00\x00")
        pub.connect_ok(5, "pub")
        pub.send(publish(unique_topic, b"m", v5=True))
        sub.expect(publish(unique_topic, b"m", v5=True,
                           properties=[p_varint(SUBSCRIPTION_IDENTIFIER, 300)]))  # fmt: skip
        # A subscription without an identifier: none on the message.
        pub.send(publish(unique_topic + "/plain", b"n", v5=True))
        sub.expect(publish(unique_topic + "/plain", b"n", v5=True))


def test_mqtt_3_3_4_3_overlapping_subscriptions_each_identifier(
    port: int, unique_topic: str
) -> None:
    parent = unique_topic.rsplit("/", 1)[0]
    with Peer(port) as sub, Peer(port) as pub:
        sub.connect_ok(5, "sub")
        for pid, (topic_filter, sub_id) in enumerate(((unique_topic, 1), (parent + "/#", 2)), 1):
            sub.send(subscribe(pid, (topic_filter, 0), v5=True,
                               properties=[p_varint(SUBSCRIPTION_IDENTIFIER, sub_id)]))  # fmt: skip
            sub.expect(bytes([0x90, 4, 0, pid, 0, 0]))
        pub.connect_ok(5, "pub")
        pub.send(publish(unique_topic, b"m", v5=True))
        ids = set()
        for _ in range(2):  # [MQTT-3.3.4-4/5]: one message per subscription, or one with both
            msg = parse_publish(sub.recv(), v5=True)
            ids.update(msg.properties[SUBSCRIPTION_IDENTIFIER])
            if len(ids) == 2:
                break
        assert ids == {1, 2}


def test_subscription_identifier_0_is_protocol_error(port: int, broker_warns: None) -> None:
    with Peer(port) as peer:
        peer.connect_ok(5, "sub", properties=[NO_PROBLEM_INFO])
        peer.send(subscribe(1, ("a", 0), v5=True,
                            properties=[p_varint(SUBSCRIPTION_IDENTIFIER, 0)]))  # fmt: skip
        assert disconnect_reason(peer.recv()) == 0x82
        peer.expect_closed()


def test_subscription_identifier_not_available_0xa1(
    start_broker: Callable[..., BrokerThread], broker_warns: None
) -> None:
    bt = start_broker(subscription_identifier_available=False)
    with Peer(bt.port) as peer:
        peer.connect_ok(5, "sub", properties=[NO_PROBLEM_INFO])
        peer.send(subscribe(1, ("a", 0), v5=True,
                            properties=[p_varint(SUBSCRIPTION_IDENTIFIER, 5)]))  # fmt: skip
        assert disconnect_reason(peer.recv()) == 0xA1
        peer.expect_closed()


# ---------------------------------------------------------------------------------------------
# The client's own limits.


@pytest.mark.parametrize("qos", [pytest.param(0, id="qos0"), pytest.param(1, id="qos1")])
def test_mqtt_3_1_2_24_messages_above_client_maximum_packet_size_not_sent(
    port: int, unique_topic: str, qos: int
) -> None:
    with Peer(port) as sub, Peer(port) as pub:
        limit = 256
        sub.connect_ok(5, "small", properties=[p_u32(MAXIMUM_PACKET_SIZE, limit)])
        sub.send(subscribe(1, (unique_topic, qos), v5=True))
        sub.expect(bytes([0x90, 4, 0, 1, 0, qos]))
        pub.connect_ok(5, "pub")
        # The largest payload whose PUBLISH, as the subscriber gets it, is exactly the limit.
        size = limit
        while len(publish(unique_topic, b"f" * size, qos=qos, packet_id=1, v5=True)) > limit:
            size -= 1
        fits = b"f" * size
        pub.send(publish(unique_topic, fits + b"!", qos=qos, packet_id=1, v5=True))  # 1 too many
        pub.send(publish(unique_topic, fits, qos=qos, packet_id=2, v5=True))  # exactly the limit
        # [MQTT-3.1.2-25]: the large one is discarded as if sent; the one that fits arrives.
        got = sub.recv()
        assert len(got) == limit
        assert parse_publish(got, v5=True).payload == fits
        if qos:
            sub.send(ack(0x40, parse_publish(got, v5=True).packet_id))
        sub.sync()


def test_mqtt_3_3_4_9_client_receive_maximum_honoured(port: int, unique_topic: str) -> None:
    with Peer(port) as sub, Peer(port) as pub:
        sub.connect_ok(5, "slow", properties=[p_u16(RECEIVE_MAXIMUM, 1)])
        sub.send(subscribe(1, (unique_topic, 1), v5=True))
        sub.expect(b"\x90\x04\x00\x01\x00\x01")
        pub.connect_ok(5, "pub")
        for i in range(3):
            pub.send(publish(unique_topic, b"m%d" % i, qos=1, packet_id=i + 1, v5=True))
            pub.expect(bytes([0x40, 2, 0, i + 1]))
        for i in range(3):
            msg = parse_publish(sub.recv(), v5=True)
            assert (msg.payload, msg.qos) == (b"m%d" % i, 1)
            # [MQTT-3.3.4-10]: PINGRESP is not held back; the next PUBLISH is.
            sub.sync()
            sub.send(ack(0x40, msg.packet_id))


# ---------------------------------------------------------------------------------------------
# Session expiry in DISCONNECT.


def test_disconnect_session_expiry_after_connect_had_0_is_protocol_error(
    port: int, broker_warns: None
) -> None:
    # 3.14.2.2.2: a session that was to end with the connection cannot be made persistent.
    with Peer(port) as peer:
        peer.connect_ok(5, "se", properties=[NO_PROBLEM_INFO])
        peer.send(disconnect_v5(0, [p_u32(SESSION_EXPIRY_INTERVAL, 30)]))
        assert disconnect_reason(peer.recv()) == 0x82
        peer.expect_closed()


DISCONNECT_EXPIRY = [
    # (CONNECT session expiry, DISCONNECT session expiry, session present afterwards)
    pytest.param(60, 0, 0, id="3.14.2.2.2-disconnect-ends-the-session"),
    pytest.param(60, None, 1, id="3.14.2.2.2-connect-value-kept"),
    pytest.param(60, 120, 1, id="3.14.2.2.2-disconnect-extends"),
    pytest.param(0, 0, 0, id="3.14.2.2.2-0-and-0"),
]


@pytest.mark.parametrize(("connect_expiry", "disconnect_expiry", "present"), DISCONNECT_EXPIRY)
def test_disconnect_session_expiry(
    port: int, connect_expiry: int, disconnect_expiry: int | None, present: int
) -> None:
    with Peer(port) as peer:
        peer.connect_ok(5, "se", clean=False,
                        properties=[p_u32(SESSION_EXPIRY_INTERVAL, connect_expiry)])  # fmt: skip
        extra = [] if disconnect_expiry is None else [p_u32(0x11, disconnect_expiry)]
        peer.send(disconnect_v5(0, extra))
        peer.expect_closed()
    with Peer(port) as peer:
        ack_ = peer.connect_ok(5, "se", clean=False,
                               properties=[p_u32(SESSION_EXPIRY_INTERVAL, 60)])  # fmt: skip
        assert ack_.session_present == present

"""Conformance: SUBSCRIBE / SUBACK and UNSUBSCRIBE / UNSUBACK (MQTT 3.1.1 / 5.0 sections 3.8-3.11,
4.7 topic filters), with the exact acknowledgement bytes. Every byte is hand-written (wire.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from brokerthread import BrokerThread

from .wire import (
    NO_PROBLEM_INFO,
    Peer,
    disconnect_reason,
    publish,
    subscribe,
    unsubscribe,
)

# Subscription options byte (5.0 3.8.3.1): QoS | No Local 0x04 | RAP 0x08 | Retain Handling << 4.
NO_LOCAL = 0x04

# ---------------------------------------------------------------------------------------------
# SUBACK bytes.

SUBACK_CASES = [
    # (level, filters with options, expected SUBACK for packet id 7)
    pytest.param(4, [("a/b", 1)], b"\x90\x03\x00\x07\x01", id="MQTT-3.8.4-1-v311-granted"),
    pytest.param(5, [("a/b", 1)], b"\x90\x04\x00\x07\x00\x01", id="MQTT-3.8.4-1-v5-granted"),
    pytest.param(4, [("a/#/b", 1)], b"\x90\x03\x00\x07\x80", id="MQTT-4.7.1-2-v311-hash-not-last"),
    pytest.param(5, [("a/#/b", 1)], b"\x90\x04\x00\x07\x00\x8f",
                 id="MQTT-4.7.1-1-v5-hash-not-last"),
    pytest.param(5, [("a/b#", 0)], b"\x90\x04\x00\x07\x00\x8f", id="MQTT-4.7.1-1-v5-hash-in-level"),
    pytest.param(5, [("a+/b", 0)], b"\x90\x04\x00\x07\x00\x8f", id="MQTT-4.7.1-2-v5-plus-in-level"),
    pytest.param(4, [("a/+b", 0)], b"\x90\x03\x00\x07\x80", id="MQTT-4.7.1-3-v311-plus-in-level"),
    pytest.param(5, [("$share/g", 0)], b"\x90\x04\x00\x07\x00\x8f",
                 id="MQTT-4.8.2-2-v5-share-without-filter"),
    pytest.param(5, [("$share/g+/t", 0)], b"\x90\x04\x00\x07\x00\x8f",
                 id="MQTT-4.8.2-2-v5-share-name-wildcard"),
    # [MQTT-3.9.3-1]: one code per filter, in the order of the filters.
    pytest.param(4, [("a/#/b", 1), ("ok/+", 2), ("x/#", 0)], b"\x90\x05\x00\x07\x80\x02\x00",
                 id="MQTT-3.9.3-1-v311-order"),
    pytest.param(5, [("a/#/b", 1), ("ok/+", 2), ("x/#", 0)], b"\x90\x06\x00\x07\x00\x8f\x02\x00",
                 id="MQTT-3.9.3-1-v5-order"),
    pytest.param(5, [("#", 2), ("+", 1), ("$share/g/#", 0)], b"\x90\x06\x00\x07\x00\x02\x01\x00",
                 id="MQTT-4.7.1-v5-valid-wildcards"),
]  # fmt: skip


@pytest.mark.parametrize(("level", "filters", "expected"), SUBACK_CASES)
def test_suback_bytes(
    port: int, level: int, filters: list[tuple[str, int]], expected: bytes
) -> None:
    with Peer(port) as peer:
        peer.connect_ok(level, "sub")
        peer.send(subscribe(7, *filters, v5=level == 5))
        peer.expect(expected)
        peer.sync()  # still connected


MAX_QOS_CASES = [
    # (max_qos, level, requested, expected SUBACK)
    pytest.param(1, 5, 2, b"\x90\x04\x00\x07\x00\x01", id="MQTT-3.2.2-10-v5-2-granted-1"),
    pytest.param(0, 5, 2, b"\x90\x04\x00\x07\x00\x00", id="MQTT-3.2.2-10-v5-2-granted-0"),
    pytest.param(0, 5, 1, b"\x90\x04\x00\x07\x00\x00", id="MQTT-3.2.2-10-v5-1-granted-0"),
    pytest.param(1, 5, 0, b"\x90\x04\x00\x07\x00\x00", id="MQTT-3.2.2-10-v5-0-granted-0"),
    pytest.param(1, 4, 2, b"\x90\x03\x00\x07\x01", id="MQTT-3.8.4-6-v311-2-granted-1"),
]


@pytest.mark.parametrize(("max_qos", "level", "requested", "expected"), MAX_QOS_CASES)
def test_suback_granted_qos_capped_by_max_qos(
    start_broker: Callable[..., BrokerThread],
    max_qos: int,
    level: int,
    requested: int,
    expected: bytes,
) -> None:
    bt = start_broker(max_qos=max_qos)
    with Peer(bt.port) as peer:
        peer.connect_ok(level, "sub")
        peer.send(subscribe(7, ("a/b", requested), v5=level == 5))
        peer.expect(expected)


def test_granted_qos_caps_delivery_qos(
    start_broker: Callable[..., BrokerThread], unique_topic: str
) -> None:
    # [MQTT-3.8.4-8] (5.0): delivered at min(published QoS, granted QoS).
    bt = start_broker(max_qos=1)
    with Peer(bt.port) as sub, Peer(bt.port) as pub:
        sub.connect_ok(4, "sub")
        sub.send(subscribe(1, (unique_topic, 2)))
        sub.expect(b"\x90\x03\x00\x01\x01")
        pub.connect_ok(4, "pub")
        pub.send(publish(unique_topic, b"q1", qos=1, packet_id=4))
        pub.expect(b"\x40\x02\x00\x04")
        msg = sub.recv()
        assert msg == publish(unique_topic, b"q1", qos=1, packet_id=int.from_bytes(msg[-4:-2]))


def test_mqtt_3_8_3_4_no_local_on_shared_subscription_0x82(port: int, broker_warns: None) -> None:
    with Peer(port) as peer:
        peer.connect_ok(5, "sub", properties=[NO_PROBLEM_INFO])
        peer.send(subscribe(7, ("$share/g/a", 1 | NO_LOCAL), v5=True))
        assert disconnect_reason(peer.recv()) == 0x82
        peer.expect_closed()


def test_mqtt_3_8_3_3_no_local_honoured(port: int, unique_topic: str) -> None:
    with Peer(port) as peer:
        peer.connect_ok(5, "me")
        peer.send(subscribe(7, (unique_topic, NO_LOCAL), v5=True))
        peer.expect(b"\x90\x04\x00\x07\x00\x00")
        peer.send(publish(unique_topic, b"mine", v5=True))
        peer.sync()  # our own message was not sent back


def test_mqtt_3_8_4_3_resubscribe_replaces_subscription(port: int, unique_topic: str) -> None:
    with Peer(port) as sub, Peer(port) as pub:
        sub.connect_ok(4, "sub")
        sub.send(subscribe(1, (unique_topic, 0)))
        sub.expect(b"\x90\x03\x00\x01\x00")
        sub.send(subscribe(2, (unique_topic, 1)))
        sub.expect(b"\x90\x03\x00\x02\x01")
        pub.connect_ok(4, "pub")
        pub.send(publish(unique_topic, b"one", qos=1, packet_id=1))
        pub.expect(b"\x40\x02\x00\x01")
        msg = sub.recv()
        assert msg == publish(unique_topic, b"one", qos=1, packet_id=int.from_bytes(msg[-5:-3]))
        sub.send(b"\x40\x02" + msg[-5:-3])
        sub.sync()  # exactly one copy, at the new QoS


def test_mqtt_3_3_5_1_v311_overlapping_subscriptions_one_copy_at_highest_qos(
    port: int, unique_topic: str
) -> None:
    with Peer(port) as sub, Peer(port) as pub:
        sub.connect_ok(4, "sub")
        sub.send(subscribe(1, (unique_topic.rsplit("/", 1)[0] + "/#", 0), (unique_topic, 1)))
        sub.expect(b"\x90\x04\x00\x01\x00\x01")
        pub.connect_ok(4, "pub")
        pub.send(publish(unique_topic, b"o", qos=1, packet_id=1))
        pub.expect(b"\x40\x02\x00\x01")
        msg = sub.recv()
        assert msg == publish(unique_topic, b"o", qos=1, packet_id=int.from_bytes(msg[-3:-1]))
        sub.send(b"\x40\x02" + msg[-3:-1])
        sub.sync()


def test_mqtt_4_7_2_1_wildcards_do_not_match_dollar_topics(
    broker_thread: BrokerThread, unique_topic: str
) -> None:
    with Peer(broker_thread.port) as sub:
        sub.connect_ok(4, "sub")
        sub.send(subscribe(1, ("#", 0), ("+/x", 0)))
        sub.expect(b"\x90\x04\x00\x01\x00\x00")
        assert broker_thread.broker is not None
        broker_thread.call(broker_thread.broker.publish, "$internal/x", b"hidden")
        broker_thread.call(broker_thread.broker.publish, unique_topic, b"seen")
        sub.expect(publish(unique_topic, b"seen"))
        sub.sync()


# ---------------------------------------------------------------------------------------------
# UNSUBSCRIBE.

UNSUBACK_CASES = [
    # (level, subscribed first, expected UNSUBACK for packet id 8)
    pytest.param(5, False, b"\xb0\x04\x00\x08\x00\x11", id="MQTT-3.10.4-5-v5-no-subscription"),
    pytest.param(5, True, b"\xb0\x04\x00\x08\x00\x00", id="MQTT-3.10.4-4-v5-success"),
    pytest.param(4, False, b"\xb0\x02\x00\x08", id="MQTT-3.10.4-5-v311-no-subscription"),
    pytest.param(4, True, b"\xb0\x02\x00\x08", id="MQTT-3.10.4-4-v311-success"),
]


@pytest.mark.parametrize(("level", "subscribed", "expected"), UNSUBACK_CASES)
def test_unsuback_bytes(
    port: int, unique_topic: str, level: int, subscribed: bool, expected: bytes
) -> None:
    v5 = level == 5
    with Peer(port) as peer:
        peer.connect_ok(level, "unsub")
        if subscribed:
            peer.send(subscribe(1, (unique_topic, 0), v5=v5))
            peer.recv()
        peer.send(unsubscribe(8, unique_topic, v5=v5))
        peer.expect(expected)


def test_mqtt_3_10_4_1_unsubscribed_messages_stop(port: int, unique_topic: str) -> None:
    with Peer(port) as peer:
        peer.connect_ok(5, "unsub")
        peer.send(subscribe(1, (unique_topic, 0), (unique_topic + "/2", 0), v5=True))
        peer.expect(b"\x90\x05\x00\x01\x00\x00\x00")
        peer.send(unsubscribe(2, unique_topic, "never/subscribed", v5=True))
        # [MQTT-3.11.3-1]: one reason code per filter, in order.
        peer.expect(b"\xb0\x05\x00\x02\x00\x00\x11")
        peer.send(publish(unique_topic, b"gone", v5=True))
        peer.send(publish(unique_topic + "/2", b"kept", v5=True))
        peer.expect(publish(unique_topic + "/2", b"kept", v5=True))

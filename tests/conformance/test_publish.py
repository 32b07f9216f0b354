"""Conformance: PUBLISH and its acknowledgements (MQTT 3.1.1 / 5.0 sections 3.3-3.7, 4.3, 4.4).

Exact acknowledgement bytes, QoS 2 exactly-once on the receiving side, the MQTT 5 errors a
PUBLISH can cause (each a DISCONNECT with its reason code), topic aliases, and redelivery of
unacknowledged messages with DUP on session resume. Every byte is hand-written (wire.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerthread import BrokerThread
from unit.mqtt_bytes import (
    RECEIVE_MAXIMUM,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    p_u16,
    p_varint,
)

from .wire import (
    DISCONNECT,
    NO_PROBLEM_INFO,
    Peer,
    ack,
    disconnect_reason,
    parse_connack,
    publish,
    subscribe,
)

PUBACK, PUBREC, PUBREL, PUBCOMP = 0x40, 0x50, 0x62, 0x70


def _subscriber(port: int, topic: str, level: int = 4, qos: int = 0) -> Peer:
    peer = Peer(port)
    peer.connect_ok(level, f"sub-{level}")
    peer.send(subscribe(1, (topic, qos), v5=level == 5))
    first, *_ = peer.recv()
    assert first == 0x90
    return peer


# ---------------------------------------------------------------------------------------------
# Acknowledgement bytes.

PUBACK_CASES = [
    # (level, with a subscriber, expected PUBACK for packet id 1)
    pytest.param(4, False, b"\x40\x02\x00\x01", id="MQTT-4.3.2-2-v311-puback"),
    pytest.param(4, True, b"\x40\x02\x00\x01", id="MQTT-4.3.2-2-v311-puback-matched"),
    pytest.param(5, False, b"\x40\x03\x00\x01\x10", id="MQTT-4.3.2-4-v5-no-matching-subscribers"),
    pytest.param(5, True, b"\x40\x02\x00\x01", id="MQTT-4.3.2-4-v5-matched"),
]


@pytest.mark.parametrize(("level", "matched", "expected"), PUBACK_CASES)
def test_qos1_puback_bytes(
    port: int, unique_topic: str, level: int, matched: bool, expected: bytes
) -> None:
    sub = _subscriber(port, unique_topic) if matched else None
    try:
        with Peer(port) as peer:
            peer.connect_ok(level, "pub")
            peer.send(publish(unique_topic, b"m", qos=1, packet_id=1, v5=level == 5))
            peer.expect(expected)
        if sub is not None:
            sub.expect(publish(unique_topic, b"m"))
    finally:
        if sub is not None:
            sub.close()


QOS2_CASES = [
    # (level, with a subscriber, expected PUBREC for packet id 5)
    pytest.param(4, False, b"\x50\x02\x00\x05", id="MQTT-4.3.3-2-v311"),
    pytest.param(5, False, b"\x50\x03\x00\x05\x10", id="MQTT-4.3.3-8-v5-no-matching-subscribers"),
    pytest.param(5, True, b"\x50\x02\x00\x05", id="MQTT-4.3.3-8-v5-matched"),
]


@pytest.mark.parametrize(("level", "matched", "pubrec"), QOS2_CASES)
def test_qos2_pubrec_then_pubrel_pubcomp_bytes(
    port: int, unique_topic: str, level: int, matched: bool, pubrec: bytes
) -> None:
    sub = _subscriber(port, unique_topic) if matched else None
    try:
        with Peer(port) as peer:
            peer.connect_ok(level, "pub")
            peer.send(publish(unique_topic, b"m", qos=2, packet_id=5, v5=level == 5))
            peer.expect(pubrec)
            peer.send(ack(PUBREL, 5))
            # [MQTT-4.3.3-2] (3.1.1) / [MQTT-4.3.3-11] (5.0): PUBCOMP with the same packet id.
            peer.expect(b"\x70\x02\x00\x05")
        if sub is not None:
            sub.expect(publish(unique_topic, b"m"))
    finally:
        if sub is not None:
            sub.close()


@pytest.mark.parametrize(
    "level", [pytest.param(4, id="MQTT-4.3.3-2-v311"), pytest.param(5, id="MQTT-4.3.3-10-v5")]
)
def test_qos2_duplicate_before_pubrel_is_acknowledged_not_redelivered(
    port: int, unique_topic: str, level: int
) -> None:
    v5 = level == 5
    with _subscriber(port, unique_topic) as sub, Peer(port) as pub:
        pub.connect_ok(level, "pub")
        pub.send(publish(unique_topic, b"once", qos=2, packet_id=7, v5=v5))
        pub.expect(b"\x50\x02\x00\x07")
        sub.expect(publish(unique_topic, b"once"))
        pub.send(publish(unique_topic, b"once", qos=2, packet_id=7, v5=v5, dup=True))
        pub.expect(b"\x50\x02\x00\x07")
        sub.sync()  # nothing arrived before the PINGRESP: no second copy
        pub.send(ack(PUBREL, 7))
        pub.expect(b"\x70\x02\x00\x07")
        # After PUBCOMP the same packet id starts a new message [MQTT-4.3.3-12] (5.0).
        pub.send(publish(unique_topic, b"again", qos=2, packet_id=7, v5=v5))
        pub.expect(b"\x50\x02\x00\x07")
        sub.expect(publish(unique_topic, b"again"))


PUBREL_UNKNOWN = [
    pytest.param(5, b"\x70\x03\x00\x09\x92", id="MQTT-4.3.3-11-v5-packet-id-not-found"),
    pytest.param(4, b"\x70\x02\x00\x09", id="MQTT-4.3.3-2-v311-pubcomp-anyway"),
]


@pytest.mark.parametrize(("level", "expected"), PUBREL_UNKNOWN)
def test_pubrel_for_unknown_packet_id(port: int, level: int, expected: bytes) -> None:
    with Peer(port) as peer:
        peer.connect_ok(level, "rel")
        peer.send(ack(PUBREL, 9))
        peer.expect(expected)


def test_mqtt_3_3_4_7_receive_maximum_exceeded_0x93(
    start_broker: Callable[..., BrokerThread], unique_topic: str, broker_warns: None
) -> None:
    bt = start_broker(max_inflight_messages=2)
    with Peer(bt.port) as peer:
        ack_ = peer.connect_ok(5, "rm", properties=[NO_PROBLEM_INFO])
        assert ack_.properties[RECEIVE_MAXIMUM] == [2]
        for pid in (1, 2):  # QoS 2 without PUBREL: still unacknowledged until PUBCOMP
            peer.send(publish(unique_topic, b"x", qos=2, packet_id=pid, v5=True))
            assert peer.recv()[:4] == bytes([PUBREC, 3, 0, pid])
        peer.send(publish(unique_topic, b"x", qos=2, packet_id=3, v5=True))
        assert disconnect_reason(peer.recv()) == 0x93
        peer.expect_closed()


def test_receive_maximum_counts_only_incomplete_qos2(
    start_broker: Callable[..., BrokerThread], unique_topic: str
) -> None:
    bt = start_broker(max_inflight_messages=1)
    with Peer(bt.port) as peer:
        peer.connect_ok(5, "rm")
        for _ in range(3):  # each one completed before the next: never more than 1 open
            peer.send(publish(unique_topic, b"x", qos=2, packet_id=1, v5=True))
            peer.expect(b"\x50\x03\x00\x01\x10")
            peer.send(ack(PUBREL, 1))
            peer.expect(b"\x70\x02\x00\x01")
        for pid in range(1, 4):  # QoS 1 is acknowledged at once and never counts
            peer.send(publish(unique_topic, b"x", qos=1, packet_id=pid, v5=True))
            peer.expect(bytes([PUBACK, 3, 0, pid, 0x10]))


# ---------------------------------------------------------------------------------------------
# PUBLISH errors: MQTT 5 DISCONNECT with the reason code, 3.1.1 close.

_SUB_ID = p_varint(SUBSCRIPTION_IDENTIFIER, 1)

PUBLISH_ERRORS: list[Any] = [
    # (config, PUBLISH keyword arguments, MQTT 5 reason code, also checked in 3.1.1)
    pytest.param({}, {"qos": 3, "packet_id": 1}, 0x81, True, id="MQTT-3.3.1-4-qos-3"),
    pytest.param({}, {"topic": "a/+"}, 0x90, True, id="MQTT-3.3.2-2-wildcard-plus"),
    pytest.param({}, {"topic": "a/#"}, 0x90, True, id="MQTT-3.3.2-2-wildcard-hash"),
    pytest.param({}, {"properties": [p_u16(TOPIC_ALIAS, 0)]}, 0x94, False,
                 id="MQTT-3.3.2-8-topic-alias-0"),
    pytest.param({}, {"properties": [p_u16(TOPIC_ALIAS, 11)]}, 0x94, False,
                 id="MQTT-3.3.2-9-topic-alias-above-default-10"),
    pytest.param({"max_topic_alias": 2}, {"properties": [p_u16(TOPIC_ALIAS, 3)]}, 0x94, False,
                 id="MQTT-3.3.2-9-topic-alias-above-2"),
    pytest.param({"max_topic_alias": 0}, {"properties": [p_u16(TOPIC_ALIAS, 1)]}, 0x94, False,
                 id="MQTT-3.3.2-9-topic-alias-none-offered"),
    pytest.param({}, {"topic": "", "properties": [p_u16(TOPIC_ALIAS, 1)]}, 0x82, False,
                 id="3.3.2.3.4-unknown-alias-empty-topic"),
    pytest.param({}, {"topic": ""}, 0x82, True, id="MQTT-4.7.3-1-empty-topic-no-alias"),
    pytest.param({}, {"properties": [_SUB_ID]}, 0x82, False,
                 id="MQTT-3.3.4-6-subscription-identifier-from-client"),
    pytest.param({"max_qos": 1}, {"qos": 2, "packet_id": 1}, 0x9B, True,
                 id="MQTT-3.2.2-11-qos-not-supported"),
    pytest.param({"max_qos": 0}, {"qos": 1, "packet_id": 1}, 0x9B, True,
                 id="MQTT-3.2.2-11-qos-1-not-supported"),
    pytest.param({"retain_available": False}, {"retain": True}, 0x9A, True,
                 id="MQTT-3.2.2-14-retain-not-supported"),
]  # fmt: skip


def _bad_publish(kwargs: dict[str, Any], v5: bool) -> bytes:
    kwargs = dict(kwargs)
    topic = kwargs.pop("topic", "ok/topic")
    if not v5:
        kwargs.pop("properties", None)
    return publish(topic, b"payload", v5=v5, **kwargs)


@pytest.mark.parametrize(("config", "kwargs", "reason", "v311"), PUBLISH_ERRORS)
def test_publish_error_v5_disconnect_reason(
    start_broker: Callable[..., BrokerThread],
    config: dict[str, Any],
    kwargs: dict[str, Any],
    reason: int,
    v311: bool,
    broker_warns: None,
) -> None:
    bt = start_broker(**config)
    with Peer(bt.port) as peer:
        peer.connect_ok(5, "bad", properties=[NO_PROBLEM_INFO])
        peer.send(_bad_publish(kwargs, v5=True))
        assert disconnect_reason(peer.recv()) == reason
        peer.expect_closed()


@pytest.mark.parametrize(
    ("config", "kwargs", "reason"),
    [pytest.param(*p.values[:3], id=p.id) for p in PUBLISH_ERRORS if p.values[3]],
)
def test_publish_error_v311_close(
    start_broker: Callable[..., BrokerThread],
    config: dict[str, Any],
    kwargs: dict[str, Any],
    reason: int,
    broker_warns: None,
) -> None:
    bt = start_broker(**config)
    with Peer(bt.port) as peer:
        peer.connect_ok(4, "bad")
        peer.send(_bad_publish(kwargs, v5=False))
        peer.expect_closed()


# ---------------------------------------------------------------------------------------------
# Topic aliases that work.


def test_mqtt_3_3_2_12_topic_alias_set_then_used(port: int, unique_topic: str) -> None:
    with _subscriber(port, unique_topic) as sub, Peer(port) as pub:
        ack_ = pub.connect_ok(5, "alias")
        assert ack_.properties[0x22] == [10]
        pub.send(publish(unique_topic, b"1", v5=True, properties=[p_u16(TOPIC_ALIAS, 10)]))
        pub.send(publish("", b"2", v5=True, properties=[p_u16(TOPIC_ALIAS, 10)]))
        # Remapping alias 10 to another topic [3.3.2.3.4].
        pub.send(publish(unique_topic + "/x", b"3", v5=True, properties=[p_u16(TOPIC_ALIAS, 10)]))
        pub.send(publish("", b"4", v5=True, properties=[p_u16(TOPIC_ALIAS, 10)]))
        pub.send(publish("", b"5", qos=1, packet_id=1, v5=True,
                         properties=[p_u16(TOPIC_ALIAS, 10)]))  # fmt: skip
        pub.expect(b"\x40\x03\x00\x01\x10")
        # The subscriber (3.1.1) sees full topic names and no alias.
        sub.expect(publish(unique_topic, b"1"))
        sub.expect(publish(unique_topic, b"2"))
        sub.sync()


def test_topic_alias_mapping_does_not_survive_the_connection(port: int, unique_topic: str) -> None:
    # [MQTT-3.3.2-7]: alias mappings belong to one network connection.
    with Peer(port) as pub:
        pub.connect_ok(5, "alias", clean=False)
        pub.send(publish(unique_topic, b"1", v5=True, properties=[p_u16(TOPIC_ALIAS, 1)]))
        pub.send(DISCONNECT)
        pub.expect_closed()
    with Peer(port) as pub:
        pub.connect_ok(5, "alias", clean=False, properties=[NO_PROBLEM_INFO])
        pub.send(publish("", b"2", v5=True, properties=[p_u16(TOPIC_ALIAS, 1)]))
        assert disconnect_reason(pub.recv()) == 0x82
        pub.expect_closed()


# ---------------------------------------------------------------------------------------------
# Redelivery on session resume.


def test_mqtt_4_4_0_1_unacked_qos1_resent_with_dup_on_resume_v311(
    port: int, unique_topic: str
) -> None:
    with Peer(port) as sub:
        assert sub.connect(4, "resume", clean=False) == b"\x20\x02\x00\x00"
        sub.send(subscribe(1, (unique_topic, 1)))
        sub.expect(b"\x90\x03\x00\x01\x01")
        sub.send(DISCONNECT)
        sub.expect_closed()
    with Peer(port) as pub:
        pub.connect_ok(4, "pub")
        pub.send(publish(unique_topic, b"kept", qos=1, packet_id=9))
        pub.expect(b"\x40\x02\x00\x09")
    with Peer(port) as sub:
        assert sub.connect(4, "resume", clean=False) == b"\x20\x02\x01\x00"
        first = sub.recv()
        assert first[0] == 0x32, first.hex()  # QoS 1, DUP 0: its first transmission
        packet_id = int.from_bytes(first[-6:-4], "big")
        assert first == publish(unique_topic, b"kept", qos=1, packet_id=packet_id)
        # Not acknowledged: the connection is lost.
    with Peer(port) as sub:
        assert sub.connect(4, "resume", clean=False) == b"\x20\x02\x01\x00"
        # [MQTT-3.3.1-1]: DUP set on the re-delivery; same packet id [MQTT-4.4.0-1].
        sub.expect(publish(unique_topic, b"kept", qos=1, packet_id=packet_id, dup=True))
        sub.send(ack(PUBACK, packet_id))
        sub.sync()
    with Peer(port) as sub:
        assert sub.connect(4, "resume", clean=False) == b"\x20\x02\x01\x00"
        sub.sync()  # acknowledged: never sent again


def test_mqtt_4_4_0_1_unacked_pubrel_resent_on_resume_v5(port: int, unique_topic: str) -> None:
    expiry = b"\x11\x00\x00\x00\x3c"  # Session Expiry Interval 60
    with Peer(port) as sub, Peer(port) as pub:
        sub.connect_ok(5, "resume2", clean=False, properties=[expiry])
        sub.send(subscribe(1, (unique_topic, 2), v5=True))
        sub.expect(b"\x90\x04\x00\x01\x00\x02")
        pub.connect_ok(5, "pub")
        pub.send(publish(unique_topic, b"two", qos=2, packet_id=3, v5=True))
        pub.expect(b"\x50\x02\x00\x03")
        msg = sub.recv()
        packet_id = int.from_bytes(msg[-6:-4], "big")
        assert msg == publish(unique_topic, b"two", qos=2, packet_id=packet_id, v5=True)
        sub.send(ack(PUBREC, packet_id))
        sub.expect(b"\x62\x02" + packet_id.to_bytes(2, "big"))
        # No PUBCOMP: the connection is lost.
    with Peer(port) as sub:
        ack_ = parse_connack(sub.connect(5, "resume2", clean=False, properties=[expiry]), True)
        assert (ack_.session_present, ack_.reason) == (1, 0)
        sub.expect(b"\x62\x02" + packet_id.to_bytes(2, "big"))  # PUBREL again, not the PUBLISH
        sub.send(ack(PUBCOMP, packet_id))
        sub.sync()

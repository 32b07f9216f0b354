"""Conformance: malformed packets and protocol errors on the wire (MQTT 5.0 section 4.13, 3.1.1
section 4.8), after and during CONNECT, in both protocol families.

After CONNECT an MQTT 5 client is told why (DISCONNECT with the reason code) and a 3.1.1 client is
simply disconnected; during CONNECT an MQTT 5 client may get a CONNACK with the reason code and a
3.1.1 client gets nothing but the close. Every byte is hand-written (wire.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from brokerthread import BrokerThread
from unit.mqtt_bytes import (
    PASSWORD_FLAG,
    WILL_FLAG,
    WILL_QOS_1,
    WILL_QOS_2,
    WILL_RETAIN,
    s,
)

from .wire import (
    NO_PROBLEM_INFO,
    Peer,
    connect,
    disconnect_reason,
    fixed,
    parse_connack,
    publish,
    subscribe,
    u16,
)

MALFORMED, PROTOCOL = 0x81, 0x82

# 0x30 PUBLISH whose Remaining Length has five bytes (2.1.4: at most four).
FIVE_BYTE_LENGTH = b"\x30\xff\xff\xff\xff\x01"

AFTER_CONNECT = [
    # (packet, MQTT 5 reason code)
    pytest.param(FIVE_BYTE_LENGTH, MALFORMED, id="2.1.4-remaining-length-5-bytes"),
    pytest.param(b"\x00\x00", MALFORMED, id="2.1.2-packet-type-0-reserved"),
    pytest.param(fixed(0x80, u16(1) + s("a") + b"\x00"), MALFORMED,
                 id="MQTT-2.1.3-1-subscribe-flags-0000"),
    pytest.param(b"\x60\x02\x00\x01", MALFORMED, id="MQTT-2.1.3-1-pubrel-flags-0000"),
    pytest.param(fixed(0xA0, u16(1) + s("a")), MALFORMED,
                 id="MQTT-2.1.3-1-unsubscribe-flags-0000"),
    pytest.param(b"\xc1\x00", MALFORMED, id="MQTT-2.1.3-1-pingreq-flags-0001"),
    pytest.param(b"\x42\x02\x00\x01", MALFORMED, id="MQTT-2.1.3-1-puback-flags-0010"),
    pytest.param(b"\xc0\x01\x00", MALFORMED, id="3.12-pingreq-with-a-body"),
    pytest.param(publish("a", b"x", qos=0, dup=True, v5=True), MALFORMED,
                 id="MQTT-3.3.1-2-dup-on-qos-0"),
    pytest.param(publish("a", b"x", qos=3, packet_id=1, v5=True), MALFORMED,
                 id="MQTT-3.3.1-4-qos-3"),
    pytest.param(publish(b"a\xff", b"x", v5=True), MALFORMED, id="MQTT-1.5.4-1-topic-not-utf8"),
    pytest.param(publish(b"a\xed\xa0\x80", b"x", v5=True), MALFORMED,
                 id="MQTT-1.5.4-1-topic-utf16-surrogate"),
    pytest.param(publish(b"a\x00b", b"x", v5=True), MALFORMED, id="MQTT-1.5.4-2-topic-nul"),
    pytest.param(fixed(0x30, u16(9) + b"ab"), MALFORMED, id="1.5.4-topic-runs-past-packet"),
    pytest.param(publish("a", b"x", qos=1, packet_id=0, v5=True), PROTOCOL,
                 id="MQTT-2.2.1-3-publish-packet-id-0"),
    pytest.param(fixed(0x82, u16(0) + b"\x00" + s("a") + b"\x00"), PROTOCOL,
                 id="MQTT-2.2.1-3-subscribe-packet-id-0"),
    pytest.param(fixed(0x82, u16(1) + b"\x00"), PROTOCOL, id="MQTT-3.8.3-2-subscribe-no-filters"),
    pytest.param(fixed(0xA2, u16(1) + b"\x00"), PROTOCOL,
                 id="MQTT-3.10.3-2-unsubscribe-no-filters"),
    pytest.param(subscribe(1, ("a", 0xC0), v5=True), MALFORMED,
                 id="MQTT-3.8.3-5-subscription-option-reserved-bits"),
    pytest.param(subscribe(1, ("a", 3), v5=True), MALFORMED, id="3.8.3.1-subscription-qos-3"),
    pytest.param(subscribe(1, ("a", 0x30), v5=True), PROTOCOL, id="3.8.3.1-retain-handling-3"),
    pytest.param(b"\xf0\x00", PROTOCOL, id="4.12-auth-without-authentication-method"),
    pytest.param(b"\x20\x03\x00\x00\x00", PROTOCOL, id="3.2-connack-from-a-client"),
    pytest.param(b"\x90\x04\x00\x01\x00\x00", PROTOCOL, id="3.9-suback-from-a-client"),
    pytest.param(b"\xd0\x00", PROTOCOL, id="3.13-pingresp-from-a-client"),
    pytest.param(b"\xe0\x01\x03", MALFORMED, id="3.14.2.1-disconnect-unknown-reason"),
]  # fmt: skip


@pytest.mark.parametrize(("packet", "reason"), AFTER_CONNECT)
def test_after_connect_v5_disconnect_with_reason(
    port: int, packet: bytes, reason: int, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.connect_ok(5, "bad", properties=[NO_PROBLEM_INFO])
        peer.send(packet)
        assert disconnect_reason(peer.recv()) == reason
        peer.expect_closed()


V311_AFTER_CONNECT = [
    pytest.param(FIVE_BYTE_LENGTH, id="2.1.4-remaining-length-5-bytes"),
    pytest.param(b"\x00\x00", id="2.1.2-packet-type-0-reserved"),
    pytest.param(fixed(0x80, u16(1) + s("a") + b"\x00"), id="MQTT-2.1.3-1-subscribe-flags-0000"),
    pytest.param(publish("a", b"x", qos=3, packet_id=1), id="MQTT-3.3.1-4-qos-3"),
    pytest.param(publish("a", b"x", dup=True), id="MQTT-3.3.1-2-dup-on-qos-0"),
    pytest.param(publish(b"a\xff", b"x"), id="MQTT-1.5.3-1-topic-not-utf8"),
    pytest.param(publish("a", b"x", qos=1, packet_id=0), id="MQTT-2.3.1-1-packet-id-0"),
    pytest.param(subscribe(1, ("a", 0x04)), id="MQTT-3.8.3-4-requested-qos-reserved-bits"),
    pytest.param(fixed(0x82, u16(1)), id="MQTT-3.8.3-3-subscribe-no-filters"),
    pytest.param(fixed(0xA2, u16(1)), id="MQTT-3.10.3-2-unsubscribe-no-filters"),
    pytest.param(b"\xf0\x00", id="2.2.1-auth-does-not-exist-in-3.1.1"),
    pytest.param(b"\xe0\x01\x00", id="3.14-disconnect-with-a-body"),
]


@pytest.mark.parametrize("packet", V311_AFTER_CONNECT)
def test_after_connect_v311_close_without_answer(
    port: int, packet: bytes, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.connect_ok(4, "bad")
        peer.send(packet)
        peer.expect_closed()


def test_packet_too_large_v5_disconnect_0x95(
    start_broker: Callable[..., BrokerThread], broker_warns: None
) -> None:
    bt = start_broker(max_packet_size=64)
    with Peer(bt.port) as peer:
        ack = peer.connect_ok(5, "big", properties=[NO_PROBLEM_INFO])
        assert ack.properties[0x27] == [64]  # announced in CONNACK [3.2.2.3.6]
        fits = publish("t", b"x" * (64 - 6), v5=True)
        assert len(fits) == 64
        peer.send(fits)
        peer.sync()
        peer.send(publish("t", b"x" * (64 - 5), v5=True))  # 65 bytes [MQTT-3.2.2-15]
        assert disconnect_reason(peer.recv()) == 0x95
        peer.expect_closed()


def test_packet_too_large_v311_close(
    start_broker: Callable[..., BrokerThread], broker_warns: None
) -> None:
    bt = start_broker(max_packet_size=64)
    with Peer(bt.port) as peer:
        peer.connect_ok(4, "big")
        peer.send(publish("t", b"x" * 100))
        peer.expect_closed()


def test_malformed_remaining_length_before_connect_closes(port: int, broker_warns: None) -> None:
    with Peer(port) as peer:
        peer.send(b"\x10\xff\xff\xff\xff\x01")
        peer.expect_closed()


# ---------------------------------------------------------------------------------------------
# Malformed CONNECT.

_WILL_V5 = b"\x00" + s("w") + s("p")
_WILL_V3 = s("w") + s("p")

CONNECT_V5 = [
    # (connect flags, bytes after the client id, CONNACK reason code)
    pytest.param(WILL_QOS_1, b"", MALFORMED, id="MQTT-3.1.2-11-will-qos-without-will-flag"),
    pytest.param(WILL_RETAIN, b"", MALFORMED, id="MQTT-3.1.2-13-will-retain-without-will-flag"),
    pytest.param(WILL_FLAG | WILL_QOS_1 | WILL_QOS_2, _WILL_V5, MALFORMED,
                 id="MQTT-3.1.2-12-will-qos-3"),
    pytest.param(WILL_FLAG, b"\x00" + s("w/+") + s("p"), 0x90,
                 id="MQTT-4.7.0-1-will-topic-wildcard"),
    pytest.param(0, b"\x00", MALFORMED, id="3.1-bytes-after-the-payload"),
    pytest.param(WILL_FLAG, b"\x00" + s("w"), MALFORMED, id="3.1.3-will-payload-missing"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "rest", "reason"), CONNECT_V5)
def test_malformed_connect_v5_connack_reason_then_close(
    port: int, flags: int, rest: bytes, reason: int, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.send(connect(5, "c", flags=flags, rest=rest))
        ack = parse_connack(peer.recv(), v5=True)
        assert (ack.session_present, ack.reason) == (0, reason)
        peer.expect_closed()


CONNECT_V311 = [
    pytest.param(WILL_QOS_1, b"", id="MQTT-3.1.2-13-will-qos-without-will-flag"),
    pytest.param(WILL_RETAIN, b"", id="MQTT-3.1.2-15-will-retain-without-will-flag"),
    pytest.param(WILL_FLAG | WILL_QOS_1 | WILL_QOS_2, _WILL_V3, id="MQTT-3.1.2-14-will-qos-3"),
    pytest.param(PASSWORD_FLAG, s("pw"), id="MQTT-3.1.2-22-password-without-user-name"),
    pytest.param(WILL_FLAG, s("w/#") + s("p"), id="MQTT-4.7.1-1-v311-will-topic-wildcard"),
    pytest.param(0, b"\x00", id="3.1-bytes-after-the-payload"),
]


@pytest.mark.parametrize(("flags", "rest"), CONNECT_V311)
def test_malformed_connect_v311_close_without_connack(
    port: int, flags: int, rest: bytes, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.send(connect(4, "c", flags=flags, rest=rest))
        peer.expect_closed()


def test_connect_string_runs_past_packet_v5_connack_0x81(port: int, broker_warns: None) -> None:
    # Client id length 0x00ff, but only one byte follows.
    body = s("MQTT") + b"\x05\x02\x00\x3c\x00" + b"\x00\xffc"
    with Peer(port) as peer:
        peer.send(fixed(0x10, body))
        ack = parse_connack(peer.recv(), v5=True)
        assert (ack.session_present, ack.reason) == (0, MALFORMED)
        peer.expect_closed()


@pytest.mark.parametrize("level", [pytest.param(4, id="v311"), pytest.param(5, id="v5")])
def test_mqtt_3_1_2_8_will_published_after_a_protocol_error(
    port: int, unique_topic: str, level: int, broker_warns: None
) -> None:
    # Only a DISCONNECT with reason 0x00 deletes the will; a close for a malformed packet does not.
    will = (b"\x00" if level == 5 else b"") + s(unique_topic) + s("gone")
    with Peer(port) as watcher, Peer(port) as peer:
        watcher.connect_ok(4, "watcher")
        watcher.send(subscribe(1, (unique_topic, 0)))
        watcher.expect(b"\x90\x03\x00\x01\x00")
        ack = parse_connack(peer.connect(level, "dies", flags=WILL_FLAG, rest=will), level == 5)
        assert ack.reason == 0
        peer.send(publish("a", b"x", qos=3, packet_id=1, v5=level == 5))
        if level == 5:
            assert disconnect_reason(peer.recv()) == MALFORMED
        peer.expect_closed()
        watcher.expect(publish(unique_topic, b"gone"))

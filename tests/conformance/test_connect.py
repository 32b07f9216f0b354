"""Conformance: CONNECT and CONNACK (MQTT 3.1.1 and 5.0 section 3.1, 3.2), PINGREQ, takeover.

Raw sockets against a real broker; every byte sent and expected is written by hand (wire.py).
Case ids are the spec's conformance statement ids; the 3.1.1 and 5.0 numbering differ, so a case
says which version it follows.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from brokerthread import BrokerThread
from unit.mqtt_bytes import (
    RESERVED,
    SESSION_EXPIRY_INTERVAL,
    WILL_FLAG,
    WILL_QOS_2,
    WILL_RETAIN,
    p_u32,
    s,
)

from .wire import (
    CONNACK_ACCEPTED,
    DISCONNECT,
    NO_PROBLEM_INFO,
    PINGREQ,
    PINGRESP,
    Peer,
    connect,
    disconnect_reason,
    parse_connack,
    publish,
    subscribe,
)

# ---------------------------------------------------------------------------------------------
# CONNACK bytes and Session Present, MQTT 3.1.1.


def _store_session(port: int, client_id: str, level: int = 4) -> None:
    """Leave a session with a subscription behind for ``client_id`` (clean session 0)."""
    extra = {"properties": [p_u32(SESSION_EXPIRY_INTERVAL, 60)]} if level == 5 else {}
    with Peer(port) as peer:
        peer.connect_ok(level, client_id, clean=False, **extra)
        peer.send(subscribe(1, ("keep/me", 1), v5=level == 5))
        peer.recv()  # SUBACK
        peer.send(DISCONNECT)
        peer.expect_closed()


SESSION_PRESENT_V311 = [
    # (id, stored session before, clean session, expected CONNACK)
    pytest.param(False, True, b"\x20\x02\x00\x00", id="MQTT-3.2.2-1-clean-no-session"),
    pytest.param(True, True, b"\x20\x02\x00\x00", id="MQTT-3.2.2-1-clean-discards-session"),
    pytest.param(False, False, b"\x20\x02\x00\x00", id="MQTT-3.2.2-3-no-stored-session"),
    pytest.param(True, False, b"\x20\x02\x01\x00", id="MQTT-3.2.2-2-stored-session"),
]


@pytest.mark.parametrize(("stored", "clean", "expected"), SESSION_PRESENT_V311)
def test_connack_session_present_v311(
    port: int, stored: bool, clean: bool, expected: bytes
) -> None:
    if stored:
        _store_session(port, "sp")
    with Peer(port) as peer:
        assert peer.connect(4, "sp", clean=clean) == expected


def test_mqtt_3_1_no_session_present_flag(port: int) -> None:
    # MQTT 3.1 has no Session Present flag: the first CONNACK byte is reserved, always 0.
    _store_session(port, "sp31", level=3)
    with Peer(port) as peer:
        assert peer.connect(3, "sp31", clean=False) == b"\x20\x02\x00\x00"


SESSION_PRESENT_V5 = [
    pytest.param(False, True, 0, id="MQTT-3.2.2-2-v5-clean-start"),
    pytest.param(True, True, 0, id="MQTT-3.2.2-2-v5-clean-start-discards"),
    pytest.param(False, False, 0, id="MQTT-3.2.2-3-v5-no-session"),
    pytest.param(True, False, 1, id="MQTT-3.2.2-3-v5-resumed"),
]


@pytest.mark.parametrize(("stored", "clean", "present"), SESSION_PRESENT_V5)
def test_connack_session_present_v5(port: int, stored: bool, clean: bool, present: int) -> None:
    if stored:
        _store_session(port, "sp5", level=5)
    with Peer(port) as peer:
        ack = peer.connect_ok(5, "sp5", clean=clean)
        assert ack.session_present == present


def test_mqtt_3_1_2_6_v311_clean_session_discards_the_old_subscriptions(port: int) -> None:
    # [MQTT-3.1.2-6] (3.1.1): with clean session 1 the previous session, and its subscription to
    # keep/me, is gone: a message on keep/me is not delivered.
    _store_session(port, "cs")
    with Peer(port) as peer, Peer(port) as pub:
        assert peer.connect(4, "cs", clean=True) == CONNACK_ACCEPTED
        pub.connect_ok(4, "pub")
        pub.send(publish("keep/me", b"x", qos=1, packet_id=1))
        pub.expect(b"\x40\x02\x00\x01")
        peer.send(PINGREQ)
        peer.expect(PINGRESP)


# ---------------------------------------------------------------------------------------------
# Protocol name and level.

PROTOCOL_VERSIONS = [
    # (name, level, expected CONNACK) - the answer is always in 3.1.1 form but for a v5 CONNECT.
    pytest.param("MQTT", 6, CONNACK_ACCEPTED[:3] + b"\x01", id="MQTT-3.1.2-2-level-6"),
    pytest.param("MQTT", 0, CONNACK_ACCEPTED[:3] + b"\x01", id="MQTT-3.1.2-2-level-0"),
    pytest.param("MQTT", 3, CONNACK_ACCEPTED[:3] + b"\x01", id="MQTT-3.1.2-2-MQTT-level-3"),
    pytest.param("MQIsdp", 4, CONNACK_ACCEPTED[:3] + b"\x01", id="MQTT-3.1.2-2-MQIsdp-level-4"),
]


@pytest.mark.parametrize(("name", "level", "expected"), PROTOCOL_VERSIONS)
def test_unsupported_protocol_level_v311_connack_then_close(
    port: int, name: str, level: int, expected: bytes, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.send(connect(level, "c", name=name))
        peer.expect(expected)
        peer.expect_closed()


def test_mqtt_3_1_2_2_v5_connect_with_wrong_name_gets_v5_connack_0x84(
    port: int, broker_warns: None
) -> None:
    # Level 5 with the 3.1 protocol name: the level is known, so the answer is an MQTT 5 CONNACK
    # with 0x84 Unsupported Protocol Version, then the close.
    with Peer(port) as peer:
        peer.send(connect(5, "c", name="MQIsdp"))
        ack = parse_connack(peer.recv(), v5=True)
        assert (ack.session_present, ack.reason) == (0, 0x84)
        assert set(ack.properties) <= {0x1F, 0x26}, ack.properties
        peer.expect_closed()


def test_mqtt_3_1_2_1_unknown_protocol_name_closes_without_answer(
    port: int, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.send(connect(4, "c", name="XMPP"))
        peer.expect_closed()


# ---------------------------------------------------------------------------------------------
# First and second CONNECT.

NOT_CONNECT_FIRST = [
    pytest.param(PINGREQ, id="MQTT-3.1.0-1-pingreq"),
    pytest.param(publish("a", b"x"), id="MQTT-3.1.0-1-publish"),
    pytest.param(subscribe(1, ("a", 0)), id="MQTT-3.1.0-1-subscribe"),
    pytest.param(DISCONNECT, id="MQTT-3.1.0-1-disconnect"),
    pytest.param(CONNACK_ACCEPTED, id="MQTT-3.1.0-1-connack"),
]


@pytest.mark.parametrize("first", NOT_CONNECT_FIRST)
def test_first_packet_not_connect_closes_without_answer(
    port: int, first: bytes, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.send(first)
        peer.expect_closed()


def test_mqtt_3_1_0_2_second_connect_v5_disconnect_0x82(port: int, broker_warns: None) -> None:
    with Peer(port) as peer:
        peer.connect_ok(5, "twice", properties=[NO_PROBLEM_INFO])
        peer.send(connect(5, "twice"))
        assert disconnect_reason(peer.recv()) == 0x82
        peer.expect_closed()


def test_mqtt_3_1_0_2_second_connect_v311_close(port: int, broker_warns: None) -> None:
    with Peer(port) as peer:
        assert peer.connect(4, "twice") == CONNACK_ACCEPTED
        peer.send(connect(4, "twice"))
        peer.expect_closed()


# ---------------------------------------------------------------------------------------------
# Client identifiers.

CLIENT_IDS_V3 = [
    # (level, client id, clean, expected CONNACK, then closed)
    pytest.param(4, "", False, b"\x20\x02\x00\x02", True, id="MQTT-3.1.3-8-empty-id-clean-0"),
    pytest.param(4, "", True, CONNACK_ACCEPTED, False, id="MQTT-3.1.3-6-empty-id-clean-1"),
    pytest.param(3, "", True, b"\x20\x02\x00\x02", True, id="MQTT-3.1-empty-id-rejected"),
    pytest.param(3, "x" * 24, True, b"\x20\x02\x00\x02", True, id="MQTT-3.1-id-over-23"),
    pytest.param(3, "x" * 23, True, CONNACK_ACCEPTED, False, id="MQTT-3.1-id-23"),
]


@pytest.mark.parametrize(("level", "client_id", "clean", "expected", "closed"), CLIENT_IDS_V3)
def test_client_identifier_v3(
    port: int, level: int, client_id: str, clean: bool, expected: bytes, closed: bool
) -> None:
    with Peer(port) as peer:
        assert peer.connect(level, client_id, clean=clean) == expected
        if closed:
            peer.expect_closed()
        else:
            peer.send(PINGREQ)
            peer.expect(PINGRESP)


def test_mqtt_3_1_3_7_v5_empty_client_id_gets_assigned_identifier(port: int) -> None:
    assigned = []
    for _ in range(2):
        with Peer(port) as peer:
            ack = peer.connect_ok(5, "")
            ids = ack.properties.get(0x12)
            assert ids is not None and len(ids) == 1 and ids[0], ack.properties
            assigned.append(ids[0])
    # [MQTT-3.1.3-6]: each one unique.
    assert assigned[0] != assigned[1]


def test_v5_client_id_given_gets_no_assigned_identifier(port: int) -> None:
    with Peer(port) as peer:
        assert 0x12 not in peer.connect_ok(5, "mine").properties


# ---------------------------------------------------------------------------------------------
# Connect flags.


def test_mqtt_3_1_2_3_reserved_flag_v311_closes_without_connack(
    port: int, broker_warns: None
) -> None:
    with Peer(port) as peer:
        peer.send(connect(4, "r", flags=RESERVED))
        peer.expect_closed()


def test_mqtt_3_1_2_3_reserved_flag_v5_connack_0x81(port: int, broker_warns: None) -> None:
    # 4.13.1: an error in CONNECT MAY be answered with a CONNACK carrying the reason code.
    with Peer(port) as peer:
        peer.send(connect(5, "r", flags=RESERVED))
        ack = parse_connack(peer.recv(), v5=True)
        assert (ack.session_present, ack.reason) == (0, 0x81)
        peer.expect_closed()


def _will(v5: bool) -> bytes:
    return (b"\x00" if v5 else b"") + s("will/topic") + s("bye")


WILL_REFUSED = [
    # (config, connect flags, expected v5 CONNACK reason)
    pytest.param({"max_qos": 1}, WILL_FLAG | WILL_QOS_2, 0x9B, id="MQTT-3.2.2-12-will-qos"),
    pytest.param(
        {"retain_available": False}, WILL_FLAG | WILL_RETAIN, 0x9A, id="MQTT-3.2.2-13-will-retain"
    ),
]


@pytest.mark.parametrize(("config", "flags", "reason"), WILL_REFUSED)
def test_will_beyond_server_capabilities_is_refused(
    start_broker: Callable[..., BrokerThread],
    config: dict[str, object],
    flags: int,
    reason: int,
    broker_warns: None,
) -> None:
    bt = start_broker(**config)
    with Peer(bt.port) as peer:
        peer.send(connect(5, "w", flags=flags, rest=_will(True)))
        ack = parse_connack(peer.recv(), v5=True)
        assert (ack.session_present, ack.reason) == (0, reason)
        peer.expect_closed()


@pytest.mark.parametrize(("config", "flags", "reason"), WILL_REFUSED)
def test_will_beyond_server_capabilities_v311_closes_without_connack(
    start_broker: Callable[..., BrokerThread],
    config: dict[str, object],
    flags: int,
    reason: int,
    broker_warns: None,
) -> None:
    # 3.1.1 has no return code for it (0x03 "Server unavailable" would be a lie): a plain close.
    bt = start_broker(**config)
    with Peer(bt.port) as peer:
        peer.send(connect(4, "w", flags=flags, rest=_will(False)))
        peer.expect_closed()


def test_will_within_server_capabilities_is_accepted(
    start_broker: Callable[..., BrokerThread],
) -> None:
    bt = start_broker(max_qos=1)
    with Peer(bt.port) as peer:
        peer.send(connect(5, "w", flags=WILL_FLAG | (1 << 3), rest=_will(True)))
        assert parse_connack(peer.recv(), v5=True).reason == 0


# ---------------------------------------------------------------------------------------------
# PINGREQ, takeover.


@pytest.mark.parametrize("level", [pytest.param(4, id="v311"), pytest.param(5, id="v5")])
def test_mqtt_3_12_4_1_pingreq_pingresp(port: int, level: int) -> None:
    with Peer(port) as peer:
        peer.connect_ok(level, "ping")
        for _ in range(2):
            peer.send(PINGREQ)
            peer.expect(b"\xd0\x00")


def test_mqtt_3_1_4_3_takeover_v5_old_connection_gets_0x8e(port: int) -> None:
    with Peer(port) as old, Peer(port) as new:
        old.connect_ok(5, "same", properties=[NO_PROBLEM_INFO])
        new.connect_ok(5, "same")
        assert disconnect_reason(old.recv()) == 0x8E
        old.expect_closed()
        new.send(PINGREQ)
        new.expect(PINGRESP)


def test_mqtt_3_1_4_2_takeover_v311_old_connection_closed(port: int) -> None:
    with Peer(port) as old, Peer(port) as new:
        assert old.connect(4, "same") == CONNACK_ACCEPTED
        assert new.connect(4, "same") == CONNACK_ACCEPTED
        old.expect_closed()
        new.send(PINGREQ)
        new.expect(PINGRESP)

"""The sans-IO client connection, driven with bytes only: no sockets, no clock.

Expected wire bytes come from the hand-written builders in ``mqtt_bytes`` (never from our
encoder); time is injected as plain numbers.
"""

from __future__ import annotations

import pytest
from mqtt_bytes import (
    ASSIGNED_CLIENT_IDENTIFIER,
    AUTH,
    AUTHENTICATION_DATA,
    AUTHENTICATION_METHOD,
    CLEAN,
    CONNACK,
    DISCONNECT,
    MAXIMUM_PACKET_SIZE,
    MAXIMUM_QOS,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    RECEIVE_MAXIMUM,
    RETAIN_AVAILABLE,
    SERVER_KEEP_ALIVE,
    SESSION_EXPIRY_INTERVAL,
    SUBACK,
    SUBSCRIBE,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    TOPIC_ALIAS_MAXIMUM,
    UNSUBACK,
    UNSUBSCRIBE,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    connect,
    fixed,
    p_bin,
    p_byte,
    p_str,
    p_u16,
    p_u32,
    p_varint,
    props,
    s,
    u16,
)

from wrenmq.codec.packets import Publish, Subscription
from wrenmq.codec.properties import Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import LocalProtocolError, RemoteProtocolError
from wrenmq.protocol.client import ClientProtocol, ConnectionState
from wrenmq.protocol.events import (
    Connected,
    ConnectionRefused,
    Disconnected,
    MessageReceived,
    PongReceived,
    PublishAcked,
    PubRecReceived,
    PubRelReceived,
    SubscribeAcked,
    UnsubscribeAcked,
)

# -- wire builders for this file (on top of mqtt_bytes) ------------------------------------------


def connack(present: bool = False, code: int = 0, *, version: int = 5, p: bytes = b"") -> bytes:
    body = bytes([1 if present else 0, code])
    if version == 5:
        body += props(p) if p else b"\x00"
    return fixed(CONNACK, body)


def publish(
    topic: str,
    payload: bytes = b"",
    qos: int = 0,
    pid: int = 0,
    *,
    dup: bool = False,
    retain: bool = False,
    version: int = 5,
    p: bytes = b"",
) -> bytes:
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = s(topic) + (u16(pid) if qos else b"")
    if version == 5:
        body += props(p) if p else b"\x00"
    return fixed(first, body + payload)


def ack(first: int, pid: int, code: int | None = None) -> bytes:
    return fixed(first, u16(pid) + (bytes([code]) if code is not None else b""))


def connected(version: int = 5, *, p: bytes = b"", **kwargs: object) -> ClientProtocol:
    kwargs.setdefault("client_id", "c1")
    proto = ClientProtocol(version=version, **kwargs)  # type: ignore[arg-type]
    proto.connect()
    events = proto.receive_data(connack(version=version, p=p))
    assert isinstance(events[0], Connected), events
    assert proto.is_connected
    return proto


# -- CONNECT / CONNACK ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "wire"),
    [
        (5, connect(5, CLEAN, 30, s("c1"))),
        (4, connect(4, CLEAN, 30, s("c1"))),
        (3, connect(3, CLEAN, 30, s("c1"))),
    ],
)
def test_connect_bytes(version: int, wire: bytes) -> None:
    proto = ClientProtocol(version=version, client_id="c1", keepalive=30)
    assert proto.connect() == wire
    assert proto.state == ConnectionState.CONNECTING


def test_connect_v5_properties_and_resume_flag() -> None:
    proto = ClientProtocol(
        client_id="c1", keepalive=0, session_expiry=60, receive_maximum=10, topic_alias_maximum=5
    )
    expected = connect(
        5,
        CLEAN,
        0,
        s("c1"),
        properties=props(
            p_u32(SESSION_EXPIRY_INTERVAL, 60),
            p_u16(RECEIVE_MAXIMUM, 10),
            p_u16(TOPIC_ALIAS_MAXIMUM, 5),
        ),
    )
    assert proto.connect() == expected
    proto.receive_data(connack())
    proto.connection_lost()
    # A reconnect asks to resume the session the server keeps for 60 s [MQTT-3.1.2-4].
    assert proto.connect()[9] & CLEAN == 0


def test_connack_refused() -> None:
    proto = ClientProtocol(version=4, client_id="c1")
    proto.connect()
    events = proto.receive_data(bytes([CONNACK, 2, 0, 5]))
    assert events == [ConnectionRefused(events[0].connack)]  # type: ignore[union-attr]
    assert events[0].reason_code == ReasonCode.NOT_AUTHORIZED  # type: ignore[union-attr]
    assert proto.state == ConnectionState.CLOSING


def test_assigned_client_id_and_server_keep_alive_are_honoured() -> None:
    proto = ClientProtocol(client_id="", keepalive=60)
    proto.connect()
    proto.note_sent(100.0)
    proto.receive_data(
        connack(p=p_str(ASSIGNED_CLIENT_IDENTIFIER, "srv-1") + p_u16(SERVER_KEEP_ALIVE, 5))
    )
    assert proto.client_id == "srv-1"
    assert proto.next_timeout(100.0) == 105.0
    proto.connection_lost()
    assert s("srv-1") in proto.connect()


def test_session_present_after_clean_start_is_a_protocol_error() -> None:
    proto = ClientProtocol(client_id="c1")
    proto.connect()
    events = proto.receive_data(connack(present=True))
    assert isinstance(events[-1], Disconnected)
    assert events[-1].reason_code == ReasonCode.PROTOCOL_ERROR


def test_packet_not_allowed_before_connack() -> None:
    proto = ClientProtocol(client_id="c1")
    proto.connect()
    events = proto.receive_data(ack(PUBACK, 1))
    assert isinstance(events[-1], Disconnected)
    assert proto.data_to_send() == b""  # no DISCONNECT before CONNACK [MQTT-4.13.1-1]


# -- publishing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 4, 5])
def test_qos0_publish(version: int) -> None:
    proto = connected(version)
    pid, data = proto.publish("a/b", b"hi", 0, retain=True)
    assert pid == 0
    assert data == publish("a/b", b"hi", retain=True, version=version)


@pytest.mark.parametrize("version", [4, 5])
def test_qos1_flow(version: int) -> None:
    proto = connected(version)
    pid, data = proto.publish("a/b", b"x", 1)
    assert (pid, data) == (1, publish("a/b", b"x", 1, 1, version=version))
    assert proto.inflight == 1
    assert proto.receive_data(ack(PUBACK, 1)) == [PublishAcked(1)]
    assert proto.inflight == 0
    assert proto.publish("a/b", b"y", 1)[0] == 2


def test_qos1_negative_ack() -> None:
    proto = connected()
    proto.publish("a/b", b"x", 1)
    events = proto.receive_data(ack(PUBACK, 1, ReasonCode.NOT_AUTHORIZED))
    assert events == [PublishAcked(1, ReasonCode.NOT_AUTHORIZED)]


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_flow(version: int) -> None:
    proto = connected(version)
    pid, data = proto.publish("a/b", b"x", 2)
    assert data == publish("a/b", b"x", 2, pid, version=version)
    code = ReasonCode.NO_MATCHING_SUBSCRIBERS if version == 5 else None
    assert proto.receive_data(ack(PUBREC, pid, code)) == []
    assert proto.data_to_send() == fixed(PUBREL, u16(pid))
    events = proto.receive_data(ack(PUBCOMP, pid))
    assert events == [PublishAcked(pid, ReasonCode(code or 0))]
    assert proto.inflight == 0


def test_pubcomp_not_found_after_a_resent_pubrel_completes_the_flow() -> None:
    proto = connected(clean_start=False, session_expiry=60)
    proto.publish("t", b"x", 2)
    proto.receive_data(ack(PUBREC, 1))
    proto.connection_lost()  # our PUBREL arrived, the server's PUBCOMP was lost
    proto.connect()
    proto.receive_data(connack(present=True))
    assert proto.data_to_send() == fixed(PUBREL, u16(1))
    assert proto.receive_data(ack(PUBCOMP, 1, 0x92)) == [PublishAcked(1)]


def test_qos2_pubrec_failure_ends_the_flow() -> None:
    proto = connected()
    pid, _ = proto.publish("a/b", b"x", 2)
    events = proto.receive_data(ack(PUBREC, pid, ReasonCode.QUOTA_EXCEEDED))
    assert events == [PublishAcked(pid, ReasonCode.QUOTA_EXCEEDED)]
    assert proto.data_to_send() == b""  # no PUBREL after a failed PUBREC


def test_packet_ids_skip_those_in_use() -> None:
    proto = connected()
    ids = [proto.publish("t", b"", 1)[0] for _ in range(3)]
    assert ids == [1, 2, 3]
    proto.receive_data(ack(PUBACK, 2))
    proto.session._next_id = 65535
    assert [proto.publish("t", b"", 1)[0] for _ in range(3)] == [65535, 2, 4]


def test_publish_limits_from_connack() -> None:
    proto = connected(p=p_byte(MAXIMUM_QOS, 1) + p_byte(RETAIN_AVAILABLE, 0))
    with pytest.raises(LocalProtocolError) as err:
        proto.publish("t", b"", 2)
    assert err.value.reason_code == ReasonCode.QOS_NOT_SUPPORTED
    with pytest.raises(LocalProtocolError) as err:
        proto.publish("t", b"", 0, retain=True)
    assert err.value.reason_code == ReasonCode.RETAIN_NOT_SUPPORTED
    with pytest.raises(LocalProtocolError) as err:
        proto.publish("a/+", b"")
    assert err.value.reason_code == ReasonCode.TOPIC_NAME_INVALID


def test_server_maximum_packet_size() -> None:
    proto = connected(p=p_u32(MAXIMUM_PACKET_SIZE, 64))
    proto.publish("t", b"x" * 40, 1)  # fits
    with pytest.raises(LocalProtocolError) as err:
        proto.publish("t", b"x" * 80, 1)
    assert err.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert proto.inflight == 1  # the refused message left no state behind


def test_publish_when_not_connected() -> None:
    proto = ClientProtocol(client_id="c1")
    with pytest.raises(LocalProtocolError):
        proto.publish("t", b"")


# -- receive maximum -----------------------------------------------------------------------------


def test_server_receive_maximum_holds_messages_back() -> None:
    proto = connected(p=p_u16(RECEIVE_MAXIMUM, 2))
    sent = [proto.publish("t", bytes([i]), 1) for i in range(4)]
    assert [bool(data) for _, data in sent] == [True, True, False, False]
    assert proto.receive_data(ack(PUBACK, 1)) == [PublishAcked(1)]
    assert proto.data_to_send() == publish("t", b"\x02", 1, 3)
    proto.receive_data(ack(PUBACK, 2))
    assert proto.data_to_send() == publish("t", b"\x03", 1, 4)


def test_max_inflight_caps_the_quota_too() -> None:
    proto = connected(max_inflight=1)
    assert proto.publish("t", b"", 1)[1]
    assert proto.publish("t", b"", 2)[1] == b""


def test_incoming_receive_maximum_exceeded() -> None:
    proto = connected(receive_maximum=2, manual_ack=True)
    events = proto.receive_data(publish("t", b"", 1, 1) + publish("t", b"", 2, 2))
    assert len(events) == 2
    events = proto.receive_data(publish("t", b"", 1, 3))
    assert isinstance(events[-1], Disconnected)
    assert events[-1].reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    out = proto.data_to_send()
    assert out[0] == DISCONNECT and out[2] == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED


# -- resume: resend with DUP, or republish -------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5])
def test_resend_with_dup_when_session_present(version: int) -> None:
    proto = connected(version, clean_start=False, session_expiry=300)
    proto.publish("a", b"1", 1)  # pid 1: unacknowledged
    proto.publish("b", b"2", 2)  # pid 2: PUBREC received, PUBREL unanswered
    proto.receive_data(ack(PUBREC, 2))
    proto.data_to_send()
    assert proto.connection_lost() == []
    assert proto.state == ConnectionState.DISCONNECTED
    proto.connect()
    events = proto.receive_data(connack(present=True, version=version))
    assert [type(e) for e in events] == [Connected]
    # Original order, original packet ids, DUP set on the PUBLISH [MQTT-4.4.0-1] [MQTT-3.3.1-1].
    assert proto.data_to_send() == (
        publish("a", b"1", 1, 1, dup=True, version=version) + fixed(PUBREL, u16(2))
    )
    assert proto.receive_data(ack(PUBACK, 1) + ack(PUBCOMP, 2)) == [
        PublishAcked(1),
        PublishAcked(2),
    ]


def test_republish_without_dup_when_session_lost() -> None:
    proto = connected(4, clean_start=False)
    proto.publish("a", b"1", 1)
    proto.publish("b", b"2", 2)
    proto.receive_data(ack(PUBREC, 2))
    proto.connection_lost()
    proto.connect()
    events = proto.receive_data(connack(present=False, version=4))
    # The QoS 2 message was accepted (PUBREC) before the server lost it: done.
    assert events[1:] == [PublishAcked(2)]
    assert proto.data_to_send() == publish("a", b"1", 1, 1, version=4)


def test_resend_respects_the_new_receive_maximum() -> None:
    proto = connected(clean_start=False, session_expiry=60)
    for i in range(3):
        proto.publish("t", bytes([i]), 1)
    proto.connection_lost()
    proto.connect()
    proto.receive_data(connack(present=True, p=p_u16(RECEIVE_MAXIMUM, 1)))
    assert proto.data_to_send() == publish("t", b"\x00", 1, 1, dup=True)
    proto.receive_data(ack(PUBACK, 1))
    assert proto.data_to_send() == publish("t", b"\x01", 1, 2, dup=True)


def test_held_messages_go_out_after_reconnect() -> None:
    proto = connected(clean_start=False, session_expiry=60, p=p_u16(RECEIVE_MAXIMUM, 1))
    proto.publish("t", b"0", 1)
    assert proto.publish("t", b"1", 1)[1] == b""
    proto.connection_lost()
    proto.connect()
    proto.receive_data(connack(present=True))
    # The held one was never sent, so it carries no DUP.
    assert proto.data_to_send() == publish("t", b"0", 1, 1, dup=True) + publish("t", b"1", 1, 2)


def test_subscribe_abandoned_by_connection_loss() -> None:
    proto = connected()
    pid, _ = proto.subscribe([Subscription("a/#", 1)])
    assert proto.connection_lost() == [pid]


# -- incoming QoS 1/2 ----------------------------------------------------------------------------


def test_incoming_qos1_auto_ack() -> None:
    proto = connected()
    events = proto.receive_data(publish("t", b"m", 1, 9))
    assert isinstance(events[0], MessageReceived)
    assert bytes(events[0].publish.payload) == b"m"
    assert proto.data_to_send() == fixed(PUBACK, u16(9))


def test_incoming_qos2_exactly_once() -> None:
    proto = connected()
    assert len(proto.receive_data(publish("t", b"m", 2, 7))) == 1
    assert proto.data_to_send() == fixed(PUBREC, u16(7))
    # The server resends (its PUBREC was lost): no second delivery, PUBREC again [MQTT-4.3.3-10].
    assert proto.receive_data(publish("t", b"m", 2, 7, dup=True)) == []
    assert proto.data_to_send() == fixed(PUBREC, u16(7))
    assert proto.receive_data(fixed(PUBREL, u16(7))) == []
    assert proto.data_to_send() == fixed(PUBCOMP, u16(7))
    # After PUBREL the packet id is free: a PUBLISH with it is a new message.
    assert len(proto.receive_data(publish("t", b"n", 2, 7))) == 1


def test_incoming_qos2_dedupe_survives_reconnect() -> None:
    proto = connected(clean_start=False, session_expiry=60)
    proto.receive_data(publish("t", b"m", 2, 7))
    proto.connection_lost()
    proto.connect()
    proto.receive_data(connack(present=True))
    proto.data_to_send()
    assert proto.receive_data(publish("t", b"m", 2, 7, dup=True)) == []
    assert proto.data_to_send() == fixed(PUBREC, u16(7))


def test_unknown_pubrel_is_answered() -> None:
    proto = connected()
    proto.receive_data(fixed(PUBREL, u16(3)))
    assert proto.data_to_send() == fixed(PUBCOMP, u16(3) + bytes([0x92]))


def test_manual_ack() -> None:
    proto = connected(manual_ack=True)
    proto.receive_data(publish("t", b"1", 1, 1) + publish("t", b"2", 2, 2))
    assert proto.data_to_send() == b""
    assert proto.ack(1) == fixed(PUBACK, u16(1))
    assert proto.ack(1) == b""
    assert proto.ack(2) == fixed(PUBREC, u16(2))
    proto.receive_data(fixed(PUBREL, u16(2)))
    assert proto.data_to_send() == fixed(PUBCOMP, u16(2))


def test_manual_ack_refusal_v5() -> None:
    proto = connected(manual_ack=True)
    proto.receive_data(publish("t", b"1", 2, 4))
    assert proto.ack(4, ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR) == fixed(
        PUBREC, u16(4) + bytes([0x83])
    )


def test_unacked_qos2_is_delivered_again_after_reconnect() -> None:
    proto = connected(manual_ack=True, clean_start=False, session_expiry=60)
    proto.receive_data(publish("t", b"m", 2, 5))
    epoch = proto.epoch
    proto.connection_lost()
    assert proto.epoch == epoch + 1
    proto.connect()
    proto.receive_data(connack(present=True))
    events = proto.receive_data(publish("t", b"m", 2, 5, dup=True))
    assert len(events) == 1 and events[0].publish.dup  # type: ignore[union-attr]


# -- topic aliases -------------------------------------------------------------------------------


def test_outgoing_topic_alias_for_repeated_topics() -> None:
    proto = connected(p=p_u16(TOPIC_ALIAS_MAXIMUM, 1))
    assert proto.publish("room/1", b"a")[1] == publish("room/1", b"a")
    assert proto.publish("room/1", b"b")[1] == publish("room/1", b"b", p=p_u16(TOPIC_ALIAS, 1))
    assert proto.publish("room/1", b"c")[1] == publish("", b"c", p=p_u16(TOPIC_ALIAS, 1))
    # The only alias is taken: a topic used once goes out in full...
    assert proto.publish("room/2", b"d")[1] == publish("room/2", b"d")
    # ...and the second time takes over the least recently used alias, with its full name, which
    # rebinds the alias at the server [MQTT-3.3.2-12].
    assert proto.publish("room/2", b"e")[1] == publish("room/2", b"e", p=p_u16(TOPIC_ALIAS, 1))
    assert proto.publish("room/2", b"f")[1] == publish("", b"f", p=p_u16(TOPIC_ALIAS, 1))
    # room/1 lost its alias: it starts over.
    assert proto.publish("room/1", b"g")[1] == publish("room/1", b"g")


def test_outgoing_alias_reassignment_takes_the_least_recently_used() -> None:
    proto = connected(p=p_u16(TOPIC_ALIAS_MAXIMUM, 2))
    for topic in ("a", "a", "b", "b"):
        proto.publish(topic, b"")
    assert proto.publish("a", b"1")[1] == publish("", b"1", p=p_u16(TOPIC_ALIAS, 1))  # a is fresh
    proto.publish("c", b"")
    # b (alias 2) is the least recently used: c takes it over.
    assert proto.publish("c", b"2")[1] == publish("c", b"2", p=p_u16(TOPIC_ALIAS, 2))
    assert proto.publish("a", b"3")[1] == publish("", b"3", p=p_u16(TOPIC_ALIAS, 1))
    assert proto.publish("b", b"4")[1] == publish("b", b"4")


def test_outgoing_aliases_reset_per_connection() -> None:
    proto = connected(clean_start=False, session_expiry=60, p=p_u16(TOPIC_ALIAS_MAXIMUM, 3))
    proto.publish("t", b"")
    proto.publish("t", b"")
    proto.connection_lost()
    proto.connect()
    proto.receive_data(connack(present=True, p=p_u16(TOPIC_ALIAS_MAXIMUM, 3)))
    assert proto.publish("t", b"x")[1] == publish("t", b"x")  # [MQTT-3.3.2-7]


def test_no_topic_alias_without_server_permission() -> None:
    proto = connected()
    for _ in range(3):
        assert proto.publish("t", b"")[1] == publish("t", b"")
    with pytest.raises(LocalProtocolError):
        proto.publish("t", b"", properties=Properties(topic_alias=1))


def test_incoming_topic_alias_resolution() -> None:
    proto = connected(topic_alias_maximum=4)
    events = proto.receive_data(
        publish("x/y", b"1", p=p_u16(TOPIC_ALIAS, 3)) + publish("", b"2", p=p_u16(TOPIC_ALIAS, 3))
    )
    assert [e.publish.topic for e in events] == ["x/y", "x/y"]  # type: ignore[union-attr]
    assert events[1].publish.properties.topic_alias is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (publish("x", b"", p=p_u16(TOPIC_ALIAS, 5)), ReasonCode.TOPIC_ALIAS_INVALID),
        (publish("", b"", p=p_u16(TOPIC_ALIAS, 2)), ReasonCode.PROTOCOL_ERROR),
    ],
)
def test_incoming_topic_alias_errors(wire: bytes, code: ReasonCode) -> None:
    proto = connected(topic_alias_maximum=4)
    events = proto.receive_data(wire)
    assert isinstance(events[-1], Disconnected)
    assert events[-1].reason_code == code


# -- subscribe / unsubscribe ---------------------------------------------------------------------


def test_subscribe_flow_v5() -> None:
    proto = connected()
    pid, data = proto.subscribe(
        [Subscription("a/#", 1, no_local=True), Subscription("b", 2, retain_handling=2)],
        Properties(subscription_identifiers=(7,)),
    )
    assert data == fixed(
        SUBSCRIBE,
        u16(pid) + props(p_varint(SUBSCRIPTION_IDENTIFIER, 7)) + s("a/#") + b"\x05" + s("b")
        + b"\x22",
    )  # fmt: skip
    events = proto.receive_data(fixed(SUBACK, u16(pid) + b"\x00" + b"\x01\x87"))
    assert events == [SubscribeAcked(pid, (ReasonCode.GRANTED_QOS_1, ReasonCode.NOT_AUTHORIZED))]


def test_unsubscribe_v4_fills_in_reason_codes() -> None:
    proto = connected(4)
    pid, data = proto.unsubscribe(["a", "b"])
    assert data == fixed(UNSUBSCRIBE, u16(pid) + s("a") + s("b"))
    events = proto.receive_data(fixed(UNSUBACK, u16(pid)))
    assert events == [UnsubscribeAcked(pid, (ReasonCode.SUCCESS, ReasonCode.SUCCESS))]


def test_subscribe_checks() -> None:
    proto = connected(p=p_byte(WILDCARD_SUBSCRIPTION_AVAILABLE, 0))
    with pytest.raises(LocalProtocolError) as err:
        proto.subscribe([Subscription("a/#")])
    assert err.value.reason_code == ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
    with pytest.raises(LocalProtocolError) as err:
        proto.subscribe([Subscription("a/#/b")])
    assert err.value.reason_code == ReasonCode.TOPIC_FILTER_INVALID
    with pytest.raises(LocalProtocolError):
        proto.subscribe([Subscription("$share/g/x", no_local=True)])


def test_suback_for_unknown_packet_id_is_a_protocol_error() -> None:
    proto = connected()
    events = proto.receive_data(fixed(SUBACK, u16(40) + b"\x00\x00"))
    assert isinstance(events[-1], Disconnected)
    assert events[-1].error is not None


# -- keep alive ----------------------------------------------------------------------------------


def test_keepalive_timing_with_injected_now() -> None:
    proto = ClientProtocol(client_id="c1", keepalive=10)
    proto.connect()
    proto.note_sent(0.0)
    proto.receive_data(connack())
    assert proto.next_timeout(0.0) == 10.0
    assert proto.on_timer(9.9) == b""
    proto.note_sent(4.0)  # any packet counts [MQTT-3.1.2-22]
    assert proto.next_timeout(9.9) == 14.0
    assert proto.on_timer(14.0) == bytes([PINGREQ, 0])
    assert proto.next_timeout(14.0) == 24.0  # the PINGRESP deadline (ping timeout = keep alive)
    assert proto.receive_data(bytes([PINGRESP, 0])) == [PongReceived()]
    assert proto.next_timeout(15.0) == 24.0  # next PINGREQ due 10 s after the last one
    assert proto.on_timer(24.0) == bytes([PINGREQ, 0])
    with pytest.raises(RemoteProtocolError) as err:
        proto.on_timer(34.0)
    assert err.value.reason_code == ReasonCode.KEEP_ALIVE_TIMEOUT
    assert proto.disconnect(err.value.reason_code) == fixed(DISCONNECT, b"\x8d")


def test_keepalive_zero_disables_the_timer() -> None:
    proto = connected(keepalive=0)
    assert proto.next_timeout(0.0) is None
    assert proto.on_timer(1e9) == b""


def test_ping_timeout_shorter_than_keepalive() -> None:
    proto = connected(keepalive=60, ping_timeout=2.0)
    proto.note_sent(0.0)
    proto.ping(30.0)
    assert proto.next_timeout(30.0) == 32.0


# -- disconnect and framing ----------------------------------------------------------------------


def test_disconnect_v5_and_v4() -> None:
    proto = connected()
    assert proto.disconnect() == fixed(DISCONNECT, b"")
    assert proto.state == ConnectionState.CLOSING
    proto = connected(4)
    assert proto.disconnect() == bytes([DISCONNECT, 0])


def test_disconnect_cannot_add_a_session_expiry() -> None:
    proto = connected()
    with pytest.raises(LocalProtocolError):
        proto.disconnect(properties=Properties(session_expiry_interval=10))


def test_server_disconnect_event() -> None:
    proto = connected()
    events = proto.receive_data(fixed(DISCONNECT, b"\x8b\x00"))
    assert events == [Disconnected(ReasonCode.SERVER_SHUTTING_DOWN, by_server=True)]
    assert proto.receive_data(publish("t")) == []  # nothing after the end


def test_malformed_input_ends_the_connection_with_disconnect() -> None:
    proto = connected()
    events = proto.receive_data(publish("t", b"1") + bytes([0x00, 0x00]))
    assert isinstance(events[0], MessageReceived)
    assert isinstance(events[1], Disconnected)
    assert events[1].reason_code == ReasonCode.MALFORMED_PACKET
    out = proto.data_to_send()
    assert out[0] == DISCONNECT and out[2] == ReasonCode.MALFORMED_PACKET


def test_one_chunk_equals_byte_at_a_time() -> None:
    stream = (
        publish("a", b"1", 1, 1) + publish("b", b"2", 2, 2) + fixed(PUBREL, u16(2))
        + bytes([PINGRESP, 0]) + publish("c", b"3")
    )  # fmt: skip
    whole = connected()
    events_whole = whole.receive_data(stream)
    split = connected()
    events_split = [e for i in range(len(stream)) for e in split.receive_data(stream[i : i + 1])]
    assert events_whole == events_split
    assert whole.data_to_send() == split.data_to_send()


# -- durable sessions: nothing on the wire before the store has it -------------------------------


def durable(*, manual_ack: bool = False) -> ClientProtocol:
    return connected(clean_start=False, session_expiry=600, durable=True, manual_ack=manual_ack)


def test_durable_publish_waits_for_the_store() -> None:
    proto = durable()
    pid1, data1 = proto.publish("a", b"1", 1, tag=11)
    pid2, data2 = proto.publish("b", b"2", 2, tag=12)
    assert (data1, data2) == (b"", b"")
    assert proto.mark_stored(pid2, 99) == b""  # a stale tag changes nothing
    # The second is stored first: it still waits behind the first (order [MQTT-4.6.0-2]).
    assert proto.mark_stored(pid2, 12) == b""
    assert proto.mark_stored(pid1, 11) == publish("a", b"1", 1, pid1) + publish("b", b"2", 2, pid2)
    assert proto.mark_stored(pid1, 11) == b""


def test_durable_pubrel_waits_for_the_stored_pubrec() -> None:
    proto = durable()
    pid, _ = proto.publish("t", b"x", 2, tag=5)
    proto.mark_stored(pid, 5)
    assert proto.receive_data(ack(PUBREC, pid)) == [PubRecReceived(pid)]
    assert proto.data_to_send() == b""
    # A repeated PUBREC while the store writes: no second event, no PUBREL yet.
    assert proto.receive_data(ack(PUBREC, pid)) == []
    assert proto.data_to_send() == b""
    # A PUBCOMP before our PUBREL is no answer to it.
    assert proto.receive_data(ack(PUBCOMP, pid)) == []
    assert proto.pubrel_stored(pid, 5) == fixed(PUBREL, u16(pid))
    assert proto.pubrel_stored(pid, 5) == b""
    assert proto.receive_data(ack(PUBCOMP, pid)) == [PublishAcked(pid)]


def test_durable_resume_skips_what_the_store_lacks() -> None:
    proto = durable()
    p1, _ = proto.publish("t", b"1", 2, tag=1)
    proto.mark_stored(p1, 1)
    proto.receive_data(ack(PUBREC, p1))  # PUBREC not stored yet
    p2, _ = proto.publish("t", b"2", 1, tag=2)  # not stored yet
    proto.connection_lost()
    proto.connect()
    proto.receive_data(connack(present=True))
    assert proto.data_to_send() == b""  # neither the PUBREL nor the PUBLISH may go out
    assert proto.pubrel_stored(p1, 1) == fixed(PUBREL, u16(p1))
    assert proto.mark_stored(p2, 2) == publish("t", b"2", 1, p2)  # never sent: no DUP


def test_durable_incoming_qos2() -> None:
    proto = durable()
    generation = proto.generation
    events = proto.receive_data(publish("t", b"m", 2, 7))
    assert isinstance(events[0], MessageReceived)
    assert proto.data_to_send() == b""  # PUBREC once the store has the id
    # The server resends meanwhile: a duplicate, still no PUBREC.
    assert proto.receive_data(publish("t", b"m", 2, 7, dup=True)) == []
    assert proto.data_to_send() == b""
    assert proto.incoming_stored(7, generation) == fixed(PUBREC, u16(7))
    assert proto.receive_data(publish("t", b"m", 2, 7, dup=True)) == []
    assert proto.data_to_send() == fixed(PUBREC, u16(7))
    # PUBREL: the id leaves the store before PUBCOMP, or a restart would swallow its next use.
    assert proto.receive_data(fixed(PUBREL, u16(7))) == [PubRelReceived(7)]
    assert proto.receive_data(fixed(PUBREL, u16(7))) == []
    assert proto.data_to_send() == b""
    assert proto.incoming_released(7, generation) == fixed(PUBCOMP, u16(7))
    assert len(proto.receive_data(publish("t", b"n", 2, 7))) == 1  # a new message


def test_durable_incoming_survives_connection_loss_but_not_session_loss() -> None:
    proto = durable()
    old = proto.generation
    proto.receive_data(publish("t", b"m", 2, 7))
    proto.connection_lost()
    proto.connect()
    proto.receive_data(connack(present=True))
    assert proto.receive_data(publish("t", b"m", 2, 7, dup=True)) == []  # still known
    assert proto.incoming_stored(7, old) == fixed(PUBREC, u16(7))
    proto.connection_lost()
    proto.connect()
    proto.receive_data(connack(present=False))
    assert proto.generation != old
    assert len(proto.receive_data(publish("t", b"m2", 2, 7))) == 1  # a new message
    assert proto.incoming_stored(7, old) == b""  # a late callback of the old session
    assert proto.incoming_stored(7, proto.generation) == fixed(PUBREC, u16(7))


def test_durable_manual_ack_stores_before_pubrec() -> None:
    proto = durable(manual_ack=True)
    proto.receive_data(publish("t", b"m", 2, 3))
    assert proto.ack(3) == b""
    assert proto.incoming_stored(3, proto.generation) == fixed(PUBREC, u16(3))


def test_restore_a_stored_session() -> None:
    proto = ClientProtocol(client_id="c1", clean_start=False, session_expiry=60, durable=True)
    proto.restore(
        [
            (Publish("a", b"1", 1, packet_id=4), 1, False),
            (Publish("b", b"", 2, packet_id=9), 2, True),
        ],
        [5],
        10,
    )
    proto.connect()
    proto.receive_data(connack(present=True))
    assert proto.data_to_send() == publish("a", b"1", 1, 4, dup=True) + fixed(PUBREL, u16(9))
    assert proto.receive_data(publish("t", b"m", 2, 5, dup=True)) == []  # already delivered
    assert proto.data_to_send() == fixed(PUBREC, u16(5))
    assert proto.publish("c", b"", 1)[0] == 10  # the allocator resumes
    proto.receive_data(ack(PUBACK, 4) + ack(PUBCOMP, 9))


def test_restore_then_session_lost_republishes_as_new() -> None:
    proto = ClientProtocol(client_id="c1", clean_start=False, session_expiry=60, durable=True)
    proto.restore(
        [
            (Publish("a", b"1", 1, packet_id=4), 1, False),
            (Publish("b", b"", 2, packet_id=9), 2, True),
        ],
        [],
        1,
    )
    proto.connect()
    events = proto.receive_data(connack(present=False))
    assert events[1:] == [PublishAcked(9)]  # PUBREC arrived before: delivered
    assert proto.data_to_send() == publish("a", b"1", 1, 4)


# -- enhanced authentication ---------------------------------------------------------------------

METHOD = p_str(AUTHENTICATION_METHOD, "TEST")


def auth_packet(code: int, data: bytes | None = None, method: bytes = METHOD) -> bytes:
    items = method + (p_bin(AUTHENTICATION_DATA, data) if data is not None else b"")
    return fixed(AUTH, bytes([code]) + props(items))


def test_enhanced_auth_exchange_and_reauthentication() -> None:
    proto = ClientProtocol(
        client_id="c1", keepalive=0, connect_properties=Properties(authentication_method="TEST")
    )
    assert proto.connect(authentication_data=b"hello") == connect(
        5, CLEAN, 0, s("c1"), properties=props(METHOD, p_bin(AUTHENTICATION_DATA, b"hello"))
    )
    events = proto.receive_data(auth_packet(0x18, b"challenge"))
    assert len(events) == 1
    assert events[0].auth.properties.authentication_data == b"challenge"  # type: ignore[union-attr]
    assert proto.auth_continue(b"answer") == auth_packet(0x18, b"answer")
    assert isinstance(proto.receive_data(connack(p=METHOD))[0], Connected)
    # Re-authentication [MQTT-4.12.1-1].
    assert proto.reauthenticate(b"again") == auth_packet(0x19, b"again")
    assert proto.reauthenticating
    proto.receive_data(auth_packet(0x18, b"c2"))
    assert proto.auth_continue(b"a2") == auth_packet(0x18, b"a2")
    proto.receive_data(auth_packet(0x00, b"ok"))
    assert not proto.reauthenticating
    with pytest.raises(LocalProtocolError):
        proto.auth_continue(b"late")


@pytest.mark.parametrize(
    ("wire", "connected_first"),
    [
        (auth_packet(0x18, b"x", p_str(AUTHENTICATION_METHOD, "OTHER")), False),  # 4.12.0-5
        (auth_packet(0x00, b"x"), False),  # only Continue before CONNACK [MQTT-4.12.0-2]
        (auth_packet(0x18, b"x"), True),  # no re-authentication was started
        (auth_packet(0x19, b"x"), True),  # the server never sends Re-authenticate
    ],
)
def test_unexpected_auth_is_a_protocol_error(wire: bytes, connected_first: bool) -> None:
    proto = ClientProtocol(
        client_id="c1", connect_properties=Properties(authentication_method="TEST")
    )
    proto.connect(authentication_data=b"")
    if connected_first:
        proto.receive_data(connack(p=METHOD))
    events = proto.receive_data(wire)
    assert isinstance(events[-1], Disconnected)
    assert events[-1].reason_code == ReasonCode.PROTOCOL_ERROR


def test_auth_without_a_method() -> None:
    proto = connected()
    events = proto.receive_data(auth_packet(0x18, b"x"))
    assert isinstance(events[-1], Disconnected)  # [MQTT-4.12.0-6]
    with pytest.raises(LocalProtocolError):
        proto.reauthenticate(b"")  # [MQTT-4.12.0-7]
    with pytest.raises(LocalProtocolError):
        ClientProtocol(client_id="c").connect(authentication_data=b"x")  # [MQTT-3.1.2-28]

"""MQTT 5 properties end to end: topic aliases, message expiry, pass-through properties, client
limits (mosquitto's 12-prop-* area).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import rawmqtt as r
from pahopeer import V5, V311, PacketTypes, Peer, props
from rawmqtt import Raw

from brokerthread import BrokerThread

Peers = Callable[..., Peer]
Raws = Callable[..., Raw]


def test_topic_alias_from_client(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    sub = peer(broker_thread.port, "sub", version=V5).connect()
    sub.subscribe(unique_topic, 1)
    pub = raw(broker_thread.port, version=5)
    pub.connect("aliaser")
    alias = r.prop(r.TOPIC_ALIAS, 3)
    pub.send(r.publish(unique_topic, b"set", qos=1, packet_id=1, version=5, properties=alias))
    assert pub.recv() == r.Packet(0x40, b"\x00\x01")
    pub.send(r.publish("", b"use", qos=1, packet_id=2, version=5, properties=alias))
    assert pub.recv() == r.Packet(0x40, b"\x00\x02")
    got = sub.wait_messages(2)
    assert [(m.topic, m.payload) for m in got] == [(unique_topic, b"set"), (unique_topic, b"use")]
    assert not hasattr(got[1].properties, "TopicAlias")  # aliases are per connection


def test_topic_alias_above_maximum(broker_thread: BrokerThread, raw: Raws) -> None:
    pub = raw(broker_thread.port, version=5)
    pub.connect("greedy")  # the broker offers Topic Alias Maximum 10
    pub.send(r.publish("t", b"x", version=5, properties=r.prop(r.TOPIC_ALIAS, 11)))
    got = pub.until_closed()
    assert [(p.first, p.body[:1]) for p in got] == [(0xE0, b"\x94")]  # Topic Alias invalid


def test_unknown_topic_alias(broker_thread: BrokerThread, raw: Raws) -> None:
    pub = raw(broker_thread.port, version=5)
    pub.connect("forgetful")
    pub.send(r.publish("", b"x", version=5, properties=r.prop(r.TOPIC_ALIAS, 1)))
    got = pub.until_closed()
    assert [(p.first, p.body[:1]) for p in got] == [(0xE0, b"\x82")]  # Protocol Error


def test_message_expiry_interval_decremented_while_queued(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    sub = peer(port, "sub", version=V5).connect(clean_start=False, properties=expiry)
    sub.subscribe(unique_topic, 1)
    sub.disconnect()
    pub = peer(port, "pub", version=V5).connect()
    for interval in (10, 1):
        mei = props(PacketTypes.PUBLISH, MessageExpiryInterval=interval)
        pub.publish(unique_topic, f"mei{interval}", 1, properties=mei)
    pub.publish(unique_topic, b"forever", 1)
    time.sleep(1.2)
    again = peer(port, "sub", version=V5).connect(clean_start=False, properties=expiry)
    got = again.wait_messages(2)
    assert [m.payload for m in got] == [b"mei10", b"forever"]  # mei1 expired [MQTT-3.3.2-5]
    # [MQTT-3.3.2-6]: the interval sent is what is left of it.
    assert got[0].properties.MessageExpiryInterval in (8, 9)
    assert not hasattr(got[1].properties, "MessageExpiryInterval")
    again.no_more_messages(2, wait=0.2)


def test_message_expiry_interval_forwarded_live(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    sub = peer(broker_thread.port, "sub", version=V5).connect()
    sub.subscribe(unique_topic, 1)
    pub = peer(broker_thread.port, "pub", version=V5).connect()
    mei = props(PacketTypes.PUBLISH, MessageExpiryInterval=30)
    pub.publish(unique_topic, b"fresh", 1, properties=mei)
    (msg,) = sub.wait_messages(1)
    assert msg.properties.MessageExpiryInterval == 30


def test_publish_properties_pass_through(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    sub5 = peer(port, "sub5", version=V5).connect()
    sub5.subscribe(unique_topic, 2)
    sub3 = peer(port, "sub3", version=V311).connect()
    sub3.subscribe(unique_topic, 2)
    pub = peer(port, "pub", version=V5).connect()
    user = [("b", "1"), ("a", "2"), ("b", "3"), ("ümlaut", "")]
    p = props(
        PacketTypes.PUBLISH,
        UserProperty=user,
        ContentType="application/json",
        ResponseTopic=unique_topic + "/reply",
        CorrelationData=b"\x00\x01corr",
        PayloadFormatIndicator=1,
    )
    pub.publish(unique_topic, b'{"x": 1}', 2, properties=p)
    (msg,) = sub5.wait_messages(1)
    got = msg.properties
    assert got.UserProperty == user  # order and duplicates kept [MQTT-3.3.2-18]
    assert got.ContentType == "application/json"
    assert got.ResponseTopic == unique_topic + "/reply"
    assert got.CorrelationData == b"\x00\x01corr"
    assert got.PayloadFormatIndicator == 1
    (old,) = sub3.wait_messages(1)  # a 3.1.1 subscriber gets the message, without properties
    assert (old.payload, old.qos) == (b'{"x": 1}', 2)


def test_request_response_round_trip(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    responder = peer(port, "responder", version=V5).connect()
    responder.subscribe(unique_topic + "/req", 1)
    requester = peer(port, "requester", version=V5).connect()
    requester.subscribe(unique_topic + "/resp", 1)
    req = props(PacketTypes.PUBLISH, ResponseTopic=unique_topic + "/resp", CorrelationData=b"42")
    requester.publish(unique_topic + "/req", b"question", 1, properties=req)
    (q,) = responder.wait_messages(1)
    reply = props(PacketTypes.PUBLISH, CorrelationData=q.properties.CorrelationData)
    responder.publish(q.properties.ResponseTopic, b"answer", 1, properties=reply)
    (a,) = requester.wait_messages(1)
    assert (a.payload, a.properties.CorrelationData) == (b"answer", b"42")


def test_client_receive_maximum(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    sub = raw(broker_thread.port, version=5)
    sub.connect("one-at-a-time", properties=r.prop(r.RECEIVE_MAXIMUM, 1))
    sub.send(r.subscribe(1, [(unique_topic, 2)], version=5))
    sub.recv()
    pub = peer(broker_thread.port, "pub", version=V5).connect()
    for i in range(3):
        pub.publish(unique_topic, str(i), 1)
    first = sub.recv_publish()
    assert first.payload == b"0"
    assert sub.silent(0.3)  # [MQTT-3.3.4-7]: no more than Receive Maximum unacknowledged
    sub.send(r.ack(r.PUBACK, first.packet_id))
    second = sub.recv_publish()
    assert second.payload == b"1"


def test_client_maximum_packet_size(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    sub = raw(broker_thread.port, version=5)
    sub.connect("small", properties=r.prop(r.MAXIMUM_PACKET_SIZE, 64))
    sub.send(r.subscribe(1, [(unique_topic, 0)], version=5))
    sub.recv()
    pub = peer(broker_thread.port, "pub", version=V5).connect()
    pub.publish(unique_topic, b"x" * 100, 1)  # would exceed 64 bytes: dropped [MQTT-3.1.2-25]
    pub.publish(unique_topic, b"small", 1)
    assert sub.recv_publish().payload == b"small"


def test_broker_maximum_packet_size(
    make_broker: Callable[..., BrokerThread], peer: Peers, raw: Raws
) -> None:
    bt = make_broker(max_packet_size=100)
    p = peer(bt.port, "p", version=V5).connect()
    assert p.connack_props is not None and p.connack_props.MaximumPacketSize == 100
    c = raw(bt.port, version=5)
    c.connect("big")
    c.send(r.publish("t", b"x" * 200, version=5))
    got = c.until_closed()
    assert [(p.first, p.body[:1]) for p in got] == [(0xE0, b"\x95")]  # Packet too large


def test_subscription_identifiers_unavailable(
    make_broker: Callable[..., BrokerThread], peer: Peers, raw: Raws
) -> None:
    bt = make_broker(subscription_identifier_available=False)
    p = peer(bt.port, "p", version=V5).connect()
    assert p.connack_props is not None
    assert p.connack_props.SubscriptionIdentifierAvailable == 0
    c = raw(bt.port, version=5)
    c.connect("ids")
    c.send(r.subscribe(1, [("t", 0)], version=5, properties=r.prop(r.SUBSCRIPTION_IDENTIFIER, 5)))
    got = c.until_closed()
    assert [(p.first, p.body[:1]) for p in got] == [(0xE0, b"\xa1")]

"""Retained messages: store, replace, delete, QoS, flags, retain handling, expiry
(mosquitto's 04-retain-* area).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import rawmqtt as r
from pahopeer import V5, V311, PacketTypes, Peer, SubscribeOptions, props
from rawmqtt import Raw

from brokerthread import BrokerThread

Peers = Callable[..., Peer]
Raws = Callable[..., Raw]
VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])


@VERSIONS
def test_store_replace_delete(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str, version: int
) -> None:
    port = broker_thread.port
    pub = peer(port, "pub", version=version).connect()
    pub.publish(unique_topic, b"first", 1, retain=True)
    pub.publish(unique_topic, b"second", 1, retain=True)  # replaces [MQTT-3.3.1-5]

    sub = peer(port, "sub1", version=version).connect()
    sub.subscribe(unique_topic, 1)
    (msg,) = sub.wait_messages(1)
    assert (msg.payload, msg.retain, msg.qos) == (b"second", True, 1)
    sub.no_more_messages(1, wait=0.2)

    pub.publish(unique_topic, b"", 1, retain=True)  # deletes [MQTT-3.3.1-6]
    (msg, deletion) = sub.wait_messages(2)
    assert (deletion.payload, deletion.retain) == (b"", False)  # a live delivery, flag cleared
    late = peer(port, "sub2", version=version).connect()
    late.subscribe(unique_topic, 1)
    late.no_more_messages(0)


def test_retained_qos_is_the_lower_of_stored_and_granted(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    pub = peer(port, "pub", version=V311).connect()
    pub.publish(unique_topic + "/2", b"two", 2, retain=True)
    pub.publish(unique_topic + "/0", b"zero", 0, retain=True)
    sub = peer(port, "sub", version=V311).connect()
    sub.subscribe(unique_topic + "/#", 1)
    got = sub.wait_messages(2)
    assert sorted((m.payload, m.qos, m.retain) for m in got) == [
        (b"two", 1, True),
        (b"zero", 0, True),
    ]


def test_retained_matching_wildcards(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    pub = peer(port, "pub", version=V5).connect()
    for leaf in ("a/x", "b/x", "b/y", "c"):
        pub.publish(f"{unique_topic}/{leaf}", leaf.encode(), 1, retain=True)
    sub = peer(port, "sub", version=V5).connect()
    sub.subscribe(f"{unique_topic}/+/x", 1)
    got = sub.wait_messages(2)
    assert sorted(m.payload for m in got) == [b"a/x", b"b/x"]
    sub.no_more_messages(2, wait=0.2)


def test_live_publish_retain_flag_v311(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    sub = peer(port, "sub", version=V311).connect()
    sub.subscribe(unique_topic, 1)
    pub = peer(port, "pub", version=V311).connect()
    pub.publish(unique_topic, b"live", 1, retain=True)
    (msg,) = sub.wait_messages(1)
    assert msg.retain is False  # [MQTT-3.3.1-9]: existing subscribers see retain 0


@pytest.mark.parametrize("rap", [False, True], ids=["rap0", "rap1"])
def test_retain_as_published_v5(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str, rap: bool
) -> None:
    port = broker_thread.port
    sub = peer(port, "sub", version=V5).connect()
    sub.subscribe(unique_topic, options=SubscribeOptions(qos=1, retainAsPublished=rap))
    pub = peer(port, "pub", version=V5).connect()
    pub.publish(unique_topic, b"live", 1, retain=True)
    pub.publish(unique_topic, b"plain", 1)
    got = sub.wait_messages(2)
    assert [(m.payload, m.retain) for m in got] == [(b"live", rap), (b"plain", False)]


def test_retain_handling_v5(broker_thread: BrokerThread, peer: Peers, unique_topic: str) -> None:
    port = broker_thread.port
    pub = peer(port, "pub", version=V5).connect()
    for rh in (0, 1, 2):
        pub.publish(f"{unique_topic}/{rh}", f"rh{rh}".encode(), 1, retain=True)
    sub = peer(port, "sub", version=V5).connect()
    # Subscribe twice with each Retain Handling [MQTT-3.3.1-9..11]:
    # 0 sends at every subscribe, 1 only when the subscription is new, 2 never.
    for _ in range(2):
        for rh in (0, 1, 2):
            opts = SubscribeOptions(qos=1, retainHandling=rh)
            assert sub.subscribe(f"{unique_topic}/{rh}", options=opts) == 1
    got = sub.no_more_messages(3, wait=0.5)
    assert sorted(m.payload for m in got) == [b"rh0", b"rh0", b"rh1"]
    assert all(m.retain for m in got)


def test_retained_message_carries_subscription_identifier(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    pub = peer(port, "pub", version=V5).connect()
    pub.publish(unique_topic, b"kept", 1, retain=True)
    sub = peer(port, "sub", version=V5).connect()
    sub.subscribe(unique_topic, 1, sub_id=77)
    (msg,) = sub.wait_messages(1)
    assert msg.properties.SubscriptionIdentifier == [77]


def test_retained_message_expiry(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    pub = peer(port, "pub", version=V5).connect()
    expiring = props(PacketTypes.PUBLISH, MessageExpiryInterval=1)
    pub.publish(unique_topic + "/short", b"short", 1, retain=True, properties=expiring)
    lasting = props(PacketTypes.PUBLISH, MessageExpiryInterval=60)
    pub.publish(unique_topic + "/long", b"long", 1, retain=True, properties=lasting)
    early = peer(port, "early", version=V5).connect()
    early.subscribe(unique_topic + "/#", 1)
    assert sorted(m.payload for m in early.wait_messages(2)) == [b"long", b"short"]
    time.sleep(1.2)
    late = peer(port, "late", version=V5).connect()
    late.subscribe(unique_topic + "/#", 1)
    (msg,) = late.wait_messages(1)
    assert msg.payload == b"long"  # the expired one is gone [MQTT-3.3.2-5]
    assert msg.properties.MessageExpiryInterval in (58, 59)  # what is left of 60 s
    late.no_more_messages(1, wait=0.2)


def test_broker_publish_retained(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    bt = broker_thread
    assert bt.broker is not None
    assert bt.call(lambda: bt.broker.publish(unique_topic, "from inside", qos=1, retain=True)) == 0
    sub = peer(bt.port, "sub", version=V311).connect()
    sub.subscribe(unique_topic, 2)
    (msg,) = sub.wait_messages(1)
    assert (msg.payload, msg.qos, msg.retain) == (b"from inside", 1, True)


def test_retain_not_available(
    make_broker: Callable[..., BrokerThread], peer: Peers, raw: Raws, unique_topic: str
) -> None:
    bt = make_broker(retain_available=False)
    p = peer(bt.port, "p", version=V5).connect()
    assert p.connack_props is not None and p.connack_props.RetainAvailable == 0
    c = raw(bt.port, version=5)
    c.connect("retainer")
    c.send(r.publish(unique_topic, b"x", qos=1, packet_id=1, retain=True, version=5))
    got = c.until_closed()
    assert [(pkt.first, pkt.body[:1]) for pkt in got] == [(0xE0, b"\x9a")]  # Retain not supported


def test_retained_count_limit(
    make_broker: Callable[..., BrokerThread], peer: Peers, unique_topic: str
) -> None:
    bt = make_broker(retained_messages_max_count=2)
    pub = peer(bt.port, "pub", version=V5).connect()
    for i in range(4):
        pub.publish(f"{unique_topic}/{i}", str(i), 1, retain=True)
    pub.publish(f"{unique_topic}/0", b"replaced", 1, retain=True)  # replacing is always allowed
    sub = peer(bt.port, "sub", version=V5).connect()
    sub.subscribe(unique_topic + "/#", 1)
    got = sub.no_more_messages(2, wait=0.4)
    assert sorted(m.payload for m in got) == [b"1", b"replaced"]

"""Shared subscriptions ``$share/<group>/<filter>``: round robin, groups, redelivery
(MQTT 5 section 4.8.2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import rawmqtt as r
from pahopeer import V5, V311, PacketTypes, Peer, SubscribeOptions, props
from rawmqtt import Raw

from brokerthread import BrokerThread

Peers = Callable[..., Peer]
Raws = Callable[..., Raw]


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_round_robin_across_members(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str, version: int
) -> None:
    port = broker_thread.port
    members = [peer(port, f"m{i}", version=version).connect() for i in range(3)]
    for m in members:
        assert m.subscribe(f"$share/g/{unique_topic}/+", 1) == 1
    plain = peer(port, "plain", version=version).connect()
    plain.subscribe(unique_topic + "/+", 1)
    pub = peer(port, "pub", version=version).connect()
    for i in range(30):
        pub.publish(f"{unique_topic}/x", str(i), 1)
    assert len(plain.wait_messages(30)) == 30  # ordinary subscribers still get everything
    per_member = [m.wait_messages(10) for m in members]
    for m in members:
        m.no_more_messages(10, wait=0.1)
    payloads = sorted(int(msg.payload) for got in per_member for msg in got)
    assert payloads == list(range(30))  # each message to exactly one member, 10 each
    assert all(msg.topic == f"{unique_topic}/x" for got in per_member for msg in got)


def test_each_group_gets_a_copy(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    a = [peer(port, f"a{i}", version=V5).connect() for i in range(2)]
    b = peer(port, "b0", version=V5).connect()
    for m in a:
        m.subscribe(f"$share/a/{unique_topic}", 2)
    b.subscribe(f"$share/b/{unique_topic}", 2)
    pub = peer(port, "pub", version=V5).connect()
    for i in range(4):
        pub.publish(unique_topic, str(i), 2)
    assert sorted(m.payload for m in b.wait_messages(4)) == [b"0", b"1", b"2", b"3"]
    counts = [len(m.wait_messages(2)) for m in a]
    assert counts == [2, 2]


def test_unacked_qos1_redelivered_when_a_member_leaves(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    port = broker_thread.port
    hoarder = raw(port, version=5)  # joins first, receives, never acknowledges
    hoarder.connect("hoarder")
    hoarder.send(r.subscribe(1, [(f"$share/g/{unique_topic}", 1)], version=5))
    assert hoarder.recv() == r.Packet(0x90, b"\x00\x01\x00\x01")
    worker = peer(port, "worker", version=V5).connect()
    worker.subscribe(f"$share/g/{unique_topic}", 1)
    pub = peer(port, "pub", version=V5).connect()
    for i in range(6):
        pub.publish(unique_topic, str(i), 1)
    hoarded = sorted(int(hoarder.recv_publish().payload) for _ in range(3))
    assert hoarded == [0, 2, 4]  # round robin, starting with the first member
    assert sorted(int(m.payload) for m in worker.wait_messages(3)) == [1, 3, 5]
    hoarder.close()
    # The member is gone: its unacknowledged messages move on to another member (4.8.2).
    got = worker.wait_messages(6)
    assert Counter(int(m.payload) for m in got) == Counter(range(6))
    worker.no_more_messages(6, wait=0.2)


def test_offline_member_is_skipped(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    away = peer(port, "away", version=V5).connect(clean_start=False, properties=expiry)
    away.subscribe(f"$share/g/{unique_topic}", 1)
    here = peer(port, "here", version=V5).connect()
    here.subscribe(f"$share/g/{unique_topic}", 1)
    away.disconnect()
    pub = peer(port, "pub", version=V5).connect()
    for i in range(4):
        pub.publish(unique_topic, str(i), 1)
    assert [m.payload for m in here.wait_messages(4)] == [b"0", b"1", b"2", b"3"]
    queued = broker_thread.call(
        lambda: {s.client_id: s.queued for s in broker_thread.broker.list_sessions()}
    )
    assert queued["away"] == 0


def test_no_retained_messages_for_shared_subscriptions(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    pub = peer(port, "pub", version=V5).connect()
    pub.publish(unique_topic, b"kept", 1, retain=True)
    m = peer(port, "m", version=V5).connect()
    m.subscribe(f"$share/g/{unique_topic}", 1)  # retained ones are not sent (4.8.2)
    m.no_more_messages(0, wait=0.3)
    pub.publish(unique_topic, b"live", 1)
    (msg,) = m.wait_messages(1)
    assert (msg.payload, msg.retain) == (b"live", False)


def test_no_local_on_shared_subscription_is_a_protocol_error(
    broker_thread: BrokerThread, raw: Raws, unique_topic: str
) -> None:
    c = raw(broker_thread.port, version=5)
    c.connect("nl")
    c.send(r.subscribe(1, [(f"$share/g/{unique_topic}", 0x04 | 1)], version=5))
    got = c.until_closed()
    assert [(p.first, p.body[:1]) for p in got] == [(0xE0, b"\x82")]  # [MQTT-3.8.3-4]


def test_shared_subscriptions_disabled(
    make_broker: Callable[..., BrokerThread], peer: Peers, unique_topic: str
) -> None:
    bt = make_broker(shared_subscription_available=False)
    m = peer(bt.port, "m", version=V5).connect()
    assert m.connack_props is not None and m.connack_props.SharedSubscriptionAvailable == 0
    assert m.subscribe(f"$share/g/{unique_topic}", 1) == 0x9E
    opts = SubscribeOptions(qos=1)
    assert m.subscribe(unique_topic, options=opts) == 1


def test_member_unsubscribes(broker_thread: BrokerThread, peer: Peers, unique_topic: str) -> None:
    port = broker_thread.port
    leaving = peer(port, "leaving", version=V5).connect()
    staying = peer(port, "staying", version=V311).connect()
    for m in (leaving, staying):
        m.subscribe(f"$share/g/{unique_topic}", 1)
    assert leaving.unsubscribe(f"$share/g/{unique_topic}") == 0
    assert leaving.unsubscribe(f"$share/g/{unique_topic}") == 0x11  # No subscription existed
    pub = peer(port, "pub", version=V5).connect()
    for i in range(4):
        pub.publish(unique_topic, str(i), 1)
    assert [m.payload for m in staying.wait_messages(4)] == [b"0", b"1", b"2", b"3"]
    leaving.no_more_messages(0, wait=0.1)

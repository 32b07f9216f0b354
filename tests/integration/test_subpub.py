"""SUBSCRIBE / PUBLISH: QoS flows both ways, overlapping subscriptions, no local, flow control
(mosquitto's 02-subpub-* area).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import rawmqtt as r
from pahopeer import V5, V311, Peer, SubscribeOptions
from rawmqtt import Raw

from brokerthread import BrokerThread

Peers = Callable[..., Peer]
Raws = Callable[..., Raw]
VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])


@VERSIONS
def test_qos_matrix(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str, version: int
) -> None:
    """Every (published QoS, granted QoS) pair arrives once, at the lower of the two."""
    port = broker_thread.port
    sub = peer(port, "sub", version=version).connect()
    for granted in (0, 1, 2):
        assert sub.subscribe(f"{unique_topic}/{granted}", granted) == granted
    pub = peer(port, "pub", version=version).connect()
    for granted in (0, 1, 2):
        for qos in (0, 1, 2):
            pub.publish(f"{unique_topic}/{granted}", f"{qos}".encode(), qos)
    got = sub.wait_messages(9)
    seen = Counter((m.topic, int(m.payload), m.qos) for m in got)
    expected = Counter((f"{unique_topic}/{g}", q, min(q, g)) for g in (0, 1, 2) for q in (0, 1, 2))
    assert seen == expected
    sub.no_more_messages(9, wait=0.2)


@VERSIONS
def test_message_order_per_qos(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str, version: int
) -> None:
    port = broker_thread.port
    sub = peer(port, "sub", version=version).connect()
    sub.subscribe(unique_topic, 2)
    pub = peer(port, "pub", version=version).connect()
    for qos in (1, 2):
        for i in range(30):
            pub.client.publish(unique_topic, f"{qos}-{i}", qos)
    got = sub.wait_messages(60)
    for qos in (1, 2):
        # [MQTT-4.6.0-6]: messages on one topic at one QoS arrive in the order they were sent.
        assert [m.payload.decode() for m in got if m.qos == qos] == [
            f"{qos}-{i}" for i in range(30)
        ]


def test_qos_downgrade_to_max_qos(
    make_broker: Callable[..., BrokerThread], peer: Peers, unique_topic: str
) -> None:
    bt = make_broker(max_qos=1)
    sub = peer(bt.port, "sub", version=V5).connect()
    assert sub.connack_props is not None and sub.connack_props.MaximumQoS == 1
    assert sub.subscribe(unique_topic, 2) == 1  # granted 1 in SUBACK
    pub = peer(bt.port, "pub", version=V311).connect()
    pub.publish(unique_topic, b"x", 1)
    (msg,) = sub.wait_messages(1)
    assert msg.qos == 1


def test_overlapping_subscriptions_v311_one_delivery_at_max_qos(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    sub = peer(port, "sub", version=V311).connect()
    sub.subscribe(unique_topic + "/#", 0)
    sub.subscribe(unique_topic + "/+", 2)
    sub.subscribe(unique_topic + "/x", 1)
    pub = peer(port, "pub", version=V311).connect()
    pub.publish(unique_topic + "/x", b"once", 2)
    (msg,) = sub.wait_messages(1)
    assert (msg.payload, msg.qos) == (b"once", 2)  # [MQTT-3.3.5-1]
    sub.no_more_messages(1)


def test_overlapping_subscriptions_v5_one_per_subscription(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    sub = peer(port, "sub", version=V5).connect()
    sub.subscribe(unique_topic + "/#", 0, sub_id=11)
    sub.subscribe(unique_topic + "/+", 2, sub_id=22)
    sub.subscribe(unique_topic + "/x", 1)  # no identifier
    pub = peer(port, "pub", version=V5).connect()
    pub.publish(unique_topic + "/x", b"each", 2)
    got = sub.wait_messages(3)
    seen = sorted((m.qos, getattr(m.properties, "SubscriptionIdentifier", None)) for m in got)
    assert seen == [(0, [11]), (1, None), (2, [22])]
    sub.no_more_messages(3)


def test_no_local(broker_thread: BrokerThread, peer: Peers, unique_topic: str) -> None:
    port = broker_thread.port
    a = peer(port, "a", version=V5).connect()
    a.subscribe(unique_topic, options=SubscribeOptions(qos=1, noLocal=True))
    b = peer(port, "b", version=V5).connect()
    b.subscribe(unique_topic, 1)
    a.publish(unique_topic, b"from a", 1)
    (msg,) = b.wait_messages(1)
    assert msg.payload == b"from a"
    b.publish(unique_topic, b"from b", 1)
    (msg,) = a.wait_messages(1)  # [MQTT-3.8.3-3]: never its own message back
    assert msg.payload == b"from b"
    a.no_more_messages(1)


def test_without_no_local_a_client_receives_its_own(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    a = peer(broker_thread.port, "a", version=V5).connect()
    a.subscribe(unique_topic, 1)
    a.publish(unique_topic, b"echo", 1)
    (msg,) = a.wait_messages(1)
    assert msg.payload == b"echo"


@VERSIONS
def test_unsubscribe_stops_delivery(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str, version: int
) -> None:
    port = broker_thread.port
    sub = peer(port, "sub", version=version).connect()
    sub.subscribe(unique_topic, 1)
    sub.subscribe(unique_topic + "/other", 1)
    pub = peer(port, "pub", version=version).connect()
    pub.publish(unique_topic, b"before", 1)
    sub.wait_messages(1)
    code = sub.unsubscribe(unique_topic)
    assert code == 0
    if version == V5:
        assert sub.unsubscribe(unique_topic) == 0x11  # No subscription existed
    pub.publish(unique_topic, b"after", 1)
    pub.publish(unique_topic + "/other", b"still", 1)
    got = sub.wait_messages(2)
    assert [m.payload for m in got] == [b"before", b"still"]
    sub.no_more_messages(2, wait=0.2)


def test_publish_without_subscribers_v5_reports_no_matching(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    pub = peer(broker_thread.port, "pub", version=V5).connect()
    assert pub.publish(unique_topic, b"void", 1) == 0x10  # No matching subscribers
    qos2 = raw(broker_thread.port, version=5)
    qos2.connect("qos2")
    qos2.send(r.publish(unique_topic, b"void", qos=2, packet_id=3, version=5))
    assert qos2.recv() == r.Packet(0x50, b"\x00\x03\x10")  # PUBREC, No matching subscribers


def test_wildcards_do_not_match_dollar_topics(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    sub = peer(port, "sub", version=V5).connect()
    sub.subscribe("#", 0)
    sub.subscribe("+/x", 0)
    pub = peer(port, "pub", version=V5).connect()
    # Clients may not publish to '$' topics; the broker refuses it [MQTT-4.7.2-1].
    assert pub.publish("$private/x", b"no", 1) == 0x87
    pub.publish(unique_topic, b"yes", 1)
    got = sub.wait_messages(1)
    assert [m.topic for m in got] == [unique_topic]
    sub.no_more_messages(1, wait=0.2)


@pytest.mark.parametrize(("version", "refused"), [(4, 0x80), (5, 0x8F)])
def test_invalid_filter_refused_in_suback(
    broker_thread: BrokerThread, raw: Raws, version: int, refused: int
) -> None:
    sub = raw(broker_thread.port, version=version)
    sub.connect("sub")
    sub.send(r.subscribe(5, [("a/#/b", 0), ("a/+", 1)], version=version))
    suback = sub.recv()
    assert suback is not None and suback.first == 0x90
    head = b"\x00\x05" + (b"\x00" if version == 5 else b"")
    assert suback.body == head + bytes((refused, 1))  # Failure / Topic Filter invalid, then 1


def test_inflight_window_limits_unacked_deliveries(
    make_broker: Callable[..., BrokerThread], peer: Peers, raw: Raws, unique_topic: str
) -> None:
    bt = make_broker(max_inflight_messages=2)
    sub = raw(bt.port)
    sub.connect("slow")
    sub.send(r.subscribe(1, [(unique_topic, 1)]))
    assert sub.recv() == r.Packet(0x90, b"\x00\x01\x01")
    pub = peer(bt.port, "pub", version=V311).connect()
    for i in range(5):
        pub.publish(unique_topic, str(i), 1)
    first = [sub.recv_publish(), sub.recv_publish()]
    assert [m.payload for m in first] == [b"0", b"1"]
    assert sub.silent(0.3)  # the window is full until an ack
    sub.send(r.ack(r.PUBACK, first[0].packet_id))
    assert sub.recv_publish().payload == b"2"
    assert sub.silent(0.2)
    sub.send(r.ack(r.PUBACK, first[1].packet_id))
    assert sub.recv_publish().payload == b"3"


def test_qos2_resend_before_pubrel_is_routed_once(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    port = broker_thread.port
    sub = peer(port, "sub", version=V311).connect()
    sub.subscribe(unique_topic, 2)
    pub = raw(port)
    pub.connect("pub")
    pub.send(r.publish(unique_topic, b"exactly once", qos=2, packet_id=7))
    assert pub.recv() == r.Packet(0x50, b"\x00\x07")  # PUBREC
    pub.send(r.publish(unique_topic, b"exactly once", qos=2, packet_id=7, dup=True))
    assert pub.recv() == r.Packet(0x50, b"\x00\x07")
    pub.send(r.ack(r.PUBREL, 7))
    assert pub.recv() == r.Packet(0x70, b"\x00\x07")  # PUBCOMP
    sub.wait_messages(1)
    sub.no_more_messages(1)


def test_qos2_delivery_to_raw_subscriber(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    port = broker_thread.port
    sub = raw(port, version=5)
    sub.connect("raw-sub")
    sub.send(r.subscribe(1, [(unique_topic, 2)], version=5))
    assert sub.recv() == r.Packet(0x90, b"\x00\x01\x00\x02")
    pub = peer(port, "pub", version=V5).connect()
    pub.publish(unique_topic, b"q2", 2)
    msg = sub.recv_publish()
    assert (msg.topic, msg.payload, msg.qos, msg.dup, msg.retain) == (
        unique_topic, b"q2", 2, False, False
    )  # fmt: skip
    sub.send(r.ack(r.PUBREC, msg.packet_id))
    assert sub.recv() == r.Packet(0x62, msg.packet_id.to_bytes(2, "big"))  # PUBREL
    sub.send(r.ack(r.PUBCOMP, msg.packet_id))
    assert sub.silent(0.2)
    assert broker_thread.call(lambda: broker_thread.broker.list_sessions()[0].inflight) == 0


def test_message_size_limit(
    make_broker: Callable[..., BrokerThread], peer: Peers, unique_topic: str
) -> None:
    bt = make_broker(message_size_limit=10)
    sub = peer(bt.port, "sub", version=V5).connect()
    sub.subscribe(unique_topic, 1)
    pub = peer(bt.port, "pub", version=V5).connect()
    assert pub.publish(unique_topic, b"x" * 11, 1) == 0x97  # Quota exceeded
    assert pub.publish(unique_topic, b"x" * 10, 1) == 0
    (msg,) = sub.wait_messages(1)
    assert msg.payload == b"x" * 10
    sub.no_more_messages(1, wait=0.2)


def test_refused_qos2_frees_its_packet_id_v5(
    make_broker: Callable[..., BrokerThread], peer: Peers, raw: Raws, unique_topic: str
) -> None:
    bt = make_broker(message_size_limit=10)
    sub = peer(bt.port, "sub", version=V5).connect()
    sub.subscribe(unique_topic, 2)
    pub = raw(bt.port, version=5)
    pub.connect("pub")
    for refused, code in (
        (r.publish("$x", b"a", qos=2, packet_id=1, version=5), 0x87),
        (r.publish(unique_topic, b"b" * 11, qos=2, packet_id=1, version=5), 0x97),
    ):
        pub.send(refused)
        assert pub.recv() == r.Packet(0x50, b"\x00\x01" + bytes((code,)))
        # A PUBREC >= 0x80 ends the flow (4.3.3): packet id 1 now carries a new message.
        pub.send(r.publish(unique_topic, b"new", qos=2, packet_id=1, version=5))
        assert pub.recv() == r.Packet(0x50, b"\x00\x01")
        pub.send(r.ack(r.PUBREL, 1))
        assert pub.recv() == r.Packet(0x70, b"\x00\x01")
    got = sub.wait_messages(2)
    assert [m.payload for m in got] == [b"new", b"new"]


def test_subscriber_refusing_qos2_with_pubrec_ends_the_flow_v5(
    make_broker: Callable[..., BrokerThread], peer: Peers, raw: Raws, unique_topic: str
) -> None:
    bt = make_broker(max_inflight_messages=1)
    sub = raw(bt.port, version=5)
    sub.connect("picky")
    sub.send(r.subscribe(1, [(unique_topic, 2)], version=5))
    sub.recv()
    pub = peer(bt.port, "pub", version=V5).connect()
    pub.publish(unique_topic, b"unwanted", 2)
    pub.publish(unique_topic, b"wanted", 2)
    first = sub.recv_publish()
    assert first.payload == b"unwanted"
    sub.send(b"\x50\x03" + first.packet_id.to_bytes(2, "big") + b"\x80")  # PUBREC failure
    second = sub.recv_publish()  # no PUBREL for the refused one; the window moved on
    assert second.payload == b"wanted"
    sub.send(r.ack(r.PUBREC, second.packet_id))
    assert sub.recv() == r.Packet(0x62, second.packet_id.to_bytes(2, "big"))


def test_pubrel_for_unknown_packet_id_v5(broker_thread: BrokerThread, raw: Raws) -> None:
    c = raw(broker_thread.port, version=5)
    c.connect("confused")
    c.send(r.ack(r.PUBREL, 9))
    assert c.recv() == r.Packet(0x70, b"\x00\x09\x92")  # Packet Identifier not found

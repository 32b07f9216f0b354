"""Sessions: session present, offline queueing, resend on resume, expiry, takeover
(mosquitto's 03-publish-*-session and 01-connect-takeover areas).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import rawmqtt as r
from pahopeer import V5, V311, PacketTypes, Peer, props
from rawmqtt import Raw

from brokerthread import BrokerThread

Peers = Callable[..., Peer]
Raws = Callable[..., Raw]


def _expiry(seconds: int) -> object:
    return props(PacketTypes.CONNECT, SessionExpiryInterval=seconds)


def test_session_present_v311(broker_thread: BrokerThread, peer: Peers) -> None:
    port = broker_thread.port
    a = peer(port, "keeper", version=V311, clean=False).connect()
    assert a.session_present is False
    a.disconnect()
    b = peer(port, "keeper", version=V311, clean=False).connect()
    assert b.session_present is True
    b.disconnect()
    c = peer(port, "keeper", version=V311, clean=True).connect()
    assert c.session_present is False  # clean session discards it [MQTT-3.2.2-1]
    c.disconnect()
    d = peer(port, "keeper", version=V311, clean=False).connect()
    assert d.session_present is False


def test_session_present_v5(broker_thread: BrokerThread, peer: Peers) -> None:
    port = broker_thread.port
    a = peer(port, "keeper", version=V5).connect(clean_start=False, properties=_expiry(60))
    assert a.session_present is False
    a.disconnect()
    b = peer(port, "keeper", version=V5).connect(clean_start=False, properties=_expiry(60))
    assert b.session_present is True
    b.disconnect()
    c = peer(port, "keeper", version=V5).connect(clean_start=True, properties=_expiry(60))
    assert c.session_present is False  # [MQTT-3.2.2-2]
    c.disconnect()
    # Expiry 0 (the default): the session ends with the connection.
    d = peer(port, "keeper", version=V5).connect(clean_start=False)
    assert d.session_present is True  # c's session, expiry 60
    d.disconnect()
    e = peer(port, "keeper", version=V5).connect(clean_start=False)
    assert e.session_present is False


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_offline_messages_queued_and_delivered_on_reconnect(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str, version: int
) -> None:
    port = broker_thread.port
    connect_kwargs = {} if version == V311 else {"properties": _expiry(60)}
    sub = peer(port, "offline", version=version, clean=False)
    sub.connect(clean_start=False, **connect_kwargs)
    sub.subscribe(unique_topic, 2)
    sub.disconnect()
    pub = peer(port, "pub", version=version).connect()
    pub.publish(unique_topic, b"q0", 0)  # not kept for an offline client by default
    for i in range(5):
        pub.publish(unique_topic, f"q1-{i}", 1)
    pub.publish(unique_topic, b"q2", 2)
    info = broker_thread.call(lambda: broker_thread.broker.list_sessions())
    assert {s.client_id: (s.connected, s.queued) for s in info}["offline"] == (False, 6)

    again = peer(port, "offline", version=version, clean=False)
    again.connect(clean_start=False, **connect_kwargs)
    assert again.session_present is True
    got = again.wait_messages(6)
    assert [(m.payload.decode(), m.qos) for m in got] == [
        *((f"q1-{i}", 1) for i in range(5)),
        ("q2", 2),
    ]
    again.no_more_messages(6, wait=0.2)


def test_offline_qos0_queued_when_configured(
    make_broker: Callable[..., BrokerThread], peer: Peers, unique_topic: str
) -> None:
    bt = make_broker(queue_qos0_messages=True)
    sub = peer(bt.port, "offline", version=V311, clean=False).connect()
    sub.subscribe(unique_topic, 0)
    sub.disconnect()
    pub = peer(bt.port, "pub", version=V311).connect()
    pub.publish(unique_topic, b"kept", 0)
    pub.publish(unique_topic, b"kept too", 1)
    again = peer(bt.port, "offline", version=V311, clean=False).connect()
    got = again.wait_messages(2)
    assert [(m.payload, m.qos) for m in got] == [(b"kept", 0), (b"kept too", 0)]


def test_offline_queue_is_bounded(
    make_broker: Callable[..., BrokerThread], peer: Peers, unique_topic: str
) -> None:
    bt = make_broker(max_queued_messages=3)
    sub = peer(bt.port, "offline", version=V311, clean=False).connect()
    sub.subscribe(unique_topic, 1)
    sub.disconnect()
    pub = peer(bt.port, "pub", version=V311).connect()
    for i in range(6):
        pub.publish(unique_topic, str(i), 1)
    again = peer(bt.port, "offline", version=V311, clean=False).connect()
    got = again.no_more_messages(3, wait=0.5)
    assert [m.payload for m in got] == [b"3", b"4", b"5"]  # the oldest were dropped


def test_unacked_publish_resent_with_dup_on_resume(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    port = broker_thread.port
    sub = raw(port)
    sub.connect("forgetful", clean=False)
    sub.send(r.subscribe(1, [(unique_topic, 1)]))
    assert sub.recv() == r.Packet(0x90, b"\x00\x01\x01")
    pub = peer(port, "pub", version=V311).connect()
    pub.publish(unique_topic, b"ack me", 1)
    first = sub.recv_publish()
    assert (first.payload, first.dup) == (b"ack me", False)
    sub.close()  # without PUBACK

    again = raw(port)
    connack = again.connect("forgetful", clean=False)
    assert connack.body == b"\x01\x00"  # session present
    resent = again.recv_publish()
    # [MQTT-4.4.0-1]: the same packet id, now with DUP set.
    assert (resent.payload, resent.packet_id, resent.dup) == (b"ack me", first.packet_id, True)
    again.send(r.ack(r.PUBACK, resent.packet_id))
    assert again.silent(0.3)


def test_pubrel_resent_on_resume(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    port = broker_thread.port
    sub = raw(port)
    sub.connect("halfway", clean=False)
    sub.send(r.subscribe(1, [(unique_topic, 2)]))
    sub.recv()
    pub = peer(port, "pub", version=V311).connect()
    pub.publish(unique_topic, b"q2", 2)
    msg = sub.recv_publish()
    sub.send(r.ack(r.PUBREC, msg.packet_id))
    assert sub.recv() == r.Packet(0x62, msg.packet_id.to_bytes(2, "big"))
    sub.close()  # without PUBCOMP

    again = raw(port)
    again.connect("halfway", clean=False)
    # [MQTT-4.4.0-1]: after PUBREC the broker resends PUBREL, not the PUBLISH.
    assert again.recv() == r.Packet(0x62, msg.packet_id.to_bytes(2, "big"))
    again.send(r.ack(r.PUBCOMP, msg.packet_id))
    assert again.silent(0.3)


def test_session_expiry(broker_thread: BrokerThread, peer: Peers, unique_topic: str) -> None:
    port = broker_thread.port
    a = peer(port, "brief", version=V5).connect(clean_start=False, properties=_expiry(1))
    a.subscribe(unique_topic, 1)
    a.disconnect()
    count = broker_thread.call(lambda: len(broker_thread.broker.list_sessions()))
    assert count == 1
    time.sleep(1.3)
    assert broker_thread.call(lambda: broker_thread.broker.list_sessions()) == []
    b = peer(port, "brief", version=V5).connect(clean_start=False, properties=_expiry(1))
    assert b.session_present is False
    assert broker_thread.call(lambda: broker_thread.broker.list_subscriptions()) == []


def test_session_expiry_set_at_disconnect_v5(broker_thread: BrokerThread, peer: Peers) -> None:
    port = broker_thread.port
    a = peer(port, "extend", version=V5).connect(clean_start=False, properties=_expiry(60))
    a.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    b = peer(port, "extend", version=V5).connect(clean_start=False)
    assert b.session_present is False  # ended by the DISCONNECT's expiry 0


def test_takeover_v5(broker_thread: BrokerThread, peer: Peers, unique_topic: str) -> None:
    port = broker_thread.port
    old = peer(port, "twin", version=V5).connect()
    new = peer(port, "twin", version=V5).connect()
    assert old.disconnected.wait(5)
    assert old.disconnect_code == 0x8E  # Session taken over [MQTT-3.1.4-3]
    assert new.connected.is_set() and not new.disconnected.is_set()
    new.subscribe(unique_topic, 1)
    new.publish(unique_topic, b"alive", 1)
    assert new.wait_messages(1)[0].payload == b"alive"


def test_takeover_v311_keeps_the_persistent_session(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    old = peer(port, "twin", version=V311, clean=False).connect()
    old.subscribe(unique_topic, 1)
    new = peer(port, "twin", version=V311, clean=False).connect()
    assert old.disconnected.wait(5)
    assert new.session_present is True
    pub = peer(port, "pub", version=V311).connect()
    pub.publish(unique_topic, b"to the new one", 1)
    assert new.wait_messages(1)[0].payload == b"to the new one"
    old.no_more_messages(0, wait=0.1)
    assert broker_thread.call(lambda: broker_thread.broker.list_subscriptions()) == [
        ("twin", unique_topic, 1)
    ]


def test_takeover_with_clean_start_discards_the_session(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    old = peer(port, "twin", version=V5).connect(clean_start=False, properties=_expiry(60))
    old.subscribe(unique_topic, 1)
    new = peer(port, "twin", version=V5).connect(clean_start=True)
    assert old.disconnected.wait(5)
    assert old.disconnect_code == 0x8E
    assert new.session_present is False
    assert broker_thread.call(lambda: broker_thread.broker.list_subscriptions()) == []


def test_disconnect_cannot_make_an_ending_session_persistent_v5(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = peer(broker_thread.port, "watcher", version=V5).connect()
    watcher.subscribe(unique_topic, 1)
    c = raw(broker_thread.port, version=5)
    c.connect("sly", will=r.Will(unique_topic, b"protocol error"))  # session expiry 0
    c.send(r.disconnect(version=5, properties=r.prop(r.SESSION_EXPIRY_INTERVAL, 30)))
    got = c.until_closed()
    assert [(p.first, p.body[:1]) for p in got] == [(0xE0, b"\x82")]  # [MQTT-3.14.2-2]
    (msg,) = watcher.wait_messages(1)  # not a normal disconnect: the will is published
    assert msg.payload == b"protocol error"
    assert [s.client_id for s in broker_thread.call(broker_thread.broker.list_sessions)] == [
        "watcher"
    ]

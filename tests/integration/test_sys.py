"""``$SYS/broker/...`` statistics topics, as Mosquitto publishes them."""

from __future__ import annotations

import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from pahopeer import TIMEOUT, V5, V311, Peer

from brokerthread import BrokerThread

Peers = Callable[..., Peer]


def test_sys_topics_published_and_updated(
    make_broker: Callable[..., BrokerThread], peer: Peers
) -> None:
    bt = make_broker(sys_interval=1)
    sub = peer(bt.port, "sys", version=V311).connect()
    seen: dict[str, list[bytes]] = {}
    updated = threading.Event()

    def on_sys(c: object, u: object, m: mqtt.MQTTMessage) -> None:
        seen.setdefault(m.topic, []).append(m.payload)
        if m.topic == "$SYS/broker/load/connections/1min" and not m.retain:
            updated.set()  # the last topic of a live round

    sub.client.message_callback_add("$SYS/#", on_sys)
    sub.subscribe("$SYS/#", 0)
    # The retained values arrive at once, the next round within a second.
    assert updated.wait(TIMEOUT)
    for topic in (
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/total",
        "$SYS/broker/messages/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/load/connections/1min",
    ):
        assert topic in seen, sorted(seen)
    assert seen["$SYS/broker/version"][0].startswith(b"wrenmq version ")
    assert seen["$SYS/broker/uptime"][-1].endswith(b" seconds")
    assert seen["$SYS/broker/clients/connected"][-1] == b"1"
    assert seen["$SYS/broker/subscriptions/count"][-1] == b"1"


def test_sys_not_matched_by_hash(make_broker: Callable[..., BrokerThread], peer: Peers) -> None:
    bt = make_broker(sys_interval=1)
    sub = peer(bt.port, "all", version=V5).connect()
    sub.subscribe("#", 0)  # [MQTT-4.7.2-1]: '#' does not match topics starting with '$'
    sub.no_more_messages(0, wait=1.3)


def test_sys_disabled_by_default(broker_thread: BrokerThread, peer: Peers) -> None:
    sub = peer(broker_thread.port, "sys", version=V5).connect()
    sub.subscribe("$SYS/#", 0)
    sub.no_more_messages(0, wait=0.3)

"""Will messages: abnormal disconnects, normal DISCONNECT, DISCONNECT 0x04, will delay
(mosquitto's 07-will-* area).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import rawmqtt as r
from pahopeer import V5, V311, PacketTypes, Peer, ReasonCode
from rawmqtt import Raw, Will

from brokerthread import BrokerThread

Peers = Callable[..., Peer]
Raws = Callable[..., Raw]
RAW_VERSIONS = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


def _watcher(bt: BrokerThread, peer: Peers, topic: str) -> Peer:
    w = peer(bt.port, "watcher", version=V5).connect()
    w.subscribe(topic, 2)
    return w


@RAW_VERSIONS
def test_will_on_abnormal_close(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str, version: int
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = raw(broker_thread.port, version=version)
    c.connect("doomed", will=Will(unique_topic, b"gone", qos=1))
    c.close()  # no DISCONNECT
    (msg,) = watcher.wait_messages(1)
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (unique_topic, b"gone", 1, False)


@RAW_VERSIONS
def test_no_will_on_normal_disconnect(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str, version: int
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = raw(broker_thread.port, version=version)
    c.connect("polite", will=Will(unique_topic, b"gone", qos=1))
    c.send(r.disconnect(version=version))
    assert c.until_closed() == []
    watcher.no_more_messages(0, wait=0.5)  # [MQTT-3.1.2-10]


def test_will_on_disconnect_with_will_message_v5(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = peer(broker_thread.port, "asks-for-will", version=V5)
    c.client.will_set(unique_topic, b"as requested", qos=2)
    c.connect()
    c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    (msg,) = watcher.wait_messages(1)
    assert (msg.payload, msg.qos) == (b"as requested", 2)


def test_paho_will_on_abnormal_close_v311(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = peer(broker_thread.port, "paho-doomed", version=V311)
    c.client.will_set(unique_topic, b"paho gone", qos=1, retain=True)
    c.connect()
    c.client.loop_stop()  # stop paho's thread first, then drop the socket under it
    sock = c.client.socket()
    assert sock is not None
    sock.close()
    (msg,) = watcher.wait_messages(1)
    assert msg.payload == b"paho gone"
    late = peer(broker_thread.port, "late", version=V311).connect()
    late.subscribe(unique_topic, 1)
    (kept,) = late.wait_messages(1)
    assert (kept.payload, kept.retain) == (b"paho gone", True)  # a retained will is stored


def test_will_on_protocol_error(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = raw(broker_thread.port, version=5)
    c.connect("clumsy", will=Will(unique_topic, b"broke the rules"))
    c.send(b"\x80\x00")  # SUBSCRIBE with reserved flags 0000: malformed
    got = c.until_closed()
    assert [p.first for p in got] == [0xE0]
    (msg,) = watcher.wait_messages(1)
    assert msg.payload == b"broke the rules"


def test_will_on_keepalive_timeout(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = raw(broker_thread.port)
    c.connect("sleepy", keepalive=1, will=Will(unique_topic, b"timed out"))
    (msg,) = watcher.wait_messages(1, timeout=3.5)
    assert msg.payload == b"timed out"


def test_will_on_takeover(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    old = raw(broker_thread.port)
    old.connect("twin", will=Will(unique_topic, b"replaced"))
    new = raw(broker_thread.port)
    new.connect("twin")
    assert old.until_closed() == []
    (msg,) = watcher.wait_messages(1)
    assert msg.payload == b"replaced"


def test_will_properties_v5(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = raw(broker_thread.port, version=5)
    will_props = r.prop(0x03, "text/plain") + _user("k", "v")
    c.connect("props", will=Will(unique_topic, b"bye", props=will_props))
    c.close()
    (msg,) = watcher.wait_messages(1)
    assert msg.properties.ContentType == "text/plain"
    assert msg.properties.UserProperty == [("k", "v")]


def _user(key: str, value: str) -> bytes:
    return b"\x26" + r.string(key) + r.string(value)


def _will_client(raw: Raws, port: int, topic: str, *, delay: int, expiry: int) -> Raw:
    c = raw(port, version=5)
    c.connect(
        "delayed",
        clean=False,
        properties=r.prop(r.SESSION_EXPIRY_INTERVAL, expiry),
        will=Will(topic, b"late will", props=r.prop(r.WILL_DELAY_INTERVAL, delay)),
    )
    return c


def test_will_delay_interval(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = _will_client(raw, broker_thread.port, unique_topic, delay=1, expiry=60)
    c.close()
    start = time.monotonic()
    watcher.no_more_messages(0, wait=0.6)  # [MQTT-3.1.3-9]: not before the delay
    (msg,) = watcher.wait_messages(1, timeout=2)
    assert 0.9 < time.monotonic() - start < 2.0
    assert msg.payload == b"late will"
    assert not hasattr(msg.properties, "WillDelayInterval")  # not a PUBLISH property


def test_will_delay_cancelled_by_reconnect(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = _will_client(raw, broker_thread.port, unique_topic, delay=1, expiry=60)
    c.close()
    time.sleep(0.3)
    again = raw(broker_thread.port, version=5)
    connack = again.connect(
        "delayed", clean=False, properties=r.prop(r.SESSION_EXPIRY_INTERVAL, 60)
    )
    assert connack.body[:2] == b"\x01\x00"
    watcher.no_more_messages(0, wait=1.2)


def test_will_delay_capped_by_session_expiry(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = _will_client(raw, broker_thread.port, unique_topic, delay=30, expiry=1)
    c.close()
    start = time.monotonic()
    (msg,) = watcher.wait_messages(1, timeout=2.5)  # the session ends first [MQTT-3.1.2-8]
    assert 0.8 < time.monotonic() - start < 2.0
    assert msg.payload == b"late will"


def test_will_delay_with_session_expiry_zero_is_immediate(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = _will_client(raw, broker_thread.port, unique_topic, delay=30, expiry=0)
    c.close()
    (msg,) = watcher.wait_messages(1, timeout=1)
    assert msg.payload == b"late will"


def test_admin_disconnect_sends_the_will(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    watcher = _watcher(broker_thread, peer, unique_topic)
    c = raw(broker_thread.port, version=5)
    c.connect("kicked", will=Will(unique_topic, b"kicked out"))
    bt = broker_thread
    assert bt.call(lambda: bt.broker.disconnect_client("kicked")) is True
    got = c.until_closed()
    assert [(p.first, p.body[:1]) for p in got] == [(0xE0, b"\x98")]  # Administrative action
    (msg,) = watcher.wait_messages(1)
    assert msg.payload == b"kicked out"

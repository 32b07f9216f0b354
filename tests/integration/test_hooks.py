"""The embedding API with real clients: interceptors, observers, and the broker's public methods.

Hooks run on the broker's loop thread: they are registered there with ``BrokerThread.call`` and
hand what they see to the test through thread-safe lists and events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest
import rawmqtt as r
from pahopeer import TIMEOUT, V5, V311, Peer, wait_until
from rawmqtt import Raw

from brokerthread import BrokerThread
from wrenmq.broker.hooks import (
    ClientConnected,
    ClientConnecting,
    ClientDisconnected,
    ClientSubscribed,
    ClientSubscribing,
    ClientUnsubscribed,
    MessageDelivered,
    MessageDropped,
    MessagePublished,
    PublishingMessage,
    Verdict,
)
from wrenmq.codec.reason_codes import ReasonCode

Peers = Callable[..., Peer]
Raws = Callable[..., Raw]


class Recorder:
    """Collects hook payloads from the loop thread."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, payload: Any) -> None:
        with self._cond:
            self.events.append(payload)
            self._cond.notify_all()

    def wait_for(self, kind: type, n: int = 1) -> list[Any]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: sum(isinstance(e, kind) for e in self.events) >= n, TIMEOUT
            )
            assert ok, f"no {kind.__name__} in {self.events}"
            return [e for e in self.events if isinstance(e, kind)]


def _broker(bt: BrokerThread) -> Any:
    assert bt.broker is not None
    return bt.broker


def test_connecting_interceptor(broker_thread: BrokerThread, peer: Peers, raw: Raws) -> None:
    seen = Recorder()

    def gatekeeper(c: ClientConnecting) -> object:
        seen(c)
        if c.client_id == "banned":
            return ReasonCode.BANNED
        if c.client_id.startswith("bad"):
            return Verdict.DENY
        return Verdict.DEFER

    broker_thread.call(
        _broker(broker_thread).hooks.add_interceptor, "client_connecting", gatekeeper
    )
    port = broker_thread.port
    peer(port, "banned", version=V5).connect(expect=0x8A)
    peer(port, "bad5", version=V5).connect(expect=0x87)
    c = raw(port)
    assert c.connect("bad3").body == b"\x00\x05"  # 3.1.1: not authorized
    ok = peer(port, "good", version=V311).connect(keepalive=30)
    assert ok.connack_code == 0
    (last,) = [e for e in seen.events if e.client_id == "good"]
    assert (last.protocol_level, last.clean_start, last.keepalive) == (4, True, 30)


def test_failing_interceptor_denies(broker_thread: BrokerThread, peer: Peers) -> None:
    def broken(c: ClientConnecting) -> None:
        raise RuntimeError("boom")

    bt = broker_thread
    bt.call(_broker(bt).hooks.add_interceptor, "client_connecting", broken)
    peer(bt.port, "x", version=V5).connect(expect=0x87)
    assert bt.call(lambda: _broker(bt).hooks.errors) == 1


def test_publishing_interceptor_rewrites_and_denies(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    bt = broker_thread

    def register() -> None:
        @_broker(bt).intercept("message_publishing")
        def censor(m: PublishingMessage) -> object:
            if m.payload == b"secret":
                return Verdict.DENY
            if m.topic.endswith("/in"):
                return dataclasses.replace(
                    m, topic=m.topic[:-3] + "/out", payload=m.payload.upper(), qos=0
                )
            return None

    bt.call(register)
    sub = peer(bt.port, "sub", version=V5).connect()
    sub.subscribe(unique_topic + "/#", 2)
    pub = peer(bt.port, "pub", version=V5).connect()
    assert pub.publish(unique_topic + "/x", b"secret", 1) == 0x87  # Not authorized
    assert pub.publish(unique_topic + "/in", b"shout", 2) == 0
    pub.publish(unique_topic + "/x", b"plain", 1)
    got = sub.wait_messages(2)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        (unique_topic + "/out", b"SHOUT", 0),
        (unique_topic + "/x", b"plain", 1),
    ]


@pytest.mark.parametrize(("version", "denied"), [(V311, 0x80), (V5, 0x87)], ids=["v311", "v5"])
def test_subscribing_interceptor(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str, version: int, denied: int
) -> None:
    bt = broker_thread

    def acl(s: ClientSubscribing) -> object:
        if "forbidden" in s.topic_filter:
            return Verdict.DENY
        if "cheap" in s.topic_filter:
            return 0
        return None

    bt.call(_broker(bt).hooks.add_interceptor, "client_subscribing", acl)
    sub = peer(bt.port, "sub", version=version).connect()
    assert sub.subscribe(unique_topic + "/forbidden", 2) == denied
    assert sub.subscribe(unique_topic + "/cheap", 2) == 0
    assert sub.subscribe(unique_topic + "/fine", 2) == 2
    assert bt.call(_broker(bt).list_subscriptions) == [
        ("sub", unique_topic + "/cheap", 0),
        ("sub", unique_topic + "/fine", 2),
    ]


def test_observers_see_a_client_lifecycle(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    bt = broker_thread
    rec = Recorder()

    def register() -> None:
        for event in (
            "client_connected",
            "client_subscribed",
            "message_published",
            "message_delivered",
            "client_unsubscribed",
            "client_disconnected",
        ):
            _broker(bt).on(event)(rec)

    bt.call(register)
    c = peer(bt.port, "obs", version=V5).connect()
    c.subscribe(unique_topic, 1)
    c.publish(unique_topic, b"to myself", 1)
    c.wait_messages(1)
    rec.wait_for(MessageDelivered)
    c.unsubscribe(unique_topic)
    c.disconnect()
    rec.wait_for(ClientDisconnected)
    kinds = [(type(e).__name__, e.client_id) for e in rec.events]
    assert kinds == [
        ("ClientConnected", "obs"),
        ("ClientSubscribed", "obs"),
        ("MessagePublished", "obs"),
        ("MessageDelivered", "obs"),
        ("ClientUnsubscribed", "obs"),
        ("ClientDisconnected", "obs"),
    ]
    connected, subscribed, published, _, unsubscribed, _ = rec.events
    assert connected == ClientConnected("obs", connected.peer, 5, False)
    assert subscribed == ClientSubscribed("obs", unique_topic, 1)
    assert published == MessagePublished("obs", unique_topic, 1, False, 1)
    assert unsubscribed == ClientUnsubscribed("obs", unique_topic)


def test_async_and_failing_observers(broker_thread: BrokerThread, peer: Peers) -> None:
    bt = broker_thread
    rec = Recorder()

    async def slow(e: ClientConnected) -> None:
        await asyncio.sleep(0.01)
        rec(e)

    def broken(e: ClientConnected) -> None:
        raise RuntimeError("observer bug")

    def register() -> None:
        _broker(bt).hooks.add_observer("client_connected", broken)
        _broker(bt).hooks.add_observer("client_connected", slow)

    bt.call(register)
    peer(bt.port, "watched", version=V311).connect()
    (e,) = rec.wait_for(ClientConnected)
    assert e.client_id == "watched"
    assert bt.call(lambda: _broker(bt).hooks.errors) == 1  # counted, and the next one still ran


def test_message_dropped_observer(
    make_broker: Callable[..., BrokerThread], peer: Peers, unique_topic: str
) -> None:
    bt = make_broker(max_queued_messages=1)
    rec = Recorder()
    bt.call(_broker(bt).hooks.add_observer, "message_dropped", rec)
    sub = peer(bt.port, "away", version=V311, clean=False).connect()
    sub.subscribe(unique_topic, 1)
    sub.disconnect()
    pub = peer(bt.port, "pub", version=V311).connect()
    pub.publish(unique_topic, b"1", 1)
    pub.publish(unique_topic, b"2", 1)
    (e,) = rec.wait_for(MessageDropped)
    assert e == MessageDropped("away", unique_topic, "queue full")


def test_list_sessions_and_subscriptions(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    bt = broker_thread
    on = peer(bt.port, "online", version=V5).connect()
    on.subscribe(unique_topic + "/a", 2)
    off = peer(bt.port, "offline", version=V311, clean=False).connect()
    off.subscribe(unique_topic + "/b", 1)
    off.disconnect()
    wait_until(lambda: bt.call(lambda: _broker(bt).connected_count) == 1)
    sessions = {s.client_id: s for s in bt.call(_broker(bt).list_sessions)}
    assert set(sessions) == {"online", "offline"}
    assert sessions["online"].connected and sessions["online"].protocol_level == 5
    assert sessions["online"].subscriptions == {unique_topic + "/a": 2}
    assert sessions["online"].peer is not None
    assert not sessions["offline"].connected and sessions["offline"].peer is None
    assert sessions["offline"].subscriptions == {unique_topic + "/b": 1}
    assert sorted(bt.call(_broker(bt).list_subscriptions)) == [
        ("offline", unique_topic + "/b", 1),
        ("online", unique_topic + "/a", 2),
    ]


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_disconnect_client(broker_thread: BrokerThread, peer: Peers, version: int) -> None:
    bt = broker_thread
    c = peer(bt.port, "victim", version=version).connect()
    assert bt.call(_broker(bt).disconnect_client, "nobody") is False
    assert bt.call(_broker(bt).disconnect_client, "victim") is True
    assert c.disconnected.wait(TIMEOUT)
    if version == V5:
        assert c.disconnect_code == 0x98  # Administrative action
    wait_until(lambda: bt.call(lambda: _broker(bt).connected_count) == 0)
    assert bt.call(_broker(bt).disconnect_client, "victim") is False


def test_broker_publish(
    broker_thread: BrokerThread, peer: Peers, raw: Raws, unique_topic: str
) -> None:
    bt = broker_thread
    v5 = peer(bt.port, "v5", version=V5).connect()
    v5.subscribe(unique_topic, 2)
    v3 = raw(bt.port)
    v3.connect("v3")
    v3.send(r.subscribe(1, [(unique_topic, 1)]))
    v3.recv()
    count = bt.call(lambda: _broker(bt).publish(unique_topic, "inside", qos=2))
    assert count == 2
    (msg,) = v5.wait_messages(1)
    assert (msg.payload, msg.qos) == (b"inside", 2)
    raw_msg = v3.recv_publish()
    assert (raw_msg.payload, raw_msg.qos) == (b"inside", 1)
    with pytest.raises(ValueError):
        bt.call(lambda: _broker(bt).publish(unique_topic, b"", qos=3))


def test_disconnected_observer_reason_on_takeover(broker_thread: BrokerThread, peer: Peers) -> None:
    bt = broker_thread
    rec = Recorder()
    bt.call(_broker(bt).hooks.add_observer, "client_disconnected", rec)
    old = peer(bt.port, "twin", version=V5).connect()
    peer(bt.port, "twin", version=V5).connect()
    assert old.disconnected.wait(TIMEOUT)
    (e,) = rec.wait_for(ClientDisconnected)
    assert (e.client_id, e.reason) == ("twin", "session taken over")


def test_connected_observer_session_present(broker_thread: BrokerThread, peer: Peers) -> None:
    bt = broker_thread
    rec = Recorder()
    bt.call(_broker(bt).hooks.add_observer, "client_connected", rec)
    port = bt.port
    first = peer(port, "durable", version=V311, clean=False).connect()
    first.disconnect()
    second = peer(port, "durable", version=V311, clean=False).connect()  # no subscriptions
    assert second.session_present is True
    events = rec.wait_for(ClientConnected, 2)
    assert [e.session_present for e in events] == [False, True]  # as in the CONNACKs

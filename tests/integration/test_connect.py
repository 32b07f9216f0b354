"""CONNECT / CONNACK, keep alive, connect timeout, refusals (mosquitto's 01-connect-* area)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
import rawmqtt as r
from pahopeer import V5, V311, PacketTypes, Peer, props
from rawmqtt import Raw

from brokerthread import BrokerThread

Peers = Callable[..., Peer]
Raws = Callable[..., Raw]


def test_connack_v311_wire_bytes(broker_thread: BrokerThread, raw: Raws) -> None:
    c = raw(broker_thread.port)
    connack = c.connect("c311")
    assert (connack.first, connack.body) == (0x20, b"\x00\x00")  # session present 0, accepted


def test_connack_v5_announces_limits(broker_thread: BrokerThread, raw: Raws) -> None:
    c = raw(broker_thread.port, version=5)
    connack = c.connect("c5")
    assert connack.body[:2] == b"\x00\x00"
    properties, rest = r.parse_props(connack.body[2:])
    assert rest == b""
    found = dict(properties)
    assert found[r.TOPIC_ALIAS_MAXIMUM] == 10
    assert found[r.RECEIVE_MAXIMUM] == 20


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_fresh_session_not_present(broker_thread: BrokerThread, peer: Peers, version: int) -> None:
    p = peer(broker_thread.port, "fresh", version=version).connect()
    assert p.session_present is False


def test_empty_client_id_is_assigned_v5(broker_thread: BrokerThread, peer: Peers) -> None:
    p = peer(broker_thread.port, "", version=V5).connect()
    assert p.connack_props is not None
    assigned = p.connack_props.AssignedClientIdentifier
    assert assigned
    ids = broker_thread.call(lambda: [s.client_id for s in broker_thread.broker.list_sessions()])
    assert ids == [assigned]


def test_empty_client_id_with_persistent_session_refused_v311(
    broker_thread: BrokerThread, raw: Raws
) -> None:
    c = raw(broker_thread.port)
    connack = c.connect("", clean=False)
    assert connack.body == b"\x00\x02"  # identifier rejected [MQTT-3.1.3-8]
    assert c.until_closed() == []


def test_server_keep_alive_caps_keepalive_v5(
    make_broker: Callable[..., BrokerThread], peer: Peers
) -> None:
    bt = make_broker(max_keepalive=10)
    p = peer(bt.port, "ka", version=V5).connect(keepalive=60)
    assert p.connack_props is not None
    assert p.connack_props.ServerKeepAlive == 10


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_keepalive_timeout(broker_thread: BrokerThread, raw: Raws, version: int) -> None:
    c = raw(broker_thread.port, version=version)
    c.connect("silent", keepalive=1)
    start = time.monotonic()
    sent = c.until_closed(timeout=4)
    elapsed = time.monotonic() - start
    # [MQTT-3.1.2-22]: closed after 1.5 x keep alive without a packet; the sweep runs once a second.
    assert 1.4 < elapsed < 2.8, elapsed
    if version == 5:
        assert [(p.first, p.body[:1]) for p in sent] == [(0xE0, b"\x8d")]  # Keep Alive timeout
    else:
        assert sent == []


def test_pingreq_keeps_the_connection_alive(broker_thread: BrokerThread, raw: Raws) -> None:
    c = raw(broker_thread.port)
    c.connect("pinger", keepalive=1)
    for _ in range(5):  # 2.5 s: well past 1.5 x keep alive
        time.sleep(0.5)
        c.send(r.PINGREQ)
        pong = c.recv()
        assert pong is not None and (pong.first, pong.body) == (0xD0, b"")


def test_connect_timeout(make_broker: Callable[..., BrokerThread]) -> None:
    bt = make_broker(connect_timeout=0.5)
    with socket.create_connection(("127.0.0.1", bt.port), timeout=3) as s:
        start = time.monotonic()
        assert s.recv(10) == b""  # closed without a word
        assert time.monotonic() - start < 2.0


def test_connect_timeout_spares_connected_clients(
    make_broker: Callable[..., BrokerThread], raw: Raws
) -> None:
    bt = make_broker(connect_timeout=0.5)
    c = raw(bt.port)
    c.connect("prompt")
    assert c.silent(1.6)


@pytest.mark.parametrize(("version", "refusal"), [(4, b"\x00\x05"), (5, b"\x00\x87")])
def test_anonymous_refused(
    make_broker: Callable[..., BrokerThread], raw: Raws, version: int, refusal: bytes
) -> None:
    bt = make_broker(allow_anonymous=False)
    c = raw(bt.port, version=version)
    connack = c.connect("anon")
    assert connack.body[:2] == refusal  # not authorized
    assert c.until_closed() == []


def test_unsupported_protocol_level(broker_thread: BrokerThread, raw: Raws) -> None:
    c = raw(broker_thread.port)
    c.send(r.connect("v6", version=6))
    got = c.until_closed()
    assert [(p.first, p.body) for p in got] == [(0x20, b"\x00\x01")]  # unacceptable version


def test_second_connect_is_a_protocol_error_v5(broker_thread: BrokerThread, raw: Raws) -> None:
    c = raw(broker_thread.port, version=5)
    c.connect("twice")
    c.send(r.connect("twice", version=5))
    got = c.until_closed()
    assert [(p.first, p.body[:1]) for p in got] == [(0xE0, b"\x82")]  # Protocol Error


def test_max_connections(make_broker: Callable[..., BrokerThread], peer: Peers) -> None:
    bt = make_broker(max_connections=1)
    peer(bt.port, "first", version=V5).connect()
    peer(bt.port, "second", version=V5).connect(expect=0x97)  # Quota exceeded


def test_request_response_information_v5(broker_thread: BrokerThread, peer: Peers) -> None:
    p = peer(broker_thread.port, "rri", version=V5)
    p.connect(properties=props(PacketTypes.CONNECT, RequestResponseInformation=1))
    assert p.connack_props is not None
    assert p.connack_props.ResponseInformation

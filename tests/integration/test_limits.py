"""Limits against bad and hostile clients, over real sockets: per-address connection count and
rate, per-client message and byte rates (throttle or disconnect), topic levels.

Per-address independence uses other loopback source addresses (127.0.0.2, ...), which Linux
routes to the broker on 127.0.0.1 like 127.0.0.1 itself.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import rawmqtt as r
from rawmqtt import Raw

from brokerthread import BrokerThread

Brokers = Callable[..., BrokerThread]
Raws = Callable[..., Raw]
Warnings = Callable[[], list[str]]


@pytest.fixture
def broker_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[Warnings]:
    """This test expects the broker to log WARNINGs about misbehaving peers; read them."""
    caplog.set_level(logging.INFO, logger="wrenmq.broker")

    def warnings() -> list[str]:
        return [
            rec.getMessage()
            for rec in caplog.get_records("call")
            if rec.name == "wrenmq.broker" and rec.levelno == logging.WARNING
        ]

    yield warnings
    assert warnings(), "expected the broker to log a WARNING about the misbehaving peer"


def refused(c: Raw) -> bool:
    """True if the broker closes ``c`` without a word (it never sent CONNECT)."""
    return c.recv(timeout=3) is None


def stats(bt: BrokerThread, name: str) -> int:
    return int(bt.call(lambda: getattr(bt.broker.stats, name)))


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# Per source address: open connections


def test_max_connections_per_ip(make_broker: Brokers, raw: Raws, broker_warnings: Warnings) -> None:
    bt = make_broker(max_connections_per_ip=2)
    a1, a2 = raw(bt.port), raw(bt.port)
    a1.connect("a1")
    a2.connect("a2")
    assert refused(raw(bt.port))  # a third socket from 127.0.0.1, closed on accept
    assert refused(raw(bt.port))
    # Another address has its own count.
    b1, b2 = raw(bt.port, source="127.0.0.2"), raw(bt.port, source="127.0.0.2")
    b1.connect("b1")
    b2.connect("b2")
    assert refused(raw(bt.port, source="127.0.0.2"))
    # The sockets that were admitted are unaffected.
    for c in (a1, a2, b1, b2):
        c.send(r.PINGREQ)
        pong = c.recv()
        assert pong is not None and pong.type == r.PINGRESP
    # A slot comes back when a connection closes.
    a1.send(r.disconnect())
    a1.close()
    wait_until(lambda: bt.call(lambda: bt.broker.ip_limits.open_connections("127.0.0.1")) == 1)
    raw(bt.port).connect("a3")
    assert stats(bt, "connections_refused") == 3
    # One WARNING per address per minute, however many refusals.
    logged = [w for w in broker_warnings() if w.startswith("refusing connections from")]
    assert len(logged) == 2, logged
    assert "127.0.0.1" in logged[0] and "127.0.0.2" in logged[1]


def test_max_connections_per_ip_counts_sockets_before_connect(
    make_broker: Brokers, broker_warnings: Warnings
) -> None:
    """Idle sockets that never send CONNECT use up the address's slots (slowloris)."""
    bt = make_broker(max_connections_per_ip=3, connect_timeout=0.5)
    idle = [Raw(bt.port) for _ in range(3)]
    try:
        late = Raw(bt.port)
        assert refused(late)
        late.close()
        for c in idle:  # connect_timeout closes the idle ones, which frees the slots
            assert c.recv(timeout=3) is None
        wait_until(lambda: bt.call(lambda: bt.broker.ip_limits.open_connections("127.0.0.1")) == 0)
        ok = Raw(bt.port)
        ok.connect("ok")
        ok.close()
    finally:
        for c in idle:
            c.close()


# ---------------------------------------------------------------------------------------------
# Per source address: connection rate


def test_connection_rate_per_ip(make_broker: Brokers, raw: Raws, broker_warnings: Warnings) -> None:
    bt = make_broker(connection_rate_per_ip=1)  # burst max(1, rate) = 1
    first = raw(bt.port)
    first.connect("first")
    first.close()
    start = time.monotonic()
    assert refused(raw(bt.port))  # closed before CONNECT, even though the slot is free
    assert refused(raw(bt.port))
    # Other addresses have their own buckets.
    raw(bt.port, source="127.0.0.2").connect("other")
    raw(bt.port, source="127.0.0.3").connect("third")
    time.sleep(max(0.0, 1.1 - (time.monotonic() - start)))
    raw(bt.port).connect("later")  # one token a second
    assert stats(bt, "connections_refused") == 2
    logged = [w for w in broker_warnings() if "connection_rate_per_ip" in w]
    assert len(logged) == 1, logged


# ---------------------------------------------------------------------------------------------
# Per client: message rate


def _subscriber(raw: Raws, port: int, topic_filter: str) -> Raw:
    sub = raw(port)
    sub.connect(f"sub-{time.monotonic_ns()}")
    sub.send(r.subscribe(1, [(topic_filter, 0)]))
    suback = sub.recv()
    assert suback is not None and suback.type == r.SUBACK
    return sub


def test_message_rate_throttles_the_publisher(
    make_broker: Brokers, raw: Raws, unique_topic: str
) -> None:
    rate, n = 50, 150
    bt = make_broker(message_rate_limit=rate)
    sub = _subscriber(raw, bt.port, unique_topic + "/#")
    flood = raw(bt.port)
    flood.connect("flood")
    other = raw(bt.port)
    other.connect("other")
    start = time.monotonic()
    flood.send(*(r.publish(f"{unique_topic}/f", b"%d" % i) for i in range(n)))
    time.sleep(0.3)
    # Throttling holds only the flooding client: another client's message goes straight through.
    other.send(r.publish(f"{unique_topic}/o", b"other"))
    got: list[bytes] = []
    other_at = None
    while len(got) < n:
        msg = sub.recv_publish(timeout=5)
        if msg.topic.endswith("/o"):
            other_at = time.monotonic() - start
        else:
            got.append(msg.payload)
    elapsed = time.monotonic() - start
    assert got == [b"%d" % i for i in range(n)]  # nothing lost, in order
    # The first second's worth (the burst) passes at once, the rest at `rate` a second.
    assert (n - rate) / rate * 0.95 <= elapsed <= n / rate + 1.5, elapsed
    assert other_at is not None and other_at < 1.0, other_at
    assert stats(bt, "rate_limited") >= n - rate - 2
    # Throttled, not punished: the publisher is still connected.
    flood.send(r.PINGREQ)
    pong = flood.recv()
    assert pong is not None and pong.type == r.PINGRESP


def test_throttling_is_not_a_keep_alive_timeout(
    make_broker: Brokers, raw: Raws, unique_topic: str
) -> None:
    bt = make_broker(message_rate_limit=2)
    sub = _subscriber(raw, bt.port, unique_topic)
    pub = raw(bt.port)
    pub.connect("slow", keepalive=1)  # the throttle (3 s) lasts longer than 1.5 x keep alive
    pub.send(*(r.publish(unique_topic, b"%d" % i, qos=1, packet_id=i + 1) for i in range(8)))
    acks = [pub.recv(timeout=6) for _ in range(8)]
    assert [(a.type, a.body[:2]) for a in acks if a is not None] == [
        (r.PUBACK, (i + 1).to_bytes(2, "big")) for i in range(8)
    ]
    assert [sub.recv_publish().payload for _ in range(8)] == [b"%d" % i for i in range(8)]
    pub.send(r.PINGREQ)
    pong = pub.recv()
    assert pong is not None and pong.type == r.PINGRESP


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_message_rate_disconnect(
    make_broker: Brokers, raw: Raws, unique_topic: str, broker_warnings: Warnings, version: int
) -> None:
    bt = make_broker(message_rate_limit=5, rate_limit_action="disconnect")
    sub = _subscriber(raw, bt.port, unique_topic)
    pub = raw(bt.port, version=version)
    pub.connect("greedy")
    pub.send(*(r.publish(unique_topic, b"x", version=version) for _ in range(20)))
    sent = pub.until_closed()
    if version == 5:
        assert [(p.type, p.body[:1]) for p in sent] == [(r.DISCONNECT, b"\x96")]
    else:
        assert sent == []  # 3.1.1 has no DISCONNECT from the server: just closed
    delivered = 0
    try:
        while True:
            sub.recv_publish(timeout=0.5)
            delivered += 1
    except TimeoutError:
        pass
    assert 5 <= delivered <= 6  # the burst; then the connection was closed
    assert any("message rate" in w for w in broker_warnings())


# ---------------------------------------------------------------------------------------------
# Per client: byte rate


def test_byte_rate_throttles_the_publisher(
    make_broker: Brokers, raw: Raws, unique_topic: str
) -> None:
    rate = 20_000
    bt = make_broker(byte_rate_limit=rate)
    sub = _subscriber(raw, bt.port, unique_topic)
    pub = raw(bt.port)
    pub.connect("bulky")
    packets = [r.publish(unique_topic, bytes([i]) * 1000) for i in range(50)]
    total = sum(map(len, packets))
    start = time.monotonic()
    pub.send(*packets)
    got = [sub.recv_publish(timeout=6).payload for _ in range(50)]
    elapsed = time.monotonic() - start
    assert got == [bytes([i]) * 1000 for i in range(50)]
    assert (total - rate) / rate * 0.9 <= elapsed <= total / rate + 1.5, elapsed
    pub.send(r.PINGREQ)
    pong = pub.recv()
    assert pong is not None and pong.type == r.PINGRESP


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_byte_rate_disconnect(
    make_broker: Brokers, raw: Raws, broker_warnings: Warnings, version: int
) -> None:
    bt = make_broker(byte_rate_limit=1000, rate_limit_action="disconnect")
    pub = raw(bt.port, version=version)
    pub.connect("bulky")
    pub.send(r.publish("big", b"x" * 2000, version=version))
    sent = pub.until_closed()
    if version == 5:
        assert [(p.type, p.body[:1]) for p in sent] == [(r.DISCONNECT, b"\x97")]  # Quota exceeded
    else:
        assert sent == []
    assert any("byte rate" in w for w in broker_warnings())


# ---------------------------------------------------------------------------------------------
# Topic levels


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_max_topic_levels_for_topic_names(make_broker: Brokers, raw: Raws, version: int) -> None:
    bt = make_broker(max_topic_levels=3)
    sub = _subscriber(raw, bt.port, "#")
    pub = raw(bt.port, version=version)
    pub.connect("deep")
    pub.send(r.publish("a/b/c/d", b"deep", qos=1, packet_id=1, version=version))
    ack = pub.recv()
    assert ack is not None and ack.type == r.PUBACK
    if version == 5:
        assert ack.body == b"\x00\x01\x90"  # Topic Name invalid
    else:
        assert ack.body == b"\x00\x01"  # 3.1.1 cannot refuse: acknowledged and dropped
    pub.send(r.publish("a/b/c/", b"deep0", version=version))  # 4 levels, the last one empty
    pub.send(r.publish("a/b/c", b"ok", qos=1, packet_id=2, version=version))
    ack = pub.recv()
    assert ack is not None and ack.body[:2] == b"\x00\x02"
    assert sub.recv_publish().payload == b"ok"
    assert sub.silent(0.3)
    assert stats(bt, "messages_dropped") == 2


def test_max_topic_levels_for_will_topics(make_broker: Brokers, raw: Raws) -> None:
    bt = make_broker(max_topic_levels=2)
    c = raw(bt.port, version=5)
    connack = c.connect("will", will=r.Will("a/b/c", b"bye"))
    assert connack.body[:2] == b"\x00\x90"  # Topic Name invalid
    assert c.until_closed() == []


# ---------------------------------------------------------------------------------------------
# Unread output


def _split(data: bytes) -> tuple[list[int], bytes]:
    """(the types of the whole packets at the start of ``data``, the incomplete rest)"""
    types, i = [], 0
    while True:
        j, length, shift = i + 1, 0, 0
        while j < len(data):
            length |= (data[j] & 0x7F) << shift
            shift += 7
            j += 1
            if not data[j - 1] & 0x80:
                break
        else:
            return types, data[i:]
        if j + length > len(data):
            return types, data[i:]
        types.append(data[i] >> 4)
        i = j + length


@pytest.mark.parametrize("ask", ["pingreq", "subscribe"])
def test_a_client_that_does_not_read_is_not_read_either(
    make_broker: Brokers, raw: Raws, ask: str
) -> None:
    """PINGREQs, or SUBSCRIBEs that each re-send the retained messages, from a client that never
    reads would pile their answers up in the broker without bound; it stops reading instead."""
    bt = make_broker()
    if ask == "subscribe":
        keeper = raw(bt.port)
        keeper.connect("keeper")
        keeper.send(*(r.publish(f"keep/{i}", bytes(1000), retain=True) for i in range(20)))
        wait_until(lambda: bt.call(lambda: len(bt.broker.retained)) == 20)
        packet = r.subscribe(1, [("keep/#", 0)])
    else:
        packet = r.PINGREQ
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", bt.port))
        sock.sendall(r.connect("mute"))
        assert sock.recv(4) == b"\x20\x02\x00\x00"
        if ask == "subscribe":
            # 2000 SUBSCRIBEs (26 kB) ask for 40 MB: far more than the socket buffers take.
            sock.sendall(packet * 2000)
            sent = 2000 * len(packet)
            time.sleep(0.5)
            assert bt.call(lambda: [c.congested for c in bt.broker.connections]).count(True) == 1
        else:
            # Until the broker stops reading: the kernel's buffers take megabytes first.
            sock.setblocking(False)
            chunk = packet * (65536 // len(packet))
            sent = 0
            stalled_since = None
            while stalled_since is None or time.monotonic() - stalled_since < 0.5:
                try:
                    sent += sock.send(chunk[sent % len(packet) :])  # whole packets only
                    stalled_since = None
                except BlockingIOError:
                    stalled_since = stalled_since or time.monotonic()
                    time.sleep(0.02)
                assert sent < 64 * 1024 * 1024, "the broker kept reading"

        def held() -> tuple[int, int, int]:
            """(bytes to send, packets decoded but not handled, bytes not decoded yet)"""
            conns = bt.broker.connections
            return (
                sum(c.transport.get_write_buffer_size() for c in conns),
                sum(len(c.backlog) for c in conns),
                sum(len(c.raw_pending) for c in conns),
            )

        unsent, backlog, undecoded = bt.call(held)
        assert unsent < 2 * 1024 * 1024
        # What is held is kept as bytes, not as packet objects (many times larger).
        assert backlog <= 4096 // len(packet), backlog
        assert undecoded <= 256 * 1024, undecoded
        other = raw(bt.port)  # the broker itself is fine
        other.connect("other")
        # Once the client reads, every packet is answered: held, not dropped.
        sock.settimeout(5)
        asked = sent // len(packet)  # (part of a packet may be left over)
        answer = r.SUBACK if ask == "subscribe" else r.PINGRESP
        answered, rest = 0, b""
        while answered < asked:
            data = sock.recv(1 << 20)
            assert data, f"closed after {answered} of {asked} answers"
            types, rest = _split(rest + data)
            answered += types.count(answer)
        assert answered == asked
    finally:
        sock.close()

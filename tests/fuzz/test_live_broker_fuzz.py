"""Live fuzzing: random and mutated packets from many connections at a running ``wrenmq broker``.

A ``wrenmq broker`` subprocess (so its memory can be read from ``/proc``) takes ~50 hostile
connections at once for a bounded time. They start from valid packets of every type, built fresh
with random fields, and mutate them: flipped, inserted and deleted bytes, truncated packets,
random and huge Remaining Lengths, plain junk; they also dribble CONNECT byte by byte, subscribe to
``#`` and stop reading, flood, take over each other's client ids, and hang up every way there is.
Meanwhile well-behaved paho clients exchange QoS 1 messages on other connections.

Invariants: the broker stays up; the well-behaved clients lose nothing; its log has no traceback
and no ERROR (WARNINGs about misbehaving peers are expected); its RSS returns near the baseline
once the fuzzers are gone (state that outlives them, persistent sessions and retained messages,
is bounded by the config).

Environment: ``WRENMQ_FUZZ_SECONDS`` (default 10), ``WRENMQ_FUZZ_CONNECTIONS`` (default 50),
``WRENMQ_FUZZ_SEED`` (default random; printed, it reproduces each worker's choices, though not
the interleaving of threads), ``WRENMQ_FUZZ_CONFIG`` (TOML overriding the broker config, ``;``
for newlines, e.g. ``use_uvloop = false;message_rate_limit = 0``).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from wrenmq.codec import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    encode,
)
from wrenmq.errors import WrenError

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the broker's RSS from /proc"
)

SECONDS = float(os.environ.get("WRENMQ_FUZZ_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("WRENMQ_FUZZ_CONNECTIONS", "50"))
SEED = int(os.environ.get("WRENMQ_FUZZ_SEED", str(random.randrange(2**32))))
GOOD_PAIRS = 3
GOOD_RATE = 100  # QoS 1 messages a second per well-behaved publisher
RSS_SLACK_MB = 30  # growth allowed once the fuzzers are gone
RSS_PEAK_MB = 80  # growth allowed while they attack (answers nobody reads used to take 100+)

# Limits that bound what the fuzzers may leave behind, plus the protections under test.
# WRENMQ_FUZZ_CONFIG overrides keys with TOML, ';' for newlines: "use_uvloop = false;max_qos = 1".
BROKER_CONFIG: dict[str, object] = {
    "port": 0,
    "bind_address": "127.0.0.1",
    "sys_interval": 1,
    "connect_timeout": 3,
    "max_queued_messages": 100,
    "max_queued_bytes": 65536,
    "retained_messages_max_count": 500,
    "retained_message_max_size": 2048,
    "max_topic_levels": 32,
    "message_rate_limit": 500,
    "byte_rate_limit": 1_000_000,
    "log_level": "info",
    "persistence": False,
    **tomllib.loads(os.environ.get("WRENMQ_FUZZ_CONFIG", "").replace(";", "\n")),
}

TOPICS = (
    "fuzz/a",
    "fuzz/b/c",
    "fuzz/ü/€",
    "fuzz/" + "l/" * 40 + "deep",  # above max_topic_levels
    "$SYS/fuzz",
    "fuzz/",
    "/",
    "fuzz/e/" + "x" * 300,
)
FILTERS = (
    "fuzz/#",
    "fuzz/+/c",
    "#",
    "+",
    "+/+/+",
    "$share/g/fuzz/#",
    "$share/h/#",
    "$SYS/#",
    "fuzz/a",
    "/#",
    "fuzz/" + "+/" * 40 + "#",
)
CLIENT_IDS = (*(f"fuzz-{i}" for i in range(32)), "")

# ---------------------------------------------------------------------------------------------
# Random valid packets, and ways to break them


def _props(rng: random.Random, v: int, **candidates: Callable[[], object]) -> Properties:
    if v != 5 or rng.random() < 0.4:
        return Properties()
    chosen = {k: make() for k, make in candidates.items() if rng.random() < 0.3}
    return Properties(**chosen)  # type: ignore[arg-type]


def _user_props(rng: random.Random) -> tuple[tuple[str, str], ...]:
    return tuple(("k" * rng.randint(0, 5), "v" * rng.randint(0, 50)) for _ in range(3))


def connect_packet(rng: random.Random, v: int) -> Connect:
    will = None
    if rng.random() < 0.3:
        will_props = _props(
            rng,
            v,
            will_delay_interval=lambda: rng.choice((0, 1, 3)),
            message_expiry_interval=lambda: rng.choice((0, 2, 60)),
            content_type=lambda: "text/plain",
        )
        will = Will(rng.choice(TOPICS), rng.randbytes(rng.randint(0, 100)), rng.randint(0, 2),
                    rng.random() < 0.3, will_props)  # fmt: skip
    props = _props(
        rng,
        v,
        session_expiry_interval=lambda: rng.choice((0, 1, 30, 0xFFFF_FFFF)),
        receive_maximum=lambda: rng.randint(1, 100),
        maximum_packet_size=lambda: rng.choice((30, 200, 1 << 20)),
        topic_alias_maximum=lambda: rng.randint(0, 20),
        request_problem_information=lambda: rng.randint(0, 1),
        request_response_information=lambda: rng.randint(0, 1),
        user_properties=lambda: _user_props(rng),
        authentication_method=lambda: "SCRAM-SHA-1" if rng.random() < 0.1 else None,
    )
    username = rng.choice((None, None, "user"))
    password = rng.choice((None, b"secret")) if username or v == 5 else None
    return Connect(rng.choice(CLIENT_IDS), v, rng.random() < 0.6, rng.choice((0, 1, 5, 60)),
                   username, password, will, props)  # fmt: skip


def _packet_id(rng: random.Random) -> int:
    return rng.randint(1, 20) if rng.random() < 0.7 else rng.randint(1, 65535)


def publish_packet(rng: random.Random, v: int) -> Publish:
    qos = rng.choice((0, 0, 1, 2))
    props = _props(
        rng,
        v,
        payload_format_indicator=lambda: rng.randint(0, 1),
        message_expiry_interval=lambda: rng.randint(0, 5),
        content_type=lambda: "application/octet-stream",
        response_topic=lambda: rng.choice(TOPICS),
        correlation_data=lambda: rng.randbytes(8),
        topic_alias=lambda: rng.randint(1, 15),
        user_properties=lambda: _user_props(rng),
    )
    topic = "" if props.topic_alias and rng.random() < 0.5 else rng.choice(TOPICS)
    size = rng.choice((0, 10, 100, rng.randint(0, 3000)))
    dup = qos > 0 and rng.random() < 0.1
    packet_id = _packet_id(rng) if qos else 0
    return Publish(topic, rng.randbytes(size), qos, rng.random() < 0.1, dup, packet_id, props)


def random_packet(rng: random.Random, v: int) -> Packet:
    """Any packet type a client might send, and the ones only a server may send."""
    roll = rng.random()
    if roll < 0.45:
        return publish_packet(rng, v)
    if roll < 0.6:
        ack = rng.choice((PubAck, PubRec, PubRel, PubComp))
        return ack(_packet_id(rng))
    if roll < 0.72:
        subs = [
            Subscription(rng.choice(FILTERS), rng.randint(0, 2), rng.random() < 0.2,
                         rng.random() < 0.2, rng.randint(0, 2) if v == 5 else 0)
            for _ in range(rng.randint(1, 4))
        ]  # fmt: skip
        props = _props(rng, v, subscription_identifiers=lambda: (rng.randint(1, 268_435_455),))
        return Subscribe(_packet_id(rng), subs, props)
    if roll < 0.78:
        return Unsubscribe(_packet_id(rng), rng.sample(FILTERS, rng.randint(1, 3)))
    if roll < 0.85:
        return PingReq()
    if roll < 0.88:
        return connect_packet(rng, v)  # a second CONNECT
    if roll < 0.9:
        return Disconnect(rng.choice((ReasonCode.SUCCESS, ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)))
    if roll < 0.93 and v == 5:
        return Auth(ReasonCode.CONTINUE_AUTHENTICATION, Properties(authentication_method="m"))
    return rng.choice(
        (ConnAck(), SubAck(1, [ReasonCode.GRANTED_QOS_0]), UnsubAck(2), PingResp())
    )  # only a server may send these


def encoded(packet: Packet, v: int) -> bytes:
    try:
        return encode(packet, v)
    except (WrenError, ValueError):  # the random fields made no valid packet for this version
        return b"\xc0\x00"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _split(data: bytes) -> tuple[int, bytes]:
    """(first byte, body) of one encoded packet."""
    i = 1
    while data[i] & 0x80:
        i += 1
    return data[0], data[i + 1 :]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` broken in one of the ways a hostile or buggy peer breaks packets."""
    roll = rng.random()
    if roll < 0.45:
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0 or not buf:
                buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
            elif op == 1:
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
            elif op == 2:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            else:
                del buf[rng.randrange(len(buf))]
        return bytes(buf)
    first, body = _split(data)
    if roll < 0.6:
        return data[: rng.randrange(len(data))]  # truncated: the next packet is read as its rest
    if roll < 0.75:
        length = rng.choice((0, 1, rng.randint(0, 300), rng.randint(0, 268_435_455)))
        return bytes((first,)) + varint(length) + body
    if roll < 0.85:
        return bytes((first,)) + b"\xff\xff\xff\x7f" + body  # the largest Remaining Length
    if roll < 0.92:
        return bytes((first,)) + rng.choice((b"\xff\xff\xff\xff\x01", b"\x80\x00")) + body
    return data + rng.randbytes(rng.randint(1, 64))


def junk(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return rng.randbytes(rng.randint(1, 4096))
    first = rng.choice((0x10, 0x30, 0x32, 0x82, 0xC0, 0xE0, 0xF0, 0x00))
    body = rng.randbytes(rng.randint(0, 200))
    return bytes((first,)) + varint(len(body)) + body


# ---------------------------------------------------------------------------------------------
# One hostile connection


class Fuzzer:
    """A worker thread opening one hostile connection after another until the deadline."""

    def __init__(self, port: int, index: int, deadline: float) -> None:
        self.port = port
        self.rng = random.Random(f"{SEED}-{index}")
        self.deadline = deadline
        self.connections = 0
        self.bytes_sent = 0
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"fuzzer-{index}", daemon=True)

    def _run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.settimeout(1.0)
                    sock.connect(("127.0.0.1", self.port))
                    self.connections += 1
                    self._session(sock)
                except OSError:
                    pass  # resets, refusals, broken pipes, timeouts: what the broker may do
                finally:
                    sock.close()
        except BaseException as exc:  # a bug in the fuzzer itself: reported by the test
            self.failure = exc

    def _send(self, sock: socket.socket, data: bytes, *, read: bool = True) -> None:
        rng = self.rng
        # Chunking changes where packets are split across reads: whole, by "MTU", or tiny.
        roll = rng.random()
        largest = len(data) if roll < 0.4 else 1500 if roll < 0.8 or len(data) > 3000 else 8
        pos = 0
        while pos < len(data):
            step = rng.randint(1, max(1, largest))
            sock.sendall(data[pos : pos + step])
            self.bytes_sent += min(step, len(data) - pos)
            pos += step
            if read:
                self._drain(sock)
            if rng.random() < 0.005:
                time.sleep(0.01)

    @staticmethod
    def _drain(sock: socket.socket) -> bool:
        """Read what is there without waiting; False once the broker has closed."""
        # Non-blocking for real: with a timeout set, Python waits for data before any recv.
        sock.settimeout(0.0)
        try:
            while True:
                if not sock.recv(65536):
                    return False
        except BlockingIOError:
            return True
        finally:
            sock.settimeout(1.0)

    def _session(self, sock: socket.socket) -> None:
        rng = self.rng
        v = rng.choice((3, 4, 5, 5))
        connect = encoded(connect_packet(rng, v), v)
        roll = rng.random()
        if roll < 0.08:  # junk from the first byte
            self._send(sock, junk(rng))
        elif roll < 0.2:  # a broken CONNECT, then anything
            self._send(sock, mutate(rng, connect) + self._stream(v, 5))
        elif roll < 0.28:  # subscribe to everything, then stop reading
            topic_filter = rng.choice(("#", "fuzz/#", "$share/h/#"))
            sub = encoded(Subscribe(1, [Subscription(topic_filter, rng.randint(1, 2))]), v)
            self._send(sock, connect + sub)
            time.sleep(rng.uniform(0.2, 1.5))
        elif roll < 0.33:  # slowloris: a CONNECT dribbled out, or a packet never finished
            for byte in connect[: rng.randint(1, len(connect))]:
                sock.sendall(bytes((byte,)))
                time.sleep(0.03)
                if time.monotonic() > self.deadline:
                    break
        elif roll < 0.4:  # a huge declared Remaining Length, then as much as we care to send
            head = connect if rng.random() < 0.7 else b""
            first = rng.choice((0x10, 0x30, 0x32, 0x82, 0xF0))
            length = rng.choice((268_435_455, 1 << 20, 100_000))
            self._send(sock, head + bytes((first,)) + varint(length), read=False)
            self._send(sock, rng.randbytes(rng.randint(0, 65536)), read=False)
            time.sleep(rng.uniform(0, 1))  # held open: the partial packet stays buffered
        elif roll < 0.43:  # asks for answers (PINGRESP, retained messages) and never reads them
            ask = (
                b"\xc0\x00"
                if rng.random() < 0.5
                else encoded(Subscribe(1, [Subscription("#", rng.randint(0, 1))]), v)
            )
            self._send(sock, connect + ask * rng.randint(1000, 20000), read=False)
            time.sleep(rng.uniform(0, 1))
        elif roll < 0.47:  # a flood of publishes, without reading
            pubs = [
                encoded(Publish("fuzz/a", b"f" * 50, qos, packet_id=qos * (1 + i % 60000)), v)
                for i, qos in enumerate(rng.choices((0, 1), k=rng.randint(100, 3000)))
            ]
            self._send(sock, connect + b"".join(pubs), read=False)
        else:  # a session of mostly valid packets, some broken
            self._send(sock, connect + self._stream(v, rng.randint(1, 60)))
        self._hang_up(sock, v)

    def _stream(self, v: int, n: int) -> bytes:
        rng = self.rng
        out = []
        for _ in range(n):
            data = encoded(random_packet(rng, v), v)
            out.append(mutate(rng, data) if rng.random() < 0.1 else data)
        return b"".join(out)

    def _hang_up(self, sock: socket.socket, v: int) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            sock.sendall(b"\xe0\x00" if v < 5 else b"\xe0\x01\x00")  # DISCONNECT
        elif roll < 0.5:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        elif roll < 0.7:
            sock.shutdown(socket.SHUT_WR)  # half close, then see what comes back
            end = time.monotonic() + 0.3
            while time.monotonic() < end and self._drain(sock):
                time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# The broker subprocess and the well-behaved clients


@dataclass
class BrokerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        assert match is not None
        return int(match[1]) / 1024

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[BrokerProcess]:
    config = tmp_path / "wrenmq.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in BROKER_CONFIG.items()))
    log_path = tmp_path / "broker.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wrenmq", "broker", "-c", str(config)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 15
        port = None
        while port is None:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the broker did not start"
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", log_path.read_text())
            if found:
                port = int(found[1])
            else:
                time.sleep(0.05)
        yield BrokerProcess(proc, log_path, port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _client(client_id: str, version: int) -> mqtt.Client:
    return mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        reconnect_on_failure=False,
    )


@dataclass
class GoodPair:
    """A paho publisher and subscriber exchanging QoS 1 messages on their own topic."""

    index: int
    port: int
    version: int
    topic: str = ""
    received: set[int] = field(default_factory=set)
    duplicates: int = 0
    published: list[tuple[int, mqtt.MQTTMessageInfo]] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.topic = f"good/{self.index}"
        self.sub = _client(f"good-sub-{self.index}", self.version)
        self.pub = _client(f"good-pub-{self.index}", self.version)
        self.subscribed = threading.Event()
        self.sub.on_message = self._on_message
        self.sub.on_subscribe = lambda *a: self.subscribed.set()
        for name, c in (("sub", self.sub), ("pub", self.pub)):
            c.on_disconnect = self._on_disconnect(name)
            c.max_queued_messages_set(0)

    def _on_disconnect(self, name: str) -> Callable[..., None]:
        def record(c: Any, u: Any, flags: Any, rc: Any, p: Any = None) -> None:
            self.disconnects.append(f"{name}: {rc}")

        return record

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        prefix = f"good:{self.index}:".encode()
        if msg.payload.startswith(prefix):
            seq = int(msg.payload[len(prefix) :])
            with self.lock:
                if seq in self.received:
                    self.duplicates += 1
                self.received.add(seq)

    def start(self) -> None:
        for c in (self.sub, self.pub):
            assert c.connect("127.0.0.1", self.port, keepalive=60) == mqtt.MQTT_ERR_SUCCESS
            c.loop_start()
        self.sub.subscribe(self.topic, 1)
        assert self.subscribed.wait(5), "no SUBACK for the well-behaved subscriber"

    def publish_until(self, stop: threading.Event) -> None:
        seq = 0
        while not stop.is_set():
            info = self.pub.publish(self.topic, f"good:{self.index}:{seq}".encode(), qos=1)
            self.published.append((seq, info))
            seq += 1
            time.sleep(1 / GOOD_RATE)

    def close(self) -> None:
        for c in (self.sub, self.pub):
            c.disconnect()
            c.loop_stop()


class SysMonitor:
    """Follows ``$SYS/broker/clients/connected``."""

    def __init__(self, port: int) -> None:
        self.connected = -1
        self.client = _client("good-monitor", mqtt.MQTTv311)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("$SYS/broker/clients/connected", 0)

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        self.connected = int(msg.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _stuck(fuzzers: list[Fuzzer]) -> str:
    """Where the fuzzer threads that outlived their deadline are."""
    frames = sys._current_frames()
    out = ["fuzzers did not finish:"]
    for f in fuzzers:
        ident = f.thread.ident
        if f.thread.is_alive() and ident in frames:
            out.append(f"{f.thread.name}: " + "".join(traceback.format_stack(frames[ident])))
    return "\n".join(out)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------------------------------------
# The test


def test_live_broker_survives_fuzzing(broker_process: BrokerProcess) -> None:
    bp = broker_process
    print(f"WRENMQ_FUZZ_SEED={SEED} seconds={SECONDS} connections={CONNECTIONS}")
    pairs = [
        GoodPair(i, bp.port, mqtt.MQTTv5 if i % 2 == 0 else mqtt.MQTTv311)
        for i in range(GOOD_PAIRS)
    ]
    monitor = SysMonitor(bp.port)
    for pair in pairs:
        pair.start()
    stop = threading.Event()
    publishers = [threading.Thread(target=p.publish_until, args=(stop,)) for p in pairs]
    for t in publishers:
        t.start()
    try:
        time.sleep(1.0)  # warm up: well-behaved traffic flowing, $SYS published
        baseline = bp.rss_mb()

        deadline = time.monotonic() + SECONDS
        fuzzers = [Fuzzer(bp.port, i, deadline) for i in range(CONNECTIONS)]
        for f in fuzzers:
            f.thread.start()
        peak = baseline
        while any(f.thread.is_alive() for f in fuzzers):
            assert bp.proc.poll() is None, "the broker died under fuzzing"
            peak = max(peak, bp.rss_mb())
            time.sleep(0.2)
            assert time.monotonic() < deadline + 10, _stuck(fuzzers)
        stop.set()
        for t in publishers:
            t.join(5)
        failures = [f.failure for f in fuzzers if f.failure is not None]
        assert not failures, failures
        total = sum(f.connections for f in fuzzers)
        sent_mb = sum(f.bytes_sent for f in fuzzers) / 1e6

        # The well-behaved clients: every QoS 1 message acknowledged and delivered, nothing lost.
        for pair in pairs:
            acked = _wait(lambda p=pair: all(i.is_published() for _, i in p.published), 15)
            unacked = [seq for seq, info in pair.published if not info.is_published()]
            assert acked, f"pair {pair.index}: no PUBACK for {unacked[:10]} of {len(unacked)}"
            want = {seq for seq, _ in pair.published}
            assert _wait(lambda p=pair, w=want: w <= p.received, 15), (
                f"pair {pair.index} lost {sorted(want - pair.received)[:20]} of {len(want)}"
            )
            assert not pair.disconnects, pair.disconnects
            assert len(want) >= GOOD_RATE * SECONDS * 0.2, f"pair {pair.index}: only {len(want)}"

        # Memory: back near the baseline once only the well-behaved clients remain.
        # (An overloaded broker still has queued connections to accept: give it time.)
        settled = _wait(lambda: monitor.connected == 2 * GOOD_PAIRS + 1, 15 + SECONDS)
        assert settled, f"$SYS still reports {monitor.connected} connected clients"
        time.sleep(2.0)
        after = bp.rss_mb()
        print(
            f"{total} fuzz connections, {sent_mb:.1f} MB sent; RSS baseline {baseline:.1f} MB, "
            f"peak {peak:.1f} MB, after {after:.1f} MB; "
            f"good messages {[len(p.published) for p in pairs]}, "
            f"duplicates {[p.duplicates for p in pairs]}"
        )
        assert after - baseline < RSS_SLACK_MB, (baseline, peak, after)
        assert peak - baseline < RSS_PEAK_MB, (baseline, peak, after)
        assert bp.proc.poll() is None
    finally:
        stop.set()
        for pair in pairs:
            pair.close()
        monitor.close()

    # The log: misbehaving peers are WARNINGs; a traceback or an ERROR is a broker bug.
    log = bp.log()
    bad = [line for line in log.splitlines() if " ERROR " in line or " CRITICAL " in line]
    assert "Traceback" not in log, log[max(0, log.find("Traceback") - 2000) :][:6000]
    assert not bad, bad[:20]
    assert " WARNING " in log  # the fuzzers were noticed

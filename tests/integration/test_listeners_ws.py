"""WebSocket listeners (``ws``, ``wss``) with real peers: paho-mqtt over WebSocket, the
``websockets`` client sending hand-made frames, and MQTT.js on Node.

Numbered by area: ws-1 MQTT over WebSocket, ws-2 the HTTP side (paths, subprotocols), ws-3
framing, ws-4 wss, ws-5 MQTT.js, ws-6 shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rawmqtt as r
from pahopeer import TIMEOUT, V5, V311, Peer, wait_until
from tlscerts import Certs, make_certs
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from brokerthread import BrokerThread

Peers = Callable[..., Peer]
Brokers = Callable[..., BrokerThread]

try:
    import uvloop

    # The CLI runs on uvloop: the transports are checked on both loops.
    LOOPS = [
        pytest.param(asyncio.new_event_loop, id="asyncio"),
        pytest.param(uvloop.new_event_loop, id="uvloop"),
    ]
except ImportError:  # pragma: no cover - uvloop is a Linux dependency
    LOOPS = [pytest.param(asyncio.new_event_loop, id="asyncio")]
ON_BOTH_LOOPS = pytest.mark.parametrize("loop_factory", LOOPS)

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / ".bench" / "node"  # git-ignored cache of `npm install mqtt`


def ws_listener(**options: object) -> dict[str, object]:
    table: dict[str, object] = {"port": 0, "bind_address": "127.0.0.1", "protocol": "ws"}
    table.update(options)
    return table


def ws_peer(peer: Peers, port: int, client_id: str, *, path: str = "/mqtt", **kw: Any) -> Peer:
    p = peer(port, client_id, transport="websockets", **kw)
    p.client.ws_set_options(path=path)
    return p


def port_of(bt: BrokerThread, index: int) -> int:
    assert bt.broker is not None
    return bt.broker.addresses[index][1]


class _WsSocket:
    """The part of a socket ``rawmqtt.Raw`` uses, over a WebSocket: one send is one message."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.timeout: float | None = TIMEOUT

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        self.ws.send(data)

    def recv(self, _n: int) -> bytes:
        try:
            message = self.ws.recv(timeout=self.timeout)
        except ConnectionClosed:
            return b""
        assert isinstance(message, bytes), f"text frame from the broker: {message!r}"
        return message

    def close(self) -> None:
        self.ws.close()


class WsRaw(r.Raw):
    """A raw MQTT peer over WebSocket: every ``send`` chunk travels as its own message."""

    def __init__(
        self, url: str, *, version: int = 4, subprotocols: tuple[str, ...] = ("mqtt",)
    ) -> None:
        self.version = version
        offered = list(subprotocols) or None  # an empty list would send an empty header
        # Entered as a context manager: websockets >= 17.1 warns about a bare connect().
        self.ws = connect(  # type: ignore[arg-type]
            url, subprotocols=offered, open_timeout=TIMEOUT
        ).__enter__()
        self.sock = _WsSocket(self.ws)  # type: ignore[assignment]
        self._buf = b""

    def send_messages(self, *messages: bytes) -> None:
        for message in messages:
            self.ws.send(message)


@pytest.fixture
def ws_raws() -> Any:
    made: list[WsRaw] = []

    def make(url: str, **kw: Any) -> WsRaw:
        w = WsRaw(url, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


# ---------------------------------------------------------------------------------------------
# ws-1: MQTT over WebSocket behaves as over TCP


@pytest.mark.parametrize("version", [V311, V5])
@ON_BOTH_LOOPS
def test_ws1_paho_publish_subscribe(
    loop_factory: Any, make_broker: Brokers, peer: Peers, version: int, unique_topic: str
) -> None:
    bt = make_broker(loop_factory=loop_factory, listener=[ws_listener()])
    sub = ws_peer(peer, bt.port, "ws-sub", version=version).connect()
    assert sub.subscribe(unique_topic, 2) == 2
    pub = ws_peer(peer, bt.port, "ws-pub", version=version).connect()
    for qos in (0, 1, 2):
        pub.publish(unique_topic, f"qos {qos}".encode(), qos)
    got = sub.wait_messages(3)
    assert [m.payload for m in got] == [b"qos 0", b"qos 1", b"qos 2"]
    assert bt.broker is not None
    peers = {s.client_id: s.peer for s in bt.broker.list_sessions()}
    assert peers["ws-pub"] is not None and peers["ws-pub"].startswith("127.0.0.1:")


def test_ws1_tcp_and_websocket_clients_talk(
    make_broker: Brokers, peer: Peers, unique_topic: str
) -> None:
    bt = make_broker(listener=[{"port": 0, "bind_address": "127.0.0.1"}, ws_listener()])
    ws_sub = ws_peer(peer, port_of(bt, 1), "ws").connect()
    tcp_sub = peer(port_of(bt, 0), "tcp").connect()
    assert ws_sub.subscribe(unique_topic + "/to-ws", 1) == 1
    assert tcp_sub.subscribe(unique_topic + "/to-tcp", 1) == 1
    tcp_sub.publish(unique_topic + "/to-ws", b"hello ws", 1)
    ws_sub.publish(unique_topic + "/to-tcp", b"hello tcp", 1)
    assert ws_sub.wait_messages(1)[0].payload == b"hello ws"
    assert tcp_sub.wait_messages(1)[0].payload == b"hello tcp"


def test_ws1_burst_and_large_message(make_broker: Brokers, peer: Peers, unique_topic: str) -> None:
    # Many deliveries flushed together, and a payload larger than websockets' default 1 MiB
    # message limit (the listener uses max_packet_size instead).
    bt = make_broker(listener=[ws_listener()])
    sub = ws_peer(peer, bt.port, "burst-sub").connect()
    assert sub.subscribe(unique_topic, 1) == 1
    pub = ws_peer(peer, bt.port, "burst-pub").connect()
    for i in range(200):
        pub.client.publish(unique_topic, str(i).encode(), 1)
    big = os.urandom(2 * 1024 * 1024)
    pub.publish(unique_topic, big, 1)
    got = sub.wait_messages(201, timeout=10)
    assert [m.payload for m in got[:200]] == [str(i).encode() for i in range(200)]
    assert got[200].payload == big


def test_ws1_custom_path(make_broker: Brokers, peer: Peers, unique_topic: str) -> None:
    bt = make_broker(listener=[ws_listener(ws_path="/custom/mqtt")])
    p = ws_peer(peer, bt.port, "custom", path="/custom/mqtt?token=x").connect()
    assert p.subscribe(unique_topic, 0) == 0


# ---------------------------------------------------------------------------------------------
# ws-2: the HTTP side: paths and subprotocols


def test_ws2_other_paths_get_404(make_broker: Brokers) -> None:
    bt = make_broker(listener=[ws_listener()])
    for path in ("/", "/other", "/mqtt/extra"):
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{bt.port}{path}", subprotocols=["mqtt"])  # type: ignore[list-item]
        assert info.value.response.status_code == 404


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (("mqtt",), "mqtt"),
        (("mqttv3.1",), "mqttv3.1"),
        (("chat", "mqttv3.1", "mqtt"), "mqtt"),
        ((), None),  # no subprotocol offered: accepted anyway (lenient, like mosquitto)
    ],
)
def test_ws2_subprotocol(
    make_broker: Brokers, ws_raws: Any, offered: tuple[str, ...], selected: str | None
) -> None:
    bt = make_broker(listener=[ws_listener()])
    w = ws_raws(f"ws://127.0.0.1:{bt.port}/mqtt", subprotocols=offered)
    assert w.ws.subprotocol == selected
    assert w.connect("sp").body[1] == 0


def test_ws2_foreign_subprotocol_only_is_refused(
    make_broker: Brokers, caplog: pytest.LogCaptureFixture
) -> None:
    # websockets logs the failed handshake at ERROR; this test expects that record.
    bt = make_broker(listener=[ws_listener()])
    url = f"ws://127.0.0.1:{bt.port}/mqtt"
    with (
        caplog.at_level(logging.ERROR, logger="wrenmq.transport.websocket"),
        pytest.raises(InvalidStatus) as info,
    ):
        connect(url, subprotocols=["chat"])  # type: ignore[list-item]
    assert info.value.response.status_code == 400


# ---------------------------------------------------------------------------------------------
# ws-3: framing [MQTT-6.0.0-1], [MQTT-6.0.0-2]


@ON_BOTH_LOOPS
def test_ws3_packets_span_messages_and_messages_hold_packets(
    loop_factory: Any, make_broker: Brokers, ws_raws: Any, unique_topic: str
) -> None:
    bt = make_broker(loop_factory=loop_factory, listener=[ws_listener()])
    w = ws_raws(f"ws://127.0.0.1:{bt.port}/mqtt")
    packet = r.connect("frames")
    w.send_messages(*(packet[i : i + 1] for i in range(len(packet))))  # one byte per message
    pkt = w.recv()
    assert pkt is not None and pkt.type == r.CONNACK and pkt.body[1] == 0
    # SUBSCRIBE and a PUBLISH to the same topic in one message, then half a PUBLISH twice.
    w.send_messages(r.subscribe(1, [(unique_topic, 0)]) + r.publish(unique_topic, b"one"))
    two = r.publish(unique_topic, b"two")
    w.send_messages(two[:3], two[3:])
    pkt = w.recv()
    assert pkt is not None and pkt.type == r.SUBACK
    assert w.recv_publish().payload == b"one"
    assert w.recv_publish().payload == b"two"


def test_ws3_text_frame_closes_the_connection(
    make_broker: Brokers, ws_raws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # This test expects the broker's WARNING about the text frame.
    bt = make_broker(listener=[ws_listener()])
    w = ws_raws(f"ws://127.0.0.1:{bt.port}/mqtt")
    assert w.connect("texter").body[1] == 0
    with caplog.at_level(logging.WARNING, logger="wrenmq.transport.websocket"):
        w.ws.send(r.publish("t", b"x").decode("latin-1"))
        assert w.until_closed() == []
        wait_until(lambda: any("text frame" in m for m in caplog.messages))
    assert w.ws.close_code == 1003
    assert bt.broker is not None
    broker = bt.broker
    wait_until(lambda: bt.call(lambda: not broker.connections))


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00",  # reserved packet type 0
        b"\x36\x05\x00\x01t\x00\x01",  # PUBLISH with QoS 3
        b"\x82\x02\x00\x01",  # SUBSCRIBE without a topic filter
    ],
)
def test_ws3_malformed_mqtt_ends_like_on_tcp(
    make_broker: Brokers, raw: Callable[..., r.Raw], ws_raws: Any, garbage: bytes
) -> None:
    # Expects the broker's WARNING per closed connection (a misbehaving peer).
    bt = make_broker(listener=[{"port": 0, "bind_address": "127.0.0.1"}, ws_listener()])
    tcp = raw(port_of(bt, 0), version=5)
    w = ws_raws(f"ws://127.0.0.1:{port_of(bt, 1)}/mqtt", version=5)
    outcomes = []
    for peer in (tcp, w):
        assert peer.connect("bad").body[1] == 0
        peer.send(garbage)
        outcomes.append([(p.first, p.body) for p in peer.until_closed()])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] and outcomes[0][0][0] >> 4 == r.DISCONNECT


# ---------------------------------------------------------------------------------------------
# ws-4: wss


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("version", [V311, V5])
@ON_BOTH_LOOPS
def test_ws4_wss_with_paho(
    loop_factory: Any,
    make_broker: Brokers,
    peer: Peers,
    certs: Certs,
    version: int,
    unique_topic: str,
) -> None:
    bt = make_broker(loop_factory=loop_factory, listener=[certs.listener("wss")])
    p = ws_peer(peer, bt.port, "wss", version=version)
    p.client.tls_set_context(certs.client_context())
    p.connect()
    assert p.subscribe(unique_topic, 1) == 1
    p.publish(unique_topic, b"secure ws", 1)
    assert p.wait_messages(1)[0].payload == b"secure ws"


def test_ws4_wss_mutual_tls_identity(make_broker: Brokers, peer: Peers, certs: Certs) -> None:
    bt = make_broker(
        allow_anonymous=False,
        listener=[
            certs.listener(
                "wss", cafile=certs.cafile, require_certificate=True, use_identity_as_username=True
            )
        ],
    )
    p = ws_peer(peer, bt.port, "wss-id")
    p.client.tls_set_context(certs.client_context(with_cert=True))
    p.connect()
    assert bt.broker is not None
    broker = bt.broker

    def username() -> str | None:
        conn = broker.sessions["wss-id"].conn
        return conn.username if conn is not None else None

    assert bt.call(username) == "alice"


# ---------------------------------------------------------------------------------------------
# ws-5: MQTT.js (Node) over WebSocket

_MQTTJS = textwrap.dedent(
    """
    const mqtt = require("mqtt");
    const [url, topic, version] = process.argv.slice(2);
    setTimeout(() => { console.error("timeout"); process.exit(3); }, 8000);
    const client = mqtt.connect(url, {
      protocolVersion: Number(version), clientId: "mqttjs-" + version,
      reconnectPeriod: 0, connectTimeout: 5000,
    });
    client.on("error", (err) => { console.error(String(err)); process.exit(2); });
    client.on("connect", () => {
      client.subscribe(topic + "/echo", { qos: 1 }, (err, granted) => {
        if (err) { console.error(String(err)); process.exit(2); }
        client.publish(topic + "/echo", "from mqtt.js", { qos: 1 });
        client.publish(topic + "/out", "to python", { qos: 1 });
      });
    });
    client.on("message", (t, payload) => {
      console.log(JSON.stringify({ topic: t, payload: payload.toString() }));
      client.end(false, () => process.exit(0));
    });
    """
)


def _mqttjs() -> tuple[str, Path]:
    """``node`` and the directory holding ``node_modules/mqtt``, installing it once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the MQTT.js test")
    if not (NODE_DIR / "node_modules" / "mqtt" / "package.json").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        cmd = [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "mqtt@5"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=100)
        except subprocess.TimeoutExpired:
            pytest.skip("npm install mqtt took longer than 100 s")
        if done.returncode != 0:
            pytest.skip(f"npm install mqtt failed: {done.stderr.strip()[-300:]}")
    return node, NODE_DIR


@pytest.mark.parametrize("version", [4, 5])
def test_ws5_mqttjs_over_websocket(
    make_broker: Brokers, peer: Peers, version: int, unique_topic: str, tmp_path: Path
) -> None:
    node, node_dir = _mqttjs()
    script = tmp_path / "client.js"
    script.write_text(_MQTTJS, encoding="utf-8")
    bt = make_broker(listener=[{"port": 0, "bind_address": "127.0.0.1"}, ws_listener()])
    watcher = peer(port_of(bt, 0), "watcher").connect()
    assert watcher.subscribe(unique_topic + "/out", 1) == 1
    url = f"ws://127.0.0.1:{port_of(bt, 1)}/mqtt"
    env = {**os.environ, "NODE_PATH": str(node_dir / "node_modules")}
    done = subprocess.run(
        [node, str(script), url, unique_topic, str(version)],
        capture_output=True,
        text=True,
        timeout=15,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0]) == {
        "topic": unique_topic + "/echo",
        "payload": "from mqtt.js",
    }
    assert watcher.wait_messages(1)[0].payload == b"to python"


# ---------------------------------------------------------------------------------------------
# ws-6: shutdown


@ON_BOTH_LOOPS
def test_ws6_stop_sends_disconnect_to_websocket_clients(loop_factory: Any, peer: Peers) -> None:
    bt = BrokerThread(loop_factory=loop_factory, listener=[ws_listener()]).start()
    try:
        p = ws_peer(peer, bt.port, "bye", version=V5).connect()
        idle = WsRaw(f"ws://127.0.0.1:{bt.port}/mqtt")  # open, but never sends CONNECT
    finally:
        bt.stop()
    try:
        assert p.disconnected.wait(TIMEOUT)
        assert p.disconnect_code == 0x8B  # Server shutting down
        assert idle.until_closed() == []
    finally:
        idle.close()

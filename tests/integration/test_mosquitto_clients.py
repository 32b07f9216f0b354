"""Interoperability with Eclipse Mosquitto's command line clients (Debian ``mosquitto-clients``).

Every process is bounded: ``mosquitto_sub`` gets ``-W`` (exit after that many seconds) and
``-C`` (exit after that many messages), and every wait on a process has a timeout.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
from pahopeer import TIMEOUT, V5, V311, PacketTypes, Peer, props, wait_until

from brokerthread import BrokerThread

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None,
    reason="mosquitto-clients is not installed (make debs)",
)

Peers = Callable[..., Peer]
VERSIONS = pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test; killed at teardown if still running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=TIMEOUT)


def _sub(
    procs: list[subprocess.Popen[str]], bt: BrokerThread, *args: str, count: int = 1
) -> subprocess.Popen[str]:
    cmd = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(bt.port), "-W", "5", "-C", str(count)]
    p = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    return p


def _pub(bt: BrokerThread, *args: str, stdin: str | None = None) -> None:
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(bt.port), *args]
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr


def _output(p: subprocess.Popen[str]) -> list[str]:
    out, err = p.communicate(timeout=TIMEOUT + 1)
    assert p.returncode == 0, (p.returncode, err)
    return out.splitlines()


def _wait_subscribed(bt: BrokerThread, client_id: str, topic_filter: str) -> None:
    assert bt.broker is not None
    broker = bt.broker
    wait_until(
        lambda: (client_id, topic_filter) in [s[:2] for s in bt.call(broker.list_subscriptions)]
    )


@VERSIONS
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_to_sub(
    broker_thread: BrokerThread,
    procs: list[subprocess.Popen[str]],
    unique_topic: str,
    version: str,
    qos: int,
) -> None:
    bt = broker_thread
    sub = _sub(procs, bt, "-V", version, "-q", str(qos), "-t", unique_topic,
               "-i", "msub", "-F", "%t|%q|%r|%p", count=3)  # fmt: skip
    _wait_subscribed(bt, "msub", unique_topic)
    # -l: one connection, one message per line of stdin.
    _pub(bt, "-V", version, "-q", str(qos), "-t", unique_topic, "-l", stdin="one\ntwo\nthree\n")
    assert _output(sub) == [f"{unique_topic}|{qos}|0|{w}" for w in ("one", "two", "three")]


@VERSIONS
def test_qos_downgraded_to_subscription(
    broker_thread: BrokerThread,
    procs: list[subprocess.Popen[str]],
    unique_topic: str,
    version: str,
) -> None:
    bt = broker_thread
    sub = _sub(procs, bt, "-V", version, "-q", "1", "-t", unique_topic, "-i", "msub",
               "-F", "%q|%p")  # fmt: skip
    _wait_subscribed(bt, "msub", unique_topic)
    _pub(bt, "-V", version, "-q", "2", "-t", unique_topic, "-m", "down")
    assert _output(sub) == ["1|down"]


@VERSIONS
def test_retained(
    broker_thread: BrokerThread,
    procs: list[subprocess.Popen[str]],
    unique_topic: str,
    version: str,
) -> None:
    bt = broker_thread
    assert bt.broker is not None
    retained = bt.broker.retained
    _pub(bt, "-V", version, "-q", "1", "-r", "-t", unique_topic, "-m", "kept")
    sub = _sub(procs, bt, "-V", version, "-q", "1", "-t", unique_topic, "-F", "%r|%q|%p")
    assert _output(sub) == ["1|1|kept"]
    _pub(bt, "-V", version, "-q", "1", "-r", "-t", unique_topic, "-n")  # empty payload deletes
    assert bt.call(retained.get, unique_topic) is None


def test_paho_to_mosquitto_sub_v5_properties(
    broker_thread: BrokerThread,
    procs: list[subprocess.Popen[str]],
    peer: Peers,
    unique_topic: str,
) -> None:
    bt = broker_thread
    sub = _sub(procs, bt, "-V", "mqttv5", "-q", "2", "-t", unique_topic, "-i", "msub",
               "-F", "%C|%R|%P|%E|%p")  # fmt: skip
    _wait_subscribed(bt, "msub", unique_topic)
    pub = peer(bt.port, "paho", version=V5).connect()
    p = props(
        PacketTypes.PUBLISH,
        ContentType="text/plain",
        ResponseTopic="reply/here",
        UserProperty=[("k", "v")],
        MessageExpiryInterval=30,
    )
    pub.publish(unique_topic, b"with props", 2, properties=p)
    assert _output(sub) == ["text/plain|reply/here|k:v|30|with props"]


def test_mosquitto_pub_v5_properties_to_paho(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    bt = broker_thread
    sub = peer(bt.port, "paho", version=V5).connect()
    sub.subscribe(unique_topic, 2)
    _pub(bt, "-V", "mqttv5", "-q", "2", "-t", unique_topic, "-m", "hello",
         "-D", "publish", "user-property", "a", "1",
         "-D", "publish", "user-property", "b", "2",
         "-D", "publish", "content-type", "text/x",
         "-D", "publish", "correlation-data", "c0ffee",
         "-D", "publish", "response-topic", "back")  # fmt: skip
    (msg,) = sub.wait_messages(1)
    assert (msg.payload, msg.qos) == (b"hello", 2)
    assert msg.properties.UserProperty == [("a", "1"), ("b", "2")]
    assert msg.properties.ContentType == "text/x"
    assert msg.properties.CorrelationData == b"c0ffee"
    assert msg.properties.ResponseTopic == "back"


@pytest.mark.parametrize(("version", "persist"), [("mqttv311", []), ("mqttv5", ["-x", "60"])])
def test_persistent_session_receives_offline_messages(
    broker_thread: BrokerThread,
    procs: list[subprocess.Popen[str]],
    peer: Peers,
    unique_topic: str,
    version: str,
    persist: list[str],
) -> None:
    bt = broker_thread
    common = ["-V", version, "-c", *persist, "-i", "durable", "-q", "1", "-t", unique_topic]
    first = _sub(procs, bt, *common, "-E")  # -E: exit once subscribed
    first.communicate(timeout=TIMEOUT)
    assert first.returncode == 0
    pub = peer(bt.port, "paho", version=V311).connect()
    for i in range(3):
        pub.publish(unique_topic, f"offline {i}", 1)
    again = _sub(procs, bt, *common, count=3)
    assert _output(again) == [f"offline {i}" for i in range(3)]


@VERSIONS
def test_many_qos2_messages_in_order(
    broker_thread: BrokerThread,
    procs: list[subprocess.Popen[str]],
    unique_topic: str,
    version: str,
) -> None:
    bt = broker_thread
    sub = _sub(procs, bt, "-V", version, "-q", "2", "-t", unique_topic, "-i", "msub", count=200)
    _wait_subscribed(bt, "msub", unique_topic)
    lines = "".join(f"m{i}\n" for i in range(200))
    _pub(bt, "-V", version, "-q", "2", "-t", unique_topic, "-l", stdin=lines)
    assert _output(sub) == [f"m{i}" for i in range(200)]


@VERSIONS
def test_will_of_a_killed_mosquitto_sub(
    broker_thread: BrokerThread,
    procs: list[subprocess.Popen[str]],
    peer: Peers,
    unique_topic: str,
    version: str,
) -> None:
    bt = broker_thread
    watcher = peer(bt.port, "watcher", version=V5).connect()
    watcher.subscribe(unique_topic + "/will", 1)
    doomed = _sub(procs, bt, "-V", version, "-t", unique_topic + "/x", "-i", "doomed",
                  "--will-topic", unique_topic + "/will", "--will-payload", "killed",
                  "--will-qos", "1")  # fmt: skip
    _wait_subscribed(bt, "doomed", unique_topic + "/x")
    doomed.kill()  # SIGKILL: no DISCONNECT
    (msg,) = watcher.wait_messages(1)
    assert (msg.payload, msg.qos) == (b"killed", 1)

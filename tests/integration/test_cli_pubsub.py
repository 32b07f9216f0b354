"""``wrenmq pub`` and ``wrenmq sub`` as subprocesses, against real brokers and real peers.

Brokers: the wrenmq broker (``BrokerThread``, one per test) and Debian's Mosquitto
(``/usr/sbin/mosquitto``, one per module on an ephemeral loopback port, logging every SUBSCRIBE to
a file so a test can wait until a subscriber is subscribed). Peers: ``mosquitto_pub`` and
``mosquitto_sub``. Subscribers are bounded by ``-C`` and ``-W``; every wait on a process has a
timeout.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pytest
from pahopeer import wait_until
from tlscerts import make_certs

from brokerthread import BrokerThread

WRENMQ = str(Path(sys.executable).with_name("wrenmq"))
MOSQUITTO = "/usr/sbin/mosquitto"
TIMEOUT = 10.0
HAVE_MOSQUITTO = os.access(MOSQUITTO, os.X_OK) and shutil.which("mosquitto_sub") is not None
needs_mosquitto = pytest.mark.skipif(
    not HAVE_MOSQUITTO, reason="mosquitto and mosquitto-clients are not installed (make debs)"
)
BROKERS = pytest.mark.parametrize(
    "broker", ["wrenmq", pytest.param("mosquitto", marks=needs_mosquitto)], indirect=True
)
VERSIONS = pytest.mark.parametrize("version", ["5", "311"])
Procs = list[subprocess.Popen[bytes]]
Brokers = Callable[..., BrokerThread]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


# -- brokers -------------------------------------------------------------------------------------


class Broker(Protocol):
    port: int

    def wait_subscribed(self, client_id: str, topic_filter: str) -> None: ...


class WrenBroker:
    def __init__(self, bt: BrokerThread, port: int | None = None) -> None:
        self.bt = bt
        self.port = bt.port if port is None else port

    def wait_subscribed(self, client_id: str, topic_filter: str) -> None:
        broker = self.bt.broker
        assert broker is not None
        wait_until(
            lambda: (
                (client_id, topic_filter)
                in [s[:2] for s in self.bt.call(broker.list_subscriptions)]
            ),
            TIMEOUT,
        )

    def wait_connected(self, client_id: str) -> None:
        broker = self.bt.broker
        assert broker is not None

        def connected() -> bool:
            session = broker.sessions.get(client_id)
            return session is not None and session.conn is not None

        wait_until(lambda: self.bt.call(connected), TIMEOUT)


class MosquittoBroker:
    """``mosquitto -c conf``; ``log_type subscribe`` writes ``<client id> <qos> <filter>``."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "mosquitto.log"
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {self.log}\nlog_type subscribe\nlog_type error\n"
            "log_timestamp false\n" + ("user root\n" if os.geteuid() == 0 else ""),
            # As root, mosquitto would switch to user "mosquitto", who cannot write our log.
            encoding="utf-8",
        )
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not start on port {self.port}") from None
                time.sleep(0.02)

    def wait_subscribed(self, client_id: str, topic_filter: str) -> None:
        def subscribed() -> bool:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
            return any(
                line.startswith(f"{client_id} ") and line.endswith(f" {topic_filter}")
                for line in lines
            )

        wait_until(subscribed, TIMEOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.communicate(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    if not HAVE_MOSQUITTO:
        pytest.skip("mosquitto is not installed (make debs)")
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def wren(broker_thread: BrokerThread) -> WrenBroker:
    return WrenBroker(broker_thread)


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Broker:
    name = request.param
    fixture = "wren" if name == "wrenmq" else "mosquitto"
    result: Broker = request.getfixturevalue(fixture)
    return result


# -- processes -----------------------------------------------------------------------------------


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Processes a test started; killed at teardown if still running."""
    started: Procs = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=TIMEOUT)


def addr(broker: Broker) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(broker.port)]


def run(*cmd: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command to its end; ``wrenmq`` stands for the venv's script."""
    argv = [WRENMQ, *cmd[1:]] if cmd[0] == "wrenmq" else list(cmd)
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT)


def ok(*cmd: str, stdin: bytes | None = None) -> bytes:
    done = run(*cmd, stdin=stdin)
    assert done.returncode == 0, (cmd, done.returncode, done.stderr.decode())
    return done.stdout


def spawn(procs: Procs, *cmd: str) -> subprocess.Popen[bytes]:
    argv = [WRENMQ, *cmd[1:]] if cmd[0] == "wrenmq" else list(cmd)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    return p


def finish(p: subprocess.Popen[bytes], status: int = 0) -> bytes:
    out, err = p.communicate(timeout=TIMEOUT + 5)
    assert p.returncode == status, (p.args, p.returncode, err.decode())
    assert b"Traceback" not in err, err.decode()
    return out


# -- publish and subscribe, with each other and with Mosquitto's clients ------------------------


@BROKERS
@VERSIONS
def test_pub_and_sub_with_mosquitto_clients(
    broker: Broker, procs: Procs, unique_topic: str, version: str
) -> None:
    """wrenmq pub -> {wrenmq sub, mosquitto_sub}; mosquitto_pub -> {wrenmq sub, mosquitto_sub}."""
    t = unique_topic
    v5 = version == "5"
    wid, mid = client_id("wsub"), client_id("msub")
    wsub = spawn(procs, "wrenmq", "sub", *addr(broker), "-V", version, "-i", wid, "-t", t,
                 "-q", "2", "--json", "-C", "4", "-W", "10")  # fmt: skip
    mversion = "mqttv5" if v5 else "mqttv311"
    msub = spawn(procs, "mosquitto_sub", *addr(broker), "-V", mversion, "-i", mid, "-t", t,
                 "-q", "2", "-F", "%t|%p|%q|%P", "-C", "4", "-W", "10")  # fmt: skip
    broker.wait_subscribed(wid, t)
    broker.wait_subscribed(mid, t)
    # -l: one message per line, the newline removed and nothing else; QoS 1 pipelined.
    ok("wrenmq", "pub", *addr(broker), "-V", version, "-t", t, "-q", "1", "-l",
       stdin=b"one\n\nthree\r\n")  # fmt: skip
    props = ["-D", "publish", "user-property", "from", "mosquitto"] if v5 else []
    ok("mosquitto_pub", *addr(broker), "-V", "mqttv5" if v5 else "mqttv311", "-t", t, "-q", "2",
       "-m", "héllo", *props)  # fmt: skip

    messages = [json.loads(line) for line in finish(wsub).splitlines()]
    assert [(m["topic"], m["payload"], m["qos"], m["retain"]) for m in messages] == [
        (t, "one", 1, False),
        (t, "", 1, False),
        (t, "three\r", 1, False),
        (t, "héllo", 2, False),
    ]
    assert {m["payload_encoding"] for m in messages} == {"utf-8"}
    if v5:
        assert messages[3]["properties"]["user_properties"] == [["from", "mosquitto"]]
    else:
        assert [m["properties"] for m in messages] == [{}] * 4
    lines = finish(msub).decode().split("\n")
    user = "from:mosquitto" if v5 else ""
    assert lines == [f"{t}|one|1|", f"{t}||1|", f"{t}|three\r|1|", f"{t}|héllo|2|{user}", ""]


@BROKERS
def test_properties_reach_both_subscribers(broker: Broker, procs: Procs, unique_topic: str) -> None:
    t = unique_topic
    wid, mid = client_id("wsub"), client_id("msub")
    fmt = "%P|%C|%D|%R|%E|%F"
    wsub = spawn(procs, "wrenmq", "sub", *addr(broker), "-i", wid, "-t", t, "-F", fmt, "-C", "1",
                 "-W", "10")  # fmt: skip
    msub = spawn(procs, "mosquitto_sub", *addr(broker), "-V", "mqttv5", "-i", mid, "-t", t,
                 "-F", fmt, "-C", "1", "-W", "10")  # fmt: skip
    broker.wait_subscribed(wid, t)
    broker.wait_subscribed(mid, t)
    ok("wrenmq", "pub", *addr(broker), "-t", t, "-m", "x", "-q", "1",
       "-D", "publish", "user-property", "a", "1", "-D", "publish", "user-property", "a", "2",
       "--property", "publish", "user-property", "b", "x y",
       "-D", "publish", "content-type", "text/plain", "-D", "publish", "correlation-data", "c-1",
       "-D", "publish", "response-topic", "reply/here",
       "-D", "publish", "message-expiry-interval", "100",
       "-D", "publish", "payload-format-indicator", "1",
       "-D", "connect", "user-property", "client", "cli")  # fmt: skip
    for out in (finish(wsub), finish(msub)):
        fields = out.decode().rstrip("\n").split("|")
        assert fields[:4] == ["a:1 a:2 b:x y", "text/plain", "c-1", "reply/here"]
        assert 95 <= int(fields[4]) <= 100  # the broker counts the expiry down
        assert fields[5] == "1"


# -- -C, -W, -F, --json ---------------------------------------------------------------------------


def test_count_and_timeout(wren: WrenBroker, procs: Procs, unique_topic: str) -> None:
    t = unique_topic
    sid = client_id("sub")
    sub = spawn(procs, "wrenmq", "sub", *addr(wren), "-i", sid, "-t", t, "-C", "2")
    wren.wait_subscribed(sid, t)
    ok("wrenmq", "pub", *addr(wren), "-t", t, "-l", stdin=b"1\n2\n3\n")
    assert finish(sub) == b"1\n2\n"  # exits after two, without -W

    started = time.monotonic()
    done = run("wrenmq", "sub", *addr(wren), "-t", t, "-W", "0.5")
    assert 0.5 <= time.monotonic() - started < 5
    assert (done.returncode, done.stdout, done.stderr) == (27, b"", b"wrenmq sub: timed out\n")


@BROKERS
def test_format_matches_mosquitto_sub(broker: Broker, unique_topic: str) -> None:
    t = unique_topic
    ok("wrenmq", "pub", *addr(broker), "-t", t, "-m", "hello", "-q", "1", "-r")
    same = "%t|%p|%q|%r|%l|%x|%X|%%|%5l|%-6l|%05l|%9t|@@|\\t|@Y|%P"
    ours = ok("wrenmq", "sub", *addr(broker), "-t", t, "-q", "1", "-C", "1", "-F", same)
    theirs = ok("mosquitto_sub", *addr(broker), "-t", t, "-q", "1", "-C", "1", "-F", same)
    assert ours == theirs
    assert ours.startswith(f"{t}|hello|1|1|5|68656c6c6f|68656C6C6F|%|    5|".encode())
    # Where wrenmq goes further: width on every field, precision truncates.
    out = ok("wrenmq", "sub", *addr(broker), "-t", t, "-q", "1", "-C", "1", "-N",
             "-F", "%m|%.2p|%-4q|%I|%U|@Y")  # fmt: skip
    mid, short, qos, iso, unix, year = out.decode().split("|")
    assert int(mid) > 0
    assert (short, qos, year) == ("he", "1   ", str(datetime.now().year))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", iso)
    assert re.fullmatch(r"\d{10}\.\d{9}", unix)
    assert abs(float(unix) - time.time()) < 60
    # -v, and a zero-length payload shows as (null) there
    ok("wrenmq", "pub", *addr(broker), "-t", t, "-n", "-r", "-q", "1")  # clears the retained one
    sid = client_id("sub")
    with subprocess.Popen([WRENMQ, "sub", *addr(broker), "-i", sid, "-t", t, "-v", "-C", "1"],
                          stdout=subprocess.PIPE) as sub:  # fmt: skip
        broker.wait_subscribed(sid, t)
        ok("wrenmq", "pub", *addr(broker), "-t", t, "-n")
        assert sub.communicate(timeout=TIMEOUT)[0] == f"{t} (null)\n".encode()


def test_json_binary_payloads(wren: WrenBroker, tmp_path: Path, unique_topic: str) -> None:
    t = unique_topic
    blob = bytes(range(256))
    (tmp_path / "blob").write_bytes(blob)
    ok("wrenmq", "pub", *addr(wren), "-t", t, "-f", str(tmp_path / "blob"), "-r", "-q", "1",
       "-D", "publish", "correlation-data", "id-7")  # fmt: skip
    (m,) = map(json.loads, ok("wrenmq", "sub", *addr(wren), "-t", t, "-C", "1", "--json").split())
    assert (m["topic"], m["retain"], m["qos"], m["payload_encoding"]) == (t, True, 0, "base64")
    assert base64.b64decode(m["payload"]) == blob
    assert m["properties"] == {"correlation_data": "id-7", "correlation_data_encoding": "utf-8"}
    assert m["time"].endswith("Z")
    ok("wrenmq", "pub", *addr(wren), "-t", t, "-m", "text", "-r")
    out = ok("wrenmq", "sub", *addr(wren), "-t", t, "-C", "1", "--json", "--base64")
    m = json.loads(out)
    assert (m["payload"], m["payload_encoding"]) == (base64.b64encode(b"text").decode(), "base64")


def test_payload_sources(wren: WrenBroker, procs: Procs, unique_topic: str) -> None:
    t = unique_topic
    sid = client_id("sub")
    sub = spawn(procs, "wrenmq", "sub", *addr(wren), "-i", sid, "-t", t, "-C", "4", "-F", "%x")
    wren.wait_subscribed(sid, t)
    ok("wrenmq", "pub", *addr(wren), "-t", t, "-s", stdin=b"a\nb\x00")  # stdin, one message
    ok("wrenmq", "pub", *addr(wren), "-t", t, "-m", "r", "--repeat", "2", "-q", "2")
    ok("wrenmq", "pub", "-L", f"mqtt://127.0.0.1:{wren.port}/{t}", "-m", "u")
    assert finish(sub).split() == [b"610a6200", b"72", b"72", b"75"]


# -- retained messages and filters -----------------------------------------------------------------


@BROKERS
def test_retained_flags(broker: Broker, procs: Procs, unique_topic: str) -> None:
    t = unique_topic
    ok("wrenmq", "pub", *addr(broker), "-t", f"{t}/a", "-m", "old", "-r", "-q", "1")
    # -E: exit once subscribed
    assert ok("wrenmq", "sub", *addr(broker), "-t", f"{t}/#", "-E") == b""
    # -R: the retained message is not printed, the live one is
    sid = client_id("r")
    sub = spawn(procs, "wrenmq", "sub", *addr(broker), "-i", sid, "-t", f"{t}/#", "-R", "-v",
                "-C", "1", "-W", "10")  # fmt: skip
    broker.wait_subscribed(sid, f"{t}/#")
    ok("wrenmq", "pub", *addr(broker), "-t", f"{t}/b", "-m", "live")
    assert finish(sub) == f"{t}/b live\n".encode()
    # --retained-only: prints retained messages, exits at the first live one
    sid = client_id("ro")
    sub = spawn(procs, "wrenmq", "sub", *addr(broker), "-i", sid, "-t", f"{t}/#", "-v",
                "--retained-only", "-W", "10")  # fmt: skip
    broker.wait_subscribed(sid, f"{t}/#")
    ok("wrenmq", "pub", *addr(broker), "-t", f"{t}/b", "-m", "live")
    assert finish(sub) == f"{t}/a old\n".encode()
    # --remove-retained clears it: the next subscriber's first message is a live one
    ok("wrenmq", "sub", *addr(broker), "-t", f"{t}/#", "--remove-retained", "-C", "1")
    sid = client_id("after")
    sub = spawn(procs, "wrenmq", "sub", *addr(broker), "-i", sid, "-t", f"{t}/#", "-v",
                "-C", "1", "-W", "10")  # fmt: skip
    broker.wait_subscribed(sid, f"{t}/#")
    ok("wrenmq", "pub", *addr(broker), "-t", f"{t}/c", "-m", "new")
    assert finish(sub) == f"{t}/c new\n".encode()


def test_filter_out_and_several_topics(wren: WrenBroker, procs: Procs, unique_topic: str) -> None:
    t = unique_topic
    sid = client_id("sub")
    sub = spawn(procs, "wrenmq", "sub", *addr(wren), "-i", sid, "-t", f"{t}/x/#", "-t", f"{t}/y",
                "-T", f"{t}/x/skip/#", "-v", "-C", "2")  # fmt: skip
    wren.wait_subscribed(sid, f"{t}/y")
    for topic in (f"{t}/x/skip/1", f"{t}/x/keep", f"{t}/y"):
        ok("wrenmq", "pub", *addr(wren), "-t", topic, "-m", "m", "-q", "1")
    assert finish(sub) == f"{t}/x/keep m\n{t}/y m\n".encode()


@BROKERS
@VERSIONS
def test_persistent_session(broker: Broker, unique_topic: str, version: str) -> None:
    t = unique_topic
    cid = client_id("persist")
    session = ["-V", version, "-c", "-i", cid, "-q", "1", "-t", t]
    if version == "5":
        session += ["-x", "60"]
    ok("wrenmq", "sub", *addr(broker), *session, "-E")
    ok("wrenmq", "pub", *addr(broker), "-V", version, "-t", t, "-m", "kept", "-q", "1")
    assert ok("wrenmq", "sub", *addr(broker), *session, "-C", "1", "-W", "10") == b"kept\n"
    ok("wrenmq", "sub", *addr(broker), "-V", version, "-i", cid, "-t", t, "-E")  # drop it


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["pub", "-t", "t", "-m", "x", "-V", "bad"], 2, "unknown protocol version 'bad'"),
        (["sub", "-t", "t", "-V", "mqttv6"], 2, "unknown protocol version 'mqttv6'"),
        (["pub", "-t", "a/#", "-m", "x"], 2, "invalid topic 'a/#'"),
        (["sub", "-t", "a/#/b"], 2, "invalid topic filter 'a/#/b'"),
        (["pub", "-m", "x"], 2, "no topic"),
        (["pub", "-t", "t"], 2, "no message"),
        (["pub", "-t", "t", "-m", "x", "-f", "y"], 2, "not allowed with argument -m"),
        (["pub", "-t", "t", "-q", "3", "-m", "x"], 2, "invalid QoS '3'"),
        (
            ["pub", "-t", "t", "-m", "x", "-V", "311", "-D", "publish", "content-type", "a"],
            2,
            "-D needs MQTT 5",
        ),
        (
            ["pub", "-t", "t", "-m", "x", "-D", "publish", "message-expiry-interval", "abc"],
            2,
            "'abc' is not a number",
        ),
        (
            ["pub", "-t", "t", "-m", "x", "-D", "connect", "topic-alias", "1"],
            2,
            "topic-alias is not a connect property",
        ),
        (
            ["pub", "-t", "t", "-m", "x", "-D", "publish", "user-property", "k"],
            2,
            "user-property takes 2 values",
        ),
        (["sub", "-t", "t", "-c"], 2, "-c needs a client id"),
        (["sub", "-t", "t", "-F", "%z"], 2, "unknown format specifier %z"),
        (["sub", "-t", "t", "-F", "ab%"], 2, "incomplete % at the end"),
        (["sub", "-t", "t", "--cert", "c.pem"], 2, "--cert needs TLS"),
        (["pub", "-t", "t", "-f", "/nonexistent/x"], 1, "cannot read /nonexistent/x: No such file"),
        (
            ["pub", "-t", "t", "-m", "x", "--cafile", "/nonexistent/ca"],
            1,
            "cannot load the CA certificates: No such file or directory",
        ),
    ],
)
def test_usage_and_file_errors(args: list[str], status: int, message: str) -> None:
    done = run("wrenmq", *args, "-p", str(free_port()))
    err = done.stderr.decode()
    assert done.returncode == status, err
    assert f"wrenmq {args[0]}: " in err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["pub", "-m", "x"], ["sub"]])
def test_unreachable_broker(command: list[str]) -> None:
    port = free_port()
    done = run("wrenmq", command[0], "-h", "127.0.0.1", "-p", str(port), "-t", "t", *command[1:])
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"wrenmq {command[0]}: cannot connect to 127.0.0.1:{port}: Connection refused\n"
    )


@VERSIONS
def test_refused_by_the_broker(make_broker: Brokers, version: str) -> None:
    bt = make_broker(allow_anonymous=False)
    done = run("wrenmq", "pub", "-h", "127.0.0.1", "-p", str(bt.port), "-V", version, "-t", "t",
               "-m", "x")  # fmt: skip
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.startswith(f"wrenmq pub: connection refused by 127.0.0.1:{bt.port}: "), err
    assert re.search(r"\(0x8[67]\)", err), err


def test_publish_refused(make_broker: Brokers) -> None:
    bt = make_broker(max_qos=1)
    done = run("wrenmq", "pub", "-h", "127.0.0.1", "-p", str(bt.port), "-t", "t", "-q", "2",
               "-m", "x")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.decode().startswith("wrenmq pub: message 1 refused: "), done.stderr


def test_signals_disconnect_cleanly(wren: WrenBroker, procs: Procs, unique_topic: str) -> None:
    """Ctrl-C (130) and SIGTERM (143) still send DISCONNECT: the broker publishes no will."""
    t = unique_topic
    will = ["--will-topic", f"{t}/will", "--will-payload", "died"]
    watcher_id, sub_id, pub_id, term_id = (client_id(n) for n in ("watch", "sub", "pub", "term"))
    watcher = spawn(procs, "wrenmq", "sub", *addr(wren), "-i", watcher_id, "-t", f"{t}/will",
                    "-C", "1", "-W", "10")  # fmt: skip
    wren.wait_subscribed(watcher_id, f"{t}/will")
    sub = spawn(procs, "wrenmq", "sub", *addr(wren), "-i", sub_id, "-t", t, *will)
    term = spawn(procs, "wrenmq", "sub", *addr(wren), "-i", term_id, "-t", t, *will)
    argv = [WRENMQ, "pub", *addr(wren), "-i", pub_id, "-t", t, "-l", *will]
    pub = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(pub)
    wren.wait_subscribed(sub_id, t)
    wren.wait_subscribed(term_id, t)
    wren.wait_connected(pub_id)
    sub.send_signal(signal.SIGINT)
    pub.send_signal(signal.SIGINT)
    term.send_signal(signal.SIGTERM)
    assert finish(sub, 130) == b""
    finish(pub, 130)
    assert finish(term, 143) == b""
    ok("wrenmq", "pub", *addr(wren), "-t", f"{t}/will", "-m", "no will before me")
    assert finish(watcher) == b"no will before me\n"


def test_tls(make_broker: Brokers, tmp_path: Path, procs: Procs, unique_topic: str) -> None:
    certs = make_certs(tmp_path / "certs")
    bt = make_broker(listener=[certs.listener()])
    assert bt.broker is not None
    broker = WrenBroker(bt, bt.broker.addresses[0][1])
    t = unique_topic
    sid = client_id("tls")
    sub = spawn(procs, "wrenmq", "sub", "-h", "localhost", "-p", str(broker.port),
                "--cafile", certs.cafile, "-i", sid, "-t", t, "-C", "1")  # fmt: skip
    broker.wait_subscribed(sid, t)
    ok("wrenmq", "pub", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", certs.cafile,
       "-t", t, "-m", "secret", "-q", "1")  # fmt: skip
    assert finish(sub) == b"secret\n"
    done = run("wrenmq", "pub", "-h", "127.0.0.1", "-p", str(broker.port), "--tls-use-os-certs",
               "-t", t, "-m", "x")  # fmt: skip
    assert done.returncode == 1
    assert b"certificate verify failed" in done.stderr, done.stderr

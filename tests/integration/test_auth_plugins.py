"""Pluggable async authenticators and authorizers in a running broker, with paho-mqtt peers:
a "database" check that takes a while, chained after the password and ACL files, failing closed
on errors and timeouts, with a verdict cache, and loaded from ``auth_plugins`` by
``wrenmq broker -c``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from brokerproc import BrokerProcess
from pahopeer import V5, V311, Peer, wait_until

from brokerthread import BrokerThread
from wrenmq.broker.auth.acl import Access
from wrenmq.broker.auth.passwd import PasswordFile
from wrenmq.broker.hooks import Verdict

ALLOW, DENY, DEFER = Verdict.ALLOW, Verdict.DENY, Verdict.DEFER
REFUSED = {0x86, 0x87}  # 3.1.1 return codes 4 and 5 as paho reports them


class UserDb:
    """An authenticator backed by a slow "database"."""

    def __init__(self, users: dict[str, bytes], delay: float = 0.05) -> None:
        self.users = users
        self.delay = delay
        self.calls: list[str | None] = []

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> Verdict:
        self.calls.append(username)
        await asyncio.sleep(self.delay)
        if username == "explode":
            raise RuntimeError("database is down")
        if username == "slow":
            await asyncio.sleep(30)
        if username not in self.users:
            return DEFER
        return ALLOW if password == self.users[username] else DENY


class TopicDb:
    """An authorizer: ``rules[(username, topic, access)]``, anything else DEFER."""

    def __init__(self, rules: dict[tuple[str | None, str, Access], Verdict], delay: float = 0.01):
        self.rules = rules
        self.delay = delay
        self.calls: list[tuple[str, Access]] = []

    async def authorize(
        self, client_id: str, username: str | None, topic: str, access: Access
    ) -> Verdict:
        self.calls.append((topic, access))
        await asyncio.sleep(self.delay)
        if topic == "explode":
            raise RuntimeError("database is down")
        return self.rules.get((username, topic, access), DEFER)


def connect(
    port: int, peer: Callable[..., Peer], user: str | None, password: str | None, version: int = V5
) -> Peer:
    """A paho client that connected successfully."""
    p = peer(port, version=version)
    if user is not None:
        p.client.username_pw_set(user, password)
    return p.connect()


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    pw = PasswordFile()
    pw.set("filed", "from-file")
    path = tmp_path / "passwd"
    pw.save(path)
    return path


@pytest.mark.parametrize("version", [V311, V5])
def test_authenticator_chain_after_the_password_file(
    make_broker: Callable[..., BrokerThread],
    peer: Callable[..., Peer],
    pwfile: Path,
    version: int,
) -> None:
    db = UserDb({"dbuser": b"from-db", "filed": b"db-would-allow"})
    bt = make_broker(password_file=str(pwfile), allow_anonymous=False, authenticators=[db])
    connect(bt.port, peer, "dbuser", "from-db", version)
    connect(bt.port, peer, "filed", "from-file", version=version)  # the file answers first
    assert db.calls == ["dbuser"]
    for user, password in [
        ("dbuser", "wrong"),
        ("filed", "db-would-allow"),  # the file says no: the chain stops there
        ("stranger", "x"),  # everyone defers
        (None, None),  # anonymous, not allowed
    ]:
        p = peer(bt.port, version=version)
        if user is not None:
            p.client.username_pw_set(user, password)
        with pytest.raises(AssertionError):
            p.connect()
        assert p.connack_code in REFUSED, (user, p.connack_code)


def test_failing_and_slow_authenticators_deny_and_the_broker_carries_on(
    make_broker: Callable[..., BrokerThread], peer: Callable[..., Peer]
) -> None:
    db = UserDb({"ok": b"pw"})
    bt = make_broker(authenticators=[db], auth_timeout=0.5)
    for user in ("explode", "slow"):
        p = peer(bt.port)
        p.client.username_pw_set(user, "x")
        with pytest.raises(AssertionError):
            p.connect()
        assert p.connack_code == 0x86, (user, p.connack_code)
    connect(bt.port, peer, "ok", "pw")
    connect(bt.port, peer, None, None)  # anonymous allowed (the default) when all defer


def test_packets_sent_during_authentication_wait_their_turn(
    make_broker: Callable[..., BrokerThread], peer: Callable[..., Peer]
) -> None:
    # paho sends SUBSCRIBE and PUBLISH right behind CONNECT without waiting for CONNACK when
    # asked to; a raw client does it here: everything must be handled after the verdict.
    from rawmqtt import CONNACK, SUBACK, Raw, publish, subscribe
    from rawmqtt import connect as raw_connect

    db = UserDb({"u": b"p"}, delay=0.2)
    bt = make_broker(authenticators=[db])
    r = Raw(bt.port, version=4)
    try:
        body = raw_connect("early", version=4)
        # Add username/password flags by hand: connect() has no such options.
        r.send(_with_credentials(body, b"u", b"p"))
        r.send(subscribe(1, [("early/t", 1)]), publish("early/t", b"x", qos=1, packet_id=2))
        first = r.recv()
        assert first is not None and first.type == CONNACK and first.body[1] == 0
        kinds = [r.recv() for _ in range(3)]
        assert [k.type for k in kinds if k is not None][:1] == [SUBACK]
        assert sorted(k.type for k in kinds if k is not None) == [3, 4, SUBACK]
    finally:
        r.close()


def _with_credentials(connect_packet: bytes, username: bytes, password: bytes) -> bytes:
    """A 3.1.1 CONNECT (one-byte remaining length) with username and password added."""
    body = bytearray(connect_packet[2:])
    body[7] |= 0xC0  # connect flags: username, password
    body += (
        len(username).to_bytes(2, "big") + username + len(password).to_bytes(2, "big") + password
    )
    return bytes((0x10, len(body))) + bytes(body)


def test_authorizer_on_publish_and_subscribe_with_ordering_kept(
    make_broker: Callable[..., BrokerThread], peer: Callable[..., Peer]
) -> None:
    rules = {
        (None, "open/#", Access.SUBSCRIBE): ALLOW,
        (None, "open/a", Access.WRITE): ALLOW,
        (None, "open/b", Access.WRITE): DENY,
        (None, "closed/#", Access.SUBSCRIBE): DENY,
    }
    authz = TopicDb(rules, delay=0.005)
    bt = make_broker(authorizers=[authz])
    sub = connect(bt.port, peer, None, None)
    assert sub.subscribe("open/#", 1) == 1
    assert sub.subscribe("closed/#", 1) == 0x87
    assert sub.subscribe("other/#", 1) == 0x87  # everyone deferred: denied
    pub = connect(bt.port, peer, None, None)
    # Unacknowledged QoS 1 in a burst: every one waits for its verdict, in order.
    infos = [
        pub.client.publish("open/a" if i % 3 else "open/b", str(i).encode(), 1) for i in range(60)
    ]
    for info in infos:
        info.wait_for_publish(5)
    got = sub.wait_messages(40)
    assert [int(m.payload) for m in got] == [i for i in range(60) if i % 3]
    assert {m.topic for m in got} == {"open/a"}
    assert pub.publish("open/b", b"no", 1) == 0x87
    assert pub.publish("explode", b"no", 1) == 0x87  # an authorizer that raises denies


def test_verdict_cache(make_broker: Callable[..., BrokerThread], peer: Callable[..., Peer]) -> None:
    rules = {(None, "t", Access.WRITE): ALLOW}
    cached = TopicDb(rules)
    bt = make_broker(authorizers=[cached], auth_cache_ttl=60)
    pub = connect(bt.port, peer, None, None)
    for _ in range(20):
        assert pub.publish("t", b"x", 1) == 0x10  # allowed, no subscriber
    assert cached.calls == [("t", Access.WRITE)]

    uncached = TopicDb(rules)
    bt2 = make_broker(authorizers=[uncached])
    pub2 = connect(bt2.port, peer, None, None)
    for _ in range(20):
        assert pub2.publish("t", b"x", 1) == 0x10
    assert len(uncached.calls) == 20


def test_acl_file_first_then_authorizer(
    make_broker: Callable[..., BrokerThread], peer: Callable[..., Peer], tmp_path: Path
) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite acl/#\ntopic deny acl/secret\n", encoding="utf-8")
    authz = TopicDb(
        {
            (None, "db/#", Access.SUBSCRIBE): ALLOW,
            (None, "db/x", Access.WRITE): ALLOW,
            (None, "acl/secret", Access.WRITE): ALLOW,  # never asked: the file denies
        }
    )
    bt = make_broker(acl_file=str(acl), authorizers=[authz])
    sub = connect(bt.port, peer, None, None)
    assert sub.subscribe("acl/#", 1) == 1
    assert sub.subscribe("db/#", 1) == 1
    pub = connect(bt.port, peer, None, None)
    assert pub.publish("acl/x", b"1", 1) == 0
    assert pub.publish("acl/secret", b"no", 1) == 0x87
    assert pub.publish("db/x", b"2", 1) == 0
    got = sub.wait_messages(2)
    assert [(m.topic, m.payload) for m in got] == [("acl/x", b"1"), ("db/x", b"2")]
    assert ("acl/secret", Access.WRITE) not in authz.calls
    assert ("acl/x", Access.WRITE) not in authz.calls


PLUGIN = textwrap.dedent(
    '''
    from wrenmq.broker.hooks import Verdict


    class DatabaseAuth:
        """Both an authenticator and an authorizer."""

        async def authenticate(self, client_id, username, password, peer):
            if username == "plugged":
                return Verdict.ALLOW if password == b"in" else Verdict.DENY
            return Verdict.DEFER

        async def authorize(self, client_id, username, topic, access):
            return Verdict.ALLOW if topic.startswith("plugged/") else Verdict.DENY
    '''
)


def test_auth_plugins_from_the_config_file(
    tmp_path: Path, peer: Callable[..., Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "myauth.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = BrokerProcess(tmp_path, {"auth_plugins": ["myauth:DatabaseAuth"]}, persistence=False)
    proc.start()
    try:
        p = connect(proc.port, peer, "plugged", "in")
        assert p.subscribe("plugged/#", 1) == 1
        assert p.subscribe("elsewhere/#", 1) == 0x87
        assert p.publish("plugged/x", b"hi", 1) == 0
        assert p.wait_messages(1)[0].payload == b"hi"
        bad = peer(proc.port)
        bad.client.username_pw_set("plugged", "out")
        with pytest.raises(AssertionError):
            bad.connect()
        assert bad.connack_code == 0x86
    finally:
        proc.close()


def test_a_bad_plugin_spec_is_a_readable_error(tmp_path: Path) -> None:
    config = tmp_path / "wrenmq.toml"
    config.write_text('auth_plugins = ["no_such_module_here:Auth"]\n', encoding="utf-8")
    wrenmq = str(Path(sys.executable).with_name("wrenmq"))
    done = subprocess.run(
        [wrenmq, "broker", "-c", str(config), "-p", "0", "--no-persistence"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "auth_plugins" in done.stderr and "no_such_module_here" in done.stderr
    assert "Traceback" not in done.stderr


def test_listener_allow_anonymous_applies_to_the_chain(
    make_broker: Callable[..., BrokerThread], peer: Callable[..., Peer]
) -> None:
    from wrenmq.broker.config import ListenerConfig

    bt = make_broker(
        listener=[
            ListenerConfig(port=0, bind_address="127.0.0.1", allow_anonymous=False),
        ],
        authenticators=[UserDb({"u": b"p"})],
    )
    anon = peer(bt.port)
    with pytest.raises(AssertionError):
        anon.connect()
    assert anon.connack_code == 0x87
    connect(bt.port, peer, "u", "p")
    wait_until(lambda: bt.broker is not None and bt.broker.connected_count == 1)


def test_a_client_flooding_while_a_verdict_is_awaited_is_not_buffered_without_bound(
    make_broker: Callable[..., BrokerThread],
) -> None:
    from rawmqtt import Raw, publish

    slow = TopicDb({}, delay=1.5)
    bt = make_broker(authorizers=[slow])
    r = Raw(bt.port, version=4)
    try:
        r.connect("flood")
        burst = b"".join(publish("flood/t", b"x" * 1000) for _ in range(4000))  # 4 MB
        r.sock.settimeout(0.5)
        sent = 0
        try:
            while sent < len(burst):
                sent += r.sock.send(burst[sent : sent + 65536])
        except TimeoutError:
            pass  # the broker stopped reading: the kernel buffers are full
        assert bt.broker is not None
        held = bt.call(lambda: max(len(c.raw_pending) for c in bt.broker.connections))  # type: ignore[union-attr]
        assert held <= 64 * 1024 + 256 * 1024, held
    finally:
        r.close()

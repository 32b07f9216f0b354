"""Password file and ACL enforcement in the broker, with paho-mqtt as the peer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode as PahoReasonCode

from brokerthread import BrokerThread
from wrenmq.broker.auth.passwd import PasswordFile


def _files(tmp_path: Path) -> tuple[Path, Path]:
    pw = PasswordFile()
    pw.set("alice", "wonder")
    pw.set("bob", "builder")
    pw_path = tmp_path / "passwd"
    pw.save(pw_path)
    acl_path = tmp_path / "acl"
    acl_path.write_text(
        "user alice\n"
        "topic readwrite shared/#\n"
        "topic write alice/out\n"
        "user bob\n"
        "topic read shared/#\n"
        "topic read alice/out\n"
        "pattern readwrite clients/%c/#\n",
        encoding="utf-8",
    )
    return pw_path, acl_path


@pytest.fixture
def secured(tmp_path: Path):  # type: ignore[no-untyped-def]
    pw_path, acl_path = _files(tmp_path)
    bt = BrokerThread(
        password_file=str(pw_path), acl_file=str(acl_path), allow_anonymous=False
    ).start()
    try:
        yield bt
    finally:
        bt.stop()


def _connect(port: int, client_id: str, user: str | None, password: str | None, version: int):  # type: ignore[no-untyped-def]
    result: dict[str, object] = {}
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version)
    if user is not None:
        c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        result["rc"] = rc
        done.set()

    c.on_connect = on_connect
    c.reconnect_delay_set(30, 30)
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert done.wait(5)
    return c, result["rc"]


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_password_file_accepts_and_refuses(secured: BrokerThread, version: int) -> None:
    ok, rc = _connect(secured.port, "a1", "alice", "wonder", version)
    assert not rc.is_failure
    ok.disconnect()
    ok.loop_stop()
    for user, password, expected in (
        ("alice", "wrong", 0x86),
        ("mallory", "x", 0x86),
        (None, None, 0x87),
    ):
        c, rc = _connect(secured.port, "a2", user, password, version)
        c.loop_stop()
        assert isinstance(rc, PahoReasonCode)
        if version == mqtt.MQTTv5:
            assert rc.value == expected
        else:
            # 3.1.1 return codes: 4 bad user name or password, 5 not authorized.
            assert rc.value in (0x86, 0x87) and rc.is_failure


def test_acl_publish_subscribe_and_delivery(secured: BrokerThread) -> None:
    port = secured.port
    got: list[tuple[str, bytes]] = []
    arrived = threading.Event()
    bob, _rc = _connect(port, "bob1", "bob", "builder", mqtt.MQTTv5)

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        got.append((msg.topic, msg.payload))
        arrived.set()

    bob.on_message = on_message
    granted: list[object] = []
    subscribed = threading.Event()

    def on_subscribe(client, userdata, mid, codes, props):  # type: ignore[no-untyped-def]
        granted.extend(c.value for c in codes)
        subscribed.set()

    bob.on_subscribe = on_subscribe
    bob.subscribe([("shared/#", 1), ("alice/out", 1), ("secret/#", 1), ("clients/bob1/#", 1)])
    assert subscribed.wait(5)
    assert granted == [1, 1, 0x87, 1]

    alice, _rc = _connect(port, "alice1", "alice", "wonder", mqtt.MQTTv5)
    info = alice.publish("shared/x", b"1", qos=1)
    info.wait_for_publish(5)
    info = alice.publish("alice/out", b"2", qos=1)
    info.wait_for_publish(5)
    # Alice may not write to bob's client tree: 0x87 in the PUBACK, nothing delivered.
    acks: list[int] = []
    acked = threading.Event()

    def on_publish(client, userdata, mid, rc, props):  # type: ignore[no-untyped-def]
        acks.append(rc.value)
        acked.set()

    alice.on_publish = on_publish
    alice.publish("clients/bob1/x", b"3", qos=1)
    assert acked.wait(5)
    assert acks == [0x87]
    # Bob may write to his own tree and reads it back.
    bob.publish("clients/bob1/x", b"4", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got == [("shared/x", b"1"), ("alice/out", b"2"), ("clients/bob1/x", b"4")]
    for c in (alice, bob):
        c.disconnect()
        c.loop_stop()


def test_reload_auth_keeps_connections(secured: BrokerThread, tmp_path: Path) -> None:
    c, rc = _connect(secured.port, "a3", "alice", "wonder", mqtt.MQTTv5)
    assert secured.broker is not None
    pw = PasswordFile.load(secured.broker.config.password_file or "")
    pw.set("carol", "singer")
    pw.save(secured.broker.config.password_file or "")
    secured.call(secured.broker.reload_auth)
    assert c.is_connected()
    carol, rc = _connect(secured.port, "c1", "carol", "singer", mqtt.MQTTv5)
    assert not rc.is_failure
    for client in (c, carol):
        client.disconnect()
        client.loop_stop()

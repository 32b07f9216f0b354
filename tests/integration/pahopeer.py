"""A paho-mqtt client with its network loop in a thread, recording everything the broker sends.

Every wait is bounded (``TIMEOUT``); automatic reconnection is off, so a client the broker closes
stays closed and the test sees exactly one connection per ``connect``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

__all__ = [
    "TIMEOUT",
    "V5",
    "V311",
    "PacketTypes",
    "Peer",
    "Properties",
    "ReasonCode",
    "SubscribeOptions",
    "props",
    "wait_until",
]

TIMEOUT = 5.0
V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def props(packet_type: int, **values: Any) -> Properties:
    """Paho ``Properties`` for ``packet_type`` (a ``PacketTypes`` value) from keyword names."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class Peer:
    """One paho client; ``messages`` collects every PUBLISH received, in order."""

    def __init__(
        self,
        port: int,
        client_id: str = "",
        *,
        version: int = V5,
        clean: bool = True,
        transport: str = "tcp",
    ) -> None:
        """``transport`` is paho's: ``"tcp"`` or ``"websockets"`` (then see ``ws_set_options``)."""
        kwargs: dict[str, Any] = {} if version == V5 else {"clean_session": clean}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            reconnect_on_failure=False,
            transport=transport,  # type: ignore[arg-type]
            **kwargs,
        )
        self.port = port
        self.version = version
        self.messages: list[mqtt.MQTTMessage] = []
        self.session_present: bool | None = None
        self.connack_code: int | None = None
        self.connack_props: Properties | None = None
        self.disconnect_code: int | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._cond = threading.Condition()
        self._acks: dict[int, list[int]] = {}
        self._running = False
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_ack
        c.on_unsubscribe = self._on_ack
        c.on_publish = self._on_publish

    # -- callbacks (paho's network thread) ----------------------------------------------------

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, p: Any) -> None:
        self.session_present = bool(flags.session_present)
        self.connack_code = rc.value
        self.connack_props = p
        self.connected.set()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, p: Any) -> None:
        self.disconnect_code = rc.value
        self.disconnected.set()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def _on_ack(self, c: Any, u: Any, mid: int, codes: Any, p: Any) -> None:
        if not isinstance(codes, list):
            codes = [codes]
        with self._cond:
            self._acks[mid] = [code.value for code in codes]
            self._cond.notify_all()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, p: Any) -> None:
        with self._cond:
            self._acks[mid] = [rc.value]
            self._cond.notify_all()

    def _wait_ack(self, mid: int) -> list[int]:
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._acks, TIMEOUT), f"no ack for {mid}"
            return self._acks.pop(mid)

    # -- actions ------------------------------------------------------------------------------

    def connect(
        self,
        *,
        keepalive: int = 60,
        clean_start: bool = True,
        properties: Properties | None = None,
        expect: int = 0,
    ) -> Peer:
        """Connect and wait for CONNACK; assert its reason code is ``expect``."""
        self.connected.clear()
        self.disconnected.clear()
        kwargs: dict[str, Any] = {"keepalive": keepalive, "properties": properties}
        if self.version == V5:
            kwargs["clean_start"] = clean_start
        self.client.connect("127.0.0.1", self.port, **kwargs)
        self.client.loop_start()
        self._running = True
        assert self.connected.wait(TIMEOUT), "no CONNACK"
        assert self.connack_code == expect, f"CONNACK {self.connack_code:#x}"
        return self

    def subscribe(
        self,
        topic_filter: str,
        qos: int = 0,
        *,
        options: SubscribeOptions | None = None,
        sub_id: int | None = None,
    ) -> int:
        """Subscribe and return the SUBACK reason code (granted QoS or a failure)."""
        properties = None
        if sub_id is not None:
            properties = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id)
        if options is not None:
            rc, mid = self.client.subscribe(topic_filter, options=options, properties=properties)
        else:
            rc, mid = self.client.subscribe(topic_filter, qos, properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        (code,) = self._wait_ack(mid)
        return code

    def unsubscribe(self, topic_filter: str) -> int:
        rc, mid = self.client.unsubscribe(topic_filter)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        (code,) = self._wait_ack(mid) or [0]
        return code

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Publish and wait until it is acknowledged; the PUBACK/PUBREC reason code (v5)."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        (code,) = self._wait_ack(info.mid)
        return code

    def wait_messages(self, n: int, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        """Wait for at least ``n`` messages in total; return all received so far."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.messages) >= n, timeout)
            got = list(self.messages)
        assert ok, f"expected {n} messages, got {len(got)}: {[(m.topic, m.payload) for m in got]}"
        return got

    def no_more_messages(self, n: int, wait: float = 0.3) -> list[mqtt.MQTTMessage]:
        """Wait ``wait`` seconds and assert exactly ``n`` messages arrived in total."""
        time.sleep(wait)
        with self._cond:
            got = list(self.messages)
        assert len(got) == n, [(m.topic, m.payload) for m in got]
        return got

    def disconnect(self, properties: Properties | None = None, reasoncode: Any = None) -> None:
        """A normal DISCONNECT; waits for the network loop to finish."""
        if self._running:
            self.client.disconnect(reasoncode=reasoncode, properties=properties)
            self.disconnected.wait(TIMEOUT)
            self.client.loop_stop()
            self._running = False

    def close(self) -> None:
        """Teardown: disconnect if still connected and stop the network thread."""
        if self._running:
            if self.client.is_connected():
                self.client.disconnect()
                self.disconnected.wait(TIMEOUT)
            self.client.loop_stop()
            self._running = False

"""200 real paho clients at once: QoS 1 and QoS 2 traffic without loss or duplicates.

100 publishers and 100 subscribers, half MQTT 3.1.1 and half MQTT 5. Subscriber ``k`` listens to
publishers ``k`` and ``k + 1``, so every message is delivered twice and every subscriber has two
sources; each publisher sends ``MESSAGES`` messages alternating QoS 1 and QoS 2. Every delivery is
counted per (subscriber, publisher, sequence number): each must arrive exactly once, at the QoS it
was published with, and in order per QoS [MQTT-4.6.0-6]. Bounded by ``DEADLINE``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import paho.mqtt.client as mqtt
from pahopeer import V5, V311, Peer

from brokerthread import BrokerThread

Peers = Callable[..., Peer]

PAIRS = 100
MESSAGES = 50
DEADLINE = 15.0


def test_200_clients_qos1_qos2_no_loss_no_duplicates(
    broker_thread: BrokerThread, peer: Peers, unique_topic: str
) -> None:
    port = broker_thread.port
    start = time.monotonic()
    lock = threading.Lock()
    received: list[tuple[int, int, int, int]] = []  # (subscriber, publisher, seq, qos)
    expected = PAIRS * MESSAGES * 2
    all_in = threading.Event()

    def collector(k: int) -> Callable[[object, object, mqtt.MQTTMessage], None]:
        def on_message(c: object, u: object, m: mqtt.MQTTMessage) -> None:
            j, seq = map(int, m.payload.split(b":"))
            with lock:
                received.append((k, j, seq, m.qos))
                if len(received) >= expected:
                    all_in.set()

        return on_message

    def topic(j: int) -> str:
        return f"{unique_topic}/p{j}"

    subs = []
    for k in range(PAIRS):
        s = peer(port, f"sub{k}", version=V5 if k % 2 else V311)
        s.client.on_message = collector(k)
        subs.append(s.connect())
    for k, s in enumerate(subs):
        assert s.subscribe(topic(k), 2) == 2
        assert s.subscribe(topic((k + 1) % PAIRS), 2) == 2
    pubs = [peer(port, f"pub{j}", version=V311 if j % 2 else V5).connect() for j in range(PAIRS)]
    connected = time.monotonic()

    infos = []
    for seq in range(MESSAGES):
        qos = 1 + seq % 2
        for j, p in enumerate(pubs):
            info = p.client.publish(topic(j), f"{j}:{seq}", qos)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS
            infos.append(info)
    for info in infos:
        info.wait_for_publish(max(0.1, start + DEADLINE - time.monotonic()))
    assert all(info.is_published() for info in infos)
    assert all_in.wait(max(0.1, start + DEADLINE - time.monotonic())), (
        f"{len(received)} of {expected} deliveries"
    )
    time.sleep(0.3)  # anything extra would be a duplicate
    with lock:
        got = list(received)

    per_delivery = Counter((k, j, seq) for k, j, seq, _ in got)
    duplicates = {key: n for key, n in per_delivery.items() if n > 1}
    assert not duplicates
    wanted = {
        (k, j, seq) for k in range(PAIRS) for j in (k, (k + 1) % PAIRS) for seq in range(MESSAGES)
    }
    assert set(per_delivery) == wanted, f"missing {len(wanted - set(per_delivery))}"
    per_message = Counter((j, seq) for _, j, seq, _ in got)
    assert set(per_message.values()) == {2}
    assert all(qos == 1 + seq % 2 for _, _, seq, qos in got)
    streams: dict[tuple[int, int, int], list[int]] = {}
    for k, j, seq, qos in got:
        streams.setdefault((k, j, qos), []).append(seq)
    assert len(streams) == PAIRS * 2 * 2
    for key, seqs in streams.items():
        assert seqs == sorted(seqs), key

    assert connected - start < DEADLINE / 3

"""Persist: SIGKILL the broker process while a publisher streams to an offline persistent session.

The scenario of the persistence issue: a subscriber subscribes with clean session 0 and goes
away; a publisher sends 20,000 QoS 1 messages (and, in a second run, 5,000 QoS 2 messages) to it;
the broker process is killed with SIGKILL at random moments at least three times while the
publisher is sending, and restarted each time on the same port and data directory. After the last
restart the subscriber comes back and must receive every message the publisher saw acknowledged:
at least once and in order for QoS 1 (the first occurrences of the sequence numbers increase),
exactly once and in order for QoS 2. The broker runs in ``durability = "ack"`` (the default), so
an acknowledgement (PUBACK, PUBREC) means the message is on disk.

The publisher (``rawstream.Publisher``) is MQTT 3.1.1 with clean session 0, a window of 50
messages in flight, and on connection loss reconnects with backoff and resends every open PUBLISH
with the same packet id and DUP=1, and PUBREL for every QoS 2 message already PUBREC'd. Exactly
once across the crash rests on the broker having persisted its incoming QoS 2 packet ids (a resent
PUBLISH it has seen is acknowledged, not routed again) and their release before PUBCOMP (the
publisher reuses the lowest free packet id at once). The kill moments come from a RNG seeded with
``SEED``, so a failing run can be repeated.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokerproc import BrokerProcess
from rawstream import Publisher, Subscriber

SEED = 20260523
WINDOW = 50
KILLS = 4
DEADLINE = 40.0  # seconds per run, publishing and draining together
TOPIC = "persist/crash"
CONFIG = {
    "max_queued_messages": 1_000_000,  # the offline queue must hold every message
    # Incoming QoS 2 ids the broker keeps before PUBREL are capped by max_inflight_messages.
    "max_inflight_messages": 100,
    "log_level": "info",
}


# -- the killer -----------------------------------------------------------------------------------


def _killer(
    broker: BrokerProcess,
    publisher: Publisher,
    thresholds: list[int],
    rng: random.Random,
    kills: list[int],
    failure: list[BaseException],
    stop: threading.Event,
) -> None:
    """SIGKILL the broker each time the publisher's progress passes a threshold (plus a random
    few milliseconds), then restart it after a random pause."""
    try:
        for threshold in thresholds:
            while publisher.progress < threshold:
                if stop.wait(0.002):
                    return
            time.sleep(rng.uniform(0.0, 0.03))
            kills.append(publisher.progress)
            broker.kill()
            time.sleep(rng.uniform(0.05, 0.4))
            broker.start()
    except BaseException as exc:  # handed to the test thread
        failure.append(exc)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path, CONFIG)
    try:
        yield b
    finally:
        b.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("qos", "total"), [(1, 20_000), (2, 5_000)], ids=["qos1", "qos2"])
def test_sigkill_during_publishing_loses_no_acknowledged_message(
    broker: BrokerProcess, qos: int, total: int
) -> None:
    rng = random.Random(SEED + qos)
    deadline = time.monotonic() + DEADLINE
    broker.start()
    sub = Subscriber(broker.port, f"crash-sub-q{qos}")
    assert not sub.connect()
    sub.subscribe(TOPIC, qos)
    sub.disconnect()

    publisher = Publisher(
        broker.port,
        f"crash-pub-q{qos}",
        TOPIC,
        qos=qos,
        total=total,
        deadline=deadline,
        window=WINDOW,
    )
    # Kill points spread over the run: the i-th somewhere in the i-th stretch of the progress.
    span = total // (KILLS + 1)
    thresholds = [span * i + rng.randrange(span // 2) for i in range(1, KILLS + 1)]
    kills: list[int] = []
    failure: list[BaseException] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=_killer, args=(broker, publisher, thresholds, rng, kills, failure, stop)
    )
    killer.start()
    try:
        publisher.run()
    finally:
        stop.set()
        killer.join(30)
    if failure:
        raise failure[0]
    assert len(kills) == KILLS, f"{len(kills)} kills: {publisher.stats()}"
    assert kills[-1] < total, f"the last kill came after publishing had finished: {kills}"
    assert publisher.connects >= KILLS + 1, publisher.stats()
    assert publisher.resent > 0, f"no kill caught a message in flight: {publisher.stats()}"
    # It resent until everything was acknowledged, so every message must arrive.
    assert publisher.acked == set(range(total)), publisher.stats()

    present = sub.connect()
    assert present, "the subscriber's session did not survive the crashes"
    sub.receive(publisher.acked, deadline)
    seqs = sub.seqs
    assert set(seqs) <= publisher.acked, "messages nobody published arrived"
    missing = publisher.acked - set(seqs)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
    if qos == 2:
        assert len(seqs) == len(set(seqs)), f"{len(seqs) - len(set(seqs))} duplicates at QoS 2"
        assert seqs == sorted(seqs), "QoS 2 messages out of order"
    else:
        first: list[int] = []
        seen: set[int] = set()
        for seq in seqs:
            if seq not in seen:
                seen.add(seq)
                first.append(seq)
        assert first == sorted(first), "QoS 1 messages out of order (first occurrences)"
    assert sub.dups == 0, "the subscriber was never connected before: nothing is a resend"
    sub.disconnect()
    problems = broker.tracebacks()
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("acking", [False, True], ids=["stalled", "acking"])
def test_sigkill_after_publishing_to_a_connected_subscriber(
    broker: BrokerProcess, acking: bool
) -> None:
    """A connected persistent subscriber: the publisher's PUBACK may come as soon as the
    subscriber acknowledged the message (then nothing needs writing) or once the delivery is
    committed (a subscriber that stalls). After a SIGKILL, every message the publisher saw
    acknowledged has reached the subscriber before the crash or arrives after the restart."""
    deadline = time.monotonic() + DEADLINE
    total = 3_000
    broker.start()
    sub = Subscriber(broker.port, "live-sub")
    assert not sub.connect()
    sub.subscribe(TOPIC, 1)
    publisher = Publisher(
        broker.port, "live-pub", TOPIC, qos=1, total=total, deadline=deadline, window=WINDOW
    )
    receiver = None
    if acking:  # acknowledges everything, concurrently with the publisher
        receiver = threading.Thread(target=sub.receive, args=(set(range(total)), deadline))
        receiver.start()
    try:
        publisher.run()
    finally:
        if receiver is not None:
            receiver.join(30)
    assert publisher.acked == set(range(total)), publisher.stats()
    before = set(sub.seqs)
    assert before == (set(range(total)) if acking else set())
    broker.kill()
    sub.close()
    broker.start()
    assert sub.connect(), "the subscriber's session did not survive the crash"
    sub.receive(publisher.acked - before, deadline)
    missing = publisher.acked - set(sub.seqs)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
    sub.disconnect()
    problems = broker.tracebacks()
    assert not problems, "\n".join(problems)

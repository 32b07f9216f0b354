"""Client scenarios run against every real broker (wrenmq and Mosquitto).

Each ``case_*`` takes a started ``TestBroker`` and a protocol version and asserts what the client
promises; ``test_client_wrenmq.py`` and ``test_client_mosquitto.py`` run them all. Bounded waits
throughout: every ``async for`` and every await sits under ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from clientbrokers import TestBroker, drop_connection, eventually

from wrenmq.client import Client, DisconnectedError, Message, OfflineQueueFull, Reconnect
from wrenmq.codec.packets import Subscription, Will
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.sync import Client as SyncClient

FAST = Reconnect(initial_delay=0.05, max_delay=0.2, jitter=0.2)


def make(broker: TestBroker, version: int, **kwargs: Any) -> Client:
    return Client("127.0.0.1", broker.port, version=version, **kwargs)


async def take(stream: Any, count: int, timeout: float = 5.0) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        async for message in stream:
            got.append(message)
            if len(got) == count:
                break
    return got


async def case_pubsub_every_qos(broker: TestBroker, version: int, topic: str) -> None:
    async with make(broker, version) as sub, make(broker, version) as pub:
        assert await sub.subscribe(f"{topic}/#", qos=2) == ReasonCode.GRANTED_QOS_2
        await pub.publish(f"{topic}/x", "m0", qos=0)  # returns None: QoS 0 has no acknowledgement
        for q in (1, 2):
            assert not (await pub.publish(f"{topic}/x", f"m{q}", qos=q)).is_failure
        got = await take(sub.messages, 3)
        assert [(m.topic, m.payload, m.qos) for m in got] == [
            (f"{topic}/x", f"m{q}".encode(), q) for q in (0, 1, 2)
        ]


async def case_subscribe_many_and_unsubscribe(broker: TestBroker, version: int, t: str) -> None:
    async with make(broker, version) as client:
        codes = await client.subscribe([f"{t}/0", (f"{t}/1", 1), Subscription(f"{t}/2", 2)], qos=0)
        assert codes == [ReasonCode.GRANTED_QOS_0, ReasonCode.GRANTED_QOS_1, ReasonCode(2)]
        assert await client.unsubscribe([f"{t}/0", f"{t}/1"]) == [ReasonCode.SUCCESS] * 2
        for i in range(3):
            await client.publish(f"{t}/{i}", str(i), qos=1)
        (only,) = await take(client.messages, 1)
        assert (only.topic, only.qos) == (f"{t}/2", 1)
        with pytest.raises(TimeoutError):
            await take(client.messages, 1, timeout=0.2)


async def case_retained_and_filtered_streams(broker: TestBroker, version: int, t: str) -> None:
    async with make(broker, version) as client:
        await client.publish(f"{t}/r", b"kept", qos=1, retain=True)
        a = client.messages.filter(f"{t}/a/+")
        async with client.messages.filter(f"{t}/r") as r:
            await client.subscribe(f"{t}/#", qos=1)
            (retained,) = await take(r, 1)
            assert (retained.payload, retained.retain) == (b"kept", True)
            await client.publish(f"{t}/a/1", b"1", qos=1)
            await client.publish(f"{t}/b", b"2", qos=1)
            assert [m.payload for m in await take(a, 1)] == [b"1"]
            # Not claimed by a filtered stream: it lands in client.messages.
            assert [m.payload for m in await take(client.messages, 1)] == [b"2"]
        await client.publish(f"{t}/r", b"", qos=1, retain=True)  # clear the retained message


async def case_callbacks(
    broker: TestBroker, version: int, t: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []
    async_seen: list[bytes] = []
    async with make(broker, version) as client:

        @client.on_message
        def crashing(message: Message) -> None:
            seen.append(message.payload)
            if message.payload == b"boom":
                raise RuntimeError("handler bug")

        @client.on_message
        async def slow(message: Message) -> None:
            await asyncio.sleep(0)
            async_seen.append(message.payload)

        await client.subscribe(f"{t}/#", qos=1)
        with caplog.at_level(logging.ERROR, logger="wrenmq.client"):
            for payload in (b"a", b"boom", b"c"):
                await client.publish(f"{t}/x", payload, qos=1)
            await eventually(lambda: len(async_seen) == 3)
        assert seen == [b"a", b"boom", b"c"] and async_seen == seen
        assert "handler bug" in caplog.text  # logged, and the client lived on
        assert client.is_connected


async def case_connected_and_disconnected_events(broker: TestBroker, version: int) -> None:
    events: list[Any] = []
    client = make(broker, version, reconnect=FAST)
    client.on_connected(lambda connack: events.append(("up", connack.session_present)))
    client.on_disconnected(lambda error: events.append(("down", error.reason_code)))
    async with client:
        drop_connection(client)
        await eventually(lambda: len(events) == 3)
    assert events[:3] == [("up", False), ("down", ReasonCode.UNSPECIFIED_ERROR), ("up", False)]
    assert events[3] == ("down", ReasonCode.NORMAL_DISCONNECTION)


async def case_v5_options(broker: TestBroker, t: str) -> None:
    async with make(broker, 5) as client:
        await client.subscribe(f"{t}/own", qos=1, no_local=True)
        await client.subscribe(f"{t}/id/#", qos=1, subscription_identifier=42)
        await client.publish(f"{t}/own", b"not for me", qos=1)
        await client.publish(
            f"{t}/id/1",
            b"{}",
            qos=1,
            user_properties=[("k", "v")],
            content_type="application/json",
            message_expiry_interval=60,
        )
        (m,) = await take(client.messages, 1)
        assert m.topic == f"{t}/id/1"
        assert m.properties.subscription_identifiers == (42,)
        assert m.properties.user_properties == (("k", "v"),)
        assert m.properties.content_type == "application/json"


async def case_request_response(broker: TestBroker, t: str) -> None:
    async with make(broker, 5) as server, make(broker, 5) as caller:

        @server.on_message
        async def answer(request: Message) -> None:
            await server.respond(request, b"pong:" + request.payload)

        await server.subscribe(f"{t}/svc", qos=1)
        replies = await asyncio.gather(
            *(caller.request(f"{t}/svc", f"{i}", timeout=5) for i in range(5))
        )
        assert sorted(r.payload for r in replies) == [f"pong:{i}".encode() for i in range(5)]


async def case_topic_aliases(broker: TestBroker, t: str) -> None:
    async with make(broker, 5) as sub, make(broker, 5) as pub:
        assert pub.protocol.server_topic_alias_maximum > 0
        await sub.subscribe(f"{t}/#", qos=1)
        for i in range(6):
            await pub.publish(f"{t}/alias", str(i), qos=i % 2)
        got = await take(sub.messages, 6)
        assert [(m.topic, m.payload) for m in got] == [
            (f"{t}/alias", str(i).encode()) for i in range(6)
        ]
        assert f"{t}/alias" in pub.protocol._out_aliases._by_topic  # it did go out aliased


async def case_assigned_client_id(broker: TestBroker) -> None:
    async with make(broker, 5, client_id="") as client:
        assert client.client_id  # the server's Assigned Client Identifier


async def case_will(broker: TestBroker, version: int, t: str) -> None:
    async with make(broker, version) as watcher:
        await watcher.subscribe(f"{t}/will", qos=1)
        dying = make(broker, version, will=Will(f"{t}/will", b"gone", qos=1))
        await dying.connect()
        drop_connection(dying)
        (m,) = await take(watcher.messages, 1)
        assert m.payload == b"gone"
        await dying.disconnect()


async def case_receive_maximum_and_inflight(broker: TestBroker, version: int, t: str) -> None:
    async with make(broker, version, max_inflight=3) as client:
        await client.subscribe(f"{t}/#", qos=1)
        codes = await asyncio.gather(*(client.publish(f"{t}/n", str(i), qos=1) for i in range(40)))
        assert len(codes) == 40 and client.protocol.inflight == 0
        got = await take(client.messages, 40)
        assert [m.payload for m in got] == [str(i).encode() for i in range(40)]


async def case_offline_queue_policies(broker: TestBroker, version: int, t: str) -> None:
    """Publishes made while the broker is down wait in the bounded offline queue.

    Each client subscribes to its own topic, so after the restart it resubscribes before it
    flushes its queue and sees exactly what survived the queue's policy.
    """
    async with (
        make(
            broker, version, reconnect=FAST, offline_queue_size=2, offline_policy="drop_oldest"
        ) as dropper,
        make(
            broker, version, reconnect=FAST, offline_queue_size=2, offline_policy="raise"
        ) as raiser,
    ):
        await dropper.subscribe(f"{t}/d", qos=1)
        await raiser.subscribe(f"{t}/r", qos=1)
        await broker.kill()
        await eventually(lambda: not dropper.is_connected and not raiser.is_connected)
        first = asyncio.ensure_future(dropper.publish(f"{t}/d", b"0", qos=1))
        kept = [asyncio.ensure_future(dropper.publish(f"{t}/d", str(i), qos=1)) for i in (1, 2)]
        with pytest.raises(OfflineQueueFull):
            await asyncio.wait_for(first, 1)
        queued = [asyncio.ensure_future(raiser.publish(f"{t}/r", str(i), qos=1)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(OfflineQueueFull):
            await raiser.publish(f"{t}/r", b"3", qos=1)
        await broker.restart()
        async with asyncio.timeout(5):
            await asyncio.gather(*kept, *queued)
        assert [m.payload for m in await take(dropper.messages, 2)] == [b"1", b"2"]
        assert [m.payload for m in await take(raiser.messages, 2)] == [b"1", b"2"]


async def case_offline_queue_blocks(broker: TestBroker, version: int, t: str) -> None:
    async with make(broker, version, reconnect=FAST, offline_queue_size=1) as client:
        await broker.kill()
        await eventually(lambda: not client.is_connected)
        queued = asyncio.ensure_future(client.publish(f"{t}/b", b"1", qos=1))
        blocked = asyncio.ensure_future(client.publish(f"{t}/b", b"2", qos=1))
        await asyncio.sleep(0.1)
        assert not queued.done() and not blocked.done()
        await broker.restart()
        async with asyncio.timeout(5):
            await asyncio.gather(queued, blocked)


async def case_restart_mid_stream(broker: TestBroker, version: int, t: str, qos: int) -> None:
    """Kill the broker mid-stream and start a fresh one on the same port (all sessions lost).

    One client both subscribes and publishes, so that after reconnecting it resubscribes before
    it republishes and flushes its offline queue: the fair test of what the client itself
    guarantees. Nothing is in flight at the moment of the kill (we wait for each batch's
    acknowledgements), so both QoS 1 (no loss) and QoS 2 (no loss, no duplicate) are exact.
    """
    kwargs: dict[str, Any] = {"reconnect": FAST, "clean_start": False}
    if version == 5:
        kwargs["session_expiry"] = 300
    async with make(broker, version, **kwargs) as client:
        await client.subscribe(f"{t}/s", qos=qos)
        batch1 = [await client.publish(f"{t}/s", f"{i}", qos=qos) for i in range(20)]
        assert len(batch1) == 20
        got = await take(client.messages, 20)
        await broker.kill()
        await eventually(lambda: not client.is_connected)
        offline = [
            asyncio.ensure_future(client.publish(f"{t}/s", f"{i}", qos=qos)) for i in range(20, 40)
        ]
        await asyncio.sleep(0.1)
        await broker.restart()
        async with asyncio.timeout(5):
            await asyncio.gather(*offline)
        batch3 = [await client.publish(f"{t}/s", f"{i}", qos=qos) for i in range(40, 60)]
        assert len(batch3) == 20
        got += await take(client.messages, 40)
        payloads = [int(m.payload) for m in got]
        assert payloads == list(range(60))  # no loss, no duplicate, in order


async def case_drop_connection_mid_stream(broker: TestBroker, version: int, t: str) -> None:
    """Cut connections while QoS 1 and 2 flows are in flight; sessions resume (broker alive).

    QoS 2 arrives exactly once and QoS 1 at least once, whatever the cut interrupts.
    """
    kwargs: dict[str, Any] = {"reconnect": FAST, "clean_start": False}
    if version == 5:
        kwargs["session_expiry"] = 300
    async with make(broker, version, **kwargs) as sub, make(broker, version, **kwargs) as pub:
        await sub.subscribe([(f"{t}/q1", 1), (f"{t}/q2", 2)])
        sends = []
        for i in range(60):
            sends.append(
                asyncio.ensure_future(pub.publish(f"{t}/q{1 + i % 2}", str(i), qos=1 + i % 2))
            )
            if i in (15, 45):
                drop_connection(sub)
            if i == 30:
                drop_connection(pub)
            await asyncio.sleep(0.005)
        async with asyncio.timeout(8):
            await asyncio.gather(*sends)
        counts: Counter[int] = Counter()

        def complete() -> bool:
            while (m := sub.messages.get_nowait()) is not None:
                counts[int(m.payload)] += 1
            return all(counts[i] for i in range(60))

        await eventually(complete, timeout=8)
        await asyncio.sleep(0.2)
        complete()
        assert all(counts[i] == 1 for i in range(1, 60, 2)), counts  # QoS 2: exactly once
        assert all(counts[i] >= 1 for i in range(0, 60, 2))  # QoS 1: at least once


async def case_manual_ack_redelivery(
    broker: TestBroker, version: int, t: str, qos: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler crash leaves the message unacknowledged; the server redelivers it on resume."""
    kwargs: dict[str, Any] = {"reconnect": FAST, "clean_start": False, "manual_ack": True}
    if version == 5:
        kwargs["session_expiry"] = 300
    deliveries: list[tuple[bytes, bool]] = []
    async with make(broker, version, **kwargs) as sub, make(broker, version) as pub:

        @sub.on_message
        def handle(message: Message) -> None:
            deliveries.append((message.payload, message.dup))
            if len(deliveries) == 1:
                raise RuntimeError("crash while processing")

        await sub.subscribe(f"{t}/m", qos=qos)
        with caplog.at_level(logging.ERROR, logger="wrenmq.client"):
            await pub.publish(f"{t}/m", b"job", qos=qos)
            await eventually(lambda: len(deliveries) == 1)
        assert "crash while processing" in caplog.text
        await asyncio.sleep(0.1)
        drop_connection(sub)
        await eventually(lambda: len(deliveries) == 2)
        assert deliveries == [(b"job", False), (b"job", True)]
        await pub.publish(f"{t}/m", b"next", qos=qos)
        await eventually(lambda: len(deliveries) == 3)
        drop_connection(sub)  # "job" was acknowledged this time: no third delivery
        await sub.wait_connected(5)
        await asyncio.sleep(0.2)
        assert [d[0] for d in deliveries] == [b"job", b"job", b"next"]


async def case_no_reconnect_ends_streams(broker: TestBroker, version: int) -> None:
    async with make(broker, version) as client:
        drop_connection(client)
        with pytest.raises(DisconnectedError):
            await take(client.messages, 1)
        with pytest.raises(DisconnectedError):
            await client.publish("x", b"", qos=1)


async def case_keepalive(broker: TestBroker, version: int) -> None:
    """Idle for longer than 1.5 x the keep alive: only our PINGREQs keep the server from closing."""
    events: list[str] = []
    async with make(broker, version, keepalive=1) as client:
        client.on_disconnected(lambda error: events.append("down"))
        start = client.protocol._keepalive.last_sent
        await asyncio.sleep(2.3)
        assert client.is_connected and not events
        assert client.protocol._keepalive.last_sent > start + 1.5  # PINGREQs went out


def case_sync_client(port: int, version: int, t: str) -> None:
    with SyncClient("127.0.0.1", port, version=version) as client:
        assert client.subscribe(f"{t}/#", qos=1) == ReasonCode.GRANTED_QOS_1
        assert not client.publish(f"{t}/x", b"hello", qos=1).is_failure
        message = client.get_message(timeout=5)
        assert message is not None and message.payload == b"hello"
        assert client.get_message(timeout=0.1) is None

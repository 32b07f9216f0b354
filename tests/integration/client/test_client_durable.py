"""Durable client sessions: QoS 1/2 state survives reconnects, store reloads and SIGKILL.

The crash tests run the client in a subprocess (``durable_peer.py``) against a real wrenmq broker
(``BrokerThread``, sessions in memory: only the client dies) or a scripted fake server, kill it
mid-stream, and start a new process on the same SQLite store:

* a publisher killed at random moments, three times: every message whose ``publish()`` returned
  or that was in the store at the kill reaches the subscriber; QoS 2 exactly once;
* a subscriber that kills itself right after recording a message (before its PUBREC, so long
  before PUBCOMP): the application sees every message once;
* the same on the wire, against a fake server that resends the PUBLISH with DUP: the restarted
  client answers PUBREC without delivering, PUBCOMP after PUBREL, and takes the next message
  reusing the packet id as new.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from clientbrokers import WrenBroker, drop_connection, eventually

from brokerthread import BrokerThread
from wrenmq.client import Client, DisconnectedError, Reconnect
from wrenmq.client.errors import StoreError
from wrenmq.client.store import MemorySessionStore, SQLiteStore, StoredSession
from wrenmq.errors import ConfigError

pytestmark = pytest.mark.timeout(90)

PEER = Path(__file__).with_name("durable_peer.py")


def spawn(
    mode: str, port: int, tmp: Path, name: str, topic: str, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(PEER),
            mode,
            "--port",
            str(port),
            "--store",
            str(tmp / f"{name}.db"),
            "--client-id",
            name,
            "--topic",
            topic,
            "--log",
            str(tmp / f"{name}.log"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"peer did not start: {line!r}\n{err}")


async def finish(proc: subprocess.Popen[str], timeout: float = 45) -> int:
    try:
        _, err = await asyncio.wait_for(asyncio.to_thread(proc.communicate), timeout)
    except TimeoutError:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"peer failed ({proc.returncode}):\n{err}")
    return proc.returncode


def lines(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


async def stored(path: Path, client_id: str) -> StoredSession:
    store = SQLiteStore(path)
    await store.open()
    try:
        return await store.load(client_id)
    finally:
        await store.close()


# -- crash tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("qos", "version"), [(1, 5), (2, 5), (2, 4)])
async def test_publisher_killed_mid_stream_resumes_from_its_store(
    broker_thread: BrokerThread, tmp_path: Path, unique_topic: str, qos: int, version: int
) -> None:
    port = broker_thread.port
    received: list[int] = []
    must_arrive: set[int] = set()
    per_run = 3000
    async with Client("127.0.0.1", port, client_id="durable-sub", version=version) as sub:
        sub.on_message(lambda m: received.append(int(m.payload)))
        await sub.subscribe(unique_topic, qos=2)
        log = tmp_path / "pub.log"
        for run in range(3):
            proc = spawn(
                "publish", port, tmp_path, "pub", unique_topic, "--qos", str(qos),
                "--version", str(version), "--start", str(run * per_run),
                "--count", str(per_run), "--window", "50",
            )  # fmt: skip
            await wait_ready(proc)
            before = len(lines(log))
            await eventually(lambda b=before: len(lines(log)) >= b + 150, timeout=20)
            proc.send_signal(signal.SIGKILL)
            assert await finish(proc) == -signal.SIGKILL
            session = await stored(tmp_path / "pub.db", "pub")
            in_store = {int(m.payload) for m in session.outgoing}
            assert in_store, "killed with nothing in flight: the test proves nothing"
            must_arrive |= set(lines(log)) | in_store
        # A last process only resumes what the store holds.
        proc = spawn("publish", port, tmp_path, "pub", unique_topic, "--version", str(version))
        await wait_ready(proc)
        assert await finish(proc) == 0
        assert (await stored(tmp_path / "pub.db", "pub")).outgoing == ()
        await eventually(lambda: must_arrive <= set(received), timeout=20)
        await asyncio.sleep(0.2)  # let stray duplicates, if any, arrive
    assert set(received) <= set(range(3 * per_run))
    if qos == 2:
        duplicates = len(received) - len(set(received))
        assert duplicates == 0, f"{duplicates} QoS 2 messages arrived twice"


async def test_subscriber_killed_after_recording_sees_every_message_once(
    broker_thread: BrokerThread, tmp_path: Path, unique_topic: str
) -> None:
    port = broker_thread.port
    total = 300
    deaths = [37, 1, 1, 80, 5]
    proc = spawn(
        "subscribe", port, tmp_path, "sub", unique_topic, "--die-after", str(deaths[0]),
        "--expect", str(total),
    )  # fmt: skip
    await wait_ready(proc)
    async with Client("127.0.0.1", port, client_id="durable-pub") as pub:
        publishing = asyncio.ensure_future(
            asyncio.gather(*(pub.publish(unique_topic, str(i), qos=2) for i in range(total)))
        )
        for die_after in [*deaths[1:], 0]:
            assert await finish(proc) == -signal.SIGKILL
            # (It may die before it even says it is ready: the broker resends at once.)
            proc = spawn(
                "subscribe", port, tmp_path, "sub", unique_topic, "--die-after", str(die_after),
                "--expect", str(total),
            )  # fmt: skip
        assert await finish(proc) == 0
        await publishing
    got = lines(tmp_path / "sub.log")
    assert sorted(got) == list(range(total)), "lost or duplicated messages"
    assert got == list(range(total))  # and in order


# -- the same on the wire, against a scripted server ---------------------------------------------


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


def qos2_publish(pid: int, payload: bytes, *, dup: bool) -> bytes:
    body = b"\x00\x01t" + pid.to_bytes(2, "big") + b"\x00" + payload
    return bytes([0x34 | (0x08 if dup else 0), len(body)]) + body


async def test_restart_answers_the_resent_qos2_publish_without_delivering_it(
    tmp_path: Path,
) -> None:
    script: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await script.put((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def handshake(present: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(script.get(), 15)
        first, body = await read_packet(reader)
        assert first == 0x10 and not body[7] & 0x02  # CONNECT without Clean Start
        writer.write(bytes([0x20, 3, int(present), 0, 0]))
        first, body = await read_packet(reader)
        assert first == 0x82  # SUBSCRIBE: answer with Granted QoS 2
        writer.write(bytes([0x90, 4]) + body[:2] + b"\x00\x02")
        return reader, writer

    async def expect(reader: asyncio.StreamReader, first: int, pid: int) -> None:
        got, body = await asyncio.wait_for(read_packet(reader), 5)
        if (got, body[:2]) != (first, pid.to_bytes(2, "big")):
            try:
                _, err = proc.communicate(timeout=8)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            raise AssertionError(f"expected 0x{first:02X} {pid}, got 0x{got:02X} {body!r}\n{err}")

    try:
        proc = spawn("subscribe", port, tmp_path, "c", "t", "--die-after", "1", "--expect", "9")
        reader, writer = await handshake(present=False)
        writer.write(qos2_publish(7, b"1", dup=False))
        assert await finish(proc) == -signal.SIGKILL  # recorded it, died before its PUBREC
        writer.close()
        assert lines(tmp_path / "c.log") == [1]
        assert (await stored(tmp_path / "c.db", "c")).incoming_qos2 == (7,)

        proc = spawn("subscribe", port, tmp_path, "c", "t", "--expect", "2")
        reader, writer = await handshake(present=True)
        writer.write(qos2_publish(7, b"1", dup=True))  # the server never saw a PUBREC
        await expect(reader, 0x50, 7)  # PUBREC: known, not delivered again [MQTT-4.3.3-10]
        writer.write(bytes([0x62, 2, 0, 7]))  # PUBREL
        await expect(reader, 0x70, 7)  # PUBCOMP, once the store forgot the id
        writer.write(qos2_publish(7, b"2", dup=False))  # the id reused: a new message
        await expect(reader, 0x50, 7)
        # The peer has its two messages and disconnects; id 7 awaits PUBREL in the store.
        assert (await asyncio.wait_for(read_packet(reader), 5))[0] == 0xE0
        assert await finish(proc) == 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert lines(tmp_path / "c.log") == [1, 2]  # each once
    assert (await stored(tmp_path / "c.db", "c")).incoming_qos2 == (7,)


# -- in one process -------------------------------------------------------------------------------


@pytest.fixture
async def broker() -> AsyncIterator[WrenBroker]:
    b = WrenBroker()
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def test_offline_queue_survives_a_new_client(broker: WrenBroker, unique_topic: str) -> None:
    store = MemorySessionStore()
    client = Client(
        "127.0.0.1", broker.port, client_id="d-pub", session_store=store,
        reconnect=Reconnect(initial_delay=0.05, max_delay=0.1),
    )  # fmt: skip
    await client.connect()
    await broker.kill()  # the publisher is now reconnecting
    await eventually(lambda: not client.is_connected)
    for i in range(5):
        with pytest.raises(TimeoutError):
            await client.publish(unique_topic, b"q%d" % i, qos=1, timeout=0.05)
    loaded = await store.load("d-pub")
    assert [(m.payload, m.packet_id) for m in loaded.outgoing] == [
        (b"q%d" % i, 0) for i in range(5)
    ]
    await client.disconnect()  # the queued messages stay in the store
    await broker.start()
    received: list[bytes] = []
    async with Client("127.0.0.1", broker.port, client_id="d-sub") as sub:
        sub.on_message(lambda m: received.append(m.payload))
        await sub.subscribe(unique_topic, qos=1)
        async with Client(
            "127.0.0.1", broker.port, client_id="d-pub", clean_start=False, session_store=store
        ) as resumed:
            await resumed.wait_published(timeout=5)
        await eventually(lambda: len(received) >= 5)
    assert received == [b"q%d" % i for i in range(5)]
    assert (await store.load("d-pub")).outgoing == ()


async def test_qos2_exactly_once_across_connection_drops(
    broker: WrenBroker, unique_topic: str
) -> None:
    store = MemorySessionStore()
    received: list[int] = []
    async with Client("127.0.0.1", broker.port, client_id="x-sub") as sub:
        sub.on_message(lambda m: received.append(int(m.payload)))
        await sub.subscribe(unique_topic, qos=2)
        async with Client(
            "127.0.0.1", broker.port, client_id="x-pub", clean_start=False, session_expiry=600,
            session_store=store, reconnect=Reconnect(initial_delay=0.01, max_delay=0.05),
        ) as pub:  # fmt: skip
            tasks = [asyncio.ensure_future(pub.publish(unique_topic, str(i), qos=2)) for i in
                     range(600)]  # fmt: skip
            for _ in range(4):
                await asyncio.sleep(0.01)
                if pub.is_connected:
                    drop_connection(pub)
                await pub.wait_connected(timeout=5)
            await asyncio.gather(*tasks)
        await eventually(lambda: len(received) >= 600)
        await asyncio.sleep(0.1)
    assert sorted(received) == list(range(600))
    assert await store.load("x-pub") == StoredSession(next_packet_id=601)


async def test_clean_start_clears_the_store(broker: WrenBroker) -> None:
    store = MemorySessionStore()
    store.add_incoming("c", 3)
    async with Client("127.0.0.1", broker.port, client_id="c", session_store=store):
        pass
    assert (await store.load("c")).incoming_qos2 == ()


async def test_a_store_needs_a_client_id() -> None:
    with pytest.raises(ConfigError):
        Client("127.0.0.1", session_store=MemorySessionStore())


class BrokenStore(MemorySessionStore):
    def commit(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_exception(StoreError("disk full"))
        return fut


async def test_a_failing_store_ends_the_client(
    broker: WrenBroker, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client("127.0.0.1", broker.port, client_id="b", clean_start=False,
                    session_store=BrokenStore())  # fmt: skip
    await client.connect()
    with (
        caplog.at_level(logging.ERROR, logger="wrenmq.client"),
        pytest.raises(DisconnectedError, match="session store failed") as err,
    ):
        await client.publish("t", b"x", qos=1, timeout=5)
    assert isinstance(err.value.__cause__, StoreError)
    assert "session store failed" in caplog.text  # the expected ERROR
    assert not client.is_connected
    await client.disconnect()

"""The asyncio client against a scripted fake server: the failures real brokers never produce.

The server is a plain ``asyncio`` stream server on an ephemeral loopback port that answers CONNECT
with hand-written CONNACK bytes and then does what each test says (stay silent, send garbage,
send DISCONNECT). Also the cancellation tests: a cancelled wait never loses a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from clientbrokers import eventually

from wrenmq.client import Client, DisconnectedError
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import ConnectError

pytestmark = pytest.mark.timeout(10)

CONNACK_V5 = bytes([0x20, 3, 0, 0, 0])  # no session, Success, no properties
CONNACK_V4 = bytes([0x20, 2, 0, 0])

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class FakeServer:
    def __init__(self) -> None:
        self.received = bytearray()
        self.script: Script | None = None
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            first = await reader.read(2)  # CONNECT fixed header; a short CONNECT fits one read
            body = await reader.read(4096)
            self.received += first + body
            level = body[6]
            writer.write(CONNACK_V5 if level == 5 else CONNACK_V4)
            if self.script is not None:
                await self.script(reader, writer)
            while data := await reader.read(4096):
                self.received += data
        except (ConnectionError, IndexError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    fs = FakeServer()
    fs.server = await asyncio.start_server(fs.handle, "127.0.0.1", 0)
    try:
        yield fs
    finally:
        for w in fs.writers:
            w.close()
        fs.server.close()
        await fs.server.wait_closed()


async def test_keepalive_timeout_detects_a_dead_server(
    fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    reasons: list[ReasonCode] = []
    async with Client("127.0.0.1", fake.port, keepalive=1) as client:
        client.on_disconnected(lambda error: reasons.append(error.reason_code))
        with caplog.at_level(logging.WARNING, logger="wrenmq.client"):
            await eventually(lambda: bool(reasons), timeout=5)
        assert reasons == [ReasonCode.KEEP_ALIVE_TIMEOUT]
        assert "keep alive" in caplog.text  # the expected WARNING
        await eventually(lambda: bytes([0xE0, 1, 0x8D]) in fake.received)
        assert bytes([0xC0, 0]) in fake.received  # it did ping first


async def test_publish_timeout_and_cancellation_keep_the_message_in_flight(
    fake: FakeServer,
) -> None:
    async with Client("127.0.0.1", fake.port) as client:
        with pytest.raises(TimeoutError):
            await client.publish("t", b"x", qos=1, timeout=0.2)
        task = asyncio.ensure_future(client.publish("t", b"y", qos=2))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.protocol.inflight == 2  # still owed to the server; resent on resume
        assert client.is_connected


async def test_cancelled_wait_loses_no_message(fake: FakeServer) -> None:
    async def later(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)
        writer.write(bytes([0x30, 6, 0, 1, ord("t"), 0, ord("h"), ord("i")]))  # QoS 0 "hi"

    fake.script = later
    async with Client("127.0.0.1", fake.port) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await anext(client.messages)
        async with asyncio.timeout(2):
            message = await anext(client.messages)
        assert (message.topic, message.payload) == ("t", b"hi")


async def test_server_disconnect_ends_the_client_without_reconnect(fake: FakeServer) -> None:
    async def shut_down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.1)
        writer.write(bytes([0xE0, 1, 0x8B]))  # DISCONNECT: Server shutting down

    fake.script = shut_down
    async with Client("127.0.0.1", fake.port) as client:
        with pytest.raises(DisconnectedError) as err:
            async with asyncio.timeout(2):
                await anext(client.messages)
        assert err.value.reason_code == ReasonCode.SERVER_SHUTTING_DOWN
        with pytest.raises(DisconnectedError):
            await client.publish("t", b"")


async def test_malformed_server_data_is_answered_with_disconnect(
    fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes([0x00, 0x00]))  # packet type 0 is reserved

    fake.script = garbage
    with caplog.at_level(logging.WARNING, logger="wrenmq.client"):
        async with Client("127.0.0.1", fake.port) as client:
            with pytest.raises(DisconnectedError) as err:
                async with asyncio.timeout(2):
                    await anext(client.messages)
    assert err.value.reason_code == ReasonCode.MALFORMED_PACKET
    assert "broke the protocol" in caplog.text  # the expected WARNING
    await eventually(lambda: bytes([0xE0]) in fake.received)


async def test_connect_timeout() -> None:
    done = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers CONNECT; returns when the client gives up
        writer.close()
        done.set()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectError, match="timed out"):
            await Client("127.0.0.1", port, connect_timeout=0.3).connect()
        async with asyncio.timeout(2):
            await done.wait()
    finally:
        server.close()
        await server.wait_closed()

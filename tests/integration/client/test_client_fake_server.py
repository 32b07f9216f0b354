"""The asyncio client against a scripted fake server: the failures real brokers never produce.

The server is a plain ``asyncio`` stream server on an ephemeral loopback port that answers CONNECT
with hand-written CONNACK bytes and then does what each test says (stay silent, send garbage,
send DISCONNECT). Also the cancellation tests: a cancelled wait never loses a message. And MQTT 5
enhanced authentication against a scripted SCRAM-SHA-256 server (its side computed here from RFC
5802, independently of ``wrenmq.client.scram``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from clientbrokers import eventually

from wrenmq.client import Client, DisconnectedError
from wrenmq.client.scram import ScramSha256Authenticator
from wrenmq.codec.decode import StreamDecoder
from wrenmq.codec.packets import Auth, Connect, Disconnect, Packet
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import AuthError, ConfigError, ConnectError, LocalProtocolError

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


# -- MQTT 5 enhanced authentication against a scripted SCRAM-SHA-256 server ------------------------

SALT = b"0123456789abcdef"
ITERATIONS = 4096


def auth_props(method: str, data: bytes) -> bytes:
    m = method.encode()
    body = bytes([0x15]) + len(m).to_bytes(2, "big") + m
    body += bytes([0x16]) + len(data).to_bytes(2, "big") + data
    return bytes([len(body)]) + body


def auth_packet(code: int, data: bytes) -> bytes:
    body = bytes([code]) + auth_props("SCRAM-SHA-256", data)
    return bytes([0xF0, len(body)]) + body


def connack_with(code: int, data: bytes | None) -> bytes:
    props = auth_props("SCRAM-SHA-256", data) if data is not None else b"\x00"
    body = bytes([0, code]) + props
    return bytes([0x20, len(body)]) + body


class ScramServer:
    """The server side of SCRAM-SHA-256, just enough to script a broker (RFC 5802 section 3)."""

    def __init__(self, password: str, *, forge_signature: bool = False) -> None:
        self.salted = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, ITERATIONS)
        self.forge = forge_signature

    def first(self, client_first: bytes) -> bytes:
        assert client_first.startswith(b"n,,")
        self.client_first_bare = client_first[3:].decode()
        nonce = self.client_first_bare.split("r=", 1)[1]
        self.nonce = nonce + "SERVERNONCE"
        self.server_first = f"r={self.nonce},s={base64.b64encode(SALT).decode()},i={ITERATIONS}"
        return self.server_first.encode()

    def final(self, client_final: bytes) -> bytes | None:
        """The server-final-message, or None if the proof is wrong."""
        without_proof, _, proof = client_final.decode().rpartition(",p=")
        assert without_proof == f"c=biws,r={self.nonce}"
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        client_key = hmac.new(self.salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        expected = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if base64.b64decode(proof) != expected:
            return None
        server_key = hmac.new(self.salted, b"Server Key", "sha256").digest()
        verifier = hmac.new(server_key, auth_message, "sha256").digest()
        if self.forge:
            verifier = bytes(32)
        return b"v=" + base64.b64encode(verifier)


async def next_packet(reader: asyncio.StreamReader, decoder: StreamDecoder) -> Packet:
    """The client's next packet (decoded with our codec: this checks the flow, not the bytes)."""
    while True:
        data = await reader.read(4096)
        if not data:
            raise ConnectionError("the client closed the connection")
        packets = decoder.feed(data)
        if packets:
            assert len(packets) == 1, packets
            return packets[0]


@pytest.fixture
async def scram_server() -> AsyncIterator[tuple[int, list[str], dict[str, object]]]:
    """A server speaking SCRAM with password "pencil"; the list records the exchange."""
    log: list[str] = []
    options: dict[str, object] = {"forge": False}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = StreamDecoder()
        scram = ScramServer("pencil", forge_signature=bool(options["forge"]))
        try:
            connect = await next_packet(reader, decoder)
            assert isinstance(connect, Connect)
            assert connect.properties.authentication_method == "SCRAM-SHA-256"
            data = connect.properties.authentication_data or b""
            log.append("CONNECT")
            writer.write(auth_packet(0x18, scram.first(data)))
            answer = await next_packet(reader, decoder)
            assert isinstance(answer, Auth) and answer.reason_code == 0x18
            log.append("AUTH")
            final = scram.final(answer.properties.authentication_data or b"")
            writer.write(connack_with(0x00, final) if final else connack_with(0x87, None))
            log.append("CONNACK" if final else "REFUSED")
            if not final:
                return
            while True:
                packet = await next_packet(reader, decoder)
                if isinstance(packet, Auth) and packet.reason_code == 0x19:  # re-authenticate
                    log.append("REAUTH")
                    scram = ScramServer("pencil")
                    writer.write(
                        auth_packet(0x18, scram.first(packet.properties.authentication_data or b""))
                    )
                    answer = await next_packet(reader, decoder)
                    assert isinstance(answer, Auth) and answer.reason_code == 0x18
                    final = scram.final(answer.properties.authentication_data or b"")
                    assert final is not None
                    writer.write(auth_packet(0x00, final))
                    log.append("REAUTH OK")
                elif isinstance(packet, Disconnect):
                    log.append(f"DISCONNECT {packet.reason_code:#x}")
                    return
        except (ConnectionError, asyncio.IncompleteReadError, AssertionError) as exc:
            log.append(f"ended: {exc!r}")
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], log, options
    finally:
        server.close()
        await server.wait_closed()


async def test_scram_sha_256_connect_and_reauthenticate(
    scram_server: tuple[int, list[str], dict[str, object]],
) -> None:
    port, log, _ = scram_server
    async with Client(
        "127.0.0.1",
        port,
        auth_method="SCRAM-SHA-256",
        authenticator=ScramSha256Authenticator("user", "pencil"),
    ) as client:
        assert log == ["CONNECT", "AUTH", "CONNACK"]
        await client.reauthenticate(timeout=5)
        assert log[-2:] == ["REAUTH", "REAUTH OK"]
        assert client.is_connected
    await eventually(lambda: log[-1] == "DISCONNECT 0x0")


async def test_scram_wrong_password_is_refused(
    scram_server: tuple[int, list[str], dict[str, object]],
) -> None:
    port, log, _ = scram_server
    client = Client(
        "127.0.0.1",
        port,
        auth_method="SCRAM-SHA-256",
        authenticator=ScramSha256Authenticator("user", "wrong"),
    )
    with pytest.raises(ConnectError) as err:
        await client.connect()
    assert err.value.reason_code == ReasonCode.NOT_AUTHORIZED
    assert log[-1] == "REFUSED"


async def test_scram_server_without_the_password_is_refused(
    scram_server: tuple[int, list[str], dict[str, object]], caplog: pytest.LogCaptureFixture
) -> None:
    port, _, options = scram_server
    options["forge"] = True  # CONNACK Success, but a server signature it could not compute
    client = Client(
        "127.0.0.1",
        port,
        auth_method="SCRAM-SHA-256",
        authenticator=ScramSha256Authenticator("user", "pencil"),
    )
    with caplog.at_level(logging.WARNING, logger="wrenmq.client"), pytest.raises(AuthError):
        await client.connect()
    assert "wrong server signature" in caplog.text  # the expected WARNING
    assert not client.is_connected


class AsyncScram:
    """An authenticator with coroutine methods (e.g. asking a vault for the password)."""

    def __init__(self) -> None:
        self.inner = ScramSha256Authenticator("user", "pencil")
        self.calls: list[str] = []

    async def initial(self) -> bytes:
        await asyncio.sleep(0.01)
        self.calls.append("initial")
        return self.inner.initial()

    async def challenge(self, data: bytes) -> bytes:
        await asyncio.sleep(0.01)
        self.calls.append("challenge")
        return self.inner.challenge(data)

    def complete(self, data: bytes | None) -> None:
        self.calls.append("complete")
        self.inner.complete(data)


async def test_async_authenticator(
    scram_server: tuple[int, list[str], dict[str, object]],
) -> None:
    port, _, _ = scram_server
    auth = AsyncScram()
    async with Client("127.0.0.1", port, auth_method="SCRAM-SHA-256", authenticator=auth):
        assert auth.calls == ["initial", "challenge", "complete"]


async def test_enhanced_auth_needs_mqtt5_and_both_arguments() -> None:
    with pytest.raises(ConfigError):
        Client("h", auth_method="SCRAM-SHA-256")
    with pytest.raises(ConfigError):
        Client("h", version=4, auth_method="X", authenticator=ScramSha256Authenticator("u", "p"))
    with pytest.raises(LocalProtocolError):
        await Client("h").reauthenticate()

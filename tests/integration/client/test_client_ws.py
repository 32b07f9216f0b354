"""The asyncio client over WebSocket (``transport="websockets"``), and over wss with ``tls=``.

Against Mosquitto's websockets listener (Debian's 2.0.11 is built with libwebsockets; it refuses
to start with a websockets listener alone, so each config also has a plain one) and against
wrenmq's ``ws`` / ``wss`` listeners. Certificates are made with ``trustme``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from clientbrokers import HAVE_MOSQUITTO, Mosquitto, drop_connection, eventually, free_port

from wrenmq.broker.broker import Broker
from wrenmq.client import Client, Reconnect
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import ConnectError
from wrenmq.transport.ws_client import WebSocketClientTransport

pytestmark = pytest.mark.timeout(30)


class Certs:
    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.cafile = directory / "ca.pem"
        self.certfile = directory / "server.pem"
        self.keyfile = directory / "server-key.pem"
        ca.cert_pem.write_to_path(str(self.cafile))
        server.private_key_pem.write_to_path(str(self.keyfile))
        for i, pem in enumerate(server.cert_chain_pems):
            pem.write_to_path(str(self.certfile), append=i > 0)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


class Endpoint:
    """Where a WebSocket MQTT server listens: ws and wss ports, and a client factory."""

    def __init__(self, name: str, ws_port: int, wss_port: int, certs: Certs) -> None:
        self.name = name
        self.ws_port = ws_port
        self.wss_port = wss_port
        self.certs = certs

    def client(self, *, secure: bool = False, **kwargs: object) -> Client:
        return Client(
            "127.0.0.1",
            self.wss_port if secure else self.ws_port,
            transport="websockets",
            tls=self.certs.client_context() if secure else None,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(params=["mosquitto", "wrenmq"])
async def endpoint(
    request: pytest.FixtureRequest, tmp_path: Path, certs: Certs
) -> AsyncIterator[Endpoint]:
    if request.param == "mosquitto":
        if not HAVE_MOSQUITTO:
            pytest.skip("mosquitto is not installed")
        ws_port, wss_port = free_port(), free_port()
        broker = Mosquitto(
            tmp_path,
            extra=(
                f"listener {ws_port} 127.0.0.1\nprotocol websockets\n"
                f"listener {wss_port} 127.0.0.1\nprotocol websockets\n"
                f"certfile {certs.certfile}\nkeyfile {certs.keyfile}\n"
            ),
        )
        await broker.start()
        await wait_listening(ws_port)
        await wait_listening(wss_port)
        try:
            yield Endpoint("mosquitto", ws_port, wss_port, certs)
        finally:
            await broker.close()
        return
    listener = {"port": 0, "bind_address": "127.0.0.1"}
    wren = Broker(
        listener=[
            {**listener, "protocol": "ws"},
            {
                **listener,
                "protocol": "wss",
                "certfile": str(certs.certfile),
                "keyfile": str(certs.keyfile),
            },
        ],
        sys_interval=0,
    )
    await wren.start()
    try:
        yield Endpoint("wrenmq", wren.addresses[0][1], wren.addresses[1][1], certs)
    finally:
        await wren.stop()


async def wait_listening(port: int) -> None:
    async with asyncio.timeout(5):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("version", [4, 5])
async def test_pubsub_every_qos(
    endpoint: Endpoint, secure: bool, version: int, unique_topic: str
) -> None:
    async with (
        endpoint.client(secure=secure, version=version) as sub,
        endpoint.client(secure=secure, version=version) as pub,
    ):
        transport = sub._conn.transport if sub._conn else None
        assert isinstance(transport, WebSocketClientTransport)
        assert transport.get_extra_info("subprotocol") == "mqtt"
        assert await sub.subscribe(f"{unique_topic}/#", qos=2) == ReasonCode.GRANTED_QOS_2
        await pub.publish(f"{unique_topic}/0", b"m0", qos=0)
        assert await pub.publish(f"{unique_topic}/1", b"m1", qos=1) in (
            ReasonCode.SUCCESS,
            ReasonCode.NO_MATCHING_SUBSCRIBERS,
        )
        await pub.publish(f"{unique_topic}/2", b"m2", qos=2)
        got = []
        async with asyncio.timeout(5):
            async for message in sub.messages:
                got.append((message.topic, message.payload, message.qos))
                if len(got) == 3:
                    break
    assert got == [(f"{unique_topic}/{q}", b"m%d" % q, q) for q in range(3)]


async def test_large_messages_and_a_burst(endpoint: Endpoint, unique_topic: str) -> None:
    big = bytes(range(256)) * 2048  # 512 KiB: one MQTT packet over several socket reads
    async with endpoint.client() as sub, endpoint.client() as pub:
        await sub.subscribe(unique_topic, qos=1)
        await pub.publish(unique_topic, big, qos=1)
        await asyncio.gather(*(pub.publish(unique_topic, str(i), qos=1) for i in range(500)))
        got = []
        async with asyncio.timeout(10):
            async for message in sub.messages:
                got.append(message.payload)
                if len(got) == 501:
                    break
    assert got[0] == big
    assert sorted(int(p) for p in got[1:]) == list(range(500))


async def test_reconnect_over_websocket(endpoint: Endpoint, unique_topic: str) -> None:
    reconnect = Reconnect(initial_delay=0.01, max_delay=0.05)
    async with endpoint.client(
        client_id="ws-reconnect", clean_start=False, session_expiry=60, reconnect=reconnect
    ) as client:
        await client.subscribe(unique_topic, qos=1)
        connections: list[object] = []
        client.on_connected(connections.append)
        drop_connection(client)
        await eventually(lambda: len(connections) == 1)  # reconnected (maybe at once)
        await client.publish(unique_topic, b"after", qos=1)
        async with asyncio.timeout(5):
            message = await anext(client.messages)
        assert message.payload == b"after"


async def test_wrong_path_is_a_connect_error(endpoint: Endpoint) -> None:
    if endpoint.name == "mosquitto":
        pytest.skip("mosquitto serves MQTT on every path")
    with pytest.raises(ConnectError, match="WebSocket handshake"):
        await endpoint.client(ws_path="/elsewhere").connect()


async def test_untrusted_certificate_is_a_connect_error(endpoint: Endpoint) -> None:
    client = Client(
        "127.0.0.1", endpoint.wss_port, transport="websockets", tls=ssl.create_default_context()
    )
    with pytest.raises(ConnectError):
        await client.connect()

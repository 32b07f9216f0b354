"""The asyncio client against a real Mosquitto broker (Debian ``/usr/sbin/mosquitto``).

Each test starts its own mosquitto on an ephemeral loopback port from a temporary config file
(``persistence false``) and kills it in teardown; restarts reuse the same port.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import clientcases as cases
import pytest
from clientbrokers import HAVE_MOSQUITTO, Mosquitto

from wrenmq.client import Client
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import ConnectError

pytestmark = [
    pytest.mark.timeout(10),
    pytest.mark.skipif(not HAVE_MOSQUITTO, reason="mosquitto is not installed (make debs)"),
]

VERSIONS = pytest.mark.parametrize("version", [4, 5])


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    b = Mosquitto(tmp_path)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


@VERSIONS
async def test_pubsub_every_qos(broker: Mosquitto, version: int, unique_topic: str) -> None:
    await cases.case_pubsub_every_qos(broker, version, unique_topic)


async def test_pubsub_mqtt_3_1(broker: Mosquitto, unique_topic: str) -> None:
    await cases.case_pubsub_every_qos(broker, 3, unique_topic)


@VERSIONS
async def test_subscribe_many_and_unsubscribe(
    broker: Mosquitto, version: int, unique_topic: str
) -> None:
    await cases.case_subscribe_many_and_unsubscribe(broker, version, unique_topic)


@VERSIONS
async def test_retained_and_filtered_streams(
    broker: Mosquitto, version: int, unique_topic: str
) -> None:
    await cases.case_retained_and_filtered_streams(broker, version, unique_topic)


@VERSIONS
async def test_callbacks(
    broker: Mosquitto, version: int, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    await cases.case_callbacks(broker, version, unique_topic, caplog)


@VERSIONS
async def test_connected_and_disconnected_events(broker: Mosquitto, version: int) -> None:
    await cases.case_connected_and_disconnected_events(broker, version)


async def test_v5_options(broker: Mosquitto, unique_topic: str) -> None:
    await cases.case_v5_options(broker, unique_topic)


async def test_request_response(broker: Mosquitto, unique_topic: str) -> None:
    await cases.case_request_response(broker, unique_topic)


async def test_topic_aliases(broker: Mosquitto, unique_topic: str) -> None:
    await cases.case_topic_aliases(broker, unique_topic)


async def test_assigned_client_id(broker: Mosquitto) -> None:
    await cases.case_assigned_client_id(broker)


@VERSIONS
async def test_will(broker: Mosquitto, version: int, unique_topic: str) -> None:
    await cases.case_will(broker, version, unique_topic)


@VERSIONS
async def test_receive_maximum_and_inflight(
    broker: Mosquitto, version: int, unique_topic: str
) -> None:
    await cases.case_receive_maximum_and_inflight(broker, version, unique_topic)


@VERSIONS
async def test_offline_queue_policies(broker: Mosquitto, version: int, unique_topic: str) -> None:
    await cases.case_offline_queue_policies(broker, version, unique_topic)


async def test_offline_queue_blocks(broker: Mosquitto, unique_topic: str) -> None:
    await cases.case_offline_queue_blocks(broker, 5, unique_topic)


@VERSIONS
@pytest.mark.parametrize("qos", [1, 2])
async def test_restart_mid_stream(
    broker: Mosquitto, version: int, qos: int, unique_topic: str
) -> None:
    await cases.case_restart_mid_stream(broker, version, unique_topic, qos)


@VERSIONS
async def test_drop_connection_mid_stream(
    broker: Mosquitto, version: int, unique_topic: str
) -> None:
    await cases.case_drop_connection_mid_stream(broker, version, unique_topic)


@VERSIONS
@pytest.mark.parametrize("qos", [1, 2])
async def test_manual_ack_redelivery(
    broker: Mosquitto, version: int, qos: int, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    await cases.case_manual_ack_redelivery(broker, version, unique_topic, qos, caplog)


async def test_no_reconnect_ends_streams(broker: Mosquitto) -> None:
    await cases.case_no_reconnect_ends_streams(broker, 5)


async def test_keepalive(broker: Mosquitto) -> None:
    await cases.case_keepalive(broker, 5)


@VERSIONS
async def test_connect_refused(tmp_path: Path, version: int) -> None:
    b = Mosquitto(tmp_path)
    b.anonymous = False
    await b.start()
    try:
        with pytest.raises(ConnectError) as err:
            async with Client("127.0.0.1", b.port, version=version):
                pass
        assert err.value.reason_code == ReasonCode.NOT_AUTHORIZED
    finally:
        await b.close()


async def test_sync_client(broker: Mosquitto, unique_topic: str) -> None:
    await asyncio.to_thread(cases.case_sync_client, broker.port, 4, unique_topic)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls(tmp_path: Path, unique_topic: str) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    b = Mosquitto(tmp_path, extra=f"certfile {cert}\nkeyfile {key}\n")
    await b.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        async with Client("127.0.0.1", b.port, tls=context) as client:
            await client.subscribe(unique_topic, qos=1)
            await client.publish(unique_topic, b"secret", qos=1)
            (m,) = await cases.take(client.messages, 1)
            assert m.payload == b"secret"
        with pytest.raises(ConnectError):  # the default context does not trust our certificate
            await Client("127.0.0.1", b.port, tls=True, connect_timeout=2).connect()
    finally:
        await b.close()

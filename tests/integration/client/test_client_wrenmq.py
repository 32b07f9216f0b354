"""The asyncio client against a real wrenmq broker running in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import clientcases as cases
import pytest
from clientbrokers import WrenBroker

from wrenmq.client import Client
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import ConnectError

pytestmark = pytest.mark.timeout(10)

VERSIONS = pytest.mark.parametrize("version", [4, 5])


@pytest.fixture
async def broker() -> AsyncIterator[WrenBroker]:
    b = WrenBroker()
    await b.start()
    try:
        yield b
    finally:
        await b.close()


@VERSIONS
async def test_pubsub_every_qos(broker: WrenBroker, version: int, unique_topic: str) -> None:
    await cases.case_pubsub_every_qos(broker, version, unique_topic)


async def test_pubsub_mqtt_3_1(broker: WrenBroker, unique_topic: str) -> None:
    await cases.case_pubsub_every_qos(broker, 3, unique_topic)


@VERSIONS
async def test_subscribe_many_and_unsubscribe(
    broker: WrenBroker, version: int, unique_topic: str
) -> None:
    await cases.case_subscribe_many_and_unsubscribe(broker, version, unique_topic)


@VERSIONS
async def test_retained_and_filtered_streams(
    broker: WrenBroker, version: int, unique_topic: str
) -> None:
    await cases.case_retained_and_filtered_streams(broker, version, unique_topic)


@VERSIONS
async def test_callbacks(
    broker: WrenBroker, version: int, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    await cases.case_callbacks(broker, version, unique_topic, caplog)


@VERSIONS
async def test_connected_and_disconnected_events(broker: WrenBroker, version: int) -> None:
    await cases.case_connected_and_disconnected_events(broker, version)


async def test_v5_options(broker: WrenBroker, unique_topic: str) -> None:
    await cases.case_v5_options(broker, unique_topic)


async def test_request_response(broker: WrenBroker, unique_topic: str) -> None:
    await cases.case_request_response(broker, unique_topic)


async def test_topic_aliases(broker: WrenBroker, unique_topic: str) -> None:
    await cases.case_topic_aliases(broker, unique_topic)


async def test_assigned_client_id(broker: WrenBroker) -> None:
    await cases.case_assigned_client_id(broker)


@VERSIONS
async def test_will(broker: WrenBroker, version: int, unique_topic: str) -> None:
    await cases.case_will(broker, version, unique_topic)


@VERSIONS
async def test_receive_maximum_and_inflight(
    broker: WrenBroker, version: int, unique_topic: str
) -> None:
    await cases.case_receive_maximum_and_inflight(broker, version, unique_topic)


@VERSIONS
async def test_offline_queue_policies(broker: WrenBroker, version: int, unique_topic: str) -> None:
    await cases.case_offline_queue_policies(broker, version, unique_topic)


async def test_offline_queue_blocks(broker: WrenBroker, unique_topic: str) -> None:
    await cases.case_offline_queue_blocks(broker, 5, unique_topic)


@VERSIONS
@pytest.mark.parametrize("qos", [1, 2])
async def test_restart_mid_stream(
    broker: WrenBroker, version: int, qos: int, unique_topic: str
) -> None:
    await cases.case_restart_mid_stream(broker, version, unique_topic, qos)


@VERSIONS
async def test_drop_connection_mid_stream(
    broker: WrenBroker, version: int, unique_topic: str
) -> None:
    await cases.case_drop_connection_mid_stream(broker, version, unique_topic)


@VERSIONS
@pytest.mark.parametrize("qos", [1, 2])
async def test_manual_ack_redelivery(
    broker: WrenBroker, version: int, qos: int, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    await cases.case_manual_ack_redelivery(broker, version, unique_topic, qos, caplog)


async def test_no_reconnect_ends_streams(broker: WrenBroker) -> None:
    await cases.case_no_reconnect_ends_streams(broker, 5)


async def test_keepalive(broker: WrenBroker) -> None:
    await cases.case_keepalive(broker, 5)


@VERSIONS
async def test_connect_refused(version: int) -> None:
    b = WrenBroker(allow_anonymous=False)
    await b.start()
    try:
        with pytest.raises(ConnectError) as err:
            async with Client("127.0.0.1", b.port, version=version):
                pass
        assert err.value.reason_code == ReasonCode.NOT_AUTHORIZED
    finally:
        await b.close()


async def test_connect_unreachable() -> None:
    b = WrenBroker()
    await b.start()
    port = b.port
    await b.close()
    with pytest.raises(ConnectError):
        await Client("127.0.0.1", port, connect_timeout=2).connect()


async def test_server_limits_are_honoured() -> None:
    b = WrenBroker(max_qos=1, max_keepalive=5, max_inflight_messages=2)
    await b.start()
    try:
        async with Client("127.0.0.1", b.port, keepalive=60) as client:
            proto = client.protocol
            assert proto.server_maximum_qos == 1
            assert proto.server_receive_maximum == 2
            assert proto._keepalive.interval == 5  # Server Keep Alive
            with pytest.raises(Exception, match="QoS 2"):
                await client.publish("t", b"", qos=2)
    finally:
        await b.close()


async def test_sync_client(broker: WrenBroker, unique_topic: str) -> None:
    import asyncio

    await asyncio.to_thread(cases.case_sync_client, broker.port, 5, unique_topic)

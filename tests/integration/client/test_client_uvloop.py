"""The client runs on uvloop (a default dependency) as well as on asyncio's own loop."""

from __future__ import annotations

import asyncio

import pytest

from wrenmq.broker.broker import Broker
from wrenmq.client import Client

uvloop = pytest.importorskip("uvloop")


def test_client_publishes_and_receives_on_uvloop() -> None:
    async def scenario() -> list[tuple[str, bytes, int]]:
        async with Broker(port=0, bind_address="127.0.0.1", sys_interval=0) as broker:  # noqa: SIM117
            async with Client("127.0.0.1", port=broker.port, client_id="uv") as client:
                await client.subscribe("uv/#", qos=1)
                for qos in (0, 1, 2):
                    await client.publish("uv/t", f"m{qos}".encode(), qos=qos)
                got = []
                async with asyncio.timeout(5):
                    async for message in client.messages:
                        got.append((message.topic, bytes(message.payload), message.qos))
                        if len(got) == 3:
                            break
                return got

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        got = runner.run(scenario())
    assert got == [("uv/t", b"m0", 0), ("uv/t", b"m1", 1), ("uv/t", b"m2", 1)]

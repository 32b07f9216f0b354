"""WebSocketTransport, the adapter between a websockets connection and a stream protocol, driven
with a fake connection: flow control both ways, close ordering, and connection_lost exactly once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.protocol import State

from wrenmq.transport.websocket import WebSocketTransport


class FakeWs:
    """The part of ``websockets.asyncio.server.ServerConnection`` the adapter uses."""

    remote_address = ("192.0.2.5", 4321)
    subprotocol = "mqtt"

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Any] = asyncio.Queue()
        self.sent: list[bytes] = []
        self.recv_calls = 0
        self.send_gate = asyncio.Event()
        self.send_gate.set()
        self.closed_with: int | None = None
        self.closed = asyncio.Event()
        self.transport = self
        self.protocol = self  # the library's sans-I/O object: only its state is read
        self.state = State.OPEN

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 1883)}.get(name, default)

    def abort(self) -> None:
        self.state = State.CLOSED
        self.closed.set()
        self.incoming.put_nowait(ConnectionClosedError(None, None))

    async def recv(self) -> bytes | str:
        self.recv_calls += 1
        item = await self.incoming.get()
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[no-any-return]

    async def send(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        await self.send_gate.wait()
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code
        self.state = State.CLOSED
        self.closed.set()
        self.incoming.put_nowait(ConnectionClosedOK(None, None))

    async def wait_closed(self) -> None:
        await self.closed.wait()


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.transport: WebSocketTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
async def running() -> Any:
    ws = FakeWs()
    proto = Recorder()
    transport = WebSocketTransport(ws)  # type: ignore[arg-type]
    task = asyncio.get_running_loop().create_task(transport.run(proto))
    await settle()
    yield ws, proto, transport, task
    if not task.done():
        transport.abort()
        await asyncio.wait_for(task, 1)


async def test_extra_info_and_data(running: Any) -> None:
    ws, proto, transport, _ = running
    assert transport.get_extra_info("peername") == ("192.0.2.5", 4321)
    assert transport.get_extra_info("subprotocol") == "mqtt"
    assert transport.get_extra_info("sockname") == ("127.0.0.1", 1883)
    assert transport.get_extra_info("peercert") is None
    ws.incoming.put_nowait(b"\x10\x00")
    ws.incoming.put_nowait(b"abc")
    await settle()
    assert proto.events == ["made", b"\x10\x00", b"abc"]


async def test_writes_of_one_iteration_are_one_message(running: Any) -> None:
    ws, _, transport, _ = running
    transport.write(b"a")
    transport.write(bytearray(b"b"))
    transport.writelines([b"c", b"d"])
    await settle()
    assert ws.sent == [b"abcd"]


async def test_write_buffer_limits_drive_pause_and_resume_writing(running: Any) -> None:
    ws, proto, transport, _ = running
    transport.set_write_buffer_limits(high=10)
    assert transport.get_write_buffer_limits() == (2, 10)
    ws.send_gate.clear()  # the socket is slow
    transport.write(b"x" * 8)
    assert "pause" not in proto.events
    transport.write(b"y" * 8)
    assert proto.events.count("pause") == 1
    transport.write(b"z")
    assert proto.events.count("pause") == 1
    assert transport.get_write_buffer_size() == 17
    ws.send_gate.set()
    await settle()
    assert proto.events.count("resume") == 1
    assert transport.get_write_buffer_size() == 0
    assert b"".join(ws.sent) == b"x" * 8 + b"y" * 8 + b"z"


async def test_pause_reading_stops_receiving(running: Any) -> None:
    ws, proto, transport, _ = running
    transport.pause_reading()
    assert not transport.is_reading()
    ws.incoming.put_nowait(b"1")  # already awaited by recv: delivered
    await settle()
    ws.incoming.put_nowait(b"2")
    await settle()
    assert proto.events == ["made", b"1"]
    calls = ws.recv_calls
    transport.resume_reading()
    await settle()
    assert proto.events == ["made", b"1", b"2"]
    assert ws.recv_calls > calls


async def test_close_sends_what_is_buffered_then_closes(running: Any) -> None:
    ws, proto, transport, task = running
    transport.write(b"last words")
    transport.close()
    assert transport.is_closing()
    transport.write(b"ignored")
    await asyncio.wait_for(task, 1)
    assert ws.sent == [b"last words"]
    assert ws.closed_with == 1000
    assert proto.events == ["made", ("lost", None)]


async def test_close_while_paused(running: Any) -> None:
    _, proto, transport, task = running
    transport.pause_reading()
    transport.close()
    await asyncio.wait_for(task, 1)
    assert proto.events == ["made", ("lost", None)]


async def test_peer_gone_while_paused(running: Any) -> None:
    ws, proto, transport, task = running
    transport.pause_reading()
    await settle()
    ws.abort()
    await asyncio.wait_for(task, 1)
    assert proto.events[-1][0] == "lost"
    assert isinstance(proto.events[-1][1], ConnectionClosedError)


async def test_text_frame_closes_with_1003(running: Any, caplog: pytest.LogCaptureFixture) -> None:
    # This test expects the WARNING about the text frame.
    ws, proto, _, task = running
    ws.incoming.put_nowait("text")
    await asyncio.wait_for(task, 1)
    assert ws.closed_with == 1003
    assert proto.events == ["made", ("lost", None)]
    assert any("text frame" in m for m in caplog.messages)


async def test_abnormal_closure_is_reported(running: Any) -> None:
    ws, proto, _, task = running
    error = ConnectionClosedError(None, None)
    ws.incoming.put_nowait(error)
    await asyncio.wait_for(task, 1)
    assert proto.events == ["made", ("lost", error)]


async def test_peer_gone_while_paused_ends_the_connection(running: Any) -> None:
    # A client that does not read (so the broker paused reading it) and then disconnects: the
    # protocol must hear of it at once, not when reading resumes.
    ws, proto, transport, task = running
    transport.pause_reading()
    ws.incoming.put_nowait(b"1")  # ends the recv already under way; then the loop waits
    await settle()
    ws.abort()
    await asyncio.wait_for(task, 1)
    assert proto.events[:2] == ["made", b"1"]
    assert isinstance(proto.events[-1][1], ConnectionClosedError)
    assert transport.is_closing()

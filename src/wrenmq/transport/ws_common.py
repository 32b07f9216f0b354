"""What the server and client WebSocket adapters share: an ``asyncio.Transport`` look-alike.

:class:`WebSocketTransportBase` turns one ``websockets`` asyncio connection into the transport a
stream protocol expects, so the broker's and the client's ``Connection`` run over WebSocket as
they do over TCP. It holds the parts that are the same on both sides:

- extra info: ``peername``, ``websocket`` (the library's connection), ``subprotocol``, and the
  socket's own (``sockname``, ``ssl_object``, ...);
- ``writelines``, ``can_write_eof``, ``is_closing``, ``abort``, and ``close``'s bookkeeping;
- reading: ``pause_reading`` / ``resume_reading`` / ``is_reading`` on an :class:`asyncio.Event`,
  and the receiving loop: binary messages go to ``protocol.data_received`` [MQTT-6.0.0-2], a
  text message closes with 1003 [MQTT-6.0.0-1], and while reading is paused the loop waits for
  ``resume_reading`` or for the connection's end;
- the protocol's ``pause_writing`` / ``resume_writing``, called at most once per change;
- :data:`CLOSE_TIMEOUT`, how long either side waits for the closing handshake.

The subclasses keep what differs: :class:`wrenmq.transport.websocket.WebSocketTransport` (server)
buffers writes for a sender task with its own high and low water marks and stops receiving once
closing; :class:`wrenmq.transport.ws_client.WebSocketClientTransport` (client) writes synchronously
through the library's Sans-I/O protocol, takes the socket's flow control, and receives until the
library reports the end.

Imports asyncio and ``websockets`` only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, Generic, TypeVar

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.protocol import State

__all__ = ["CLOSE_TIMEOUT", "WebSocketTransportBase"]

CLOSE_TIMEOUT = 3.0  # seconds a closing handshake may take before the socket is dropped

WsT = TypeVar("WsT", bound=Connection)


class WebSocketTransportBase(asyncio.Transport, Generic[WsT]):
    """The transport a stream protocol sees for one WebSocket connection (server or client).

    Subclasses provide ``write``, the write buffer methods, :meth:`_start_close` and
    :meth:`_text_frame`'s log line, and may refine when receiving stops
    (:meth:`_stop_receiving`, :meth:`_stop_after_pause`).
    """

    def __init__(self, ws: WsT) -> None:
        super().__init__()
        self._ws = ws
        self._protocol: asyncio.Protocol | None = None
        self._closing = False
        self._close_code = 1000
        self._reading = asyncio.Event()
        self._reading.set()
        self._writing_paused = False

    # -- asyncio.Transport ----------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:  # noqa: D102
        if name == "peername":
            return self._ws.remote_address
        if name == "websocket":
            return self._ws
        if name == "subprotocol":
            return self._ws.subprotocol
        return self._ws.transport.get_extra_info(name, default)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:  # noqa: D102
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:  # noqa: D102
        return False

    def is_closing(self) -> bool:  # noqa: D102
        return self._closing

    def close(self) -> None:
        """Close the WebSocket after what was written (closing handshake, code 1000)."""
        if self._closing:
            return
        self._closing = True
        self._reading.set()  # a paused reader must see the end
        self._start_close()

    def abort(self) -> None:
        """Drop the connection at once."""
        self._closing = True
        self._reading.set()
        self._ws.transport.abort()

    def is_reading(self) -> bool:  # noqa: D102
        return self._reading.is_set()

    def pause_reading(self) -> None:  # noqa: D102
        self._reading.clear()

    def resume_reading(self) -> None:  # noqa: D102
        self._reading.set()

    # -- for the subclasses ---------------------------------------------------------------------

    def _start_close(self) -> None:
        """Begin the closing handshake with ``self._close_code``; ``close`` calls it once."""
        raise NotImplementedError

    def _pause_writing(self) -> None:
        if not self._writing_paused and self._protocol is not None:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _resume_writing(self) -> None:
        if self._writing_paused and self._protocol is not None:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _text_frame(self) -> None:
        """A text message arrived: close with 1003, unsupported data [MQTT-6.0.0-1]."""
        self._close_code = 1003
        self.close()

    def _stop_receiving(self) -> bool:
        """Checked before each message: True ends the receiving loop (default: never)."""
        return False

    def _stop_after_pause(self) -> bool:
        """Checked when a pause ends: True ends the receiving loop (default: never)."""
        return False

    # -- reading --------------------------------------------------------------------------------

    async def _receive_until_end(
        self, protocol: asyncio.Protocol, then: Awaitable[None] | None = None
    ) -> Exception | None:
        """Run :meth:`_receive`, then await ``then``; return what ``connection_lost`` gets.

        Returns:
            None for a normal end (the loop returned, or a closing handshake completed), else
            the library's ``ConnectionClosed`` error.
        """
        try:
            await self._receive(protocol)
            if then is not None:
                await then
        except ConnectionClosedOK:
            pass
        except ConnectionClosed as closed:
            return closed
        return None

    async def _receive(self, protocol: asyncio.Protocol) -> None:
        """Feed ``protocol`` the binary messages received, honouring ``pause_reading``.

        Returns when :meth:`_stop_receiving` or :meth:`_stop_after_pause` says so; the end of
        the connection raises the library's ``ConnectionClosed`` from ``recv``.
        """
        ws = self._ws
        while not self._stop_receiving():
            if not self._reading.is_set():
                await self._paused()
                if self._stop_after_pause():
                    return
                if self._reading.is_set() or self._ws.protocol.state is not State.CLOSED:
                    continue
                # The peer went away while reading was paused (a client that does not read
                # what it is sent): recv raises the library's ConnectionClosed, so the
                # protocol hears of it now, with the reason, not when reading resumes.
            message = await ws.recv()
            if isinstance(message, str):
                # [MQTT-6.0.0-1]: a frame that is not binary closes the network connection.
                self._text_frame()
                continue
            protocol.data_received(message)

    async def _paused(self) -> None:
        # Wait for resume_reading, or for the connection to end meanwhile.
        resumed = asyncio.ensure_future(self._reading.wait())
        closed = asyncio.ensure_future(self._ws.wait_closed())
        try:
            await asyncio.wait((resumed, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            resumed.cancel()
            closed.cancel()

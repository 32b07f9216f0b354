"""MQTT over WebSocket, client side, on the ``websockets`` library's asyncio client.

:func:`connect_websocket` opens ``ws://host:port/path`` (``wss://`` with an SSL context) offering
the subprotocol ``mqtt`` [MQTT-6.0.0-3], then drives an ``asyncio.Protocol`` -- the client's
``Connection`` -- through :class:`WebSocketClientTransport`, an ``asyncio.Transport`` look-alike,
exactly as ``loop.create_connection`` would. What it shares with the server's adapter (extra info,
pausing and the receiving loop, ``close``/``abort`` bookkeeping) is
:class:`wrenmq.transport.ws_common.WebSocketTransportBase`; this module adds what is the client's.
MQTT bytes travel in binary messages [MQTT-6.0.0-1]; the protocol decodes a byte stream, so a
packet may span messages and a message may hold several packets [MQTT-6.0.0-2]. A text message
closes the connection (1003).

The adapter, per connection:

- reading: one task receives messages and calls ``protocol.data_received``; that is the only
  task. ``pause_reading`` makes it stop receiving, and ``websockets`` then stops reading the
  socket once ``max_queue`` messages wait. It goes on receiving after ``close`` until the library
  reports the end, and stops if the connection ends while reading is paused.
- writing: synchronous, like a TCP transport: ``write`` frames the bytes as one binary message
  with the library's Sans-I/O protocol object (``connection.protocol.send_binary``) and hands them
  to the socket (``connection.send_data()``), so packets keep their order with no task and no
  await. Flow control is the socket's: the library's connection subclass below forwards the TCP
  transport's ``pause_writing`` / ``resume_writing`` to the protocol.
- closing: ``close`` runs the closing handshake (1000) in one short task; ``abort`` drops the
  socket.

WebSocket pings are off (MQTT's keep alive does that job), and so is permessage-deflate. HTTP
proxies from the environment are not used (``proxy=None``, on ``websockets`` 15 and later, which
would otherwise honour ``https_proxy``): MQTT clients connect directly.

Relies on the asyncio implementation of ``websockets`` (13.1 and later): ``connect`` with
``create_connection``, and ``Connection.protocol`` / ``send_data()``. Imports asyncio, inspect,
ssl, ``websockets`` and :mod:`wrenmq.transport.ws_common` only.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.protocol import State
from websockets.typing import Subprotocol

from wrenmq.transport.ws_common import CLOSE_TIMEOUT, WebSocketTransportBase

__all__ = ["WebSocketClientTransport", "WebSocketError", "connect_websocket"]

log = logging.getLogger("wrenmq.transport.ws_client")

MQTT_SUBPROTOCOL = Subprotocol("mqtt")
# websockets 15 added proxy support, on by default (from the environment): turn it off.
_NO_PROXY: dict[str, Any] = (
    {"proxy": None} if "proxy" in inspect.signature(connect.__init__).parameters else {}
)


class WebSocketError(ConnectionError):
    """The WebSocket connection could not be opened (bad URI, refused handshake, wrong status)."""


class _MQTTClientConnection(ClientConnection):
    """The library's connection, forwarding the socket's flow control to the adapter."""

    adapter: WebSocketClientTransport | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.adapter is not None:
            self.adapter._pause_writing()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.adapter is not None:
            self.adapter._resume_writing()


class WebSocketClientTransport(WebSocketTransportBase[ClientConnection]):
    """The transport a stream protocol sees for one client WebSocket connection."""

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(ws)
        self._reader: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    @property
    def websocket(self) -> ClientConnection:
        """The ``websockets`` connection underneath."""
        return self._ws

    def start(self, protocol: asyncio.Protocol) -> None:
        """Hand the connection to ``protocol`` and start the reader task."""
        self._protocol = protocol
        protocol.connection_made(self)
        self._reader = asyncio.get_running_loop().create_task(
            self._read(protocol), name="wrenmq-ws-reader"
        )

    # -- asyncio.Transport ----------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:  # noqa: D102
        if name == "sockname":
            return self._ws.local_address
        return super().get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as one binary message (nothing once closing)."""
        ws = self._ws
        if self._closing or not data or ws.protocol.state is not State.OPEN:
            return
        ws.protocol.send_binary(bytes(data))
        try:
            ws.send_data()
        except OSError as exc:  # the socket broke: the reader sees the end
            log.debug("WebSocket write failed: %s", exc)
            self.abort()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:  # noqa: D102
        self._ws.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:  # noqa: D102
        return self._ws.transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:  # noqa: D102
        limits: tuple[int, int] = self._ws.transport.get_write_buffer_limits()
        return limits

    # -- closing and reading --------------------------------------------------------------------

    def _start_close(self) -> None:
        self._closer = asyncio.get_running_loop().create_task(
            self._ws.close(self._close_code), name="wrenmq-ws-close"
        )

    def _text_frame(self) -> None:
        log.warning("closing the WebSocket: the server sent a text frame")
        super()._text_frame()

    def _stop_after_pause(self) -> bool:
        return self._ws.protocol.state is State.CLOSED

    async def _read(self, protocol: asyncio.Protocol) -> None:
        # Receiving goes on after close() until the library reports the end, so that
        # connection_lost gets the error of a closing handshake that failed.
        exc: Exception | None = None
        try:
            exc = await self._receive_until_end(protocol)
        finally:
            self._closing = True
            self._protocol = None
            closer = self._closer
            if closer is not None and not closer.done():
                await asyncio.gather(closer, return_exceptions=True)
            protocol.connection_lost(exc)


def _uri(host: str, port: int, path: str, secure: bool) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    if not path.startswith("/"):
        path = "/" + path
    return f"{'wss' if secure else 'ws'}://{host}:{port}{path}"


async def connect_websocket(
    protocol_factory: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    *,
    path: str = "/mqtt",
    ssl_context: ssl.SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] = ("mqtt",),
    open_timeout: float | None = None,
    max_size: int | None = None,
) -> tuple[WebSocketClientTransport, asyncio.Protocol]:
    """Open an MQTT WebSocket connection; like ``loop.create_connection`` for TCP.

    Args:
        protocol_factory: makes the stream protocol that the connection drives.
        host: the server's host name or address.
        port: the server's port.
        path: the HTTP path of the server's MQTT endpoint.
        ssl_context: use ``wss://`` with this context (server name checked against ``host``).
        headers: extra HTTP headers for the opening handshake (e.g. authorization).
        subprotocols: the WebSocket subprotocols offered, ``mqtt`` first.
        open_timeout: seconds for TCP, TLS and WebSocket handshakes; ``None``: the caller's.
        max_size: largest WebSocket message accepted, in bytes; ``None``: no limit.

    Raises:
        WebSocketError: the URI is invalid or the server refused the WebSocket handshake.
        OSError: the TCP or TLS connection failed.
    """
    uri = _uri(host, port, path, ssl_context is not None)
    extra: dict[str, Any] = dict(_NO_PROXY)
    if ssl_context is not None:
        extra["ssl"] = ssl_context
    try:
        ws = await connect(
            uri,
            subprotocols=[Subprotocol(name) for name in subprotocols],
            additional_headers=dict(headers) if headers else None,
            compression=None,
            open_timeout=open_timeout,
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT,
            max_size=max_size,
            logger=log,
            create_connection=_MQTTClientConnection,
            **extra,
        )
    except (InvalidHandshake, InvalidURI) as exc:
        raise WebSocketError(f"WebSocket handshake with {uri} failed: {exc}") from exc
    assert isinstance(ws, _MQTTClientConnection)
    if ws.subprotocol is None:
        # [MQTT-6.0.0-4] has the server pick "mqtt"; some omit the header. Go on, quietly.
        log.debug("%s selected no subprotocol", uri)
    transport = WebSocketClientTransport(ws)
    ws.adapter = transport
    protocol = protocol_factory()
    transport.start(protocol)
    return transport, protocol

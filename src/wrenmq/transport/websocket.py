"""MQTT over WebSocket, server side, on the ``websockets`` library's asyncio server.

:func:`serve_websocket` accepts WebSocket connections on one path with the subprotocol ``mqtt``
(or ``mqttv3.1``, MQTT 3.1's name) and gives each to a stream protocol made by a factory -- the
broker's ``Connection`` -- through :class:`WebSocketTransport`, an ``asyncio.Transport`` look-alike
whose common part (extra info, pausing and the receiving loop, ``close``/``abort`` bookkeeping) is
:class:`wrenmq.transport.ws_common.WebSocketTransportBase`, shared with the client's adapter.
MQTT bytes travel in binary frames [MQTT-6.0.0-1]; a packet may span messages and a message may
hold several packets, as the stream protocol decodes a byte stream either way [MQTT-6.0.0-2]. A
text frame closes the connection. Other paths are answered with HTTP 404.

The adapter, per connection:

- reading: one task (the ``websockets`` handler) receives messages and calls
  ``protocol.data_received``; ``pause_reading`` makes it stop receiving, and ``websockets`` then
  stops reading the socket once ``max_queue`` messages are waiting. It stops receiving once
  ``close`` is called.
- writing: ``write`` appends to a buffer and wakes one sender task, which sends everything
  buffered as one binary message (so a batch of packets flushed together is one frame) and
  awaits ``websockets``' own flow control. The bytes buffered or in flight drive the protocol's
  ``pause_writing``/``resume_writing`` against ``set_write_buffer_limits``, as on TCP.
- closing: ``close`` sends what is buffered, then the close frame (1000).

So a WebSocket connection costs two tasks and an ``await`` per message received and per batch
sent, where TCP costs none; that is the price of the library's asyncio API, and WebSocket clients
are rarely the broker's hot path. WebSocket pings are off (MQTT's keep alive does that job), and
so is permessage-deflate (CPU per message for little gain on small binary packets).

With ``proxy_protocol`` a PROXY header is read before the HTTP request
(:class:`ProxiedServerConnection`), and the header's source is the connection's peer.

Imports: asyncio, ``websockets``, and :mod:`wrenmq.transport`'s own modules.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from wrenmq.transport.proxy import ProxyHeader, ProxyHeaderReader, ProxyProtocolError
from wrenmq.transport.tcp import format_peer
from wrenmq.transport.ws_common import CLOSE_TIMEOUT, WebSocketTransportBase

__all__ = [
    "SUBPROTOCOLS",
    "ProxiedServerConnection",
    "WebSocketServer",
    "WebSocketTransport",
    "serve_websocket",
]

log = logging.getLogger("wrenmq.transport.websocket")

# [MQTT-6.0.0-3]/[MQTT-6.0.0-4]: "mqtt"; MQTT 3.1 clients (paho's MQTTv31) offer "mqttv3.1".
SUBPROTOCOLS = (Subprotocol("mqtt"), Subprotocol("mqttv3.1"))
DEFAULT_HIGH_WATER = 64 * 1024


class WebSocketTransport(WebSocketTransportBase[ServerConnection]):
    """The transport a stream protocol sees for one WebSocket connection."""

    def __init__(self, ws: ServerConnection) -> None:
        super().__init__(ws)
        self._buffer: list[bytes] = []
        self._buffered = 0  # bytes written and not yet handed to the socket
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._wake = asyncio.Event()

    # -- asyncio.Transport ----------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:  # noqa: D102
        if name == "proxy_header":
            return getattr(self._ws, "proxy_header", default)
        return super().get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:  # noqa: D102
        if self._closing or not data:
            return
        # bytes(...) copies a bytearray the caller may reuse: sending happens later.
        self._buffer.append(bytes(data))
        self._buffered += len(data)
        self._wake.set()
        if self._buffered > self._high:
            self._pause_writing()

    def abort(self) -> None:
        """Drop the connection without sending what is buffered."""
        self._buffer.clear()
        super().abort()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:  # noqa: D102
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def get_write_buffer_size(self) -> int:  # noqa: D102
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:  # noqa: D102
        return self._low, self._high

    # -- driving the protocol -------------------------------------------------------------------

    async def run(self, protocol: asyncio.Protocol) -> None:
        """Serve the connection with ``protocol`` until it closes; calls ``connection_lost``."""
        self._protocol = protocol
        sender = asyncio.get_running_loop().create_task(self._send_loop())
        exc: Exception | None = None
        try:
            protocol.connection_made(self)
            # The sender, once closing, sends what is buffered, then the close frame.
            exc = await self._receive_until_end(protocol, then=sender)
        finally:
            self._closing = True
            if not sender.done():
                sender.cancel()  # the connection is gone: nothing left to send
            try:
                await sender
            except (asyncio.CancelledError, ConnectionClosed):
                pass
            self._protocol = None
            protocol.connection_lost(exc)

    def _stop_receiving(self) -> bool:
        # Once closing, what the peer sends is not the protocol's business: the sender task
        # flushes the buffer and runs the closing handshake.
        return self._closing

    def _text_frame(self) -> None:
        log.warning("closing %s: text frame on an MQTT WebSocket", self._peer())
        self._buffer.clear()
        super()._text_frame()

    def _start_close(self) -> None:
        self._wake.set()  # the sender sends what is buffered, then the close frame

    async def _send_loop(self) -> None:
        ws = self._ws
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                chunks, self._buffer = self._buffer, []
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                await ws.send(data)  # bytes: one binary frame
                self._buffered -= len(data)
                if self._buffered <= self._low:
                    self._resume_writing()
            if self._closing:
                await ws.close(self._close_code)
                return

    def _peer(self) -> str:
        return format_peer(self.get_extra_info("peername"))


class ProxiedServerConnection(ServerConnection):
    """A ``websockets`` server connection that first reads a PROXY protocol header."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._proxy_reader: ProxyHeaderReader | None = ProxyHeaderReader()
        self.proxy_header: ProxyHeader | None = None

    @property
    def remote_address(self) -> Any:
        """The client's address from the PROXY header, else the socket's peer."""
        header = self.proxy_header
        if header is not None and header.source is not None:
            return header.source
        return super().remote_address

    def data_received(self, data: bytes) -> None:  # noqa: D102
        reader = self._proxy_reader
        if reader is not None:
            try:
                header = reader.feed(data)
            except ProxyProtocolError as exc:
                peer = format_peer(self.transport.get_extra_info("peername"))
                log.warning(
                    "closing the connection from %s: bad PROXY protocol header: %s", peer, exc
                )
                self._proxy_reader = None
                self.transport.abort()
                return
            if header is None:
                return
            self._proxy_reader = None
            self.proxy_header = header
            data = reader.rest
            if not data:
                return
        super().data_received(data)


class WebSocketServer:
    """A listening WebSocket endpoint; ``close``/``wait_closed``/``sockets`` as ``asyncio.Server``.

    ``close`` stops accepting and drops handshakes in progress, but leaves open connections to
    their protocols (the broker sends DISCONNECT to each, then closes them).
    """

    def __init__(self, server: Server) -> None:
        self._server = server

    @property
    def sockets(self) -> Sequence[Any]:
        """The listening sockets."""
        return tuple(self._server.sockets)

    def close(self) -> None:
        """Stop accepting; cancel the handlers of connections still in their handshake."""
        self._server.close(close_connections=False)
        # websockets <= 15 maps connections to their handler tasks (a private attribute); later
        # versions do not expose it, and a connection still in its handshake then ends on its own
        # open timeout instead.
        handlers: Any = getattr(self._server, "handlers", None)
        if isinstance(handlers, dict):
            for connection, task in list(handlers.items()):
                if connection.protocol.state is State.CONNECTING:
                    task.cancel()  # websockets aborts the socket on cancellation, silently

    async def wait_closed(self) -> None:
        """Wait until every connection handler has returned."""
        await self._server.wait_closed()


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    if not offered:
        # Lenient, like mosquitto: a client that offers no subprotocol at all still gets MQTT.
        return None
    raise NegotiationError(f"no MQTT subprotocol among {list(offered)!r}")


async def serve_websocket(
    protocol_factory: Callable[[], asyncio.Protocol],
    *,
    host: str,
    port: int,
    path: str = "/mqtt",
    ssl_context: ssl.SSLContext | None = None,
    proxy_protocol: bool = False,
    open_timeout: float = 10.0,
    max_size: int | None = None,
) -> WebSocketServer:
    """Listen for MQTT over WebSocket on ``host:port`` at ``path``.

    Args:
        protocol_factory: Makes the stream protocol for each accepted WebSocket connection.
        host: Address to bind.
        port: Port to bind; 0 for an ephemeral one.
        path: The HTTP path of the endpoint; any other path gets 404. A query string is ignored.
        ssl_context: Serve ``wss`` with this server context.
        proxy_protocol: Expect a PROXY protocol header before the HTTP request.
        open_timeout: Seconds for the TLS and WebSocket handshakes (and the PROXY header).
        max_size: Largest WebSocket message, in bytes; None for no limit.
    """

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != path:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        await WebSocketTransport(ws).run(protocol_factory())

    extra: dict[str, Any] = {}
    if ssl_context is not None:
        extra["ssl"] = ssl_context
    server = await serve(
        handler,
        host,
        port,
        subprotocols=list(SUBPROTOCOLS),
        select_subprotocol=_select_subprotocol,
        process_request=process_request,
        compression=None,
        server_header="wrenmq",
        open_timeout=open_timeout,
        ping_interval=None,
        close_timeout=CLOSE_TIMEOUT,
        max_size=max_size,
        logger=log,
        create_connection=ProxiedServerConnection if proxy_protocol else ServerConnection,
        reuse_address=True,
        backlog=4096,
        **extra,
    )
    return WebSocketServer(server)

"""Stream (TCP) helpers for servers: the PROXY protocol gate.

:class:`ProxyGate` is the protocol a listener with ``proxy_protocol`` accepts connections with.
It reads the PROXY header with the sans-IO :mod:`wrenmq.transport.proxy`, byte-exactly, then
hands the transport over: to the real protocol (``transport.set_protocol``), or first to
``loop.start_tls`` when the listener speaks TLS (the header precedes the TLS handshake, as
HAProxy's ``send-proxy`` and AWS NLB's proxy protocol v2 do in TCP pass-through). The protocol
sees a :class:`ProxiedTransport` whose ``peername`` is the client address from the header. From
then on the transport calls the real protocol directly, so reads cost nothing extra; writes go
through one delegating call.

A malformed header is logged at WARNING (a misbehaving peer, or a client that bypassed the proxy)
and the connection is closed; a header (or TLS handshake) that does not complete within
``timeout`` seconds closes it too, logged at INFO.

Imports: asyncio, logging, ssl, and :mod:`wrenmq.transport.proxy`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from wrenmq.transport.proxy import (
    V2_FIXED,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
)

__all__ = ["ProxiedTransport", "ProxyGate", "format_peer"]

log = logging.getLogger("wrenmq.transport")


def format_peer(address: object) -> str:
    """``"host:port"`` for a socket address tuple, as the broker shows peers; else ``"?"``."""
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return "?"


class ProxiedTransport(asyncio.Transport):
    """A transport seen through a PROXY header: ``peername`` is the client's real address.

    Every other call goes to the wrapped transport; ``get_extra_info("proxy_header")`` gives the
    :class:`~wrenmq.transport.proxy.ProxyHeader`.
    """

    __slots__ = ("_header", "_peername", "_transport")

    def __init__(self, transport: asyncio.Transport, header: ProxyHeader) -> None:
        super().__init__()
        self._transport = transport
        self._header = header
        self._peername = header.source

    def get_extra_info(self, name: str, default: Any = None) -> Any:  # noqa: D102
        if name == "peername" and self._peername is not None:
            return self._peername
        if name == "proxy_header":
            return self._header
        return self._transport.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:  # noqa: D102
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:  # noqa: D102
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:  # noqa: D102
        self._transport.write_eof()

    def can_write_eof(self) -> bool:  # noqa: D102
        return self._transport.can_write_eof()

    def abort(self) -> None:  # noqa: D102
        self._transport.abort()

    def close(self) -> None:  # noqa: D102
        self._transport.close()

    def is_closing(self) -> bool:  # noqa: D102
        return self._transport.is_closing()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:  # noqa: D102
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:  # noqa: D102
        return self._transport.get_protocol()

    def is_reading(self) -> bool:  # noqa: D102
        return self._transport.is_reading()

    def pause_reading(self) -> None:  # noqa: D102
        self._transport.pause_reading()

    def resume_reading(self) -> None:  # noqa: D102
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:  # noqa: D102
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:  # noqa: D102
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:  # noqa: D102
        limits: tuple[int, int] = self._transport.get_write_buffer_limits()
        return limits


class ProxyGate(asyncio.BufferedProtocol):
    """Reads a PROXY header, then gives the connection to ``factory()``'s protocol.

    The gate reads byte-exactly: as a ``BufferedProtocol`` it offers the transport a buffer no
    larger than what must still belong to the header (12 bytes first; for v2 the rest of the
    fixed part and then exactly its length; for v1 at most 2 bytes, so never past the CRLF). No
    byte after the header is ever read here, so the transport can be handed over as it is --
    to the protocol, or to ``loop.start_tls`` when the listener speaks TLS behind the header.

    Args:
        factory: Makes the protocol that serves the connection after the header.
        timeout: Seconds the header (and then the TLS handshake, if any) may take.
        ssl_context: Start TLS as a server after the header, with this context.
    """

    __slots__ = (
        "_buffer",
        "_data",
        "_factory",
        "_handshake",
        "_header",
        "_ssl_context",
        "_timeout",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._factory = factory
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._data = bytearray()
        self._buffer = bytearray()
        self._header: ProxyHeader | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # uvloop's transports are not asyncio.Transport subclasses, hence no isinstance check.
        self._transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def get_buffer(self, sizehint: int) -> bytearray:  # noqa: D102
        self._buffer = bytearray(self._wanted())
        return self._buffer

    def _wanted(self) -> int:
        """How many bytes may be read without reading past the end of the header."""
        data = self._data
        if len(data) < len(V2_SIGNATURE):
            return len(V2_SIGNATURE) - len(data)  # the shortest header (v1 UNKNOWN) has 15
        if data.startswith(V2_SIGNATURE):
            if len(data) < V2_FIXED:
                return V2_FIXED - len(data)
            return V2_FIXED + int.from_bytes(data[14:16], "big") - len(data)
        return 1 if data.endswith(b"\r") else 2  # v1: never past the CRLF

    def buffer_updated(self, nbytes: int) -> None:  # noqa: D102
        transport = self._transport
        if transport is None or self._header is not None:
            return
        self._data += memoryview(self._buffer)[:nbytes]
        try:
            parsed = parse_header(self._data)
        except ProxyProtocolError as exc:
            peer = format_peer(transport.get_extra_info("peername"))
            log.warning("closing the connection from %s: bad PROXY protocol header: %s", peer, exc)
            self._close()
            return
        if parsed is None:
            return
        header, length = parsed
        self._header = header
        assert length == len(self._data), "read past the PROXY header"
        log.debug(
            "PROXY v%d header: %s via %s",
            header.version,
            format_peer(header.source),
            format_peer(transport.get_extra_info("peername")),
        )
        if self._ssl_context is None:
            self._cancel_timer()
            protocol = self._factory()
            transport.set_protocol(protocol)
            protocol.connection_made(_seen(transport, header))
        else:
            # Stop reading now: uvloop keeps reading in this same callback, into this gate, and
            # those would be the ClientHello's bytes. start_tls resumes reading for TLS. The timer
            # keeps running: it bounds the TLS handshake too.
            transport.pause_reading()
            loop = asyncio.get_running_loop()
            self._handshake = loop.create_task(self._start_tls(transport, header))

    async def _start_tls(self, transport: asyncio.Transport, header: ProxyHeader) -> None:
        assert self._ssl_context is not None
        loop = asyncio.get_running_loop()
        protocol = self._factory()
        try:
            tls = await loop.start_tls(transport, protocol, self._ssl_context, server_side=True)
        except OSError as exc:  # ssl.SSLError, TimeoutError and ConnectionError are OSErrors
            log.debug("TLS handshake with %s failed: %r", format_peer(header.source), exc)
            transport.abort()
            return
        finally:
            self._cancel_timer()
        if tls is None or tls.is_closing():
            transport.abort()
            return
        protocol.connection_made(_seen(tls, header))

    def eof_received(self) -> bool:  # noqa: D102
        return False

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._cancel_timer()
        self._transport = None

    def _expire(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        peer = format_peer(transport.get_extra_info("peername"))
        what = "PROXY header" if self._header is None else "TLS handshake"
        log.info("closing the connection from %s: no %s in %g s", peer, what, self._timeout)
        if self._handshake is not None:
            self._handshake.cancel()
        self._close()

    def _close(self) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _seen(transport: asyncio.Transport, header: ProxyHeader) -> asyncio.Transport:
    """The transport as the protocol should see it: with the header's peer, if it has one."""
    return transport if header.source is None else ProxiedTransport(transport, header)

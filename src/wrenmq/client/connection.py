"""The network side of one client connection: a thin ``asyncio.Protocol``.

It only moves bytes: received data goes to the owner's ``data_received``; writes are reported to
the owner (for keep alive) and ``drain()`` waits while the transport's buffer is over its high-water
mark. No task, no await on the receive path. Imports only ``asyncio``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

__all__ = ["Connection", "ConnectionOwner"]


class ConnectionOwner(Protocol):
    """What a ``Connection`` reports to."""

    def data_received(self, conn: Connection, data: bytes) -> None:
        """Bytes arrived on ``conn``."""

    def data_sent(self, conn: Connection) -> None:
        """Bytes were written to ``conn``."""

    def connection_lost(self, conn: Connection, exc: Exception | None) -> None:
        """``conn`` is closed."""


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection of a client."""

    def __init__(self, owner: ConnectionOwner, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # uvloop's transports do not subclass asyncio.Transport: a cast, not an assert.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self.owner.data_received(self, data)

    def eof_received(self) -> bool:  # noqa: D102
        return False  # close the transport: MQTT has no half-closed state

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.transport = None
        self._wake_writers()
        if not self.closed.done():
            self.closed.set_result(None)
        self.owner.connection_lost(self, exc)

    def pause_writing(self) -> None:  # noqa: D102
        self._paused = True

    def resume_writing(self) -> None:  # noqa: D102
        self._paused = False
        self._wake_writers()

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def is_open(self) -> bool:
        """Whether the transport is still open."""
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Write ``data`` (nothing when empty or already closed)."""
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
            self.owner.data_sent(self)

    async def drain(self) -> None:
        """Wait until the transport accepts more data (or is closed)."""
        if not self._paused or self.transport is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def close(self) -> None:
        """Close the transport after flushing what is buffered."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close the transport at once, dropping what is buffered."""
        if self.transport is not None:
            self.transport.abort()

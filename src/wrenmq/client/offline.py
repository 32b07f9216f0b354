"""The bounded queue of publishes made while the client is (re)connecting.

When full, a publish blocks until there is room (``"block"``), raises ``OfflineQueueFull``
(``"raise"``), or pushes out the oldest queued publish, whose caller gets ``OfflineQueueFull``
(``"drop_oldest"``).

With a session store, a queued QoS 1/2 publish carries its sequence number in the store
(``seq``): it is sent even when its caller stopped waiting (the store has it, so a restarted
client would send it too), and a dropped one is reported to ``on_drop`` so that the store forgets
it. Imports ``asyncio`` and the client's errors only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from wrenmq.client.errors import OfflineQueueFull
from wrenmq.codec.properties import Properties
from wrenmq.protocol.events import PublishAcked

__all__ = ["OfflinePolicy", "OfflineQueue", "Queued", "fail_future"]

OfflinePolicy = Literal["block", "raise", "drop_oldest"]


def fail_future(fut: asyncio.Future[Any], error: BaseException) -> None:
    """Fail ``fut`` if pending, marking the exception as seen (its awaiter, if any, gets it)."""
    if not fut.done():
        fut.set_exception(error)
        fut.exception()


class Queued:
    """One publish waiting in the offline queue."""

    __slots__ = ("future", "payload", "properties", "qos", "retain", "seq", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties,
        future: asyncio.Future[PublishAcked],
        seq: int | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.future = future
        self.seq = seq  # in the session store


class OfflineQueue:
    """Publishes kept while disconnected, oldest first."""

    def __init__(
        self, size: int, policy: OfflinePolicy, on_drop: Callable[[Queued], None] | None = None
    ) -> None:
        self.size = size
        self.policy = policy
        self.on_drop = on_drop
        self._items: deque[Queued] = deque()
        self._space_waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    async def put(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties,
        seq: int | None = None,
    ) -> asyncio.Future[PublishAcked] | None:
        """Queue a publish and return the future of its acknowledgement.

        ``None`` means the caller waited for room and must look at the client's state again
        (it may be connected by now).
        """
        loop = asyncio.get_running_loop()
        items = self._items
        if len(items) >= self.size:
            if self.policy == "raise":
                raise OfflineQueueFull(f"offline queue full ({self.size} messages)")
            if self.policy == "drop_oldest":
                dropped = items.popleft()
                fail_future(dropped.future, OfflineQueueFull("dropped: queue full"))
                if self.on_drop is not None:
                    self.on_drop(dropped)
            else:
                waiter: asyncio.Future[None] = loop.create_future()
                self._space_waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._space_waiters:
                        self._space_waiters.remove(waiter)
                return None
        fut: asyncio.Future[PublishAcked] = loop.create_future()
        items.append(Queued(topic, payload, qos, retain, properties, fut, seq))
        return fut

    def restore(self, items: Iterable[Queued]) -> None:
        """Queue publishes loaded from a session store (beyond ``size`` if need be)."""
        self._items.extend(items)

    def drain(self) -> Iterator[Queued]:
        """Take the queued publishes, oldest first (skipping those whose caller gave up,
        unless they are in the session store)."""
        items = self._items
        while items:
            item = items.popleft()
            if item.seq is not None or not item.future.done():
                yield item

    def wake(self) -> None:
        """Let every publisher blocked on a full queue look again."""
        waiters = self._space_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        """Fail every queued publish with ``error`` and wake blocked publishers."""
        items = self._items
        while items:
            fail_future(items.popleft().future, error)
        self.wake()

"""Where a received message goes: filtered streams, ``client.messages``, ``on_message`` handlers.

Routing order for each message: every open filtered stream whose filter matches gets it (and so
claims it); an unclaimed one goes to ``client.messages`` unless only handlers consume messages
(handlers registered and ``client.messages`` never iterated); then every handler runs. Plain
handlers run inline; coroutine handlers run one after another on a single dispatcher task, never
one task per message. A handler that raises is logged and never stops the client; in manual-ack
mode the message is acknowledged once every handler returned without raising.

Back-pressure: when more than ``max_queued`` messages wait in streams, reading from the network
pauses until half of them were taken. Imports ``asyncio`` and the client's message module only.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from wrenmq.client.message import FilteredMessages, Message, Messages

__all__ = ["MessageHandler", "MessageRouter"]

log = logging.getLogger("wrenmq.client")

MessageHandler = Callable[[Message], Any]


class MessageRouter:
    """Routes messages to streams and handlers; runs async handlers on one dispatcher task.

    Args:
        max_queued: messages buffered in streams before reading pauses.
        pause_reading: called with True to pause reading from the network, False to resume.
    """

    def __init__(self, max_queued: int, pause_reading: Callable[[bool], None]) -> None:
        self.messages = Messages(self._taken, self._make_filtered)
        self.handlers: list[MessageHandler] = []
        self._filtered: list[FilteredMessages] = []
        self._max_queued = max_queued
        self._pause_reading = pause_reading
        self._queued = 0
        self._paused = False
        self._jobs: deque[tuple[Awaitable[Any], Message | None]] = deque()
        self._jobs_ready = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None

    # -- handlers -------------------------------------------------------------------------------

    def call(self, handler: Callable[..., Any], *args: Any, message: Message | None = None) -> bool:
        """Run ``handler(*args)``; an awaitable goes to the dispatcher. False if it raised."""
        try:
            result = handler(*args)
        except Exception:
            log.exception("handler %r raised", handler)
            return False
        if inspect.isawaitable(result):
            if message is not None:
                message._hold += 1
            self._jobs.append((result, message))
            self._jobs_ready.set()
            if self._dispatcher is None or self._dispatcher.done():
                self._dispatcher = asyncio.get_running_loop().create_task(
                    self._dispatch_jobs(), name="wrenmq-dispatch"
                )
        return True

    async def _dispatch_jobs(self) -> None:
        jobs = self._jobs
        while True:
            while not jobs:
                self._jobs_ready.clear()
                await self._jobs_ready.wait()
            job, message = jobs.popleft()
            try:
                await job
            except Exception:
                log.exception("async handler raised")
                if message is not None:
                    message._failed = True
            if message is not None:
                message._hold -= 1
                if not message._hold and not message._failed:
                    message.ack()

    async def close(self) -> None:
        """Stop the dispatcher; handlers still queued are dropped."""
        dispatcher, self._dispatcher = self._dispatcher, None
        for job, _ in self._jobs:
            if inspect.iscoroutine(job):
                job.close()  # never awaited: close it so it does not warn
        self._jobs.clear()
        if dispatcher is not None:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)

    # -- routing --------------------------------------------------------------------------------

    def route(self, message: Message) -> None:
        """Hand ``message`` to its streams and handlers."""
        claimed = False
        for stream in self._filtered:
            if stream.matches(message.topic):
                stream._put(message)
                self._taken(-1)
                claimed = True
        handlers = self.handlers
        if not claimed and (not handlers or self.messages.iterated):
            self.messages._put(message)
            self._taken(-1)
        if not handlers:
            return
        for handler in handlers:
            if not self.call(handler, message, message=message):
                message._failed = True
        if not message._failed and not message._hold:
            message.ack()

    def finish(self, error: BaseException | None) -> None:
        """End every stream: after what is buffered, raise ``error`` or stop iteration."""
        self.messages._finish(error)
        for stream in self._filtered:
            stream._finish(error)

    def reopen(self) -> None:
        """Let ``client.messages`` be iterated again after a new ``connect()``."""
        self.messages._reopen()

    # -- back-pressure --------------------------------------------------------------------------

    def _taken(self, count: int) -> None:
        """Track buffered messages (negative count: added) and pause or resume reading."""
        self._queued -= count
        if not self._paused and self._queued >= self._max_queued:
            self._paused = True
            self._pause_reading(True)
        elif self._paused and self._queued <= self._max_queued // 2:
            self._paused = False
            self._pause_reading(False)

    def connection_lost(self) -> None:
        """A new connection starts reading unpaused."""
        self._paused = False

    def _make_filtered(self, topic_filter: str) -> FilteredMessages:
        stream = FilteredMessages(topic_filter, self._taken, self._unfilter)
        self._filtered.append(stream)
        return stream

    def _unfilter(self, stream: FilteredMessages) -> None:
        if stream in self._filtered:
            self._filtered.remove(stream)
            self._taken(len(stream))

"""Received messages and the async iterators that hand them out.

``client.messages`` is one buffered stream of every message; ``client.messages.filter("a/+")``
makes a stream of the messages matching a filter, which then *claims* them: a message that matches
an open filtered stream goes there instead of to ``client.messages``. A filtered stream is open
until ``close()``, the end of its ``async with`` block, or until it is garbage collected (which in
CPython is as soon as an ``async for`` over it ends).

Cancelling a wait never loses a message: a waiter is only woken, it never receives the message
itself. Imports ``asyncio`` and ``codec``; never the broker.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from wrenmq.codec.properties import NO_PROPERTIES, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.topics import parse_shared, topic_matches, validate_topic_filter

if TYPE_CHECKING:
    from typing import Self

__all__ = ["FilteredMessages", "Message", "MessageStream", "Messages"]


class Message:
    """An application message received by the client.

    Attributes:
        topic: the topic name it was published to (topic aliases already resolved).
        payload: the payload bytes.
        qos: the QoS it was delivered with.
        retain: the RETAIN flag: True for a retained message sent on subscribe (or, with
            Retain As Published, as the publisher set it).
        dup: the DUP flag: the server may have sent this message before.
        packet_id: the packet identifier (0 for QoS 0).
        properties: the MQTT 5 properties (``NO_PROPERTIES`` below MQTT 5).
    """

    __slots__ = (
        "_ack",
        "_acked",
        "_failed",
        "_hold",
        "dup",
        "packet_id",
        "payload",
        "properties",
        "qos",
        "retain",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        *,
        dup: bool = False,
        packet_id: int = 0,
        properties: Properties = NO_PROPERTIES,
        ack: Callable[[Message, ReasonCode], None] | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packet_id = packet_id
        self.properties = properties
        self._ack = ack
        self._acked = ack is None or not qos
        self._failed = False  # an on_message handler raised: no automatic acknowledgement
        self._hold = 0  # async on_message handlers still running

    def __repr__(self) -> str:
        return (
            f"Message(topic={self.topic!r}, payload=<{len(self.payload)} bytes>, qos={self.qos}, "
            f"retain={self.retain})"
        )

    @property
    def acked(self) -> bool:
        """Whether the acknowledgement was sent (always True outside manual-ack mode)."""
        return self._acked

    def ack(self, reason_code: ReasonCode = ReasonCode.SUCCESS) -> None:
        """Acknowledge the message (manual-ack mode): sends its PUBACK or PUBREC.

        A no-op for QoS 0, outside manual-ack mode, when already acknowledged, or when the
        connection it arrived on is gone (the server will deliver it again). Thread-safe. An MQTT
        5 failure ``reason_code`` refuses the message.
        """
        if self._acked or self._ack is None:
            return
        self._acked = True
        self._ack(self, reason_code)

    def matches(self, topic_filter: str) -> bool:
        """Whether ``topic_filter`` (shared or not) matches this message's topic."""
        shared = parse_shared(topic_filter)
        return topic_matches(shared.topic_filter if shared else topic_filter, self.topic)

    @property
    def response_topic(self) -> str | None:
        """The MQTT 5 Response Topic of a request, or ``None``."""
        return self.properties.response_topic

    @property
    def correlation_data(self) -> bytes | None:
        """The MQTT 5 Correlation Data, or ``None``."""
        return self.properties.correlation_data


class MessageStream:
    """A buffered async iterator of messages."""

    def __init__(self, on_take: Callable[[int], None] | None = None) -> None:
        self._queue: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._end: BaseException | None = None
        self._ended = False
        self._on_take = on_take

    def __len__(self) -> int:
        """Messages buffered and not yet taken."""
        return len(self._queue)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        while not self._queue:
            if self._ended:
                if self._end is not None:
                    raise self._end
                raise StopAsyncIteration
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        message = self._queue.popleft()
        if self._on_take is not None:
            self._on_take(1)
        return message

    def get_nowait(self) -> Message | None:
        """Take a buffered message, or return ``None``."""
        if not self._queue:
            return None
        if self._on_take is not None:
            self._on_take(1)
        return self._queue.popleft()

    def _put(self, message: Message) -> None:
        self._queue.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self, error: BaseException | None) -> None:
        """End the stream: after the buffered messages, raise ``error`` or stop."""
        self._ended = True
        self._end = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _reopen(self) -> None:
        self._ended = False
        self._end = None


class FilteredMessages(MessageStream):
    """The messages whose topic matches ``topic_filter``; see ``Messages.filter``."""

    def __init__(
        self,
        topic_filter: str,
        on_take: Callable[[int], None] | None,
        on_close: Callable[[FilteredMessages], None],
    ) -> None:
        super().__init__(on_take)
        validate_topic_filter(topic_filter)
        shared = parse_shared(topic_filter)
        self.topic_filter = topic_filter
        self._match_filter = shared.topic_filter if shared else topic_filter
        self._on_close = on_close

    def matches(self, topic: str) -> bool:
        """Whether a message on ``topic`` belongs to this stream."""
        return topic_matches(self._match_filter, topic)

    def close(self) -> None:
        """Stop claiming messages; those already buffered can still be read."""
        self._on_close(self)
        if not self._ended:
            self._finish(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Messages(MessageStream):
    """Every received message not claimed by a filtered stream (``client.messages``)."""

    def __init__(
        self,
        on_take: Callable[[int], None] | None,
        make_filtered: Callable[[str], FilteredMessages],
    ) -> None:
        super().__init__(on_take)
        self.iterated = False
        self._make_filtered = make_filtered

    def __aiter__(self) -> Self:
        self.iterated = True
        return self

    def filter(self, topic_filter: str) -> FilteredMessages:
        """A stream of the messages matching ``topic_filter`` (which it claims from this one)."""
        return self._make_filtered(topic_filter)

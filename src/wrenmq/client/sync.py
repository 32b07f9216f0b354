"""A blocking facade over the asyncio client, for scripts and threads.

``wrenmq.sync.Client`` runs one ``wrenmq.client.Client`` on an event loop in a single background
thread and offers the same verbs as plain blocking methods::

    with Client("localhost") as client:
        client.subscribe("sensors/#", qos=1)
        client.publish("sensors/1", b"21.5", qos=1)
        for message in client.messages(timeout=5):
            print(message.topic, message.payload)

Callbacks registered with ``on_message`` / ``on_connected`` / ``on_disconnected`` run on the loop
thread; ``Message.ack()`` may be called from any thread. Imports ``asyncio``, ``threading`` and the
async client only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from wrenmq.client.client import Client as AsyncClient
from wrenmq.client.client import MessageHandler, PayloadType, SubscribeTarget
from wrenmq.client.errors import DisconnectedError
from wrenmq.client.message import Message, Messages, MessageStream
from wrenmq.codec.packets import ConnAck
from wrenmq.codec.properties import Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.types import QoS

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """A blocking MQTT client; takes exactly the arguments of ``wrenmq.client.Client``."""

    def __init__(self, hostname: str, port: int = 1883, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="wrenmq-sync-client", daemon=True
        )
        self._thread.start()

        async def make() -> AsyncClient:
            return AsyncClient(hostname, port, **kwargs)

        self._client = self._run(make())
        self._closed = False

    @property
    def client(self) -> AsyncClient:
        """The asyncio client underneath (use it only from its loop thread)."""
        return self._client

    @property
    def client_id(self) -> str:
        """The client identifier."""
        return self._client.client_id

    @property
    def is_connected(self) -> bool:
        """Whether the client has a live connection."""
        return self._client.is_connected

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking call from the client's own loop thread (a callback?)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> ConnAck:
        """Connect; return the CONNACK (raises ``ConnectError``)."""
        return self._run(self._client.connect())

    def disconnect(self, reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION) -> None:
        """Disconnect, keeping the loop thread for a later ``connect()``."""
        self._run(self._client.disconnect(reason_code))

    def close(self) -> None:
        """Disconnect and stop the loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._client.disconnect(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    @overload
    def publish(
        self,
        topic: str,
        payload: PayloadType = b"",
        qos: Literal[0, QoS.AT_MOST_ONCE] = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None: ...

    @overload
    def publish(
        self,
        topic: str,
        payload: PayloadType,
        qos: Literal[1, 2, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE],
        retain: bool = False,
        *,
        properties: Properties | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> ReasonCode: ...

    @overload
    def publish(
        self,
        topic: str,
        payload: PayloadType = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> ReasonCode | None: ...

    def publish(
        self,
        topic: str,
        payload: PayloadType = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> ReasonCode | None:
        """Publish and block until acknowledged (QoS 0: ``None``); see ``Client.publish``."""
        return self._run(
            self._client.publish(
                topic, payload, qos, retain, properties=properties, timeout=timeout, **kwargs
            )
        )

    def subscribe(
        self, topic_filter: SubscribeTarget, qos: int = 0, **kwargs: Any
    ) -> ReasonCode | list[ReasonCode]:
        """Subscribe; see ``wrenmq.client.Client.subscribe``."""
        coro: Coroutine[Any, Any, ReasonCode | list[ReasonCode]] = self._client.subscribe(
            topic_filter,
            qos,
            **kwargs,
        )
        return self._run(coro)

    def unsubscribe(self, topic_filter: str | Sequence[str], **kwargs: Any) -> list[ReasonCode]:
        """Unsubscribe; see ``wrenmq.client.Client.unsubscribe``."""
        return self._run(self._client.unsubscribe(topic_filter, **kwargs))

    def wait_published(self, timeout: float | None = None) -> None:
        """Block until no QoS 1/2 message is left to acknowledge; see ``Client.wait_published``."""
        self._run(self._client.wait_published(timeout))

    def reauthenticate(self, timeout: float | None = None) -> None:
        """Re-authenticate (MQTT 5 enhanced authentication); see ``Client.reauthenticate``."""
        self._run(self._client.reauthenticate(timeout=timeout))

    def request(self, topic: str, payload: PayloadType = b"", **kwargs: Any) -> Message:
        """Send a request and block for the response; see ``Client.request``."""
        return self._run(self._client.request(topic, payload, **kwargs))

    def respond(
        self, request: Message, payload: PayloadType = b"", **kwargs: Any
    ) -> ReasonCode | None:
        """Answer a request; see ``Client.respond``."""
        return self._run(self._client.respond(request, payload, **kwargs))

    def get_message(
        self, timeout: float | None = None, *, stream: MessageStream | None = None
    ) -> Message | None:
        """Take the next message, waiting up to ``timeout`` seconds; ``None`` on timeout.

        Raises:
            DisconnectedError: the client is closed and no message is left.
        """
        source = stream if stream is not None else self._client.messages
        if isinstance(source, Messages):
            source.iterated = True

        async def next_message() -> Message | None:
            try:
                async with asyncio.timeout(timeout):
                    return await anext(source)
            except TimeoutError:
                return None
            except StopAsyncIteration:
                raise DisconnectedError(message="the client is closed") from None

        return self._run(next_message())

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """Yield messages until none arrives within ``timeout`` (forever if ``None``)."""
        while True:
            message = self.get_message(timeout)
            if message is None:
                return
            yield message

    def filter(self, topic_filter: str) -> MessageStream:
        """A filtered stream to pass to ``get_message(stream=...)``."""

        async def make() -> MessageStream:
            return self._client.messages.filter(topic_filter)

        return self._run(make())

    def on_message(self, handler: MessageHandler) -> MessageHandler:
        """Call ``handler(message)`` on the loop thread for every message."""
        return self._client.on_message(handler)

    def on_connected(self, handler: Callable[[ConnAck], Any]) -> Callable[[ConnAck], Any]:
        """Call ``handler(connack)`` on the loop thread after each (re)connection."""
        return self._client.on_connected(handler)

    def on_disconnected(
        self, handler: Callable[[DisconnectedError], Any]
    ) -> Callable[[DisconnectedError], Any]:
        """Call ``handler(error)`` on the loop thread when a connection ends."""
        return self._client.on_disconnected(handler)

"""Events for embedding: inline interceptors that may deny or rewrite, and observers that never
block the broker.

Interceptors run synchronously, in registration order, on the hot path; each returns ``None`` /
``Verdict.DEFER`` to let the next one decide, ``Verdict.ALLOW`` to accept at once, or a denial
(``Verdict.DENY`` or a specific ``ReasonCode``); ``message_publishing`` interceptors may also return
a changed ``PublishingMessage`` and ``client_subscribing`` ones a lower QoS. Observers get frozen
payloads through a bounded queue drained after the current packet batch; when it is full the oldest
event is dropped and counted. Hook errors are logged and counted, never swallowed silently. A hook
nobody registered costs one attribute test.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wrenmq.codec.properties import Properties
from wrenmq.codec.reason_codes import ReasonCode

if TYPE_CHECKING:
    from wrenmq.broker.connection import Connection
    from wrenmq.codec.packets import Connect

__all__ = [
    "ClientConnected",
    "ClientConnecting",
    "ClientDisconnected",
    "ClientSubscribed",
    "ClientSubscribing",
    "ClientUnsubscribed",
    "HookEvent",
    "Hooks",
    "MessageDelivered",
    "MessageDropped",
    "MessagePublished",
    "PublishingMessage",
    "Verdict",
]

log = logging.getLogger("wrenmq.broker.hooks")


class HookEvent(enum.Enum):
    """Every hook point. The first three are interceptors, the rest observers."""

    CLIENT_CONNECTING = "client_connecting"
    MESSAGE_PUBLISHING = "message_publishing"
    CLIENT_SUBSCRIBING = "client_subscribing"
    CLIENT_CONNECTED = "client_connected"
    CLIENT_DISCONNECTED = "client_disconnected"
    CLIENT_SUBSCRIBED = "client_subscribed"
    CLIENT_UNSUBSCRIBED = "client_unsubscribed"
    MESSAGE_PUBLISHED = "message_published"
    MESSAGE_DELIVERED = "message_delivered"
    MESSAGE_DROPPED = "message_dropped"


INTERCEPTORS = frozenset(
    {HookEvent.CLIENT_CONNECTING, HookEvent.MESSAGE_PUBLISHING, HookEvent.CLIENT_SUBSCRIBING}
)


class Verdict(enum.Enum):
    """What an interceptor decides."""

    ALLOW = "allow"
    DENY = "deny"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class ClientConnecting:
    """Payload of ``client_connecting``: who is knocking."""

    client_id: str
    username: str | None
    password: bytes | None
    peer: str
    protocol_level: int
    clean_start: bool
    keepalive: int


@dataclass(frozen=True, slots=True)
class PublishingMessage:
    """Payload of ``message_publishing``; return a changed copy (``dataclasses.replace``) to
    rewrite the message.
    """

    client_id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties


@dataclass(frozen=True, slots=True)
class ClientSubscribing:
    """Payload of ``client_subscribing``; return a lower QoS to downgrade the grant."""

    client_id: str
    topic_filter: str
    qos: int


@dataclass(frozen=True, slots=True)
class ClientConnected:
    """Observer payload: a client is connected."""

    client_id: str
    peer: str
    protocol_level: int
    session_present: bool


@dataclass(frozen=True, slots=True)
class ClientDisconnected:
    """Observer payload: a client's connection ended; ``reason`` says how."""

    client_id: str
    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class ClientSubscribed:
    """Observer payload: a subscription was granted."""

    client_id: str
    topic_filter: str
    qos: int


@dataclass(frozen=True, slots=True)
class ClientUnsubscribed:
    """Observer payload: a subscription was removed."""

    client_id: str
    topic_filter: str


@dataclass(frozen=True, slots=True)
class MessagePublished:
    """Observer payload: a message was accepted and routed to ``subscribers`` sessions."""

    client_id: str
    topic: str
    qos: int
    retain: bool
    subscribers: int


@dataclass(frozen=True, slots=True)
class MessageDelivered:
    """Observer payload: a QoS 1/2 delivery to ``client_id`` was acknowledged."""

    client_id: str


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """Observer payload: a message was dropped for ``client_id`` (``reason`` says why)."""

    client_id: str
    topic: str
    reason: str


_PAYLOADS: dict[HookEvent, Callable[..., Any]] = {
    HookEvent.CLIENT_CONNECTED: ClientConnected,
    HookEvent.CLIENT_DISCONNECTED: ClientDisconnected,
    HookEvent.CLIENT_SUBSCRIBED: ClientSubscribed,
    HookEvent.CLIENT_UNSUBSCRIBED: ClientUnsubscribed,
    HookEvent.MESSAGE_PUBLISHED: MessagePublished,
    HookEvent.MESSAGE_DELIVERED: MessageDelivered,
    HookEvent.MESSAGE_DROPPED: MessageDropped,
}

Hook = Callable[[Any], Any]


class Hooks:
    """The registry of interceptors and observers of one broker."""

    def __init__(self, *, queue_size: int = 10_000) -> None:
        self._interceptors: dict[HookEvent, list[Hook]] = {}
        self._observers: dict[HookEvent, list[Hook]] = {}
        self._events: deque[tuple[HookEvent, Any]] = deque()
        self._queue_size = queue_size
        self._scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.intercepts_publish = False
        self.errors = 0
        self.dropped_events = 0

    # -- registration ---------------------------------------------------------------------------

    def add_interceptor(self, event: HookEvent | str, fn: Hook) -> None:
        """Register an interceptor for ``client_connecting``, ``message_publishing`` or
        ``client_subscribing``.
        """
        event = HookEvent(event)
        if event not in INTERCEPTORS:
            raise ValueError(f"{event.value} is an observer event; use add_observer")
        self._interceptors.setdefault(event, []).append(fn)
        self.intercepts_publish = HookEvent.MESSAGE_PUBLISHING in self._interceptors

    def add_observer(self, event: HookEvent | str, fn: Hook) -> None:
        """Register an observer (plain function or coroutine function) for an observer event."""
        event = HookEvent(event)
        if event in INTERCEPTORS:
            raise ValueError(f"{event.value} is an interceptor event; use add_interceptor")
        self._observers.setdefault(event, []).append(fn)

    def remove(self, event: HookEvent | str, fn: Hook) -> None:
        """Unregister ``fn``."""
        event = HookEvent(event)
        for table in (self._interceptors, self._observers):
            if fn in table.get(event, ()):
                table[event].remove(fn)
                if not table[event]:
                    del table[event]
        self.intercepts_publish = HookEvent.MESSAGE_PUBLISHING in self._interceptors

    def intercepts(self, event: HookEvent) -> bool:
        """True if an interceptor is registered for ``event``."""
        return event in self._interceptors

    def observed(self, event: HookEvent) -> bool:
        """True if an observer is registered for ``event``."""
        return event in self._observers

    # -- interceptors ---------------------------------------------------------------------------

    def _run(self, event: HookEvent, payload: Any) -> Any:
        for fn in self._interceptors.get(event, ()):
            try:
                result = fn(payload)
            except Exception:
                self.errors += 1
                log.exception("%s interceptor %r failed; denying", event.value, fn)
                return Verdict.DENY
            if result is None or result is Verdict.DEFER:
                continue
            return result
        return None

    def intercept(self, event: HookEvent, conn: Connection, packet: Connect) -> ReasonCode | None:
        """Run ``client_connecting``; returns the reason code to refuse with, or None."""
        if event not in self._interceptors:
            return None
        payload = ClientConnecting(
            conn.client_id, packet.username, packet.password, conn.peer,
            packet.protocol_level, packet.clean_start, packet.keepalive,
        )  # fmt: skip
        result = self._run(event, payload)
        if result is Verdict.DENY or result is False:
            return ReasonCode.NOT_AUTHORIZED
        if isinstance(result, ReasonCode) and result.is_failure:
            return result
        return None

    def intercept_publish(
        self,
        conn: Connection,
        topic: str,
        payload: Any,
        qos: int,
        retain: bool,
        props: Properties,
    ) -> tuple[str, Any, int, bool, Properties] | None:
        """Run ``message_publishing``; None cancels the message, else the (rewritten) fields."""
        msg = PublishingMessage(conn.client_id, topic, bytes(payload), qos, retain, props)
        for fn in self._interceptors.get(HookEvent.MESSAGE_PUBLISHING, ()):
            try:
                result = fn(msg)
            except Exception:
                self.errors += 1
                log.exception("message_publishing interceptor %r failed; dropping", fn)
                return None
            if result is Verdict.DENY or result is False or isinstance(result, ReasonCode):
                return None
            if isinstance(result, PublishingMessage):
                msg = result
            elif result is Verdict.ALLOW:
                break
        return msg.topic, msg.payload, msg.qos, msg.retain, msg.properties

    def intercept_subscribe(self, conn: Connection, topic_filter: str, qos: int) -> int:
        """Run ``client_subscribing``; returns the QoS to grant or a failure reason code."""
        result = self._run(
            HookEvent.CLIENT_SUBSCRIBING, ClientSubscribing(conn.client_id, topic_filter, qos)
        )
        if result is None or result is Verdict.ALLOW or result is True:
            return qos
        if result is Verdict.DENY or result is False:
            return int(ReasonCode.NOT_AUTHORIZED)
        if isinstance(result, int) and (0 <= result <= 2 or result >= 0x80):
            return min(int(result), qos) if result < 0x80 else int(result)
        return qos

    # -- observers ------------------------------------------------------------------------------

    def notify(self, event: HookEvent, *args: Any) -> None:
        """Queue an observer event; it is delivered after the current batch of packets."""
        if event not in self._observers:
            return
        events = self._events
        if len(events) >= self._queue_size:
            events.popleft()
            self.dropped_events += 1
        events.append((event, _PAYLOADS[event](*args)))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        events = self._events
        while events:
            event, payload = events.popleft()
            for fn in self._observers.get(event, ()):
                try:
                    result = fn(payload)
                    if inspect.isawaitable(result):
                        task = asyncio.ensure_future(result)
                        self._tasks.add(task)
                        task.add_done_callback(self._task_done)
                except Exception:
                    self.errors += 1
                    log.exception("%s observer %r failed", event.value, fn)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors += 1
            log.error("observer task failed", exc_info=task.exception())

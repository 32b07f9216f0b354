"""Broker-side sessions: subscriptions, the outgoing in-flight window and the bounded queue.

A ``Session`` outlives its network connection when the client asked for it (clean start 0 /
session expiry > 0). It owns every message on its way to the client: the in-flight window (QoS 1/2
sent and not yet acknowledged, in send order) and the queue behind it, bounded by
``max_queued_messages`` (QoS 0 messages are dropped first, then the oldest). Pure data plus the
write-side of delivery; it never awaits. Imports codec and the broker's own pure modules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wrenmq.codec.encode import PublishTemplate
from wrenmq.codec.packets import Will

if TYPE_CHECKING:
    from wrenmq.broker.connection import Connection
    from wrenmq.broker.durable import Durable

__all__ = ["SESSION_NEVER_EXPIRES", "Outgoing", "Session", "SubOptions"]

SESSION_NEVER_EXPIRES = 0xFFFFFFFF


class _NoQueue(deque[Any]):
    """The empty queue every session starts with, shared: an empty ``deque`` costs ~760 bytes,
    most of an idle connection's. ``Session.writable_queue`` gives a session its own before the
    first append; appending to this one is a bug, and loud.
    """

    def append(self, *args: Any) -> None:
        """Refused, as every other way of adding to it."""
        raise RuntimeError("adding to the shared empty queue: use Session.writable_queue()")

    appendleft = extend = extendleft = insert = append


_NO_QUEUE: deque[Any] = _NoQueue()

# Outgoing states.
QUEUED, AWAIT_ACK, AWAIT_COMP = 0, 1, 2


class SubOptions:
    """The options one subscription was granted with."""

    __slots__ = ("no_local", "qos", "retain_as_published", "retain_handling", "sub_id")

    def __init__(
        self,
        qos: int,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        sub_id: int | None = None,
    ) -> None:
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling
        self.sub_id = sub_id

    def __repr__(self) -> str:
        return (
            f"SubOptions(qos={self.qos}, no_local={self.no_local}, "
            f"rap={self.retain_as_published}, rh={self.retain_handling}, sub_id={self.sub_id})"
        )


class Outgoing:
    """One message on its way to one session."""

    __slots__ = (
        "expires_at",
        "packet_id",
        "qos",
        "retain",
        "seq",
        "share",
        "state",
        "sub_ids",
        "template",
    )

    def __init__(
        self,
        template: PublishTemplate,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        expires_at: float | None,
        share: Any = None,
    ) -> None:
        self.template = template
        self.qos = qos
        self.retain = retain
        self.sub_ids = sub_ids
        self.expires_at = expires_at
        self.share = share  # the shared group it came through, for redelivery to another member
        self.packet_id = 0
        self.state = QUEUED
        self.seq = 0  # its place in the session's durable queue; 0 = not stored


class Session:
    """The broker's state for one client id."""

    __slots__ = (
        "__weakref__",
        "blocked",
        "client_id",
        "conn",
        "created_at",
        "disconnected_at",
        "dropped",
        "durable",
        "expiry_handle",
        "expiry_interval",
        "incoming_qos2",
        "inflight",
        "inflight_max",
        "max_packet_size",
        "max_queued",
        "max_queued_bytes",
        "next_packet_id",
        "on_drop",
        "pressure",
        "queue",
        "queue_qos0",
        "queued_bytes",
        "queued_qos0",
        "spill_after",
        "spilled",
        "stalled",
        "subscriptions",
        "username",
        "version",
        "will",
        "will_due",
        "will_handle",
    )

    def __init__(
        self,
        client_id: str,
        version: int,
        *,
        max_queued: int,
        queue_qos0: bool,
        on_drop: Callable[[Session, Outgoing, str], None],
        pressure: list[Session] | None = None,
    ) -> None:
        self.client_id = client_id
        self.username: str | None = None
        self.version = version
        self.conn: Connection | None = None
        self.expiry_interval = 0
        self.subscriptions: dict[str, SubOptions] = {}
        self.inflight: dict[int, Outgoing] = {}
        self.inflight_max = 20
        self.queue: deque[Outgoing] = _NO_QUEUE  # its own deque on the first append
        self.max_queued = max_queued
        self.max_queued_bytes = 0
        self.queued_bytes = 0  # payload bytes in ``queue``
        self.queue_qos0 = queue_qos0
        # False once a scan found no QoS 0 message in ``queue`` (and none was queued since): a
        # full queue of QoS 1/2 then drops its oldest without scanning it for every arrival.
        self.queued_qos0 = False
        self.max_packet_size = 0  # the client's Maximum Packet Size; 0 = none announced
        self.incoming_qos2: set[int] = set()
        self.next_packet_id = 1
        self.will: Will | None = None
        self.will_handle: Any = None
        self.expiry_handle: Any = None
        self.created_at = 0.0
        self.disconnected_at: float | None = None
        self.dropped = 0
        self.on_drop = on_drop
        # Back-pressure: publishers paused because this session's queue is long, and the
        # broker-wide list a session joins when its queue crosses the high-water mark.
        self.blocked: list[Connection] = []
        self.pressure = pressure
        self.stalled = False  # kept publishers paused too long without progress: drop instead
        # Persistence: the store link of a persistent session, and its on-disk queue tail
        # (``spilled`` deliveries after seq ``spill_after`` are only on disk).
        self.durable: Durable | None = None
        self.spilled = 0
        self.spill_after = 0
        self.will_due: float | None = None  # wall-clock time of a pending delayed will

    def __repr__(self) -> str:
        state = "online" if self.conn is not None else "offline"
        return f"Session({self.client_id!r}, v{self.version}, {state})"

    # -- delivery -----------------------------------------------------------------------------

    def deliver(
        self,
        template: PublishTemplate,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        expires_at: float | None,
        share: Any = None,
    ) -> None:
        """Send a message now if the connection and the in-flight window allow, else queue it."""
        conn = self.conn
        if conn is not None and not conn.congested and not self.queue and not self.spilled:
            if not qos:
                conn.send_publish(template, 0, 0, retain, False, sub_ids, expires_at)
                return
            if len(self.inflight) < self.inflight_max:
                msg = Outgoing(template, qos, retain, sub_ids, expires_at, share)
                self._send_new(conn, msg)
                return
        if not qos and conn is None and not self.queue_qos0:
            return  # QoS 0 is not kept for offline clients unless configured [MQTT-3.1.2-?]
        self.enqueue(Outgoing(template, qos, retain, sub_ids, expires_at, share))

    def enqueue(self, msg: Outgoing) -> None:
        """Queue ``msg`` behind the window, within ``max_queued`` messages and
        ``max_queued_bytes`` payload bytes: QoS 0 messages go first, then the oldest.
        """
        queue = self.queue
        size = len(msg.template.payload)
        max_bytes = self.max_queued_bytes
        durable = self.durable
        while (queue or self.spilled) and (
            len(queue) + self.spilled >= self.max_queued
            or (max_bytes and self.queued_bytes + size > max_bytes)
        ):
            victim = self._victim(msg) if queue else msg
            self.dropped += 1
            self.on_drop(self, victim, "queue full")
            if durable is not None:
                durable.done(self, victim)
            if victim is msg:
                return
            self.queued_bytes -= len(victim.template.payload)
        if durable is not None and msg.qos:
            durable.record(self, msg)
            if self.spilled or len(queue) >= durable.memory_queue:
                if not self.spilled:
                    # The on-disk tail starts here: a refill must not read back the deliveries
                    # before it (in memory, in flight) a second time.
                    self.spill_after = msg.seq - 1
                self.spilled += 1  # on disk only; read back when the queue drains
                return
        if queue is _NO_QUEUE:
            queue = self.queue = deque()
        queue.append(msg)
        self.queued_bytes += size
        if not msg.qos:
            self.queued_qos0 = True
        if (
            len(queue) >= self.max_queued >> 1
            and self.conn is not None
            and not self.stalled
            and self.pressure is not None
        ):
            self.pressure.append(self)

    def writable_queue(self) -> deque[Outgoing]:
        """``queue``, made the session's own if it still is the shared empty one."""
        queue = self.queue
        if queue is _NO_QUEUE:
            queue = self.queue = deque()
        return queue

    def _victim(self, incoming: Outgoing) -> Outgoing:
        """What a full queue gives up for ``incoming``: a queued QoS 0 message, else ``incoming``
        itself if it is QoS 0, else the oldest message.
        """
        queue = self.queue
        if self.queued_qos0:
            for i, queued in enumerate(queue):
                if not queued.qos:
                    del queue[i]
                    return queued
            self.queued_qos0 = False
        if not incoming.qos:
            return incoming
        return queue.popleft()

    def _alloc_packet_id(self) -> int:
        pid = self.next_packet_id
        inflight = self.inflight
        while pid in inflight:
            pid = pid + 1 if pid < 0xFFFF else 1
        self.next_packet_id = pid + 1 if pid < 0xFFFF else 1
        return pid

    def _send_new(self, conn: Connection, msg: Outgoing) -> None:
        pid = self._alloc_packet_id()
        msg.packet_id = pid
        msg.state = AWAIT_ACK
        self.inflight[pid] = msg
        durable = self.durable
        if not conn.send_publish(
            msg.template, msg.qos, pid, msg.retain, False, msg.sub_ids, msg.expires_at
        ):
            # Too large for this client or expired: it never goes on the wire.
            del self.inflight[pid]
            if durable is not None:
                durable.done(self, msg)
        elif durable is not None:
            durable.record(self, msg)

    def pump(self) -> None:
        """Move queued messages onto the wire while the window and the connection allow."""
        conn = self.conn
        queue = self.queue
        if conn is None:
            return
        inflight = self.inflight
        limit = self.inflight_max
        while queue and not conn.congested:
            msg = queue[0]
            if msg.qos and len(inflight) >= limit:
                break
            queue.popleft()
            self.queued_bytes -= len(msg.template.payload)
            if msg.qos:
                self._send_new(conn, msg)
            else:
                conn.send_publish(
                    msg.template, 0, 0, msg.retain, False, msg.sub_ids, msg.expires_at
                )
        if len(queue) <= self.max_queued >> 2:
            self.stalled = False
            if self.blocked:
                self.release()
        durable = self.durable
        # Read the next page from disk early enough that the wire never waits for it.
        if self.spilled and durable is not None and len(queue) < durable.refill_below:
            durable.refill(self)

    def release(self) -> None:
        """Resume every publisher this session's queue had paused."""
        blocked, self.blocked = self.blocked, []
        for publisher in blocked:
            publisher.unblock(self)

    def resend_inflight(self) -> None:
        """On session resume: resend unacknowledged PUBLISH with DUP, and PUBREL [MQTT-4.4.0-1]."""
        conn = self.conn
        if conn is None:
            return
        for pid, msg in list(self.inflight.items()):
            if msg.state == AWAIT_COMP:
                conn.send_pubrel(pid)
            elif not conn.send_publish(
                msg.template, msg.qos, pid, msg.retain, True, msg.sub_ids, msg.expires_at
            ):
                del self.inflight[pid]
                if self.durable is not None:
                    self.durable.done(self, msg)

    # -- acknowledgements ----------------------------------------------------------------------

    def acked(self, packet_id: int) -> Outgoing | None:
        """PUBACK or PUBCOMP arrived: the message is done; refill the window."""
        msg = self.inflight.pop(packet_id, None)
        if msg is not None and self.durable is not None:
            self.durable.done(self, msg)
        if self.queue or self.spilled:
            self.pump()
        return msg

    def received(self, packet_id: int, failed: bool) -> bool:
        """PUBREC arrived: True if a PUBREL must follow (the flow continues)."""
        msg = self.inflight.get(packet_id)
        if msg is None:
            return not failed  # answer PUBREL anyway so the client can finish [MQTT-4.3.3]
        if failed:
            del self.inflight[packet_id]
            if self.durable is not None:
                self.durable.done(self, msg)
            if self.queue or self.spilled:
                self.pump()
            return False
        msg.state = AWAIT_COMP
        if self.durable is not None:
            self.durable.record(self, msg)
        return True

    def take_shared_unacked(self) -> list[Outgoing]:
        """Remove and return the messages that came through a shared subscription and were not
        yet received by the client (QoS 1 unacked, QoS 2 before PUBREC), for another member.
        """
        taken = [m for m in self.inflight.values() if m.share is not None and m.state == AWAIT_ACK]
        for msg in taken:
            del self.inflight[msg.packet_id]
            msg.packet_id = 0
            msg.state = QUEUED
        if any(m.share is not None for m in self.queue):
            kept: deque[Outgoing] = deque()
            for msg in self.queue:
                (taken if msg.share is not None else kept).append(msg)
            self.queue = kept
            self.queued_bytes = sum(len(m.template.payload) for m in kept)
        if self.durable is not None:
            for msg in taken:
                self.durable.done(self, msg)  # the next member records it as its own
        return taken

"""Keeping broker state in a ``SessionStore``: what is recorded when, deferred acknowledgements,
restoring at start, and offline queues that live on disk beyond a bounded cache.

Only persistent sessions (session expiry > 0) and their QoS 1/2 deliveries are recorded, plus
retained messages. Recording never blocks: the store batches changes and ``flush`` commits them.
With ``durability = "ack"`` a QoS >= 1 PUBLISH is acknowledged (PUBACK/PUBREC) only after the
batch holding its deliveries is committed; acknowledgements wait in order behind any earlier
deferred one. A persistent session keeps at most ``memory_queue`` queued deliveries in memory;
later ones are only on disk (``Session.spilled``) and are read back in pages as the queue drains,
so memory does not grow with the size of offline queues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from wrenmq.broker.persistence.base import (
    DeliveryRecord,
    MessageRecord,
    RetainedRecord,
    SessionRecord,
    SessionStore,
    StoreSnapshot,
    SubscriptionRecord,
)
from wrenmq.broker.persistence.sqlite import decode_will, encode_will
from wrenmq.broker.sessions import Outgoing, Session, SubOptions
from wrenmq.codec.encode import PublishTemplate
from wrenmq.codec.primitives import encode_varint
from wrenmq.codec.properties import (
    NO_PROPERTIES,
    Properties,
    decode_properties,
    encode_properties_body,
)
from wrenmq.codec.types import PacketType

if TYPE_CHECKING:
    from wrenmq.broker.broker import Broker
    from wrenmq.broker.connection import Connection

__all__ = ["Durable"]

log = logging.getLogger("wrenmq.broker.persistence")

PAGE = 2000  # deliveries read back from disk at a time


def _props_bytes(props: Properties) -> bytes:
    return b"" if props is NO_PROPERTIES else encode_properties_body(props)


def _props(data: bytes) -> Properties:
    if not data:
        return NO_PROPERTIES
    block = encode_varint(len(data)) + data
    return decode_properties(block, 0, len(block), PacketType.PUBLISH)[0]


class Durable:
    """The broker's link to its ``SessionStore``."""

    def __init__(
        self, broker: Broker, store: SessionStore, *, mode: str, memory_queue: int
    ) -> None:
        self.broker = broker
        self.store = store
        self.defer_acks = mode == "ack"
        self.memory_queue = memory_queue
        self.next_message_id = 1
        self.next_seq = 1
        self._acks: list[tuple[Connection, bytes]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._refilling: set[Session] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.errors = 0

    # -- clocks: the store keeps wall-clock deadlines ------------------------------------------

    def _wall(self, loop_deadline: float | None) -> float | None:
        if loop_deadline is None:
            return None
        return time.time() + (loop_deadline - self.broker.loop.time())

    def _loop_time(self, wall: float | None) -> float | None:
        if wall is None:
            return None
        return self.broker.loop.time() + (wall - time.time())

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and rebuild sessions, queues and retained messages from it."""
        snapshot = await self.store.open()
        try:
            self._restore(snapshot)
        except BaseException:
            await self.store.close()
            raise
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def stop(self) -> None:
        """Commit what is pending, send the acknowledgements waiting for it, close the store."""
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None
        for task in list(self._tasks):
            task.cancel()
        try:
            await self.store.flush()
            self._release_acks(self._acks)
            self._acks = []
        finally:
            await self.store.close()

    # -- acknowledgements ------------------------------------------------------------------------

    def ack(self, conn: Connection, data: bytes) -> None:
        """Send a PUBACK/PUBREC now, or after the next commit if anything waits to be durable."""
        if self.defer_acks and (self._acks or self.store.pending_changes):
            self._acks.append((conn, data))
            self._wake.set()
        else:
            conn.write(data)

    def _release_acks(self, acks: list[tuple[Connection, bytes]]) -> None:
        for conn, data in acks:
            conn.write(data)

    async def _flush_loop(self) -> None:
        store = self.store
        while True:
            await self._wake.wait()
            self._wake.clear()
            acks, self._acks = self._acks, []
            try:
                await store.flush()
            except Exception:
                self.errors += 1
                log.exception("the store failed to commit; acknowledgements are held back")
                self._acks = acks + self._acks
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            self._release_acks(acks)

    def kick(self) -> None:
        """Make sure what was just recorded gets committed soon (``ack`` mode).

        Every recording calls it: a change no acknowledgement waits for (a SUBSCRIBE, a session
        connecting or leaving, a delivery acknowledged) would otherwise stay uncommitted until
        the next deferred PUBACK/PUBREC, or lost in a crash however long ago it was made.
        """
        if self.defer_acks:
            self._wake.set()

    # -- sessions --------------------------------------------------------------------------------

    def save_session(self, session: Session) -> None:
        """Record a session's current header (after CONNECT, DISCONNECT or a will change)."""
        will = None
        due = None
        if session.conn is None and session.will is not None:
            will = encode_will(session.will)
            due = session.will_due
        self.store.record_session(
            SessionRecord(
                session.client_id,
                session.version,
                session.expiry_interval,
                None if session.conn is not None else time.time(),
                will,
                due,
            )
        )
        self.kick()

    def delete_session(self, session: Session) -> None:
        """The session ended: forget everything it had."""
        self.store.record_session_deleted(session.client_id)
        self.kick()

    def subscribed(self, session: Session, topic_filter: str, opts: SubOptions) -> None:
        """Record a subscription with every option."""
        self.store.record_subscription(
            SubscriptionRecord(
                session.client_id,
                topic_filter,
                opts.qos,
                opts.no_local,
                opts.retain_as_published,
                opts.retain_handling,
                opts.sub_id,
            )
        )
        self.kick()

    def unsubscribed(self, session: Session, topic_filter: str) -> None:
        """Record an unsubscription."""
        self.store.record_unsubscribe(session.client_id, topic_filter)
        self.kick()

    def incoming_qos2(self, session: Session, packet_id: int, present: bool) -> None:
        """Record an incoming QoS 2 packet id awaiting PUBREL (or its release)."""
        self.store.record_incoming_qos2(session.client_id, packet_id, present)
        self.kick()

    # -- deliveries ------------------------------------------------------------------------------

    def _message_id(self, template: PublishTemplate, expires_at: float | None) -> int:
        mid: int = template.message_id
        if not mid:
            mid = template.message_id = self.next_message_id
            self.next_message_id += 1
            self.store.record_message(
                MessageRecord(
                    mid,
                    template.topic,
                    template.payload,
                    _props_bytes(template.properties),
                    self._wall(expires_at),
                )
            )
        return mid

    def record(self, session: Session, msg: Outgoing) -> None:
        """Record a delivery (new, or its packet id / state changed)."""
        if not msg.seq:
            msg.seq = self.next_seq
            self.next_seq += 1
        self.store.record_delivery(
            DeliveryRecord(
                session.client_id,
                msg.seq,
                self._message_id(msg.template, msg.expires_at),
                msg.qos,
                msg.retain,
                msg.sub_ids,
                msg.packet_id,
                msg.state,
            )
        )
        self.kick()

    def done(self, session: Session, msg: Outgoing) -> None:
        """A delivery is over (acknowledged, dropped, expired, moved to another member)."""
        if msg.seq:
            self.store.record_delivery_done(session.client_id, msg.seq)
            msg.seq = 0
            self.kick()

    def refill(self, session: Session) -> None:
        """Read the next page of a session's on-disk queue into memory, then deliver it."""
        if session in self._refilling or not session.spilled:
            return
        self._refilling.add(session)
        task = asyncio.get_running_loop().create_task(self._refill(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refill(self, session: Session) -> None:
        try:
            records, messages = await self.store.load_deliveries(
                session.client_id, session.spill_after, PAGE
            )
        except Exception:
            self.errors += 1
            log.exception("cannot read the queue of %r from the store", session.client_id)
            return
        finally:
            self._refilling.discard(session)
        if self.broker.sessions.get(session.client_id) is not session:
            return
        templates: dict[int, PublishTemplate] = {}
        for rec in records:
            if rec.seq <= session.spill_after:
                continue
            msg = self._outgoing(rec, messages, templates)
            session.spill_after = rec.seq
            session.spilled -= 1
            if msg is None:
                self.store.record_delivery_done(session.client_id, rec.seq)
                continue
            session.queue.append(msg)
            session.queued_bytes += len(msg.template.payload)
        if not records:
            session.spilled = 0  # nothing more on disk
        session.pump()

    def _outgoing(
        self,
        rec: DeliveryRecord,
        messages: dict[int, MessageRecord],
        templates: dict[int, PublishTemplate],
    ) -> Outgoing | None:
        m = messages.get(rec.message_id)
        if m is None:
            return None
        template = templates.get(m.message_id)
        if template is None:
            template = PublishTemplate(m.topic, m.payload, _props(m.properties))
            template.message_id = m.message_id
            templates[m.message_id] = template
        msg = Outgoing(
            template, rec.qos, rec.retain, rec.subscription_identifiers,
            self._loop_time(m.expires_at),
        )  # fmt: skip
        msg.seq = rec.seq
        msg.packet_id = rec.packet_id
        msg.state = rec.state
        return msg

    # -- retained --------------------------------------------------------------------------------

    def retained(
        self, topic: str, template: PublishTemplate, qos: int, expires_at: float | None
    ) -> None:
        """Record the retained message of a topic (an empty payload deletes it)."""
        if not template.payload:
            self.store.record_retained_deleted(topic)
        else:
            self.store.record_retained(
                RetainedRecord(
                    topic, template.payload, qos, _props_bytes(template.properties),
                    self._wall(expires_at),
                )
            )  # fmt: skip
        self.kick()

    # -- restore ---------------------------------------------------------------------------------

    def _restore(self, snap: StoreSnapshot) -> None:
        broker = self.broker
        loop = broker.loop
        self.next_message_id = snap.next_message_id
        self.next_seq = snap.next_seq
        for r in snap.retained:
            template = PublishTemplate(r.topic, r.payload, _props(r.properties))
            broker.retained.set(r.topic, template, r.qos, self._loop_time(r.expires_at))
        templates: dict[int, PublishTemplate] = {}
        restored = 0
        now_wall = time.time()
        for rec in snap.sessions:
            session = broker.new_session(rec.client_id, rec.protocol_level)
            session.expiry_interval = rec.expiry_interval
            session.durable = self
            session.disconnected_at = loop.time()
            for msg_rec in snap.deliveries.get(rec.client_id, ()):
                msg = self._outgoing(msg_rec, snap.messages, templates)
                session.spill_after = msg_rec.seq
                if msg is None:
                    continue
                if msg.state and msg.packet_id:
                    session.inflight[msg.packet_id] = msg
                else:
                    msg.state = 0
                    msg.packet_id = 0
                    session.queue.append(msg)
                    session.queued_bytes += len(msg.template.payload)
            loaded = len(snap.deliveries.get(rec.client_id, ()))
            session.spilled = max(0, snap.pending.get(rec.client_id, 0) - loaded)
            session.incoming_qos2 = set(snap.incoming_qos2.get(rec.client_id, ()))
            if rec.will is not None:
                session.will = decode_will(rec.will)
                delay = max(0.0, (rec.will_due or now_wall) - now_wall)
                session.will_due = rec.will_due
                session.will_handle = loop.call_later(delay, broker.fire_will, session)
            broker.schedule_expiry(session, rec.disconnected_at)
            restored += 1
        for sub in snap.subscriptions:
            owner = broker.sessions.get(sub.client_id)
            if owner is None:
                continue
            opts = SubOptions(
                sub.qos, sub.no_local, sub.retain_as_published, sub.retain_handling,
                sub.subscription_identifier,
            )  # fmt: skip
            owner.subscriptions[sub.topic_filter] = opts
            broker.index.add(owner, sub.topic_filter, opts)
        if restored or snap.retained:
            log.info(
                "restored %d sessions, %d subscriptions, %d retained messages",
                restored, len(snap.subscriptions), len(snap.retained),
            )  # fmt: skip

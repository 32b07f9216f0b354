"""Keeping broker state in a ``SessionStore``: what is recorded when, deferred acknowledgements,
restoring at start, and offline queues that live on disk beyond a bounded cache.

Only persistent sessions (session expiry > 0) and their QoS 1/2 deliveries are recorded, plus
retained messages. Recording never blocks: the store batches changes and ``flush`` commits them.
With ``durability = "ack"`` a QoS >= 1 PUBLISH is acknowledged (PUBACK/PUBREC) only once each
of its deliveries is committed or over (acknowledged by its subscriber, dropped, expired);
acknowledgements wait in order behind any earlier deferred one. A persistent session keeps at
most ``memory_queue`` queued deliveries in memory; later ones are only on disk
(``Session.spilled``) and are read back in pages (``PAGE``, read ahead: at most about 2 * PAGE
in memory while it drains) as the queue drains, so memory does not grow with the size of offline
queues.

Deferred acknowledgements (``ack`` mode). ``ack()`` comes right after the PUBLISH it answers was
routed, so the messages given an id since the previous ``ack()`` are that PUBLISH's (``_fresh``);
for each, ``_live`` counts its deliveries recorded and not over. A waiting acknowledgement goes
out when the commit that started after it completes, or earlier when every delivery of its
messages is over: a connected subscriber that acknowledges before the commit leaves nothing to
wait for, and the store coalesces the delivery and the message away (neither reaches the disk).
Any other change recorded since the previous ``ack()`` (retained message, QoS 2 packet id,
session, a delivery of an untracked message) makes the next acknowledgement wait for the commit.
Attribution errs on the safe side: a message given an id outside a PUBLISH (a will, a retained
message sent on subscribe) only makes the next acknowledgement wait for more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
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
from wrenmq.broker.sessions import AWAIT_ACK, AWAIT_COMP, Outgoing, Session, SubOptions
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

# Deliveries read back from disk at a time. A session whose queue is partly on disk reads the next
# page as soon as fewer than ``PAGE`` wait in memory, so a drain never waits for the disk (a read
# may queue behind a commit's fsync); it holds at most about 2 * PAGE deliveries in memory.
PAGE = 4000
_MAX_FRESH = 1000  # messages tracked for the next acknowledgement before giving up on them
# ``ack`` mode, see ``Durable._flush_loop``: how long acknowledgements may make no progress, and
# how long anything may wait, before a commit starts.
HOLD = 0.002
LAZY = 0.05


def _props_bytes(props: Properties) -> bytes:
    return b"" if props is NO_PROPERTIES else encode_properties_body(props)


def _props(data: bytes) -> Properties:
    if not data:
        return NO_PROPERTIES
    block = encode_varint(len(data)) + data
    return decode_properties(block, 0, len(block), PacketType.PUBLISH)[0]


class _Ack:
    """A PUBACK/PUBREC/PUBCOMP waiting for the commit of ``epoch`` or, unless ``strict``, for
    every delivery of the messages ``mids`` to be over."""

    __slots__ = ("conn", "data", "epoch", "mids", "since", "strict")

    def __init__(
        self,
        conn: Connection,
        data: bytes,
        epoch: int,
        mids: Sequence[int],
        strict: bool,
        since: float,
    ) -> None:
        self.conn = conn
        self.data = data
        self.epoch = epoch
        self.mids = mids
        self.strict = strict
        self.since = since


class Durable:
    """The broker's link to its ``SessionStore``."""

    def __init__(
        self, broker: Broker, store: SessionStore, *, mode: str, memory_queue: int
    ) -> None:
        self.broker = broker
        self.store = store
        self.defer_acks = mode == "ack"
        self.memory_queue = memory_queue
        # ``Session.pump`` reads the next page of an on-disk queue once fewer wait in memory.
        self.refill_below = max(memory_queue, PAGE)
        self.next_message_id = 1
        self.next_seq = 1
        self._acks: deque[_Ack] = deque()
        # Commits: ``_epoch`` is the one that will cover what is recorded now, ``_committed``
        # the last one completed.
        self._epoch = 1
        self._committed = 0
        self._live: dict[int, int] = {}  # message id -> deliveries not over, while tracked
        self._fresh: list[int] = []  # messages given an id since the last ack()
        self._dirty = False  # another change recorded since the last ack()
        self._release_soon = False
        self._released_at = 0.0  # loop time of the last acknowledgement released
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # something to commit
        self._hurry = asyncio.Event()  # ... that should not wait (see ``_flush_loop``)
        self._refilling: set[Session] = set()
        self._unsaved: dict[Outgoing, Session] = {}  # sent, packet id and state not recorded
        store.before_commit = self._save_sent
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
            self._committed = self._epoch
            self._release()
        finally:
            await self.store.close()

    # -- acknowledgements ------------------------------------------------------------------------

    def ack(self, conn: Connection, data: bytes) -> None:
        """Send a PUBACK/PUBREC/PUBCOMP now, or once what it depends on is durable or over."""
        fresh = self._fresh
        if not fresh and not self._acks and not self._dirty:
            conn.write(data)  # nothing recorded since the previous one, nothing waits
            return
        if fresh:
            self._fresh = []
            if not self.defer_acks:
                live = self._live
                for mid in fresh:
                    del live[mid]
        if not self.defer_acks:
            self._dirty = False
            conn.write(data)
            return
        strict = self._dirty
        entry = _Ack(conn, data, self._epoch, fresh or (), strict, self.broker.loop.time())
        self._dirty = False
        if not self._acks and self._ready(entry):
            self._forget(entry)
            conn.write(data)
            return
        self._acks.append(entry)
        self._wake.set()
        if strict:
            self._hurry.set()

    def _ready(self, entry: _Ack) -> bool:
        if entry.epoch <= self._committed:
            return True
        if entry.strict:
            return False
        return not any(map(self._live.__getitem__, entry.mids))

    def _forget(self, entry: _Ack) -> None:
        if entry.mids:
            live = self._live
            for mid in entry.mids:
                del live[mid]

    def _release(self) -> None:
        """Send the waiting acknowledgements that may go, in order."""
        self._release_soon = False
        acks = self._acks
        if acks and self._ready(acks[0]):
            self._released_at = self.broker.loop.time()
            while acks and self._ready(acks[0]):
                entry = acks.popleft()
                self._forget(entry)
                entry.conn.write(entry.data)

    async def _flush_loop(self) -> None:
        """Commit, one batch after the other, what is recorded (``ack`` mode).

        A commit starts at once when something recorded needs it soon: a change other than a
        delivery (session, subscription, retained, QoS 2 packet id), an acknowledgement that
        only the commit can release, a delivery to an offline session or to the on-disk part of
        a queue. Deliveries to connected subscribers alone are given time to be acknowledged:
        that releases the publishers' acknowledgements and takes the deliveries out of the
        batch, so nothing is written for them. Their commit starts once acknowledgements wait
        and none was released for ``HOLD`` (the subscribers are slow or stuck), or after
        ``LAZY`` in any case.
        """
        store = self.store
        loop = self.broker.loop
        wake = self._wake
        hurry = self._hurry
        acks = self._acks
        while True:
            await wake.wait()
            pending_since = loop.time()
            while not hurry.is_set():
                now = loop.time()
                wait = pending_since + LAZY - now
                if acks:
                    oldest = acks[0].since
                    progress = max(oldest, self._released_at)
                    wait = min(wait, oldest + LAZY - now, progress + HOLD - now)
                if wait <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await hurry.wait()
            wake.clear()
            hurry.clear()
            epoch = self._epoch
            self._epoch += 1
            try:
                await store.flush()
            except Exception:
                self.errors += 1
                log.exception("the store failed to commit; acknowledgements are held back")
                await asyncio.sleep(1.0)
                wake.set()
                hurry.set()
                continue
            self._committed = epoch
            self._release()

    def kick(self) -> None:
        """Have what was just recorded committed at once (``ack`` mode).

        Every change other than a delivery calls it: a change no acknowledgement waits for (a
        SUBSCRIBE, a session connecting or leaving) would otherwise stay uncommitted for a while,
        or be lost in a crash however long ago it was made. It also makes the next
        acknowledgement wait for the commit.
        """
        if self.defer_acks:
            self._dirty = True
            self._wake.set()
            self._hurry.set()

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
        if self._unsaved:
            self._unsaved = {m: s for m, s in self._unsaved.items() if s is not session}
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

    def _record_message(
        self, template: PublishTemplate, mid: int, expires_at: float | None
    ) -> None:
        self.store.record_message(
            MessageRecord(
                mid,
                template.topic,
                template.payload,
                _props_bytes(template.properties),
                self._wall(expires_at),
            )
        )

    def record(self, session: Session, msg: Outgoing) -> None:
        """Record a delivery (new, or its packet id / state changed)."""
        if msg.seq and msg.state == AWAIT_ACK:
            # A stored delivery was just sent. Its packet id and state are recorded only when a
            # commit starts (``_save_sent``): most are acknowledged before, and then nothing is
            # recorded for them at all. On disk it is the same: a commit holds the new state of
            # every delivery in flight when it started, and none of the others.
            self._unsaved[msg] = session
            return
        template = msg.template
        mid: int = template.message_id
        if not msg.seq:
            msg.seq = self.next_seq
            self.next_seq += 1
            live = self._live
            n = live.get(mid) if mid else None
            if not mid:
                mid = template.message_id = self.next_message_id
                self.next_message_id += 1
                self._record_message(template, mid, msg.expires_at)
                self._track(mid)
            elif n is None:
                # Untracked: its row may be gone (every earlier delivery over) or not committed
                # yet; writing it again is cheap and rare (a shared message moved to another
                # member, a retained message sent on subscribe).
                self._record_message(template, mid, msg.expires_at)
                self._dirty = True
            else:
                if not n:  # the store may have dropped it with its last delivery
                    self._record_message(template, mid, msg.expires_at)
                live[mid] = n + 1
            if self.defer_acks and (
                session.conn is None or session.spilled or len(session.queue) >= self.memory_queue
            ):
                self._hurry.set()  # nobody is going to acknowledge it soon
        elif msg.state == AWAIT_COMP and self.defer_acks:
            # PUBREL goes out now: back to AWAIT_ACK after a crash, the PUBLISH would be sent
            # again to a receiver that may have completed it, a duplicate at QoS 2.
            self._hurry.set()
        self._record_delivery(session, msg, mid)
        if self.defer_acks:
            self._wake.set()

    def _record_delivery(self, session: Session, msg: Outgoing, mid: int) -> None:
        self.store.record_delivery(
            DeliveryRecord(
                session.client_id,
                msg.seq,
                mid,
                msg.qos,
                msg.retain,
                msg.sub_ids,
                msg.packet_id,
                msg.state,
            )
        )

    def _save_sent(self) -> None:
        """Record the deliveries sent and still in flight (the store's ``before_commit``)."""
        unsaved = self._unsaved
        if unsaved:
            self._unsaved = {}
            sessions = self.broker.sessions
            for msg, session in unsaved.items():
                # Not over, not moved on to PUBREL (recorded then), its session still there.
                if (
                    msg.seq
                    and msg.state == AWAIT_ACK
                    and sessions.get(session.client_id) is session
                ):
                    self._record_delivery(session, msg, msg.template.message_id)

    def _track(self, mid: int) -> None:
        fresh = self._fresh
        if len(fresh) >= _MAX_FRESH:  # nothing acknowledges them: stop tracking, commit instead
            for old in fresh:
                del self._live[old]
            fresh.clear()
            self._dirty = True
        self._live[mid] = 1
        fresh.append(mid)

    def done(self, session: Session, msg: Outgoing) -> None:
        """A delivery is over (acknowledged, dropped, expired, moved to another member)."""
        if msg.seq:
            self._unsaved.pop(msg, None)
            self.store.record_delivery_done(session.client_id, msg.seq)
            msg.seq = 0
            live = self._live
            mid = msg.template.message_id
            n = live.get(mid)
            if n is not None:
                live[mid] = n - 1
                if n == 1 and self._acks and not self._release_soon:
                    # Not now: a delivery moved to another shared member is recorded again
                    # right after this.
                    self._release_soon = True
                    self.broker.loop.call_soon(self._release)
            if self.defer_acks:
                self._wake.set()

    def refill(self, session: Session) -> None:
        """Read the next page of a session's on-disk queue into memory, then deliver it."""
        if session in self._refilling or not session.spilled:
            return
        self._refilling.add(session)
        task = asyncio.get_running_loop().create_task(self._refill(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refill(self, session: Session) -> None:
        client_id = session.client_id
        try:
            rows = await self.store.load_queue(client_id, session.spill_after, PAGE)
        except Exception:
            self.errors += 1
            log.exception("cannot read the queue of %r from the store", client_id)
            return
        finally:
            self._refilling.discard(session)
        if self.broker.sessions.get(client_id) is not session:
            return
        # A page is thousands of rows: what ``_outgoing`` does, inlined, for the common row (see
        # ``QueueRow``) and one template per message; deadlines move from wall-clock to loop
        # time by one offset per page.
        offset = self.broker.loop.time() - time.time()
        after = session.spill_after
        append = session.writable_queue().append
        templates: dict[int, PublishTemplate] = {}
        taken = size = 0
        for seq, mid, topic, payload, extra in rows:
            if seq <= after:
                continue
            after = seq
            taken += 1
            if topic is None:  # its message is gone: so is the delivery
                self.store.record_delivery_done(client_id, seq)
                continue
            template = templates.get(mid)
            if extra is None:
                if template is None:
                    template = templates[mid] = PublishTemplate(topic, payload)
                    template.message_id = mid
                msg = Outgoing(template, 1, False, (), None)
            else:
                qos, retain, sub_ids, packet_id, state, props, expires = extra
                if template is None:
                    template = templates[mid] = PublishTemplate(topic, payload, _props(props))
                    template.message_id = mid
                expires_at = None if expires is None else expires + offset
                msg = Outgoing(template, qos, retain, sub_ids, expires_at)
                msg.packet_id = packet_id
                msg.state = state
            msg.seq = seq
            append(msg)
            size += len(payload)
        session.spill_after = after
        session.spilled -= taken
        session.queued_bytes += size
        if not rows:
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
                    session.writable_queue().append(msg)
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

"""``MemoryStore``: the ``SessionStore`` kept in dicts; the reference behaviour for the others.

Every ``record_*`` applies at once; ``flush`` only clears the pending counter. The instance plays
the part of the disk: ``close()`` then ``open()`` on the same instance returns what was recorded
(with expired data removed, exactly as ``SQLiteStore`` does), which is how the shared test suite
runs against both stores. Nothing survives the process.

Rules shared with ``SQLiteStore`` (the test suite holds both to them):

* A message is deleted when its last delivery is removed; a message that never had a delivery
  stays until the next ``open()``, which sweeps every unreferenced message.
* ``open()`` removes expired data:

  - sessions past their expiry interval, with everything they own. Kept: a session without
    ``disconnected_at``, one whose interval is ``0xFFFFFFFF``, and one still holding a will,
    which is due when the session ends [MQTT-3.1.2-8]: the broker publishes it and deletes the
    session itself;
  - queued (state 0) deliveries of expired messages, whose onward delivery has not started
    [MQTT-3.3.2-5]; in-flight ones stay with their message, which must be resent;
  - retained messages past ``expires_at``, and rows whose client id has no session row.

Imports only ``persistence.base``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import islice

from wrenmq.broker.persistence.base import (
    NEVER_EXPIRES,
    DeliveryRecord,
    MessageRecord,
    QueueRow,
    RetainedRecord,
    SessionRecord,
    StoreError,
    StoreSnapshot,
    SubscriptionRecord,
    queue_extra,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    """A ``SessionStore`` in memory. ``commits`` counts flushes that had something to commit."""

    def __init__(self, *, snapshot_limit: int = 1000) -> None:
        if snapshot_limit < 0:
            raise ValueError("snapshot_limit must be >= 0")
        self.snapshot_limit = snapshot_limit
        self.before_commit: Callable[[], None] | None = None
        self.commits = 0
        self._pending = 0
        self._open = False
        self._sessions: dict[str, SessionRecord] = {}
        self._subs: dict[str, dict[str, SubscriptionRecord]] = {}
        self._messages: dict[int, MessageRecord] = {}
        self._refs: dict[int, int] = {}  # message id -> number of deliveries referencing it
        self._deliveries: dict[str, dict[int, DeliveryRecord]] = {}
        self._qos2: dict[str, set[int]] = {}
        self._retained: dict[str, RetainedRecord] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> StoreSnapshot:
        """Drop expired data and return everything held."""
        self._expire(time.time())
        self._open = True
        snap = StoreSnapshot()
        snap.sessions = list(self._sessions.values())
        snap.subscriptions = [s for subs in self._subs.values() for s in subs.values()]
        for client_id, per in self._deliveries.items():
            if not per:
                continue
            first = [per[seq] for seq in islice(sorted(per), self.snapshot_limit)]
            if first:
                snap.deliveries[client_id] = first
            snap.pending[client_id] = len(per)
            for d in first:
                snap.messages[d.message_id] = self._messages[d.message_id]
        snap.incoming_qos2 = {c: set(ids) for c, ids in self._qos2.items() if ids}
        snap.retained = list(self._retained.values())
        snap.next_message_id = max(self._messages, default=0) + 1
        seqs = (max(per, default=0) for per in self._deliveries.values())
        snap.next_seq = max(seqs, default=0) + 1
        return snap

    async def close(self) -> None:
        """Flush (nothing to write) and close; the data stays in this instance."""
        if self._open:
            await self.flush()
            self._open = False

    async def flush(self) -> None:
        """Nothing to write: clear the pending counter."""
        if not self._open:
            raise StoreError("the store is not open")
        if self.before_commit is not None:
            self.before_commit()
        if self._pending:
            self.commits += 1
            self._pending = 0

    @property
    def pending_changes(self) -> int:
        """Changes recorded since the last flush."""
        return self._pending

    def _expire(self, now: float) -> None:
        for client_id, s in list(self._sessions.items()):
            if (
                s.disconnected_at is not None
                and s.will is None
                and s.expiry_interval != NEVER_EXPIRES
                and s.disconnected_at + s.expiry_interval < now
            ):
                self._delete_client(client_id)
        for table in (self._subs, self._deliveries, self._qos2):
            for client_id in [c for c in table if c not in self._sessions]:
                self._delete_client(client_id)
        expired = {
            m.message_id
            for m in self._messages.values()
            if m.expires_at is not None and m.expires_at < now
        }
        for per in self._deliveries.values():
            for seq in [s for s, d in per.items() if d.state == 0 and d.message_id in expired]:
                self._unref(per.pop(seq).message_id)
        for message_id in [m for m in self._messages if m not in self._refs]:
            del self._messages[message_id]
        for topic in [
            t for t, r in self._retained.items() if r.expires_at is not None and r.expires_at < now
        ]:
            del self._retained[topic]

    # -- changes -----------------------------------------------------------------------------

    def _unref(self, message_id: int) -> None:
        left = self._refs.get(message_id, 0) - 1
        if left > 0:
            self._refs[message_id] = left
        else:
            self._refs.pop(message_id, None)
            self._messages.pop(message_id, None)

    def _delete_client(self, client_id: str) -> None:
        self._sessions.pop(client_id, None)
        self._subs.pop(client_id, None)
        self._qos2.pop(client_id, None)
        for d in self._deliveries.pop(client_id, {}).values():
            self._unref(d.message_id)

    def record_session(self, session: SessionRecord) -> None:
        """Insert or replace a session row."""
        self._sessions[session.client_id] = session
        self._pending += 1

    def record_session_deleted(self, client_id: str) -> None:
        """Remove a session with its subscriptions, deliveries and incoming QoS 2 ids."""
        self._delete_client(client_id)
        self._pending += 1

    def record_subscription(self, sub: SubscriptionRecord) -> None:
        """Insert or replace a subscription."""
        self._subs.setdefault(sub.client_id, {})[sub.topic_filter] = sub
        self._pending += 1

    def record_unsubscribe(self, client_id: str, topic_filter: str) -> None:
        """Remove a subscription."""
        subs = self._subs.get(client_id)
        if subs is not None:
            subs.pop(topic_filter, None)
            if not subs:
                del self._subs[client_id]
        self._pending += 1

    def record_message(self, message: MessageRecord) -> None:
        """Store a message body."""
        self._messages[message.message_id] = message
        self._pending += 1

    def record_delivery(self, delivery: DeliveryRecord) -> None:
        """Insert or replace a delivery."""
        per = self._deliveries.setdefault(delivery.client_id, {})
        old = per.get(delivery.seq)
        per[delivery.seq] = delivery
        if old is None or old.message_id != delivery.message_id:
            self._refs[delivery.message_id] = self._refs.get(delivery.message_id, 0) + 1
            if old is not None:
                self._unref(old.message_id)
        self._pending += 1

    def record_delivery_done(self, client_id: str, seq: int) -> None:
        """Remove a delivery; its message goes with its last delivery."""
        per = self._deliveries.get(client_id)
        if per is not None:
            old = per.pop(seq, None)
            if old is not None:
                self._unref(old.message_id)
            if not per:
                del self._deliveries[client_id]
        self._pending += 1

    def record_incoming_qos2(self, client_id: str, packet_id: int, present: bool) -> None:
        """Remember or forget an incoming QoS 2 packet id awaiting PUBREL."""
        if present:
            self._qos2.setdefault(client_id, set()).add(packet_id)
        else:
            ids = self._qos2.get(client_id)
            if ids is not None:
                ids.discard(packet_id)
                if not ids:
                    del self._qos2[client_id]
        self._pending += 1

    def record_retained(self, retained: RetainedRecord) -> None:
        """Insert or replace the retained message of a topic."""
        self._retained[retained.topic] = retained
        self._pending += 1

    def record_retained_deleted(self, topic: str) -> None:
        """Remove the retained message of a topic."""
        self._retained.pop(topic, None)
        self._pending += 1

    async def load_deliveries(
        self, client_id: str, after_seq: int, limit: int
    ) -> tuple[list[DeliveryRecord], dict[int, MessageRecord]]:
        """The next ``limit`` deliveries of a session after ``after_seq`` with their messages."""
        per = self._deliveries.get(client_id, {})
        seqs = islice((s for s in sorted(per) if s > after_seq), max(limit, 0))
        deliveries = [per[s] for s in seqs]
        messages = self._messages
        # A delivery whose message is gone comes back without it, as from SQLite (dropped then).
        return deliveries, {
            d.message_id: messages[d.message_id] for d in deliveries if d.message_id in messages
        }

    async def load_queue(self, client_id: str, after_seq: int, limit: int) -> list[QueueRow]:
        """``load_deliveries`` as ``QueueRow`` tuples, each joined with its message."""
        deliveries, messages = await self.load_deliveries(client_id, after_seq, limit)
        rows: list[QueueRow] = []
        for d in deliveries:
            m = messages.get(d.message_id)
            if m is None:
                rows.append((d.seq, d.message_id, None, b"", None))
            else:
                rows.append((d.seq, d.message_id, m.topic, m.payload, queue_extra(d, m)))
        return rows

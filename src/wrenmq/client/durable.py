"""The client's durable session: the glue between ``Client``, its protocol and a session store.

A ``DurableSession`` lives as long as the ``Client`` and holds one ``Journal`` per run (from
``connect()`` to ``disconnect()``). At ``open()`` it loads the client id's stored session into
the sans-IO protocol (running in durable mode) and the offline queue; then the client reports
what happens and the session records it, with what must wait for the commit:

* ``publish`` / ``queue`` / ``sent``: a QoS 1/2 message is stored (with its packet id once it
  has one) and goes on the wire after the commit (``ClientProtocol.mark_stored``);
* ``pubrec``: the PUBREC state is stored, then PUBREL goes out (``pubrel_stored``);
* ``acked`` / ``dropped``: the message leaves the store (no hurry: a resend of it after a
  crash is a harmless duplicate for QoS 1 and a PUBREL for QoS 2);
* ``receive``: a new incoming QoS 2 message is handed to the application only once its packet id
  is stored, one message at a time (``_pump``), and the ones received after it wait behind it;
* ``released``: the id leaves the store, then PUBCOMP goes out (``incoming_released``);
* ``acknowledged``: manual ack of a QoS 2 message: the id is stored, then PUBREC goes out.

Imports ``asyncio``, the client's journal, store, offline queue and message modules, and the
protocol; never the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from functools import partial

from wrenmq.client.errors import StoreError
from wrenmq.client.journal import Journal
from wrenmq.client.message import Message
from wrenmq.client.offline import OfflineQueue, Queued
from wrenmq.client.store import MessageState, SessionStore, StoredSession
from wrenmq.codec.packets import Publish
from wrenmq.codec.properties import Properties
from wrenmq.protocol.client import ClientProtocol
from wrenmq.protocol.session import STORING

__all__ = ["DurableSession"]

log = logging.getLogger("wrenmq.client")


class DurableSession:
    """Keeps a client's QoS 1/2 state in ``store``; see the module docstring.

    Args:
        store: the session store.
        proto: the client's protocol (constructed with ``durable=True``).
        offline: the client's offline queue.
        write: writes bytes to the current connection (nothing when there is none).
        deliver: hands a received message to the application.
        on_failure: called once when a commit fails (the client then stops).
    """

    def __init__(
        self,
        store: SessionStore,
        proto: ClientProtocol,
        offline: OfflineQueue,
        write: Callable[[bytes], None],
        deliver: Callable[[Message], None],
        on_failure: Callable[[StoreError], None],
    ) -> None:
        self.store = store
        self._proto = proto
        self._offline = offline
        self._write = write
        self._deliver = deliver
        self._on_failure = on_failure
        self.journal: Journal | None = None
        self._seq_by_pid: dict[int, int] = {}  # outgoing packet id -> sequence in the store
        # Received messages waiting for the store (new QoS 2 ones: True) or behind one.
        self._inbox: deque[tuple[Message, bool]] = deque()
        self._storing = False

    # -- a run ----------------------------------------------------------------------------------

    async def open(self, clean: bool) -> None:
        """Load the stored session (or clear it when ``clean``) into the protocol and queue."""
        await self.close()
        store = self.store
        await store.open()
        client_id = self._proto.client_id
        if clean:
            store.clear(client_id)
            await store.commit()
            loaded = StoredSession()
        else:
            loaded = await store.load(client_id)
        self.journal = Journal(store, client_id, loaded, self._on_failure)
        inflight = [m for m in loaded.outgoing if m.state != MessageState.QUEUED]
        self._proto.restore(
            [
                (
                    Publish(m.topic, m.payload, m.qos, m.retain, False, m.packet_id, m.properties),
                    m.seq,
                    m.state == MessageState.PUBREC_RECEIVED,
                )
                for m in inflight
            ],
            loaded.incoming_qos2,
            loaded.next_packet_id,
        )
        self._seq_by_pid = {m.packet_id: m.seq for m in inflight}
        loop = asyncio.get_running_loop()
        self._offline.restore(
            Queued(m.topic, m.payload, m.qos, m.retain, m.properties, loop.create_future(), m.seq)
            for m in loaded.outgoing
            if m.state == MessageState.QUEUED
        )
        if loaded.outgoing or loaded.incoming_qos2:
            log.info(
                "resuming %r from %r: %d outgoing messages, %d incoming QoS 2 ids",
                client_id,
                store,
                len(loaded.outgoing),
                len(loaded.incoming_qos2),
            )

    async def flush(self) -> None:
        """Wait until what was recorded is durable and what waited for it ran."""
        journal = self.journal
        if journal is not None and not journal.closed:
            try:
                await journal.flush()
            except StoreError:
                pass  # reported through on_failure

    async def close(self) -> None:
        """Commit what is recorded and close the store (the next ``open`` reloads it)."""
        journal, self.journal = self.journal, None
        self._seq_by_pid = {}
        self.clear_inbox()
        if journal is None:
            return
        try:
            if not journal.closed:
                await journal.flush()
        except StoreError as exc:
            log.error("the session store failed while closing: %s", exc)
        finally:
            journal.close()
            await journal.store.close()

    def clear_inbox(self) -> None:
        """Forget the messages not delivered yet (the client is closed)."""
        self._inbox.clear()
        self._storing = False

    # -- outgoing -------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, props: Properties) -> int:
        """Publish a QoS 1/2 message: stored, then sent. Returns its packet id."""
        journal = self.journal
        assert journal is not None
        proto = self._proto
        seq = journal.new_seq()
        pid, _ = proto.publish(topic, payload, qos, retain, props, tag=seq)
        journal.add_outgoing(seq, topic, payload, qos, retain, props, pid)
        journal.next_packet_id(proto.session.next_packet_id)
        self._send_when_stored(journal, pid, seq)
        return pid

    def new_seq(self) -> int | None:
        """A sequence number for a message about to be queued (None outside a run)."""
        return self.journal.new_seq() if self.journal is not None else None

    def queued(
        self, seq: int, topic: str, payload: bytes, qos: int, retain: bool, props: Properties
    ) -> None:
        """A QoS 1/2 message went into the offline queue: store it without a packet id."""
        journal = self.journal
        if journal is not None:
            journal.add_outgoing(seq, topic, payload, qos, retain, props, 0)
            journal.after_commit()

    def sent(self, seq: int, pid: int) -> None:
        """A queued message got packet id ``pid``: store that, then send it."""
        journal = self.journal
        if journal is not None:
            journal.sent(seq, pid, self._proto.session.next_packet_id)
            self._send_when_stored(journal, pid, seq)

    def _send_when_stored(self, journal: Journal, pid: int, seq: int) -> None:
        self._seq_by_pid[pid] = seq
        proto = self._proto
        journal.after_commit(lambda: self._write(proto.mark_stored(pid, seq)))

    def dropped(self, seq: int) -> None:
        """A queued message will never be sent: the store forgets it."""
        journal = self.journal
        if journal is not None:
            journal.done(seq)
            journal.after_commit()

    def acked(self, pid: int) -> None:
        """The flow of outgoing message ``pid`` ended."""
        seq = self._seq_by_pid.pop(pid, None)
        journal = self.journal
        if seq is not None and journal is not None:
            journal.done(seq)
            journal.after_commit()

    def pubrec(self, pid: int) -> None:
        """PUBREC for outgoing QoS 2 message ``pid``: store it, then send PUBREL."""
        seq = self._seq_by_pid.get(pid)
        journal = self.journal
        if seq is None or journal is None:
            return
        journal.pubrec(seq, pid)
        proto = self._proto
        journal.after_commit(lambda: self._write(proto.pubrel_stored(pid, seq)))

    # -- incoming -------------------------------------------------------------------------------

    def receive(self, message: Message, manual_ack: bool) -> None:
        """A message arrived: deliver it, or queue it behind (or for) the store."""
        if message.qos == 2 and not manual_ack and self.journal is not None:
            self._inbox.append((message, True))
            if len(self._inbox) == 1:
                self._pump()
        elif self._inbox:
            self._inbox.append((message, False))  # behind a QoS 2 message: keep the order
        else:
            self._deliver(message)

    def _pump(self) -> None:
        """Deliver from the inbox; a new QoS 2 message first waits until its id is stored.

        One at a time: the id of the message at the head is stored, then the message is handed
        to the application and the server gets its PUBREC, and only then is the next id stored.
        So whenever the process dies, at most one stored id belongs to a message the application
        may not have seen (the store completed, the hand-over had not begun); every other stored
        id was delivered (a restarted client rightly ignores its resend) and every message not
        delivered has no stored id and no PUBREC (the server resends it). Storing the ids of
        several messages at once would lose all but the first of them to a crash.
        """
        inbox = self._inbox
        journal = self.journal
        while inbox:
            message, durable = inbox[0]
            if durable and journal is not None:
                if not self._storing:
                    self._storing = True
                    generation = self._proto.generation
                    journal.received(message.packet_id)
                    journal.after_commit(partial(self._stored, message, generation))
                return
            inbox.popleft()
            self._deliver(message)

    def _stored(self, message: Message, generation: int) -> None:
        self._storing = False
        inbox = self._inbox
        if not inbox or inbox[0][0] is not message:
            return  # the client closed meanwhile
        inbox.popleft()
        self._deliver(message)  # the application first: a PUBREC without it would be a loss
        self._write(self._proto.incoming_stored(message.packet_id, generation))
        self._pump()

    def acknowledged(self, pid: int) -> None:
        """The application acknowledged incoming message ``pid`` (manual-ack mode)."""
        journal = self.journal
        proto = self._proto
        if journal is None or proto.session.qos2_in.get(pid) != STORING:
            return
        # Acknowledged after processing: PUBREC once the store has the id.
        generation = proto.generation
        journal.received(pid)
        journal.after_commit(lambda: self._write(proto.incoming_stored(pid, generation)))

    def released(self, pid: int) -> None:
        """PUBREL for incoming QoS 2 id ``pid``: remove it from the store, then PUBCOMP."""
        journal = self.journal
        if journal is None:
            return
        journal.released(pid)
        proto = self._proto
        generation = proto.generation
        journal.after_commit(lambda: self._write(proto.incoming_released(pid, generation)))

    def server_lost_session(self) -> None:
        """CONNACK without a session: the incoming QoS 2 ids mean nothing any more."""
        journal = self.journal
        if journal is not None:
            journal.server_lost_session()
            journal.after_commit()

"""The client's side of a durable session: record changes, act once they are committed.

A ``Journal`` binds a ``SessionStore`` to one client id for one run of the client (from
``connect()`` to ``disconnect()``). The client records each change as it happens and hands over
what must wait for the disk as an *action* (``after_commit``): send this PUBLISH, this PUBREL,
deliver this message and send its PUBREC. Actions are grouped per store commit and run in order
when the commit is done, from the commit future's callback: no task or await per message.

A failed commit closes the journal: its pending actions are dropped and ``on_failure`` is told,
once. Imports ``asyncio``, the stores and the client's errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from wrenmq.client.errors import StoreError
from wrenmq.client.store import MessageState, SessionStore, StoredMessage, StoredSession
from wrenmq.codec.properties import Properties

__all__ = ["Action", "Journal"]

log = logging.getLogger("wrenmq.client")

Action = Callable[[], None]


class Journal:
    """Records one client's session changes in ``store`` and runs actions after their commit.

    Args:
        store: the open store.
        client_id: whose session it is.
        loaded: what the store held when the run started (its ``next_seq`` numbers new messages).
        on_failure: called once with the error when a commit fails.
    """

    def __init__(
        self,
        store: SessionStore,
        client_id: str,
        loaded: StoredSession,
        on_failure: Callable[[StoreError], None],
    ) -> None:
        self.store = store
        self.client_id = client_id
        self._next_seq = loaded.next_seq
        self._on_failure = on_failure
        self._groups: deque[tuple[asyncio.Future[None], list[Action]]] = deque()
        self.closed = False

    def new_seq(self) -> int:
        """A sequence number for a new outgoing message."""
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # -- recording ------------------------------------------------------------------------------

    def add_outgoing(
        self,
        seq: int,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties,
        packet_id: int,
    ) -> None:
        """Record a new outgoing message: queued without ``packet_id``, else sent."""
        state = MessageState.SENT if packet_id else MessageState.QUEUED
        message = StoredMessage(seq, topic, payload, qos, retain, properties, packet_id, state)
        self.store.add_outgoing(self.client_id, message)

    def sent(self, seq: int, packet_id: int, next_packet_id: int) -> None:
        """Record that a queued message got ``packet_id`` (and the allocator moved on)."""
        self.store.update_outgoing(self.client_id, seq, packet_id, MessageState.SENT)
        self.store.set_next_packet_id(self.client_id, next_packet_id)

    def next_packet_id(self, packet_id: int) -> None:
        """Record where the packet id allocator resumes."""
        self.store.set_next_packet_id(self.client_id, packet_id)

    def pubrec(self, seq: int, packet_id: int) -> None:
        """Record that the server has QoS 2 message ``seq`` (only PUBREL / PUBCOMP remain)."""
        self.store.update_outgoing(self.client_id, seq, packet_id, MessageState.PUBREC_RECEIVED)

    def done(self, seq: int) -> None:
        """Record the end of an outgoing message's flow."""
        self.store.remove_outgoing(self.client_id, seq)

    def received(self, packet_id: int) -> None:
        """Record an incoming QoS 2 packet id as received."""
        self.store.add_incoming(self.client_id, packet_id)

    def released(self, packet_id: int) -> None:
        """Record an incoming QoS 2 packet id as released."""
        self.store.remove_incoming(self.client_id, packet_id)

    def server_lost_session(self) -> None:
        """The server kept no session: its incoming QoS 2 ids mean nothing any more."""
        self.store.clear_incoming(self.client_id)

    # -- committing -----------------------------------------------------------------------------

    def after_commit(self, action: Action | None = None) -> asyncio.Future[None]:
        """Commit what was recorded; run ``action`` once it is durable. Returns the commit."""
        fut = self.store.commit()
        if self.closed:
            return fut
        groups = self._groups
        if groups and groups[-1][0] is fut:
            if action is not None:
                groups[-1][1].append(action)
            return fut
        groups.append((fut, [] if action is None else [action]))
        fut.add_done_callback(self._committed)
        return fut

    def _committed(self, _: asyncio.Future[None]) -> None:
        groups = self._groups
        while groups and groups[0][0].done() and not self.closed:
            fut, actions = groups.popleft()
            error = StoreError("commit cancelled") if fut.cancelled() else fut.exception()
            if error is not None:
                self.close()
                if not isinstance(error, StoreError):
                    error = StoreError(repr(error))
                self._on_failure(error)
                return
            for action in actions:
                try:
                    action()
                except Exception:
                    log.exception("action after a store commit failed")

    async def flush(self) -> None:
        """Commit what was recorded and wait until it is durable (and its actions ran)."""
        await self.after_commit()

    def close(self) -> None:
        """Stop: pending actions are dropped (the store has, or will have, what they needed)."""
        self.closed = True
        self._groups.clear()

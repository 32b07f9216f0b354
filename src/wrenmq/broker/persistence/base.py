"""The ``SessionStore`` protocol: what the broker keeps durably, and the records it exchanges.

The broker records changes synchronously on its hot path (``record_*`` calls only append to an
in-memory batch and never block) and asks for durability with ``await flush()``, which commits
everything recorded so far in one transaction (group commit: one fsync per batch, never one per
message). Records use wall-clock seconds (``time.time()``) for every deadline, so they survive a
restart. A message's payload is stored once however many sessions it is queued for: deliveries
reference it by ``message_id``.

Implementations: ``memory`` (nothing survives the process; for embedding and tests) and
``sqlite`` (stdlib ``sqlite3``, WAL, schema versions). A Redis store for clustering can implement
the same protocol. Imports only ``wrenmq.errors``, nothing from the rest of the broker.

Records are values: nobody changes one after making it. ``MessageRecord`` and ``DeliveryRecord``
are made for every QoS 1/2 delivery to a persistent session, so they are plain slotted
dataclasses (a frozen one takes about four times as long to build); the others are frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from wrenmq.errors import WrenError

__all__ = [
    "NEVER_EXPIRES",
    "DeliveryRecord",
    "MessageRecord",
    "QueueExtra",
    "QueueRow",
    "RetainedRecord",
    "SessionRecord",
    "SessionStore",
    "StoreError",
    "StoreSnapshot",
    "SubscriptionRecord",
    "queue_extra",
]

NEVER_EXPIRES = 0xFFFFFFFF  # a session expiry interval of UINT_MAX never expires (3.1.2.11.2)


class StoreError(WrenError):
    """The store cannot be opened or written (corrupt file, disk full, ...).

    The message says what happened and how to recover.
    """


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A persistent session. ``will`` is the encoded will (codec wire form of a Will, see
    ``encode_will``/``decode_will`` in the sqlite module) or None; ``will_due`` the wall-clock
    time a delayed will is to be published (None if no delayed will is pending)."""

    client_id: str
    protocol_level: int
    expiry_interval: int
    disconnected_at: float | None = None
    will: bytes | None = None
    will_due: float | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """One subscription of a persistent session, with every option."""

    client_id: str
    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    subscription_identifier: int | None = None


@dataclass(slots=True)
class MessageRecord:
    """A message body, stored once. ``properties`` is the MQTT 5 property block without its
    length prefix (``encode_properties_body``), ``b""`` when there are none."""

    message_id: int
    topic: str
    payload: bytes
    properties: bytes = b""
    expires_at: float | None = None


@dataclass(slots=True)
class DeliveryRecord:
    """One message queued or in flight to one session. ``seq`` orders a session's deliveries;
    ``packet_id`` is 0 while queued; ``state`` 0 = queued, 1 = sent awaiting PUBACK/PUBREC,
    2 = PUBREL sent awaiting PUBCOMP."""

    client_id: str
    seq: int
    message_id: int
    qos: int
    retain: bool = False
    subscription_identifiers: tuple[int, ...] = ()
    packet_id: int = 0
    state: int = 0


# ``load_queue`` rows: a page of a long offline queue comes back as plain tuples, no records, since
# reading back 200,000 deliveries is 200,000 rows (SQLite converts few columns, the broker builds
# its own objects from them once). A row is ``(seq, message_id, topic, payload, extra)``:
# ``topic`` is None when the message is missing (the delivery is to be dropped); ``extra`` is None
# for the common delivery (QoS 1, no retain, no subscription identifiers, packet id 0, queued,
# message without properties or expiry), else ``(qos, retain, subscription_identifiers,
# packet_id, state, properties, expires_at)`` as in ``DeliveryRecord`` and ``MessageRecord``.
QueueExtra: TypeAlias = tuple[int, bool, tuple[int, ...], int, int, bytes, float | None]
QueueRow: TypeAlias = tuple[int, int, str | None, bytes, QueueExtra | None]


def queue_extra(delivery: DeliveryRecord, message: MessageRecord) -> QueueExtra | None:
    """The ``extra`` of a ``load_queue`` row: None when every field has its common value."""
    if (
        delivery.qos == 1
        and not delivery.retain
        and not delivery.subscription_identifiers
        and not delivery.packet_id
        and not delivery.state
        and not message.properties
        and message.expires_at is None
    ):
        return None
    return (
        delivery.qos, delivery.retain, delivery.subscription_identifiers, delivery.packet_id,
        delivery.state, message.properties, message.expires_at,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RetainedRecord:
    """A retained message."""

    topic: str
    payload: bytes
    qos: int
    properties: bytes = b""
    expires_at: float | None = None


@dataclass(slots=True)
class StoreSnapshot:
    """Everything a store holds, as loaded at start (expired data already removed).

    ``deliveries`` holds, per client id, at most ``limit`` deliveries in ``seq`` order (the rest
    stay on disk and are read with ``load_deliveries``); ``pending`` counts all of them.
    """

    sessions: list[SessionRecord] = field(default_factory=list)
    subscriptions: list[SubscriptionRecord] = field(default_factory=list)
    messages: dict[int, MessageRecord] = field(default_factory=dict)
    deliveries: dict[str, list[DeliveryRecord]] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    incoming_qos2: dict[str, set[int]] = field(default_factory=dict)
    retained: list[RetainedRecord] = field(default_factory=list)
    next_message_id: int = 1
    next_seq: int = 1  # above every delivery seq in the store


class SessionStore(Protocol):
    """Durable broker state. ``record_*`` never block; ``flush`` makes them durable.

    ``before_commit``, when set, is called on the event loop right before a commit takes the
    changes recorded so far (whoever starts it: ``flush``, a periodic or automatic commit,
    ``close``): its owner may record there what it keeps in memory until a commit needs it.
    """

    before_commit: Callable[[], None] | None

    async def open(self) -> StoreSnapshot:
        """Open (creating or migrating the schema), drop expired data, return the state."""

    async def close(self) -> None:
        """Flush and close."""

    async def flush(self) -> None:
        """Commit every change recorded so far; returns when it is durable."""

    @property
    def pending_changes(self) -> int:
        """Changes recorded and not yet committed."""

    def record_session(self, session: SessionRecord) -> None:
        """Insert or replace a session row."""

    def record_session_deleted(self, client_id: str) -> None:
        """Remove a session with its subscriptions, deliveries and incoming QoS 2 ids."""

    def record_subscription(self, sub: SubscriptionRecord) -> None:
        """Insert or replace a subscription."""

    def record_unsubscribe(self, client_id: str, topic_filter: str) -> None:
        """Remove a subscription."""

    def record_message(self, message: MessageRecord) -> None:
        """Store a message body (before the deliveries that reference it)."""

    def record_delivery(self, delivery: DeliveryRecord) -> None:
        """Insert or replace a delivery (queued, or its new packet id/state)."""

    def record_delivery_done(self, client_id: str, seq: int) -> None:
        """Remove a delivery (acknowledged, dropped or expired). A message no delivery or
        retained row references any more is deleted."""

    def record_incoming_qos2(self, client_id: str, packet_id: int, present: bool) -> None:
        """Remember (``present``) or forget an incoming QoS 2 packet id awaiting PUBREL."""

    def record_retained(self, retained: RetainedRecord) -> None:
        """Insert or replace the retained message of a topic."""

    def record_retained_deleted(self, topic: str) -> None:
        """Remove the retained message of a topic."""

    async def load_deliveries(
        self, client_id: str, after_seq: int, limit: int
    ) -> tuple[list[DeliveryRecord], dict[int, MessageRecord]]:
        """The next ``limit`` deliveries of a session after ``after_seq`` with their messages."""

    async def load_queue(self, client_id: str, after_seq: int, limit: int) -> list[QueueRow]:
        """``load_deliveries`` as ``QueueRow`` tuples, each joined with its message: the cheap
        way to read a long queue back page by page."""

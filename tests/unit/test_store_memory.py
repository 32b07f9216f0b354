"""The SessionStore behaviour suite, run against MemoryStore (the reference) and SQLiteStore.

Every test goes through close/reopen: for MemoryStore the instance plays the disk, for SQLiteStore
a new store opens the same directory. SQLite-only behaviour is in test_store_sqlite.py.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wrenmq.broker.persistence import (
    NEVER_EXPIRES,
    DeliveryRecord,
    MemoryStore,
    MessageRecord,
    RetainedRecord,
    SessionRecord,
    SQLiteStore,
    StoreError,
    StoreSnapshot,
    SubscriptionRecord,
    encode_will,
)
from wrenmq.codec.packets import Will
from wrenmq.codec.properties import Properties, encode_properties_body

Store = MemoryStore | SQLiteStore


class Harness:
    """One store under test, reopenable: ``reopen()`` closes it and opens the same data."""

    def __init__(self, kind: str, directory: Path, snapshot_limit: int = 1000) -> None:
        self.kind = kind
        self.directory = directory
        self.snapshot_limit = snapshot_limit
        self.store: Store = self._new()

    def _new(self) -> Store:
        if self.kind == "memory":
            return MemoryStore(snapshot_limit=self.snapshot_limit)
        return SQLiteStore(self.directory, snapshot_limit=self.snapshot_limit)

    async def reopen(self, snapshot_limit: int | None = None) -> StoreSnapshot:
        await self.store.close()
        if snapshot_limit is not None:
            self.snapshot_limit = snapshot_limit
        if isinstance(self.store, MemoryStore):
            self.store.snapshot_limit = self.snapshot_limit
        else:
            self.store = self._new()
        return await self.store.open()


@pytest.fixture(params=["memory", "sqlite"])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(request.param, tmp_path / "data")
    await harness.store.open()
    try:
        yield harness
    finally:
        await harness.store.close()


PROPS = encode_properties_body(
    Properties(content_type="text/plain", user_properties=(("k", "v"), ("k", "w")))
)


def session(client_id: str = "c1", **changes: Any) -> SessionRecord:
    return dataclasses.replace(SessionRecord(client_id, 5, 3600), **changes)


def message(message_id: int, **changes: Any) -> MessageRecord:
    return dataclasses.replace(MessageRecord(message_id, f"t/{message_id}", b"p"), **changes)


async def test_empty_store(h: Harness) -> None:
    snap = await h.reopen()
    assert snap == StoreSnapshot()
    assert snap.next_message_id == 1
    assert h.store.pending_changes == 0


async def test_every_record_kind_round_trips(h: Harness) -> None:
    s = h.store
    will = encode_will(Will("last/words", b"bye", qos=1, retain=True))
    later = time.time() + 3600
    sessions = [
        session("c1", will=will, will_due=later, disconnected_at=time.time()),
        SessionRecord("c2", protocol_level=4, expiry_interval=NEVER_EXPIRES),
    ]
    subs = [
        SubscriptionRecord("c1", "a/+/c", 2, True, True, 2, 7),
        SubscriptionRecord("c1", "$share/g/x/#", 1),
        SubscriptionRecord("c2", "#", 0),
    ]
    messages = [
        MessageRecord(1, "t/1", b"\x00\xffbinary", PROPS, later),
        MessageRecord(2, "t/2", b"", b"", None),
    ]
    deliveries = [
        DeliveryRecord("c1", 1, 1, 2, True, (7, 300000), 0, 0),
        DeliveryRecord("c1", 2, 2, 1, False, (), 17, 1),
        DeliveryRecord("c2", 1, 1, 2, False, (), 65535, 2),
    ]
    retained = [
        RetainedRecord("r/1", b"kept", 1, PROPS, later),
        RetainedRecord("r/2", b"", 0),
    ]
    for rec in sessions:
        s.record_session(rec)
    for sub in subs:
        s.record_subscription(sub)
    for m in messages:
        s.record_message(m)
    for d in deliveries:
        s.record_delivery(d)
    s.record_incoming_qos2("c1", 5, True)
    s.record_incoming_qos2("c1", 6, True)
    for r in retained:
        s.record_retained(r)
    assert s.pending_changes == 14

    snap = await h.reopen()
    assert sorted(snap.sessions, key=lambda x: x.client_id) == sessions
    assert sorted(snap.subscriptions, key=lambda x: (x.client_id, x.topic_filter)) == sorted(
        subs, key=lambda x: (x.client_id, x.topic_filter)
    )
    assert snap.messages == {1: messages[0], 2: messages[1]}
    assert snap.deliveries == {"c1": deliveries[:2], "c2": deliveries[2:]}
    assert snap.pending == {"c1": 2, "c2": 1}
    assert snap.incoming_qos2 == {"c1": {5, 6}}
    assert sorted(snap.retained, key=lambda r: r.topic) == retained
    assert snap.next_message_id == 3


async def test_writes_replace_and_deletes_remove(h: Harness) -> None:
    s = h.store
    s.record_session(session("c1"))
    s.record_subscription(SubscriptionRecord("c1", "a", 0))
    s.record_subscription(SubscriptionRecord("c1", "b", 0))
    s.record_message(message(1))
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    s.record_incoming_qos2("c1", 9, True)
    s.record_retained(RetainedRecord("r", b"old", 0))
    s.record_retained(RetainedRecord("gone", b"x", 0))
    await s.flush()
    s.record_session(session("c1", expiry_interval=60))
    s.record_subscription(SubscriptionRecord("c1", "a", 2))
    s.record_unsubscribe("c1", "b")
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1, packet_id=3, state=1))
    s.record_incoming_qos2("c1", 9, False)
    s.record_retained(RetainedRecord("r", b"new", 1))
    s.record_retained_deleted("gone")
    snap = await h.reopen()
    assert snap.sessions == [session("c1", expiry_interval=60)]
    assert snap.subscriptions == [SubscriptionRecord("c1", "a", 2)]
    assert snap.deliveries == {"c1": [DeliveryRecord("c1", 1, 1, 1, packet_id=3, state=1)]}
    assert snap.incoming_qos2 == {}
    assert snap.retained == [RetainedRecord("r", b"new", 1)]


async def test_message_goes_with_its_last_delivery(h: Harness) -> None:
    s = h.store
    for cid in ("c1", "c2"):
        s.record_session(session(cid))
    s.record_message(message(1))
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    s.record_delivery(DeliveryRecord("c2", 1, 1, 1))
    await s.flush()
    s.record_delivery_done("c1", 1)
    await s.flush()
    snap = await h.reopen()
    assert snap.messages == {1: message(1)}
    h.store.record_delivery_done("c2", 1)
    snap = await h.reopen()
    assert snap.messages == {} and snap.deliveries == {} and snap.pending == {}
    assert snap.next_message_id == 1


async def test_delivery_recorded_and_done_in_one_batch_leaves_nothing(h: Harness) -> None:
    s = h.store
    s.record_session(session("c1"))
    s.record_message(message(1))
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1, packet_id=1, state=1))
    s.record_delivery_done("c1", 1)
    snap = await h.reopen()
    assert snap.deliveries == {} and snap.messages == {}


async def test_session_deleted_takes_everything_it_owns(h: Harness) -> None:
    s = h.store
    for cid in ("c1", "c2"):
        s.record_session(session(cid))
        s.record_subscription(SubscriptionRecord(cid, "a", 1))
        s.record_incoming_qos2(cid, 1, True)
    s.record_message(message(1))
    s.record_message(message(2))
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    s.record_delivery(DeliveryRecord("c1", 2, 2, 1))
    s.record_delivery(DeliveryRecord("c2", 1, 2, 1))
    await s.flush()
    s.record_delivery(DeliveryRecord("c1", 3, 2, 1))  # uncommitted, dropped with the session
    s.record_session_deleted("c1")
    snap = await h.reopen()
    assert [x.client_id for x in snap.sessions] == ["c2"]
    assert [x.client_id for x in snap.subscriptions] == ["c2"]
    assert snap.incoming_qos2 == {"c2": {1}}
    assert snap.deliveries == {"c2": [DeliveryRecord("c2", 1, 2, 1)]}
    assert set(snap.messages) == {2}


async def test_session_deleted_then_recreated_in_one_batch(h: Harness) -> None:
    s = h.store
    s.record_session(session("c1", expiry_interval=1))
    s.record_subscription(SubscriptionRecord("c1", "old", 1))
    s.record_message(message(1))
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    await s.flush()
    s.record_subscription(SubscriptionRecord("c1", "old2", 1))
    s.record_session_deleted("c1")  # clean start: the old session goes, a new one begins
    s.record_session(session("c1", expiry_interval=2))
    s.record_subscription(SubscriptionRecord("c1", "new", 0))
    s.record_message(message(2))
    s.record_delivery(DeliveryRecord("c1", 1, 2, 0))
    s.record_delivery(DeliveryRecord("c1", 2, 2, 0))
    s.record_delivery_done("c1", 2)
    snap = await h.reopen()
    assert snap.sessions == [session("c1", expiry_interval=2)]
    assert snap.subscriptions == [SubscriptionRecord("c1", "new", 0)]
    assert snap.deliveries == {"c1": [DeliveryRecord("c1", 1, 2, 0)]}
    assert set(snap.messages) == {2}


async def test_expired_data_is_removed_on_open(h: Harness) -> None:
    s = h.store
    now = time.time()
    long_ago = now - 1000
    s.record_session(session("expired", expiry_interval=10, disconnected_at=long_ago))
    s.record_session(session("zero", expiry_interval=0, disconnected_at=now - 1))
    s.record_session(session("forever", expiry_interval=NEVER_EXPIRES, disconnected_at=0.0))
    s.record_session(session("connected", expiry_interval=0))
    s.record_session(session("fresh", expiry_interval=3600, disconnected_at=long_ago))
    will = encode_will(Will("w", b"x"))
    s.record_session(session("will", expiry_interval=10, disconnected_at=long_ago, will=will))
    s.record_subscription(SubscriptionRecord("expired", "a", 1))
    s.record_incoming_qos2("expired", 1, True)
    s.record_subscription(SubscriptionRecord("nobody", "orphan", 1))  # no session row
    s.record_message(message(1))
    s.record_message(message(2, expires_at=now - 1))
    s.record_message(message(3, expires_at=now - 1))
    s.record_message(message(4, expires_at=now + 3600))
    s.record_message(message(5))  # never had a delivery
    s.record_delivery(DeliveryRecord("expired", 1, 1, 1))
    s.record_delivery(DeliveryRecord("fresh", 1, 1, 1))
    s.record_delivery(DeliveryRecord("fresh", 2, 2, 1))  # queued, message expired: dropped
    s.record_delivery(DeliveryRecord("fresh", 3, 3, 1, packet_id=4, state=1))  # in flight: kept
    s.record_delivery(DeliveryRecord("fresh", 4, 4, 1))
    s.record_retained(RetainedRecord("old", b"x", 0, expires_at=now - 1))
    s.record_retained(RetainedRecord("new", b"x", 0, expires_at=now + 3600))
    s.record_retained(RetainedRecord("always", b"x", 0))
    snap = await h.reopen()
    assert {x.client_id for x in snap.sessions} == {"forever", "connected", "fresh", "will"}
    assert snap.subscriptions == [] and snap.incoming_qos2 == {}
    assert [d.seq for d in snap.deliveries["fresh"]] == [1, 3, 4]
    assert set(snap.deliveries) == {"fresh"} and snap.pending == {"fresh": 3}
    assert set(snap.messages) == {1, 3, 4}
    assert {r.topic for r in snap.retained} == {"new", "always"}
    assert snap.next_message_id == 5


async def test_snapshot_limit_and_paging(h: Harness) -> None:
    s = h.store
    s.record_session(session("c1"))
    s.record_session(session("c2"))
    for i in range(1, 26):
        s.record_message(message(i))
        s.record_delivery(DeliveryRecord("c1", i * 10, i, 1))
    s.record_delivery(DeliveryRecord("c2", 1, 25, 1))
    snap = await h.reopen(snapshot_limit=10)
    assert [d.seq for d in snap.deliveries["c1"]] == list(range(10, 101, 10))
    assert snap.pending == {"c1": 25, "c2": 1}
    assert set(snap.messages) == set(range(1, 11)) | {25}
    page, msgs = await h.store.load_deliveries("c1", 100, 10)
    assert [d.seq for d in page] == list(range(110, 201, 10))
    assert msgs == {i: message(i) for i in range(11, 21)}
    page, msgs = await h.store.load_deliveries("c1", 200, 10)
    assert [d.seq for d in page] == [210, 220, 230, 240, 250]
    assert set(msgs) == {21, 22, 23, 24, 25}
    assert await h.store.load_deliveries("c1", 250, 10) == ([], {})
    assert await h.store.load_deliveries("nobody", 0, 10) == ([], {})
    snap = await h.reopen(snapshot_limit=0)
    assert snap.deliveries == {} and snap.messages == {} and snap.pending["c1"] == 25


async def test_load_deliveries_sees_unflushed_records(h: Harness) -> None:
    s = h.store
    s.record_session(session("c1"))
    s.record_message(message(1))
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    page, msgs = await s.load_deliveries("c1", 0, 10)
    assert page == [DeliveryRecord("c1", 1, 1, 1)] and msgs == {1: message(1)}


async def test_pending_changes_and_flush(h: Harness) -> None:
    s = h.store
    await s.flush()  # nothing pending: returns at once
    assert s.pending_changes == 0 and s.commits == 0
    s.record_session(session("c1"))
    s.record_retained(RetainedRecord("r", b"x", 0))
    assert s.pending_changes == 2
    await s.flush()
    assert s.pending_changes == 0 and s.commits == 1
    await s.flush()
    assert s.commits == 1


async def test_flush_after_close_raises(h: Harness) -> None:
    await h.store.close()
    with pytest.raises(StoreError):
        await h.store.flush()
    await h.store.close()  # idempotent


async def test_load_queue_rows_common_and_uncommon(h: Harness) -> None:
    s = h.store
    s.record_session(session("c1"))
    s.record_message(MessageRecord(1, "a/b", b"plain"))
    s.record_message(MessageRecord(2, "c", b"rich", b"\x01\x01", expires_at=2_000_000_000.0))
    s.record_delivery(DeliveryRecord("c1", 1, 1, 1))  # the common row
    s.record_delivery(DeliveryRecord("c1", 2, 2, 2, True, (7, 9), 42, 1))  # every field set
    s.record_delivery(DeliveryRecord("c1", 3, 1, 1))
    common = (1, 1, "a/b", b"plain", None)
    uncommon = (2, 2, "c", b"rich", (2, True, (7, 9), 42, 1, b"\x01\x01", 2_000_000_000.0))
    expected = [common, uncommon, (3, *common[1:])]
    assert await s.load_queue("c1", 0, 10) == expected  # not flushed yet
    await h.reopen(snapshot_limit=0)
    assert await h.store.load_queue("c1", 0, 10) == expected  # from disk
    assert await h.store.load_queue("c1", 1, 1) == [uncommon]
    assert await h.store.load_queue("c1", 3, 10) == []
    assert await h.store.load_queue("nobody", 0, 10) == []


async def test_load_queue_row_of_a_missing_message(h: Harness) -> None:
    s = h.store
    s.record_session(session("c1"))
    s.record_delivery(DeliveryRecord("c1", 1, 99, 1))
    (row,) = await s.load_queue("c1", 0, 10)
    assert row[0] == 1 and row[2] is None  # the broker drops such a delivery


async def test_before_commit_runs_before_each_commit(h: Harness) -> None:
    s = h.store
    calls = 0

    def before() -> None:
        nonlocal calls
        calls += 1
        s.record_session(session("late"))  # recorded here: part of this very commit

    s.before_commit = before
    s.record_session(session("c1"))
    await s.flush()
    assert calls >= 1  # SQLite asks once for the flush and once for the commit it starts
    assert s.pending_changes == 0
    s.before_commit = None
    snap = await h.reopen()
    assert {r.client_id for r in snap.sessions} == {"c1", "late"}

"""SQLiteStore beyond the shared suite: files, schema versions, group commit, durability, CLI.

Row counts are checked through a second sqlite3 connection on the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from wrenmq.broker.persistence import (
    NEVER_EXPIRES,
    DeliveryRecord,
    MessageRecord,
    RetainedRecord,
    SessionRecord,
    SQLiteStore,
    StoreError,
    SubscriptionRecord,
    decode_will,
    encode_will,
)
from wrenmq.broker.persistence import sqlite as sqlite_module
from wrenmq.codec.packets import Will
from wrenmq.codec.properties import Properties

WRENMQ = Path(sys.executable).parent / "wrenmq"
HINT = "aside and restart"


@contextlib.contextmanager
def peek(directory: Path) -> Iterator[sqlite3.Connection]:
    """A second connection on the store's file."""
    conn = sqlite3.connect(directory / "wrenmq.db")
    try:
        yield conn
    finally:
        conn.close()


def count(directory: Path, table: str) -> int:
    with peek(directory) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def fill(s: SQLiteStore, n: int, *, client_id: str = "c1", payload: bytes = b"p") -> None:
    s.record_session(SessionRecord(client_id, 5, NEVER_EXPIRES))
    s.record_message(MessageRecord(1, "t", payload))
    for seq in range(n):
        s.record_delivery(DeliveryRecord(client_id, seq, 1, 1))


async def pragma(s: SQLiteStore, name: str) -> Any:
    def run() -> Any:
        assert s._conn is not None
        return s._conn.execute(f"PRAGMA {name}").fetchone()[0]

    return await s._call(run)


# -- file and schema -----------------------------------------------------------------------------


async def test_file_mode_and_schema_version_table(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "new" / "dir")
    await s.open()
    assert await pragma(s, "synchronous") == 2  # FULL for durability="ack"
    await s.close()
    assert (tmp_path / "new" / "dir" / "wrenmq.db").is_file()
    with peek(tmp_path / "new" / "dir") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT version, applied_at FROM schema_version").fetchall()
    assert [v for v, _ in rows] == [1] == [sqlite_module.SCHEMA_VERSION]
    assert abs(rows[0][1] - time.time()) < 60
    s = SQLiteStore(tmp_path, durability="periodic")
    await s.open()
    assert await pragma(s, "synchronous") == 1  # NORMAL
    await s.close()


async def test_migrations_apply_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = SQLiteStore(tmp_path)
    await s.open()
    await s.close()
    v2 = ("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (42)")
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", (*sqlite_module.MIGRATIONS, v2))
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", 2)
    s = SQLiteStore(tmp_path)
    await s.open()
    assert (await s.inspect())["schema_version"] == 2
    await s.close()
    with peek(tmp_path) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_version")] == [1, 2]
        assert conn.execute("SELECT x FROM extra").fetchall() == [(42,)]


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path)
    await s.open()
    await s.close()
    with peek(tmp_path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 0)")
        conn.commit()
    s = SQLiteStore(tmp_path)
    with pytest.raises(StoreError, match="schema version 99, newer") as info:
        await s.open()
    assert "upgrade wrenmq" in str(info.value) and HINT in str(info.value)
    await s.close()  # safe after a failed open


async def test_foreign_database_is_refused(tmp_path: Path) -> None:
    with peek(tmp_path) as conn:
        conn.execute("CREATE TABLE something_else (x)")
    with pytest.raises(StoreError, match="not a wrenmq database"):
        await SQLiteStore(tmp_path).open()


async def test_garbage_file_is_refused_with_recovery_hint(tmp_path: Path) -> None:
    (tmp_path / "wrenmq.db").write_bytes(b"this is not sqlite at all\x00\xff" * 300)
    s = SQLiteStore(tmp_path)
    with pytest.raises(StoreError) as info:
        await s.open()
    message = str(info.value)
    assert "corrupt" in message and HINT in message
    assert f"wrenmq store inspect --data-dir {tmp_path}" in message
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    with pytest.raises(StoreError, match="closed"):
        await s.open()


async def test_damaged_pages_are_refused(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path)
    await s.open()
    s.record_session(SessionRecord("c1", 5, NEVER_EXPIRES))
    for i in range(300):
        s.record_message(MessageRecord(i, f"t/{i}", b"x" * 200))
        s.record_delivery(DeliveryRecord("c1", i, i, 1))
    await s.close()
    with (tmp_path / "wrenmq.db").open("r+b") as f:
        f.seek(4096 * 5)
        f.write(b"\xa5" * 4096 * 3)
    with pytest.raises(StoreError, match=HINT):
        await SQLiteStore(tmp_path).open()


# -- batching ------------------------------------------------------------------------------------


async def test_payload_is_stored_once(store: SQLiteStore, tmp_path: Path) -> None:
    payload = os.urandom(10_000)
    store.record_message(MessageRecord(1, "big", payload))
    for cid in ("a", "b", "c"):
        store.record_session(SessionRecord(cid, 5, 60))
        for seq in range(100):
            store.record_delivery(DeliveryRecord(cid, seq, 1, 1))
    await store.flush()
    assert count(tmp_path, "deliveries") == 300
    with peek(tmp_path) as conn:
        assert conn.execute("SELECT count(*), sum(length(payload)) FROM messages").fetchone() == (
            1,
            10_000,
        )
    for cid in ("a", "b", "c"):
        for seq in range(100):
            store.record_delivery_done(cid, seq)
    await store.flush()
    assert count(tmp_path, "deliveries") == 0 == count(tmp_path, "messages")


async def test_recorded_then_done_cancel_out(store: SQLiteStore) -> None:
    store.record_session(SessionRecord("c1", 5, 60))
    store.record_message(MessageRecord(1, "t", b"x"))
    store.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    await store.flush()
    store.record_delivery(DeliveryRecord("c1", 2, 1, 1))
    store.record_delivery(DeliveryRecord("c1", 2, 1, 1, packet_id=9, state=1))
    store.record_delivery_done("c1", 2)  # new in this batch: both go
    assert store._batch.deliveries == {}
    store.record_delivery_done("c1", 1)  # may be on disk: a DELETE stays
    assert store._batch.deliveries == {"c1": {1: None}}
    assert store.pending_changes == 4
    await store.flush()
    snap = await reopen(store)
    assert snap.deliveries == {} and snap.messages == {}


async def reopen(store: SQLiteStore) -> Any:
    await store.close()
    again = SQLiteStore(store.directory)
    try:
        return await again.open()
    finally:
        await again.close()


async def test_session_deletion_drops_its_uncommitted_changes(store: SQLiteStore) -> None:
    store.record_session(SessionRecord("c1", 5, 60))
    store.record_message(MessageRecord(1, "t", b"x"))
    store.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    store.record_incoming_qos2("c1", 3, True)
    store.record_session(SessionRecord("c2", 5, 60))
    store.record_session_deleted("c1")
    batch = store._batch
    assert batch.session_deletes == {"c1"} and set(batch.sessions) == {"c2"}
    assert batch.deliveries == {} and batch.qos2 == {}
    # Message 1 was recorded in this batch and lost its only delivery: it is not written.
    assert batch.messages == {} and batch.touched == set()


async def test_message_whose_deliveries_all_end_in_its_batch_is_not_written(
    store: SQLiteStore,
) -> None:
    store.record_session(SessionRecord("c1", 5, 60))
    store.record_session(SessionRecord("c2", 5, 60))
    store.record_message(MessageRecord(1, "t", b"x"))
    store.record_delivery(DeliveryRecord("c1", 1, 1, 1))
    store.record_delivery(DeliveryRecord("c2", 2, 1, 1))
    store.record_delivery(DeliveryRecord("c1", 1, 1, 1, packet_id=4, state=1))  # an update
    store.record_delivery_done("c1", 1)
    assert 1 in store._batch.messages  # c2 still has it
    store.record_delivery_done("c2", 2)
    assert store._batch.messages == {} and store._batch.touched == set()
    # Recorded again (a new delivery of it), it is written with that delivery.
    store.record_message(MessageRecord(1, "t", b"x"))
    store.record_delivery(DeliveryRecord("c2", 3, 1, 1))
    await store.flush()
    assert count(store.directory, "messages") == 1 and count(store.directory, "deliveries") == 1
    # A message on disk is not dropped by a batch that records it again and ends its delivery.
    store.record_message(MessageRecord(1, "t", b"x"))
    store.record_delivery(DeliveryRecord("c1", 4, 1, 1))
    store.record_delivery_done("c1", 4)
    await store.flush()
    snap = await reopen(store)
    assert set(snap.messages) == {1} and [d.seq for d in snap.deliveries["c2"]] == [3]


def test_failed_batch_goes_back_under_newer_changes() -> None:
    failed, newer = sqlite_module._Batch(), sqlite_module._Batch()
    failed.sessions["c2"] = SessionRecord("c2", 5, 60)
    failed.subscriptions["c2"] = {"a": SubscriptionRecord("c2", "a", 1)}
    failed.deliveries["c1"] = {1: DeliveryRecord("c1", 1, 7, 1), 2: DeliveryRecord("c1", 2, 8, 1)}
    newer.deliveries["c1"] = {1: None, 3: DeliveryRecord("c1", 3, 8, 1)}
    newer.session_deletes.add("c2")
    newer.sessions["c2"] = SessionRecord("c2", 4, 0)
    merged = failed.absorb(newer)
    assert merged.touched == {7}  # message 7 lost its only delivery before reaching the disk
    assert merged.deliveries == {
        "c1": {1: None, 2: DeliveryRecord("c1", 2, 8, 1), 3: DeliveryRecord("c1", 3, 8, 1)}
    }
    assert merged.session_deletes == {"c2"} and merged.subscriptions == {}
    assert merged.sessions == {"c2": SessionRecord("c2", 4, 0)}


async def test_ten_thousand_records_one_transaction(store: SQLiteStore, tmp_path: Path) -> None:
    fill(store, 10_000)
    assert store.pending_changes == 10_002 and store.commits == 0
    await store.flush()
    assert store.commits == 1 and store.pending_changes == 0
    assert count(tmp_path, "deliveries") == 10_000


async def test_concurrent_flushes_serialize(store: SQLiteStore, tmp_path: Path) -> None:
    await store.flush()  # nothing pending, nothing in progress
    assert store.commits == 0
    fill(store, 100)
    first = asyncio.create_task(store.flush())
    await asyncio.sleep(0)  # first is now waiting for its commit
    assert store.pending_changes == 102
    for seq in range(100, 200):
        store.record_delivery(DeliveryRecord("c1", seq, 1, 1))
    later = [asyncio.create_task(store.flush()) for _ in range(3)]
    await asyncio.gather(first, *later)
    assert store.commits == 2  # the first batch, then everything recorded while it ran
    assert count(tmp_path, "deliveries") == 200 and store.pending_changes == 0


async def test_many_writers_flushing(store: SQLiteStore, tmp_path: Path) -> None:
    store.record_session(SessionRecord("c1", 5, 60))
    store.record_message(MessageRecord(1, "t", b"x"))

    async def writer(w: int) -> None:
        for i in range(50):
            store.record_delivery(DeliveryRecord("c1", w * 1000 + i, 1, 1))
            if i % 10 == 9:
                await store.flush()

    await asyncio.gather(*(writer(w) for w in range(20)))
    assert count(tmp_path, "deliveries") == 1000
    assert store.commits < 100


async def test_cancelled_flush_still_commits(store: SQLiteStore, tmp_path: Path) -> None:
    fill(store, 10)
    waiter = asyncio.create_task(store.flush())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await store.flush()
    assert count(tmp_path, "deliveries") == 10 and store.commits == 1


async def test_failed_commit_keeps_changes_for_retry(
    store: SQLiteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pages = await pragma(store, "page_count")
    await pragma(store, f"max_page_count = {pages + 2}")  # a disk that is almost full
    fill(store, 3000, payload=b"x" * 1000)
    store.record_message(MessageRecord(2, "t", b"y"))
    store.record_delivery(DeliveryRecord("c1", 4000, 2, 1))
    with caplog.at_level(logging.ERROR), pytest.raises(StoreError, match="disk full writing"):
        await store.flush()  # expected to log one ERROR: the commit failed
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert store.commit_failures == 1 and store.pending_changes == 3004
    assert count(tmp_path, "deliveries") == 0
    store.record_delivery(DeliveryRecord("c1", 5000, 1, 1))
    store.record_delivery_done("c1", 4000)  # its message 2 goes with it
    await pragma(store, "max_page_count = 1000000")
    await store.flush()
    assert count(tmp_path, "deliveries") == 3001 and store.pending_changes == 0
    assert count(tmp_path, "messages") == 1


# -- durability modes ----------------------------------------------------------------------------


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_periodic_mode_flushes_by_itself(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path, durability="periodic", flush_interval=0.02)
    await s.open()
    try:
        fill(s, 50)
        await wait_for(lambda: s.pending_changes == 0)
        assert s.commits >= 1 and count(tmp_path, "deliveries") == 50
        s.record_delivery(DeliveryRecord("c1", 50, 1, 1))
        await wait_for(lambda: count(tmp_path, "deliveries") == 51)
    finally:
        await s.close()
    assert s._periodic_task is None


async def test_none_mode_commits_on_close_and_past_the_threshold(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path, durability="none")
    await s.open()
    fill(s, 100)
    await asyncio.sleep(0.05)
    assert s.commits == 0 and s.pending_changes == 102
    fill(s, sqlite_module.AUTO_FLUSH_CHANGES)  # past the threshold: a commit starts by itself
    await wait_for(lambda: s.commits == 1)
    assert s.pending_changes == 102 + sqlite_module.AUTO_FLUSH_CHANGES + 2 - 10_001
    s.record_delivery(DeliveryRecord("c1", 99_999, 1, 1))
    await s.close()
    assert s.commits == 2 and count(tmp_path, "deliveries") == 10_001


async def test_own_executor_is_left_running(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        s = SQLiteStore(tmp_path, loop_executor=executor)
        await s.open()
        fill(s, 5)
        await s.close()
        assert executor.submit(lambda: 7).result() == 7
    assert count(tmp_path, "deliveries") == 5


CRASHER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from wrenmq.broker.persistence import *

    async def main(directory, n):
        s = SQLiteStore(directory)
        await s.open()
        s.record_session(SessionRecord("c1", 5, NEVER_EXPIRES))
        s.record_message(MessageRecord(1, "t", b"payload"))
        for seq in range(n):
            s.record_delivery(DeliveryRecord("c1", seq, 1, 1))
            if seq % 250 == 249:
                await s.flush()
        await s.flush()
        s.record_delivery(DeliveryRecord("c1", n, 1, 1))  # never flushed
        print("flushed", s.commits, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_flushed_deliveries_survive_sigkill(tmp_path: Path) -> None:
    n = 1000
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(tmp_path), str(n)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["flushed", "4"]
    assert (tmp_path / "wrenmq.db-wal").exists()  # killed before any checkpoint on close
    s = SQLiteStore(tmp_path, snapshot_limit=n + 10)
    snap = await s.open()
    await s.close()
    assert [d.seq for d in snap.deliveries["c1"]] == list(range(n))
    assert snap.messages == {1: MessageRecord(1, "t", b"payload")}


# -- maintenance ---------------------------------------------------------------------------------


async def test_inspect_and_compact(store: SQLiteStore) -> None:
    store.record_message(MessageRecord(1, "t", os.urandom(2000)))
    for c in range(25):
        store.record_session(SessionRecord(f"c{c:02d}", 5, 60))
        for seq in range(c + 1):
            store.record_delivery(DeliveryRecord(f"c{c:02d}", seq, 1, 1))
    await store.flush()
    for i in range(2, 500):
        store.record_retained(RetainedRecord(f"r/{i}", os.urandom(2000), 0))
    store.record_retained_deleted("r/3")
    info = await store.inspect()
    assert info["pending_changes"] == 499
    await store.flush()
    info = await store.inspect()
    assert info["sessions"] == 25 and info["deliveries"] == 325 and info["messages"] == 1
    assert info["retained"] == 497 and info["schema_version"] == 1
    assert list(info["queue_depths"].items())[:2] == [("c24", 25), ("c23", 24)]
    assert len(info["queue_depths"]) == 20
    assert info["file_size"] > 0 and info["wal_size"] > 0
    for i in range(2, 500):
        store.record_retained_deleted(f"r/{i}")
    sizes = await store.compact()
    assert sizes["wal_size"] == 0 and sizes["file_size"] < 200_000
    assert sizes["file_size_before"] + sizes["wal_size_before"] > 1_000_000


def test_will_round_trip() -> None:
    props = Properties(
        payload_format_indicator=1,
        message_expiry_interval=60,
        content_type="text/plain",
        response_topic="reply/here",
        correlation_data=b"\x00\x01",
        will_delay_interval=30,
        user_properties=(("a", "1"), ("a", "2")),
    )
    for will in (
        Will("last/will", b"bye", qos=2, retain=True, properties=props),
        Will("t"),
        Will("big", os.urandom(100_000), qos=1),
    ):
        assert decode_will(encode_will(will)) == will


@pytest.mark.parametrize(
    "data", [b"", b"\x02\x00\x00\x01t\x00\x00\x00\x00\x00", b"\x01\x00\x00\x05t", b"\x01\x00"]
)
def test_bad_will_raises_store_error(data: bytes) -> None:
    with pytest.raises(StoreError, match="will"):
        decode_will(data)


def test_will_with_wrong_payload_length() -> None:
    with pytest.raises(StoreError, match="wrong length"):
        decode_will(encode_will(Will("t", b"abc"))[:-1])


# -- CLI -----------------------------------------------------------------------------------------


def wrenmq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(WRENMQ), "store", *args], capture_output=True, text=True, timeout=60)


async def test_cli_inspect_and_compact(store: SQLiteStore, tmp_path: Path) -> None:
    fill(store, 7, client_id="queue-one")
    await store.close()
    out = wrenmq("inspect", "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "sessions       1" in out.stdout and "schema version 1" in out.stdout
    assert "7 deliveries of 1 messages" in out.stdout
    assert "queue-one  7" in out.stdout
    out = wrenmq("inspect", "--data-dir", str(tmp_path), "--json")
    info = json.loads(out.stdout)
    assert info["queue_depths"] == {"queue-one": 7} and info["deliveries"] == 7
    out = wrenmq("compact", "--data-dir", str(tmp_path))
    assert out.returncode == 0 and out.stdout.startswith("compacted "), out.stderr


def test_cli_missing_and_corrupt_database(tmp_path: Path) -> None:
    out = wrenmq("inspect", "--data-dir", str(tmp_path))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("wrenmq store: no database at")
    (tmp_path / "wrenmq.db").write_bytes(b"garbage" * 1000)
    out = wrenmq("compact", "--data-dir", str(tmp_path))
    assert out.returncode == 1 and out.stderr.startswith("wrenmq store: ")
    assert "corrupt" in out.stderr and HINT in out.stderr and "Traceback" not in out.stderr


def test_deleted_deliveries_split_into_runs_and_single_rows() -> None:
    done = [("b", 7), *(("a", s) for s in range(10, 30)), ("a", 31)]
    done += [("b", s) for s in range(1, 6)]
    singles, runs = sqlite_module._runs(done)
    assert runs == [("a", 10, 29)]
    assert singles == [("a", 31), ("b", 1), ("b", 2), ("b", 3), ("b", 4), ("b", 5), ("b", 7)]


async def test_range_deletions_leave_other_deliveries_alone(store: SQLiteStore) -> None:
    store.record_session(SessionRecord("c1", 5, 60))
    store.record_session(SessionRecord("c2", 5, 60))
    store.record_message(MessageRecord(1, "t", b"x"))
    store.record_message(MessageRecord(2, "u", b"y"))
    for seq in range(1, 31):
        store.record_delivery(DeliveryRecord("c1", seq, 1, 1))
    store.record_delivery(DeliveryRecord("c2", 15, 2, 1))  # same seq, another client
    await store.flush()
    for seq in (*range(3, 28), 29):  # a run of 25, and a single row
        store.record_delivery_done("c1", seq)
    await store.flush()
    snap = await reopen(store)
    assert [d.seq for d in snap.deliveries["c1"]] == [1, 2, 28, 30]
    assert [d.seq for d in snap.deliveries["c2"]] == [15] and set(snap.messages) == {1, 2}

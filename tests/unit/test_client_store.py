"""Client session stores (memory and SQLite) and the journal that runs actions after commits."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wrenmq.client.errors import StoreError
from wrenmq.client.journal import Journal
from wrenmq.client.store import (
    SCHEMA_VERSION,
    MemorySessionStore,
    MessageState,
    SessionStore,
    SQLiteStore,
    StoredMessage,
    StoredSession,
)
from wrenmq.codec.properties import Properties

CID = "client-1"


def message(seq: int, **kwargs: object) -> StoredMessage:
    fields: dict[str, object] = {"topic": f"t/{seq}", "payload": b"p%d" % seq, "qos": 1}
    fields.update(kwargs)
    return StoredMessage(seq=seq, **fields)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    s: SessionStore = (
        MemorySessionStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    )
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_round_trip(store: SessionStore) -> None:
    props = Properties(content_type="text/plain", user_properties=(("k", "v"),))
    store.add_outgoing(CID, message(1, qos=2, retain=True, properties=props, packet_id=7,
                                    state=MessageState.SENT))  # fmt: skip
    store.add_outgoing(CID, message(2))
    store.add_outgoing("other", message(1))
    store.add_incoming(CID, 5)
    store.add_incoming(CID, 6)
    store.set_next_packet_id(CID, 8)
    await store.commit()
    loaded = await store.load(CID)
    assert loaded.outgoing == (
        message(1, qos=2, retain=True, properties=props, packet_id=7, state=MessageState.SENT),
        message(2),
    )
    assert loaded.incoming_qos2 == (5, 6)
    assert (loaded.next_packet_id, loaded.next_seq) == (8, 3)
    # Transitions.
    store.update_outgoing(CID, 2, 9, MessageState.SENT)
    store.update_outgoing(CID, 1, 7, MessageState.PUBREC_RECEIVED)
    store.remove_incoming(CID, 5)
    await store.commit()
    loaded = await store.load(CID)
    assert [(m.seq, m.packet_id, m.state) for m in loaded.outgoing] == [
        (1, 7, MessageState.PUBREC_RECEIVED),
        (2, 9, MessageState.SENT),
    ]
    assert loaded.incoming_qos2 == (6,)
    store.remove_outgoing(CID, 1)
    store.clear_incoming(CID)
    await store.commit()
    loaded = await store.load(CID)
    assert [m.seq for m in loaded.outgoing] == [2]
    assert loaded.incoming_qos2 == ()
    store.clear(CID)
    await store.commit()
    assert await store.load(CID) == StoredSession()
    assert len((await store.load("other")).outgoing) == 1


async def test_last_write_wins_within_a_batch(store: SessionStore) -> None:
    store.add_outgoing(CID, message(1))
    store.update_outgoing(CID, 1, 3, MessageState.SENT)
    store.add_outgoing(CID, message(2))
    store.remove_outgoing(CID, 2)  # never reaches the disk
    store.add_incoming(CID, 4)
    store.remove_incoming(CID, 4)
    store.add_incoming(CID, 4)  # released and reused: present
    store.clear_incoming(CID)
    store.add_incoming(CID, 8)  # after the clear: kept
    await store.commit()
    loaded = await store.load(CID)
    assert [(m.seq, m.packet_id, m.state) for m in loaded.outgoing] == [(1, 3, MessageState.SENT)]
    assert loaded.incoming_qos2 == (8,)
    store.clear(CID)
    store.add_outgoing(CID, message(5))  # after the clear: kept
    await store.commit()
    assert [m.seq for m in (await store.load(CID)).outgoing] == [5]


async def test_sqlite_group_commit_and_reopen(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "dir" / "s.db", synchronous="normal")
    await store.open()
    futures = []
    for seq in range(1, 501):
        store.add_outgoing(CID, message(seq, packet_id=seq, state=MessageState.SENT))
        futures.append(store.commit())
    # One transaction for the lot: every caller shares its future (or the one before it).
    assert len({id(f) for f in futures}) <= 2
    await asyncio.gather(*futures)
    order: list[int] = []
    store.remove_outgoing(CID, 1)
    first = store.commit()
    first.add_done_callback(lambda _: order.append(1))
    await asyncio.sleep(0)
    store.remove_outgoing(CID, 2)
    second = store.commit()
    second.add_done_callback(lambda _: order.append(2))
    await asyncio.gather(first, second)
    assert order == [1, 2]  # commits complete in order
    await store.close()
    reopened = SQLiteStore(tmp_path / "dir" / "s.db")
    await reopened.open()
    loaded = await reopened.load(CID)
    assert [m.seq for m in loaded.outgoing] == list(range(3, 501))
    await reopened.close()
    with sqlite3.connect(tmp_path / "dir" / "s.db") as db:
        assert db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_refuses_newer_and_foreign_files(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    store = SQLiteStore(newer)
    await store.open()
    await store.close()
    with sqlite3.connect(newer) as db:
        db.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        await SQLiteStore(newer).open()
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE sessions (client_id TEXT)")
    with pytest.raises(StoreError, match="not a wrenmq client session store"):
        await SQLiteStore(foreign).open()


async def test_sqlite_commit_failure_is_sticky(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    # Break the table under the store's feet (from another connection).
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("DROP TABLE outgoing")
    store.add_outgoing(CID, message(1))
    with pytest.raises(StoreError, match="commit failed"):
        await store.commit()
    store.add_outgoing(CID, message(2))
    with pytest.raises(StoreError):
        await store.commit()
    await store.close()


# -- the journal ----------------------------------------------------------------------------------


class FailingStore(MemorySessionStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def commit(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(StoreError("disk on fire"))
        else:
            fut.set_result(None)
        return fut


async def test_journal_runs_actions_in_order_after_commit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    failures: list[StoreError] = []
    journal = Journal(store, CID, StoredSession(next_seq=4), failures.append)
    ran: list[str] = []
    assert journal.new_seq() == 4
    journal.add_outgoing(4, "t", b"x", 1, False, Properties(), 1)
    journal.after_commit(lambda: ran.append("a"))
    journal.after_commit(lambda: ran.append("b"))
    assert ran == []  # nothing before the commit
    journal.received(3)
    await journal.flush()
    assert ran == ["a", "b"]
    loaded = await store.load(CID)
    assert [m.seq for m in loaded.outgoing] == [4] and loaded.incoming_qos2 == (3,)
    assert failures == []
    journal.close()
    await store.close()


async def test_journal_failure_drops_actions_and_reports_once() -> None:
    store = FailingStore()
    failures: list[StoreError] = []
    journal = Journal(store, CID, StoredSession(), failures.append)
    ran: list[int] = []
    store.fail = True
    journal.after_commit(lambda: ran.append(1))
    journal.after_commit(lambda: ran.append(2))
    await asyncio.sleep(0.01)
    assert ran == [] and len(failures) == 1 and journal.closed

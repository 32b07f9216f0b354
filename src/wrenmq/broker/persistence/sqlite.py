"""``SQLiteStore``: the ``SessionStore`` in one stdlib ``sqlite3`` file, WAL mode, group commit.

Design:

* **One worker thread owns the connection.** Every statement runs on a single-thread executor
  (the connection is created there, so ``check_same_thread`` stays on); the event loop only awaits
  futures and never blocks on disk.
* **Changes go to a keyed write-set, not a log.** ``record_*`` stores the last write per key
  (session, subscription, delivery, ...) in the current ``_Batch``: an update replaces the earlier
  one, a delivery recorded and done in the same batch disappears altogether (unless the row may
  already be on disk), so does a message recorded in the batch once no delivery of the batch
  references it, and deleting a session drops the batch's earlier changes of that client.
  Since every key holds a single write, ``flush`` can commit each kind with one ``executemany``;
  the only ordering left, a session deletion before that client's later writes, is kept by running
  session deletions first. Deletions of consecutive deliveries of a client (a queue draining)
  take one range statement.
* **Group commit.** ``flush`` swaps the batch and commits it in one transaction; concurrent
  flushes wait for the commit in progress and commit what is new after it. A failed commit
  (disk full, ...) puts its batch back under the newer changes, so the next flush retries it.
* **Message bodies stored once.** Deliveries reference ``messages.id``; at commit the messages
  whose deliveries went away in the batch are deleted if nothing references them any more.
  Retained rows keep their own payload.
* **Schema versions.** ``MIGRATIONS[i]`` upgrades version ``i`` to ``i + 1``, each in its own
  transaction recorded in ``schema_version``; a newer database or one failing
  ``PRAGMA quick_check`` is refused with a ``StoreError`` that says how to recover.

The module runs past the ~600-line rule of thumb on purpose: the schema, the write-set and the
store share private state (the connection, the batch, the per-client ``_max_seq``) and are read
together; the will encoding lives here because ``base.SessionRecord`` documents it here.

Imports stdlib, ``wrenmq.codec`` (will encoding) and ``persistence.base``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from operator import attrgetter
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args

from wrenmq.broker.persistence.base import (
    NEVER_EXPIRES,
    DeliveryRecord,
    MessageRecord,
    QueueExtra,
    QueueRow,
    RetainedRecord,
    SessionRecord,
    StoreError,
    StoreSnapshot,
    SubscriptionRecord,
)
from wrenmq.codec.packets import Will
from wrenmq.codec.primitives import decode_string, encode_string, encode_varint
from wrenmq.codec.properties import WILL, decode_properties, encode_properties_body
from wrenmq.errors import MQTTError

__all__ = [
    "AUTO_FLUSH_CHANGES",
    "DB_FILENAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Durability",
    "SQLiteStore",
    "decode_will",
    "encode_will",
]

logger = logging.getLogger("wrenmq.broker.persistence")

Durability = Literal["ack", "periodic", "none"]
DB_FILENAME: Final = "wrenmq.db"
AUTO_FLUSH_CHANGES: Final = 10_000  # durability "none" commits past this many changes
_CHUNK: Final = 500  # ids per "IN (...)" query, well under SQLITE_MAX_VARIABLE_NUMBER
_MIN_RUN: Final = 8  # consecutive deleted deliveries worth a range DELETE
_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # Version 1: the initial schema. Small hot rows are WITHOUT ROWID tables clustered on their
    # key; rows carrying payloads keep a rowid (large rows are slow in a clustered index).
    (
        """CREATE TABLE sessions (
            client_id TEXT PRIMARY KEY, protocol_level INTEGER NOT NULL,
            expiry_interval INTEGER NOT NULL, disconnected_at REAL, will BLOB, will_due REAL)""",
        """CREATE TABLE subscriptions (
            client_id TEXT NOT NULL, topic_filter TEXT NOT NULL, qos INTEGER NOT NULL,
            no_local INTEGER NOT NULL, retain_as_published INTEGER NOT NULL,
            retain_handling INTEGER NOT NULL, subscription_identifier INTEGER,
            PRIMARY KEY (client_id, topic_filter)) WITHOUT ROWID""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
            properties BLOB NOT NULL, expires_at REAL)""",
        "CREATE INDEX messages_expires_at ON messages (expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE deliveries (
            client_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id INTEGER NOT NULL,
            qos INTEGER NOT NULL, retain INTEGER NOT NULL, subscription_identifiers TEXT NOT NULL,
            packet_id INTEGER NOT NULL, state INTEGER NOT NULL,
            PRIMARY KEY (client_id, seq)) WITHOUT ROWID""",
        "CREATE INDEX deliveries_message_id ON deliveries (message_id)",
        """CREATE TABLE incoming_qos2 (
            client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,
            PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID""",
        """CREATE TABLE retained (
            topic TEXT NOT NULL UNIQUE, payload BLOB NOT NULL, qos INTEGER NOT NULL,
            properties BLOB NOT NULL, expires_at REAL)""",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
_CLIENT_TABLES: Final = ("deliveries", "subscriptions", "incoming_qos2", "sessions")

_D_COLUMNS = "client_id, seq, message_id, qos, retain, subscription_identifiers, packet_id, state"
_M_COLUMNS = "id, topic, payload, properties, expires_at"
_R_COLUMNS = "topic, payload, qos, properties, expires_at"
_PUT_SESSION = "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)"
_PUT_SUBSCRIPTION = "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?)"
_DELETE_SUBSCRIPTION = "DELETE FROM subscriptions WHERE client_id = ? AND topic_filter = ?"
_PUT_MESSAGE = f"INSERT OR REPLACE INTO messages ({_M_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
_PUT_DELIVERY = f"INSERT OR REPLACE INTO deliveries ({_D_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_DELETE_DELIVERY = "DELETE FROM deliveries WHERE client_id = ? AND seq = ?"
_DELETE_DELIVERIES = "DELETE FROM deliveries WHERE client_id = ? AND seq BETWEEN ? AND ?"
_PAGE = (
    "SELECT d.seq, d.message_id, d.qos, d.retain, d.subscription_identifiers, d.packet_id,"
    " d.state, m.topic, m.payload, m.properties, m.expires_at"
    " FROM deliveries AS d LEFT JOIN messages AS m ON m.id = d.message_id"
    " WHERE d.client_id = ? AND d.seq > ? ORDER BY d.seq LIMIT ?"
)
# load_queue: the columns every row needs, and a flag for the rows whose other columns are not the
# common ones (see base.QueueRow), read by a second query only when a page has such rows. Every
# column costs the sqlite3 module about 0.1 us per row to convert, as much as SQLite's own work.
_UNCOMMON = (
    "(d.qos != 1 OR d.retain OR d.subscription_identifiers != '' OR d.packet_id OR d.state"
    " OR m.properties != x'' OR m.expires_at IS NOT NULL)"
)
_QUEUE = (
    f"SELECT d.seq, d.message_id, m.topic, m.payload, nullif({_UNCOMMON}, 0)"
    " FROM deliveries AS d LEFT JOIN messages AS m ON m.id = d.message_id"
    " WHERE d.client_id = ? AND d.seq > ? ORDER BY d.seq LIMIT ?"
)
_QUEUE_EXTRA = (
    "SELECT d.seq, d.qos, d.retain, d.subscription_identifiers, d.packet_id, d.state,"
    " m.properties, m.expires_at"
    " FROM deliveries AS d JOIN messages AS m ON m.id = d.message_id"
    f" WHERE d.client_id = ? AND d.seq BETWEEN ? AND ? AND {_UNCOMMON}"
)
_PUT_QOS2 = "INSERT OR IGNORE INTO incoming_qos2 VALUES (?, ?)"
_DELETE_QOS2 = "DELETE FROM incoming_qos2 WHERE client_id = ? AND packet_id = ?"
_PUT_RETAINED = f"INSERT OR REPLACE INTO retained ({_R_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
_DELETE_RETAINED = "DELETE FROM retained WHERE topic = ?"
# Message ids that may have lost their last delivery go to temp.touched; _GC_MESSAGES deletes
# those nothing references any more.
_TOUCH = "INSERT OR IGNORE INTO temp.touched VALUES (?)"
_TOUCH_CLIENT = (
    "INSERT OR IGNORE INTO temp.touched SELECT message_id FROM deliveries WHERE client_id = ?"
)
_TOUCH_DELIVERY = (
    "INSERT OR IGNORE INTO temp.touched"
    " SELECT message_id FROM deliveries WHERE client_id = ? AND seq = ?"
)
_TOUCH_DELIVERIES = (
    "INSERT OR IGNORE INTO temp.touched"
    " SELECT message_id FROM deliveries WHERE client_id = ? AND seq BETWEEN ? AND ?"
)
_GC_MESSAGES = (
    "DELETE FROM messages WHERE id IN (SELECT id FROM temp.touched)"
    " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = messages.id)"
)


# -- wills ------------------------------------------------------------------------------------

_WILL_FORMAT: Final = 1


def encode_will(will: Will) -> bytes:
    """Encode a will for ``SessionRecord.will``: a format byte, a flags byte (QoS in bits 0-1,
    retain in bit 2), the topic as an MQTT string, the MQTT 5 will properties with their length,
    then the payload after a four-byte length."""
    props = encode_properties_body(will.properties)
    return b"".join(
        (
            bytes((_WILL_FORMAT, (will.qos & 0x03) | (0x04 if will.retain else 0))),
            encode_string(will.topic),
            encode_varint(len(props)),
            props,
            len(will.payload).to_bytes(4, "big"),
            bytes(will.payload),
        )
    )


def decode_will(data: bytes) -> Will:
    """Decode what ``encode_will`` wrote; ``StoreError`` if it is not a stored will."""
    end = len(data)
    try:
        if end < 2 or data[0] != _WILL_FORMAT:
            raise StoreError(f"stored will has unknown format {data[:1].hex() or 'empty'}")
        flags = data[1]
        topic, pos = decode_string(data, 2, end)
        properties, pos = decode_properties(data, pos, end, WILL)
        size = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + size != end:
            raise StoreError("stored will has a payload of the wrong length")
    except MQTTError as exc:
        raise StoreError(f"stored will is corrupt: {exc}") from exc
    return Will(
        topic=topic,
        payload=data[pos + 4 :],
        qos=flags & 0x03,
        retain=bool(flags & 0x04),
        properties=properties,
    )


# -- rows -------------------------------------------------------------------------------------


_session_row = attrgetter(
    "client_id", "protocol_level", "expiry_interval", "disconnected_at", "will", "will_due"
)
_subscription_row = attrgetter(
    "client_id",
    "topic_filter",
    "qos",
    "no_local",
    "retain_as_published",
    "retain_handling",
    "subscription_identifier",
)
_message_row = attrgetter("message_id", "topic", "payload", "properties", "expires_at")
_retained_row = attrgetter("topic", "payload", "qos", "properties", "expires_at")


def _delivery_row(d: DeliveryRecord) -> tuple[Any, ...]:
    ids = ",".join(map(str, d.subscription_identifiers))
    return (d.client_id, d.seq, d.message_id, d.qos, d.retain, ids, d.packet_id, d.state)


def _delivery(row: tuple[Any, ...]) -> DeliveryRecord:
    cid, seq, mid, qos, retain, ids, packet_id, state = row
    sub_ids = tuple(int(i) for i in ids.split(",")) if ids else ()
    return DeliveryRecord(cid, seq, mid, qos, bool(retain), sub_ids, packet_id, state)


def _split(
    per_client: dict[str, dict[_K, _V | None]],
) -> tuple[list[tuple[str, _K, _V]], list[tuple[str, _K]]]:
    """Writes and deletions (``None``) of a per-client write-set."""
    writes: list[tuple[str, _K, _V]] = []
    deletes: list[tuple[str, _K]] = []
    for client_id, per in per_client.items():
        for key, value in per.items():
            if value is None:
                deletes.append((client_id, key))
            else:
                writes.append((client_id, key, value))
    return writes, deletes


def _runs(
    done: list[tuple[str, int]],
) -> tuple[list[tuple[str, int]], list[tuple[str, int, int]]]:
    """Deleted deliveries as single seqs and runs of consecutive ones (``lo``, ``hi``), one
    statement per run: a queue drains in seq order, so most deletions of a batch form a run."""
    singles: list[tuple[str, int]] = []
    runs: list[tuple[str, int, int]] = []
    done.sort()
    i, n = 0, len(done)
    while i < n:
        client_id, lo = done[i]
        j = i + 1
        while j < n and done[j][0] == client_id and done[j][1] == lo + (j - i):
            j += 1
        if j - i >= _MIN_RUN:
            runs.append((client_id, lo, lo + (j - i) - 1))
        else:
            singles.extend(done[i:j])
        i = j
    return singles, runs


def _chunks(items: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _merge(older: dict[str, dict[_K, _V]], newer: dict[str, dict[_K, _V]]) -> None:
    for client_id, changes in newer.items():
        older.setdefault(client_id, {}).update(changes)


class _Batch:
    """Uncommitted changes, the last write per key. ``None`` values are deletions."""

    __slots__ = (
        "changes",
        "deliveries",
        "messages",
        "qos2",
        "refs",
        "retained",
        "session_deletes",
        "sessions",
        "subscriptions",
        "touched",
    )

    def __init__(self) -> None:
        self.changes = 0  # record_* calls, before coalescing
        self.session_deletes: set[str] = set()
        self.sessions: dict[str, SessionRecord] = {}
        self.subscriptions: dict[str, dict[str, SubscriptionRecord | None]] = {}
        self.messages: dict[int, MessageRecord] = {}
        # Per message of ``messages``: the deliveries of this batch that reference it. At 0 the
        # message leaves the batch: no delivery of the batch needs it, and the broker records it
        # again before a new delivery of it whenever its row may be missing.
        self.refs: dict[int, int] = {}
        self.deliveries: dict[str, dict[int, DeliveryRecord | None]] = {}
        self.qos2: dict[str, dict[int, bool]] = {}
        self.retained: dict[str, RetainedRecord | None] = {}
        self.touched: set[int] = set()  # message ids that may have lost their last delivery

    def is_empty(self) -> bool:
        return not (
            self.session_deletes
            or self.sessions
            or self.subscriptions
            or self.messages
            or self.deliveries
            or self.qos2
            or self.retained
            or self.touched
        )

    def drop_client(self, client_id: str) -> None:
        """Forget this batch's changes of a client (its session is being deleted)."""
        self.sessions.pop(client_id, None)
        self.subscriptions.pop(client_id, None)
        self.qos2.pop(client_id, None)
        for d in self.deliveries.pop(client_id, {}).values():
            if d is not None:
                self.unref(d.message_id)

    def unref(self, message_id: int, *, touch: bool = True) -> None:
        """A delivery of this batch referencing ``message_id`` went away; ``touch=False`` when
        the delivery's row is deleted on disk, which touches the message already.
        """
        n = self.refs.get(message_id)
        if n is None:
            if touch:
                self.touched.add(message_id)  # the message may be on disk
        elif n > 1:
            self.refs[message_id] = n - 1
        else:  # recorded in this batch and referenced by nothing: never written
            del self.refs[message_id]
            del self.messages[message_id]

    def absorb(self, newer: _Batch) -> _Batch:
        """Lay ``newer`` (recorded after this batch) on top of this one; returns ``self``."""
        for client_id in newer.session_deletes:
            self.drop_client(client_id)
        self.session_deletes |= newer.session_deletes
        self.sessions.update(newer.sessions)
        _merge(self.subscriptions, newer.subscriptions)
        _merge(self.qos2, newer.qos2)
        for client_id, changes in newer.deliveries.items():
            mine = self.deliveries.setdefault(client_id, {})
            for seq, d in changes.items():
                old = mine.get(seq)
                if old is not None and (d is None or d.message_id != old.message_id):
                    self.touched.add(old.message_id)  # it never reached the disk
                mine[seq] = d
        self.messages.update(newer.messages)
        self.retained.update(newer.retained)
        self.touched |= newer.touched
        self.changes += newer.changes
        # Count the references again over both batches (a rare path: a commit failed).
        refs = self.refs = dict.fromkeys(self.messages, 0)
        for per in self.deliveries.values():
            for d in per.values():
                if d is not None and d.message_id in refs:
                    refs[d.message_id] += 1
        return self


class SQLiteStore:
    """A ``SessionStore`` in ``<directory>/wrenmq.db``.

    Args:
        directory: Data directory, created if missing.
        durability: ``"ack"``: the broker awaits ``flush()`` before acknowledging, and every
            commit is fsynced (``synchronous=FULL``). ``"periodic"``: a background task commits
            every ``flush_interval`` seconds (``synchronous=NORMAL``: a power cut may lose the
            last commits, a process crash does not). ``"none"``: commits only on ``close()``,
            explicit flushes, or past ``AUTO_FLUSH_CHANGES`` uncommitted changes.
        flush_interval: Seconds between background commits in ``"periodic"`` mode.
        loop_executor: The executor running every statement; it MUST have exactly one thread.
            Default: a dedicated single-thread executor, shut down by ``close()``.
        snapshot_limit: Deliveries per session loaded by ``open()``; page on with
            ``load_deliveries``.

    ``commits`` counts the transactions ``flush`` committed; ``commit_failures`` the failed ones.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        durability: Durability = "ack",
        flush_interval: float = 0.05,
        loop_executor: Executor | None = None,
        snapshot_limit: int = 1000,
    ) -> None:
        if durability not in get_args(Durability):
            raise ValueError(f"durability must be one of {get_args(Durability)}")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be > 0")
        if snapshot_limit < 0:
            raise ValueError("snapshot_limit must be >= 0")
        self.directory = Path(directory)
        self.path = self.directory / DB_FILENAME
        self.durability: Durability = durability
        self.flush_interval = flush_interval
        self.snapshot_limit = snapshot_limit
        self.commits = 0
        self.commit_failures = 0
        self.before_commit: Callable[[], None] | None = None
        self._in_before_commit = False
        self._own_executor = loop_executor is None
        self._executor: Executor = loop_executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="wrenmq-store"
        )
        self._conn: sqlite3.Connection | None = None  # touched only on the worker thread
        self._opened = False
        self._closed = False
        self._batch = _Batch()
        self._gen = 0  # record_* calls so far
        self._committed_gen = 0  # every change up to this one is committed
        self._inflight_changes = 0
        self._commit_task: asyncio.Task[None] | None = None
        self._periodic_task: asyncio.Task[None] | None = None
        self._failing = False
        # Highest delivery seq per client that may be on disk (loaded, or in a swapped batch):
        # a delivery above it is new, so recording it done needs no DELETE.
        self._max_seq: dict[str, int] = {}

    # -- worker-thread plumbing ----------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _recovery_hint(self) -> str:
        return (
            f"move {self.path} aside and restart (the broker starts with an empty store), "
            f"or run `wrenmq store inspect --data-dir {self.directory}`"
        )

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # primary code of an extended one
        if code == sqlite3.SQLITE_FULL:
            return StoreError(f"disk full writing {self.path}: {exc}; free some space and retry")
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return StoreError(f"{self.path} is corrupt ({exc}); {self._recovery_hint()}")
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return StoreError(
                f"{self.path} is locked ({exc}); is another broker using {self.directory}?"
            )
        return StoreError(f"sqlite error {doing} {self.path}: {exc}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    # -- open ------------------------------------------------------------------------------------

    async def open(self) -> StoreSnapshot:
        """Open (creating or migrating the schema), drop expired data, return the state."""
        if self._opened or self._closed:
            raise StoreError("the store is already open" if self._opened else "the store is closed")
        try:
            snapshot = await self._call(self._open_sync, time.time())
        except StoreError:
            # A store that failed to open is done with: let go of its thread now.
            self._closed = True
            if self._own_executor:
                self._executor.shutdown(wait=True)
            raise
        self._opened = True
        if self.durability == "periodic":
            self._periodic_task = asyncio.get_running_loop().create_task(
                self._periodic(), name="wrenmq-store-periodic-flush"
            )
        return snapshot

    def _open_sync(self, now: float) -> StoreSnapshot:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {self.directory}: {exc}") from exc
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        except sqlite3.Error as exc:
            raise self._error(exc, "opening") from exc
        try:
            self._conn = conn
            self._check(conn)
            self._migrate(conn, now)
            self._expire(conn, now)
            return self._load(conn)
        except sqlite3.Error as exc:
            self._conn = None
            conn.close()
            raise self._error(exc, "opening") from exc
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _check(self, conn: sqlite3.Connection) -> None:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            shown = "; ".join(str(p) for p in problems[:3])
            raise StoreError(
                f"{self.path} failed its integrity check ({shown}); {self._recovery_hint()}"
            )
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'ack' else 'NORMAL'}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS touched (id INTEGER PRIMARY KEY)")

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if "schema_version" in tables:
            return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
        if tables:
            raise StoreError(
                f"{self.path} is not a wrenmq database (no schema_version table); "
                f"{self._recovery_hint()}"
            )
        return 0

    def _migrate(self, conn: sqlite3.Connection, now: float) -> None:
        version = self._schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this wrenmq supports "
                f"({SCHEMA_VERSION}); upgrade wrenmq, or {self._recovery_hint()}"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version"
                    " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
                )
                for statement in MIGRATIONS[target - 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (target, now))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            logger.info("%s: schema migrated to version %d", self.path, target)

    def _expire(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            expired = conn.execute(
                "SELECT client_id FROM sessions WHERE disconnected_at IS NOT NULL AND will IS NULL"
                " AND expiry_interval != ? AND disconnected_at + expiry_interval < ?",
                (NEVER_EXPIRES, now),
            ).fetchall()
            for table in _CLIENT_TABLES:
                conn.executemany(f"DELETE FROM {table} WHERE client_id = ?", expired)
            for table in _CLIENT_TABLES[:-1]:  # rows of a client without a session row
                conn.execute(
                    f"DELETE FROM {table} WHERE client_id NOT IN (SELECT client_id FROM sessions)"
                )
            # Only queued copies of an expired message go: one whose delivery has started must
            # be completed [MQTT-3.3.2-5].
            conn.execute(
                "DELETE FROM deliveries WHERE state = 0 AND message_id IN"
                " (SELECT id FROM messages WHERE expires_at < ?)",
                (now,),
            )
            conn.execute(
                "DELETE FROM messages WHERE NOT EXISTS"
                " (SELECT 1 FROM deliveries WHERE message_id = messages.id)"
            )
            retained = conn.execute("DELETE FROM retained WHERE expires_at < ?", (now,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if expired or retained:
            logger.info(
                "%s: removed %d expired sessions and %d expired retained messages",
                self.path,
                len(expired),
                retained,
            )

    def _messages(self, conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, MessageRecord]:
        found: dict[int, MessageRecord] = {}
        for chunk in _chunks(sorted(set(ids))):
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {_M_COLUMNS} FROM messages WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = MessageRecord(*row)
        return found

    def _load(self, conn: sqlite3.Connection) -> StoreSnapshot:
        snap = StoreSnapshot()
        snap.sessions = [
            SessionRecord(*row)
            for row in conn.execute(
                "SELECT client_id, protocol_level, expiry_interval, disconnected_at, will,"
                " will_due FROM sessions"
            )
        ]
        snap.subscriptions = [
            SubscriptionRecord(cid, f, qos, bool(nl), bool(rap), rh, sid)
            for cid, f, qos, nl, rap, rh, sid in conn.execute(
                "SELECT client_id, topic_filter, qos, no_local, retain_as_published,"
                " retain_handling, subscription_identifier FROM subscriptions"
            )
        ]
        self._max_seq = {}
        counts = conn.execute(
            "SELECT client_id, count(*), max(seq) FROM deliveries GROUP BY client_id"
        ).fetchall()
        for client_id, count, max_seq in counts:
            snap.pending[client_id] = count
            self._max_seq[client_id] = max_seq
            if self.snapshot_limit:
                snap.deliveries[client_id] = [
                    _delivery(row)
                    for row in conn.execute(
                        f"SELECT {_D_COLUMNS} FROM deliveries WHERE client_id = ?"
                        " ORDER BY seq LIMIT ?",
                        (client_id, self.snapshot_limit),
                    )
                ]
        snap.messages = self._messages(
            conn, (d.message_id for ds in snap.deliveries.values() for d in ds)
        )
        for client_id, packet_id in conn.execute("SELECT client_id, packet_id FROM incoming_qos2"):
            snap.incoming_qos2.setdefault(client_id, set()).add(packet_id)
        snap.retained = [
            RetainedRecord(*row) for row in conn.execute(f"SELECT {_R_COLUMNS} FROM retained")
        ]
        snap.next_message_id = int(conn.execute("SELECT max(id) FROM messages").fetchone()[0] or 0)
        snap.next_message_id += 1
        snap.next_seq = int(conn.execute("SELECT max(seq) FROM deliveries").fetchone()[0] or 0) + 1
        return snap

    # -- close, flush --------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is pending and close; raises ``StoreError`` if that last commit fails."""
        if self._closed:
            return
        self._closed = True
        if self._periodic_task is not None:
            self._periodic_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic_task
            self._periodic_task = None
        try:
            if self._opened:
                await self._flush()
        finally:
            try:
                await self._call(self._close_sync)
            finally:
                if self._own_executor:
                    self._executor.shutdown(wait=True)  # idle by now: returns at once

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # the last connection checkpoints the WAL into the file

    @property
    def pending_changes(self) -> int:
        """Changes recorded and not yet committed (counted before coalescing)."""
        return self._batch.changes + self._inflight_changes

    async def flush(self) -> None:
        """Commit every change recorded so far; returns when it is durable.

        Waits for a commit in progress, then commits what was recorded after it; returns at once
        when everything is committed. Raises ``StoreError`` if a commit fails (its changes are
        kept, and the next flush tries again).
        """
        if not self._opened or self._closed:
            raise StoreError("the store is closed" if self._closed else "the store is not open")
        await self._flush()

    async def _flush(self) -> None:
        self._before_commit()  # it may have something to record even if nothing else changed
        target = self._gen
        while self._committed_gen < target:
            task = self._commit_task or self._start_commit()
            await asyncio.shield(task)

    def _before_commit(self) -> None:
        hook = self.before_commit
        if hook is not None:
            self._in_before_commit = True  # what it records must not start a commit of its own
            try:
                hook()
            finally:
                self._in_before_commit = False

    def _start_commit(self) -> asyncio.Task[None]:
        self._before_commit()
        batch, self._batch = self._batch, _Batch()
        for client_id in batch.session_deletes:
            self._max_seq.pop(client_id, None)
        for client_id, per in batch.deliveries.items():
            if per:
                known = self._max_seq.get(client_id)
                top = max(per)
                self._max_seq[client_id] = top if known is None else max(known, top)
        self._inflight_changes = batch.changes
        task = asyncio.get_running_loop().create_task(self._commit(batch, self._gen))
        task.add_done_callback(self._commit_done)
        self._commit_task = task
        return task

    async def _commit(self, batch: _Batch, gen: int) -> None:
        try:
            if not batch.is_empty():
                await self._call(self._commit_sync, batch)
                self.commits += 1
            self._committed_gen = gen
        except BaseException:
            self._batch = batch.absorb(self._batch)  # retried, before the newer changes
            raise
        finally:
            self._inflight_changes = 0
            self._commit_task = None

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        # Retrieves the outcome even when no flush() awaits it (auto and periodic commits), and
        # logs once per run of failures rather than on every retry.
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if self._failing:
                logger.info("%s: commits succeed again", self.path)
                self._failing = False
            return
        self.commit_failures += 1
        if not self._failing:
            logger.error("%s: commit failed, changes kept for retry: %s", self.path, exc)
            self._failing = True

    def _commit_sync(self, batch: _Batch) -> None:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._apply(conn, batch)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc, "writing") from exc

    @staticmethod
    def _apply(conn: sqlite3.Connection, b: _Batch) -> None:
        many = conn.executemany
        gone = [(client_id,) for client_id in b.session_deletes]
        many(_TOUCH_CLIENT, gone)  # first: the batch holds only what came after the deletion
        for table in _CLIENT_TABLES:
            many(f"DELETE FROM {table} WHERE client_id = ?", gone)
        many(_PUT_MESSAGE, map(_message_row, b.messages.values()))
        many(_PUT_SESSION, map(_session_row, b.sessions.values()))
        subs, unsubs = _split(b.subscriptions)
        many(_PUT_SUBSCRIPTION, (_subscription_row(s) for _, _, s in subs))
        many(_DELETE_SUBSCRIPTION, unsubs)
        deliveries, done = _split(b.deliveries)
        singles, runs = _runs(done)
        many(_TOUCH_DELIVERY, singles)
        many(_DELETE_DELIVERY, singles)
        many(_TOUCH_DELIVERIES, runs)
        many(_DELETE_DELIVERIES, runs)
        many(_PUT_DELIVERY, (_delivery_row(d) for _, _, d in deliveries))
        qos2 = [(c, pid, on) for c, per in b.qos2.items() for pid, on in per.items()]
        many(_PUT_QOS2, [(c, pid) for c, pid, on in qos2 if on])
        many(_DELETE_QOS2, [(c, pid) for c, pid, on in qos2 if not on])
        many(_PUT_RETAINED, (_retained_row(r) for r in b.retained.values() if r is not None))
        many(_DELETE_RETAINED, [(t,) for t, r in b.retained.items() if r is None])
        many(_TOUCH, [(message_id,) for message_id in b.touched])
        conn.execute(_GC_MESSAGES)
        conn.execute("DELETE FROM temp.touched")

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            if self._batch.changes and self._commit_task is None:
                with contextlib.suppress(StoreError):  # logged by _commit_done, retried next tick
                    await self.flush()

    # -- changes (event loop thread, never block) -----------------------------------------------

    def _changed(self) -> None:
        self._gen += 1
        batch = self._batch
        batch.changes += 1
        if batch.changes > AUTO_FLUSH_CHANGES:
            self._auto_flush()

    def _auto_flush(self) -> None:
        if (
            self._commit_task is None
            and self.durability == "none"
            and self._opened
            and not self._in_before_commit
        ):
            self._start_commit()

    def record_session(self, session: SessionRecord) -> None:
        """Insert or replace a session row."""
        self._batch.sessions[session.client_id] = session
        self._changed()

    def record_session_deleted(self, client_id: str) -> None:
        """Remove a session with its subscriptions, deliveries and incoming QoS 2 ids."""
        self._batch.drop_client(client_id)
        self._batch.session_deletes.add(client_id)
        self._changed()

    def record_subscription(self, sub: SubscriptionRecord) -> None:
        """Insert or replace a subscription."""
        self._batch.subscriptions.setdefault(sub.client_id, {})[sub.topic_filter] = sub
        self._changed()

    def record_unsubscribe(self, client_id: str, topic_filter: str) -> None:
        """Remove a subscription."""
        self._batch.subscriptions.setdefault(client_id, {})[topic_filter] = None
        self._changed()

    def record_message(self, message: MessageRecord) -> None:
        """Store a message body (before the deliveries that reference it).

        It is written only if one of them is: recorded again, once its deliveries all went
        away, it may be written again (the broker does so before a new delivery of it).
        """
        batch = self._batch
        mid = message.message_id
        batch.messages[mid] = message
        batch.refs.setdefault(mid, 0)
        self._gen += 1
        batch.changes += 1
        if batch.changes > AUTO_FLUSH_CHANGES:
            self._auto_flush()

    def record_delivery(self, delivery: DeliveryRecord) -> None:
        """Insert or replace a delivery (a delivery's ``message_id`` never changes)."""
        batch = self._batch
        per = batch.deliveries.get(delivery.client_id)
        if per is None:
            per = batch.deliveries[delivery.client_id] = {}
        seq = delivery.seq
        if seq not in per:
            refs = batch.refs
            mid = delivery.message_id
            if mid in refs:
                refs[mid] += 1
        per[seq] = delivery
        self._gen += 1  # _changed(), inlined on the hot path
        batch.changes += 1
        if batch.changes > AUTO_FLUSH_CHANGES:
            self._auto_flush()

    def record_delivery_done(self, client_id: str, seq: int) -> None:
        """Remove a delivery; recorded and done in one batch, both cancel out."""
        batch = self._batch
        per = batch.deliveries.get(client_id)
        if per is None:
            per = batch.deliveries[client_id] = {}
        earlier = per.pop(seq, None)
        known = self._max_seq.get(client_id)
        if client_id in batch.session_deletes or known is None or seq > known:
            if earlier is not None:
                batch.unref(earlier.message_id)
            if not per:  # the row cannot be on disk: nothing to delete
                del batch.deliveries[client_id]
        else:
            per[seq] = None
            if earlier is not None:
                # Deleting the row on disk touches its message (``_TOUCH_DELIVERY``): touching it
                # here too would touch every message of a draining queue twice.
                batch.unref(earlier.message_id, touch=False)
        self._gen += 1  # _changed(), inlined on the hot path
        batch.changes += 1
        if batch.changes > AUTO_FLUSH_CHANGES:
            self._auto_flush()

    def record_incoming_qos2(self, client_id: str, packet_id: int, present: bool) -> None:
        """Remember (``present``) or forget an incoming QoS 2 packet id awaiting PUBREL."""
        self._batch.qos2.setdefault(client_id, {})[packet_id] = present
        self._changed()

    def record_retained(self, retained: RetainedRecord) -> None:
        """Insert or replace the retained message of a topic."""
        self._batch.retained[retained.topic] = retained
        self._changed()

    def record_retained_deleted(self, topic: str) -> None:
        """Remove the retained message of a topic."""
        self._batch.retained[topic] = None
        self._changed()

    # -- reads and maintenance -------------------------------------------------------------------

    async def load_deliveries(
        self, client_id: str, after_seq: int, limit: int
    ) -> tuple[list[DeliveryRecord], dict[int, MessageRecord]]:
        """The next ``limit`` deliveries of a session after ``after_seq`` with their messages.

        The result includes everything recorded: uncommitted deliveries of the session after
        ``after_seq`` are committed first. Other pending changes (typically the deletions of the
        deliveries just acknowledged) are not waited for.
        """
        await self._before_read(client_id, after_seq)
        return await self._call(self._load_deliveries_sync, client_id, after_seq, limit)

    async def load_queue(self, client_id: str, after_seq: int, limit: int) -> list[QueueRow]:
        """``load_deliveries`` as ``QueueRow`` tuples, each joined with its message (same
        guarantees)."""
        await self._before_read(client_id, after_seq)
        return await self._call(self._load_queue_sync, client_id, after_seq, limit)

    async def _before_read(self, client_id: str, after_seq: int) -> None:
        if not self._opened or self._closed:
            raise StoreError("the store is closed" if self._closed else "the store is not open")
        batch = self._batch
        per = batch.deliveries.get(client_id)
        if client_id in batch.session_deletes or (
            per and any(d is not None and seq > after_seq for seq, d in per.items())
        ):
            await self._flush()
        elif self._commit_task is not None:
            # Reads queue behind the commit on the worker thread; if it fails, its rows are
            # not on disk, and the read must not answer as if they were not recorded.
            await asyncio.shield(self._commit_task)

    def _load_queue_sync(self, client_id: str, after_seq: int, limit: int) -> list[QueueRow]:
        conn = self._connection()
        try:
            rows: list[QueueRow] = conn.execute(
                _QUEUE, (client_id, after_seq, max(limit, 0))
            ).fetchall()
            if not rows or not any(row[4] for row in rows):
                return rows  # the common case: every extra is None
            extras: dict[int, QueueExtra] = {}
            for seq, qos, retain, ids, packet_id, state, props, expires_at in conn.execute(
                _QUEUE_EXTRA, (client_id, after_seq + 1, rows[-1][0])
            ):
                sub_ids = tuple(int(i) for i in ids.split(",")) if ids else ()
                extras[seq] = (qos, bool(retain), sub_ids, packet_id, state, props, expires_at)
        except sqlite3.Error as exc:
            raise self._error(exc, "reading") from exc
        get = extras.get
        return [(seq, mid, topic, payload, get(seq)) for seq, mid, topic, payload, _ in rows]

    def _load_deliveries_sync(
        self, client_id: str, after_seq: int, limit: int
    ) -> tuple[list[DeliveryRecord], dict[int, MessageRecord]]:
        conn = self._connection()
        deliveries: list[DeliveryRecord] = []
        found: dict[int, MessageRecord] = {}
        add = deliveries.append
        try:
            # One join walking the session's rows in seq order, rather than the deliveries then
            # their messages by id: a page costs one index probe per row, and no second query.
            for seq, mid, qos, retain, ids, pid, state, *m in conn.execute(
                _PAGE, (client_id, after_seq, max(limit, 0))
            ):
                sub_ids = tuple(int(i) for i in ids.split(",")) if ids else ()
                add(DeliveryRecord(client_id, seq, mid, qos, bool(retain), sub_ids, pid, state))
                if m[0] is not None and mid not in found:  # None: the message row is missing
                    found[mid] = MessageRecord(mid, *m)
        except sqlite3.Error as exc:
            raise self._error(exc, "reading") from exc
        return deliveries, found

    async def inspect(self) -> dict[str, Any]:
        """Counts and sizes: sessions, subscriptions, deliveries, messages, retained, the 20
        deepest queues (``queue_depths``, client id -> deliveries), file and WAL size in bytes,
        schema version, and uncommitted changes."""
        if not self._opened:
            raise StoreError("the store is not open")
        info = await self._call(self._inspect_sync)
        info["pending_changes"] = self.pending_changes
        return info

    def _inspect_sync(self) -> dict[str, Any]:
        conn = self._connection()
        try:
            info: dict[str, Any] = {"file": str(self.path)}
            info["schema_version"] = self._schema_version(conn)
            for table in ("sessions", "subscriptions", "deliveries", "messages", "retained"):
                info[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            info["queue_depths"] = dict(
                conn.execute(
                    "SELECT client_id, count(*) AS n FROM deliveries GROUP BY client_id"
                    " ORDER BY n DESC, client_id LIMIT 20"
                ).fetchall()
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "reading") from exc
        info.update(self._sizes())
        return info

    def _sizes(self) -> dict[str, int]:
        wal = self.path.with_name(self.path.name + "-wal")
        return {
            "file_size": self.path.stat().st_size,
            "wal_size": wal.stat().st_size if wal.exists() else 0,
        }

    async def compact(self) -> dict[str, int]:
        """Commit, checkpoint the WAL into the file and truncate it, then VACUUM.

        Returns the sizes before and after (``file_size_before``, ``wal_size_before``,
        ``file_size``, ``wal_size``). Needs the database to itself while it runs.
        """
        await self.flush()
        return await self._call(self._compact_sync)

    def _compact_sync(self) -> dict[str, int]:
        conn = self._connection()
        before = {f"{k}_before": v for k, v in self._sizes().items()}
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # VACUUM wrote through the WAL
        except sqlite3.Error as exc:
            raise self._error(exc, "compacting") from exc
        return before | self._sizes()

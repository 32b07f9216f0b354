"""Durable client sessions: where a client keeps its QoS 1/2 state across process restarts.

A ``SessionStore`` holds, per client id, what the client owes or remembers:

* outgoing QoS 1/2 messages (topic, payload, QoS, retain, properties) with their sequence number,
  packet id and state: ``QUEUED`` (offline queue, no packet id yet), ``SENT`` (PUBLISH may be on
  the wire), ``PUBREC_RECEIVED`` (QoS 2: only PUBREL / PUBCOMP left);
* the packet ids of incoming QoS 2 messages delivered and not yet released by PUBREL;
* where the packet id allocator resumes.

Writes are recorded synchronously (``add_outgoing``, ``remove_incoming``...) into a write-set and
become durable with ``commit()``, which returns a future: **group commit**. Every change recorded
before a ``commit()`` call is durable once its future is done; concurrent callers share one
transaction, so a thousand publishes made in one event loop turn cost one disk sync. Futures
complete in the order of their commits. A failed commit fails its future with ``StoreError`` and
every later one too: the store is broken and the client stops (see ``wrenmq.client.client``).

Two stores:

* ``SQLiteStore(path)``: one stdlib ``sqlite3`` file in WAL mode, written by one worker thread
  (the event loop never blocks on the disk). Each client id's rows are keyed by it, so one file
  can serve several clients. ``synchronous="full"`` (default) survives power loss; ``"normal"``
  survives a crash of the process only, and commits faster. The schema is versioned: a
  ``schema_version`` table and ``MIGRATIONS``, each applied in its own transaction; a file made
  by a newer wrenmq, or by something else (SQLite ``application_id``), is refused.
* ``MemorySessionStore()``: dictionaries; survives reconnects and new ``Client`` objects in one
  process, not a restart. For tests and for processes that want the client's bookkeeping without
  a disk.

The write-set keeps one write per key (last one wins; a message added and removed before a
commit never reaches the disk; ``clear`` drops the client's earlier changes and runs first), so
a commit is a handful of ``executemany`` calls whatever the traffic.

Imports the stdlib, ``wrenmq.codec`` (property encoding) and the client's errors; no broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar

from wrenmq.client.errors import StoreError
from wrenmq.codec.properties import (
    NO_PROPERTIES,
    Properties,
    decode_properties,
    encode_properties,
)
from wrenmq.codec.types import PacketType
from wrenmq.errors import MQTTError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "MemorySessionStore",
    "MessageState",
    "SQLiteStore",
    "SessionStore",
    "StoreError",
    "StoredMessage",
    "StoredSession",
]

log = logging.getLogger("wrenmq.client.store")

_T = TypeVar("_T")


class MessageState(enum.IntEnum):
    """Where an outgoing QoS 1/2 message stands."""

    QUEUED = 0  # in the offline queue: no packet id yet, never sent
    SENT = 1  # has a packet id; the PUBLISH may be on the wire
    PUBREC_RECEIVED = 2  # QoS 2: the server has it; PUBREL / PUBCOMP remain


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One outgoing QoS 1/2 message of a stored session."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: Properties = NO_PROPERTIES
    packet_id: int = 0
    state: MessageState = MessageState.QUEUED


@dataclass(frozen=True, slots=True)
class StoredSession:
    """Everything stored for one client id."""

    outgoing: tuple[StoredMessage, ...] = ()  # in publishing (sequence) order
    incoming_qos2: tuple[int, ...] = ()
    next_packet_id: int = 1
    next_seq: int = 1


class SessionStore(Protocol):
    """Storage of client sessions; see the module docstring for the contract."""

    async def open(self) -> None:
        """Make the store usable (idempotent)."""

    async def load(self, client_id: str) -> StoredSession:
        """Read the stored session of ``client_id`` (empty if none)."""

    def add_outgoing(self, client_id: str, message: StoredMessage) -> None:
        """Record a new outgoing message (a new ``seq``)."""

    def update_outgoing(
        self, client_id: str, seq: int, packet_id: int, state: MessageState
    ) -> None:
        """Record an outgoing message's new packet id and state."""

    def remove_outgoing(self, client_id: str, seq: int) -> None:
        """Record that an outgoing message's flow ended."""

    def add_incoming(self, client_id: str, packet_id: int) -> None:
        """Record an incoming QoS 2 packet id as received."""

    def remove_incoming(self, client_id: str, packet_id: int) -> None:
        """Record an incoming QoS 2 packet id as released."""

    def clear_incoming(self, client_id: str) -> None:
        """Forget every incoming QoS 2 packet id of ``client_id`` (the server lost the session)."""

    def clear(self, client_id: str) -> None:
        """Forget everything about ``client_id`` (a clean start)."""

    def set_next_packet_id(self, client_id: str, packet_id: int) -> None:
        """Record where the packet id allocator resumes."""

    def commit(self) -> asyncio.Future[None]:
        """Make every change recorded so far durable; the future is done when it is."""

    async def close(self) -> None:
        """Commit what is left and release the store (``open`` may follow again)."""


def _encode_props(props: Properties) -> bytes:
    return encode_properties(props)


def _decode_props(data: bytes) -> Properties:
    if data in (b"", b"\x00"):
        return NO_PROPERTIES
    try:
        return decode_properties(data, 0, len(data), PacketType.PUBLISH)[0]
    except MQTTError as exc:
        raise StoreError(f"stored message properties are corrupt: {exc}") from exc


# -- the write-set --------------------------------------------------------------------------------

_Key = tuple[str, int]


class _Batch:
    """Changes recorded since the last commit, one write per key."""

    __slots__ = (
        "clear_incoming",
        "cleared",
        "in_ops",
        "next_ids",
        "out_deletes",
        "out_rows",
        "out_updates",
    )

    def __init__(self) -> None:
        self.cleared: set[str] = set()
        self.clear_incoming: set[str] = set()
        self.out_rows: dict[_Key, StoredMessage] = {}
        self.out_updates: dict[_Key, tuple[int, int]] = {}
        self.out_deletes: set[_Key] = set()
        self.in_ops: dict[_Key, bool] = {}  # True: add, False: remove
        self.next_ids: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(
            self.cleared
            or self.clear_incoming
            or self.out_rows
            or self.out_updates
            or self.out_deletes
            or self.in_ops
            or self.next_ids
        )

    def add(self, client_id: str, message: StoredMessage) -> None:
        self.out_rows[(client_id, message.seq)] = message

    def update(self, client_id: str, seq: int, packet_id: int, state: int) -> None:
        key = (client_id, seq)
        row = self.out_rows.get(key)
        if row is not None:
            self.out_rows[key] = dataclasses.replace(
                row, packet_id=packet_id, state=MessageState(state)
            )
        else:
            self.out_updates[key] = (packet_id, state)

    def remove(self, client_id: str, seq: int) -> None:
        key = (client_id, seq)
        self.out_updates.pop(key, None)
        if self.out_rows.pop(key, None) is None:  # a row added in this batch never hit the disk
            self.out_deletes.add(key)

    def incoming(self, client_id: str, packet_id: int, present: bool) -> None:
        self.in_ops[(client_id, packet_id)] = present

    def drop_incoming(self, client_id: str) -> None:
        self.in_ops = {k: v for k, v in self.in_ops.items() if k[0] != client_id}
        self.clear_incoming.add(client_id)

    def clear(self, client_id: str) -> None:
        def keep(key: _Key) -> bool:
            return key[0] != client_id

        self.out_rows = {k: v for k, v in self.out_rows.items() if keep(k)}
        self.out_updates = {k: v for k, v in self.out_updates.items() if keep(k)}
        self.out_deletes = {k for k in self.out_deletes if keep(k)}
        self.in_ops = {k: v for k, v in self.in_ops.items() if keep(k)}
        self.next_ids.pop(client_id, None)
        self.clear_incoming.discard(client_id)
        self.cleared.add(client_id)


class _GroupCommit:
    """Group commit over a ``_Batch``: ``commit()`` futures, one transaction at a time."""

    def __init__(self, write: Callable[[_Batch], Any]) -> None:
        self._write = write  # async: make a batch durable
        self.batch = _Batch()
        self._waiting: asyncio.Future[None] | None = None  # commit of the batch being filled
        self._inflight: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed: StoreError | None = None

    def commit(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._failed is not None:
            fut: asyncio.Future[None] = loop.create_future()
            fut.set_exception(self._failed)
            return fut
        if not self.batch:
            inflight = self._inflight
            if inflight is not None and not inflight.done():
                return inflight
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        if self._waiting is None:
            self._waiting = loop.create_future()
        if self._task is None:
            self._task = loop.create_task(self._run(), name="wrenmq-store-commit")
        return self._waiting

    async def _run(self) -> None:
        try:
            while self._waiting is not None:
                batch, fut = self.batch, self._waiting
                self.batch, self._waiting = _Batch(), None
                self._inflight = fut
                try:
                    await self._write(batch)
                except asyncio.CancelledError:  # the batch is lost: say so
                    self._fail(StoreError("commit interrupted"), fut)
                    raise
                except Exception as exc:
                    error = exc if isinstance(exc, StoreError) else StoreError(repr(exc))
                    if error is not exc:
                        error.__cause__ = exc
                    self._fail(error, fut)
                    return
                fut.set_result(None)
        finally:
            self._task = None

    def _fail(self, error: StoreError, fut: asyncio.Future[None]) -> None:
        self._failed = error
        for pending in (fut, self._waiting):
            if pending is not None and not pending.done():
                pending.set_exception(error)
                pending.exception()  # retrieved: whoever awaits it still gets it
        self._waiting = None

    async def drain(self) -> None:
        """Commit what is recorded and wait for every commit to end."""
        if self.batch or self._task is not None:
            fut = self.commit()
            with contextlib.suppress(StoreError):
                await fut
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def reset(self) -> None:
        self.batch = _Batch()
        self._failed = None
        self._inflight = None


# -- memory ---------------------------------------------------------------------------------------


class MemorySessionStore:
    """A ``SessionStore`` in dictionaries: survives reconnects and new clients, not a restart."""

    def __init__(self) -> None:
        self._outgoing: dict[str, dict[int, StoredMessage]] = {}
        self._incoming: dict[str, set[int]] = {}
        self._next_ids: dict[str, int] = {}
        self.commits = 0  # how many commits had something to write (for tests)

    async def open(self) -> None:  # noqa: D102
        return None

    async def load(self, client_id: str) -> StoredSession:  # noqa: D102
        outgoing = tuple(sorted(self._outgoing.get(client_id, {}).values(), key=_by_seq))
        return StoredSession(
            outgoing=outgoing,
            incoming_qos2=tuple(sorted(self._incoming.get(client_id, ()))),
            next_packet_id=self._next_ids.get(client_id, 1),
            next_seq=(outgoing[-1].seq + 1) if outgoing else 1,
        )

    def add_outgoing(self, client_id: str, message: StoredMessage) -> None:  # noqa: D102
        self._outgoing.setdefault(client_id, {})[message.seq] = message

    def update_outgoing(  # noqa: D102
        self, client_id: str, seq: int, packet_id: int, state: MessageState
    ) -> None:
        rows = self._outgoing.get(client_id, {})
        row = rows.get(seq)
        if row is not None:
            rows[seq] = dataclasses.replace(row, packet_id=packet_id, state=MessageState(state))

    def remove_outgoing(self, client_id: str, seq: int) -> None:  # noqa: D102
        self._outgoing.get(client_id, {}).pop(seq, None)

    def add_incoming(self, client_id: str, packet_id: int) -> None:  # noqa: D102
        self._incoming.setdefault(client_id, set()).add(packet_id)

    def remove_incoming(self, client_id: str, packet_id: int) -> None:  # noqa: D102
        self._incoming.get(client_id, set()).discard(packet_id)

    def clear_incoming(self, client_id: str) -> None:  # noqa: D102
        self._incoming.pop(client_id, None)

    def clear(self, client_id: str) -> None:  # noqa: D102
        self._outgoing.pop(client_id, None)
        self._incoming.pop(client_id, None)
        self._next_ids.pop(client_id, None)

    def set_next_packet_id(self, client_id: str, packet_id: int) -> None:  # noqa: D102
        self._next_ids[client_id] = packet_id

    def commit(self) -> asyncio.Future[None]:  # noqa: D102
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def close(self) -> None:  # noqa: D102
        return None


def _by_seq(message: StoredMessage) -> int:
    return message.seq


# -- SQLite ---------------------------------------------------------------------------------------

APPLICATION_ID: Final = 0x57524E43  # "WRNC": a wrenmq client session file
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # Version 1. Payload-carrying rows keep a rowid (large rows are slow in a clustered index);
    # the small ones are WITHOUT ROWID tables clustered on their key.
    (
        """CREATE TABLE sessions (
            client_id TEXT PRIMARY KEY, next_packet_id INTEGER NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE outgoing (
            client_id TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL,
            payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
            properties BLOB NOT NULL, packet_id INTEGER NOT NULL, state INTEGER NOT NULL,
            UNIQUE (client_id, seq))""",
        """CREATE TABLE incoming_qos2 (
            client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,
            PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_OUT_COLUMNS = "seq, topic, payload, qos, retain, properties, packet_id, state"
_PUT_OUT = f"INSERT OR REPLACE INTO outgoing (client_id, {_OUT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
_UPDATE_OUT = "UPDATE outgoing SET packet_id = ?, state = ? WHERE client_id = ? AND seq = ?"
_DELETE_OUT = "DELETE FROM outgoing WHERE client_id = ? AND seq = ?"
_PUT_IN = "INSERT OR REPLACE INTO incoming_qos2 VALUES (?, ?)"
_DELETE_IN = "DELETE FROM incoming_qos2 WHERE client_id = ? AND packet_id = ?"
_PUT_SESSION = "INSERT OR REPLACE INTO sessions VALUES (?, ?)"

Synchronous = Literal["full", "normal"]


class SQLiteStore:
    """A ``SessionStore`` in one SQLite file (WAL mode, one worker thread, group commit).

    Args:
        path: the database file; created (with its directory) when missing.
        synchronous: ``"full"``: a commit survives power loss; ``"normal"``: it survives a
            crash of the process (not of the machine) and costs less.
    """

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "full") -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only
        self._group = _GroupCommit(self._write)

    def __repr__(self) -> str:
        return f"<SQLiteStore {str(self.path)!r}>"

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise StoreError(f"{self.path}: the store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return conn

    # -- open / close ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating or upgrading) the file; idempotent."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wrenmq-client-store")
        self._group.reset()
        try:
            await self._call(self._open_sync)
        except BaseException:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False)
            raise

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id != APPLICATION_ID and (app_id or tables):
            raise StoreError(f"{self.path}: not a wrenmq client session store")
        version = 0
        if "schema_version" in tables:
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] or 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this wrenmq's "
                f"({SCHEMA_VERSION}); upgrade wrenmq or remove the file (its session is lost)"
            )
        if version:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"{self.path}: the database is damaged ({check})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                if target == 1:
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(
                        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                        "applied_at REAL NOT NULL)"
                    )
                for statement in MIGRATIONS[target - 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (target, time.time()))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    async def close(self) -> None:
        """Commit what is left, close the file and stop the worker thread."""
        if self._executor is None:
            return
        await self._group.drain()
        try:
            await self._call(self._close_sync)
        finally:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- reading --------------------------------------------------------------------------------

    async def load(self, client_id: str) -> StoredSession:
        """Read the stored session of ``client_id``."""
        return await self._call(self._load_sync, client_id)

    def _load_sync(self, client_id: str) -> StoredSession:
        conn = self._connection()
        try:
            rows = conn.execute(
                f"SELECT {_OUT_COLUMNS} FROM outgoing WHERE client_id = ? ORDER BY seq",
                (client_id,),
            ).fetchall()
            incoming = conn.execute(
                "SELECT packet_id FROM incoming_qos2 WHERE client_id = ? ORDER BY packet_id",
                (client_id,),
            ).fetchall()
            session = conn.execute(
                "SELECT next_packet_id FROM sessions WHERE client_id = ?", (client_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot load {client_id!r}: {exc}") from exc
        outgoing = tuple(
            StoredMessage(
                seq=seq,
                topic=topic,
                payload=bytes(payload),
                qos=qos,
                retain=bool(retain),
                properties=_decode_props(bytes(props)),
                packet_id=packet_id,
                state=MessageState(state),
            )
            for seq, topic, payload, qos, retain, props, packet_id, state in rows
        )
        return StoredSession(
            outgoing=outgoing,
            incoming_qos2=tuple(r[0] for r in incoming),
            next_packet_id=session[0] if session else 1,
            next_seq=(outgoing[-1].seq + 1) if outgoing else 1,
        )

    # -- recording ------------------------------------------------------------------------------

    def add_outgoing(self, client_id: str, message: StoredMessage) -> None:  # noqa: D102
        self._group.batch.add(client_id, message)

    def update_outgoing(  # noqa: D102
        self, client_id: str, seq: int, packet_id: int, state: MessageState
    ) -> None:
        self._group.batch.update(client_id, seq, packet_id, state)

    def remove_outgoing(self, client_id: str, seq: int) -> None:  # noqa: D102
        self._group.batch.remove(client_id, seq)

    def add_incoming(self, client_id: str, packet_id: int) -> None:  # noqa: D102
        self._group.batch.incoming(client_id, packet_id, True)

    def remove_incoming(self, client_id: str, packet_id: int) -> None:  # noqa: D102
        self._group.batch.incoming(client_id, packet_id, False)

    def clear_incoming(self, client_id: str) -> None:  # noqa: D102
        self._group.batch.drop_incoming(client_id)

    def clear(self, client_id: str) -> None:  # noqa: D102
        self._group.batch.clear(client_id)

    def set_next_packet_id(self, client_id: str, packet_id: int) -> None:  # noqa: D102
        self._group.batch.next_ids[client_id] = packet_id

    def commit(self) -> asyncio.Future[None]:
        """Make everything recorded so far durable (group commit)."""
        return self._group.commit()

    # -- writing (worker thread) ----------------------------------------------------------------

    async def _write(self, batch: _Batch) -> None:
        await self._call(self._write_sync, batch)

    def _write_sync(self, b: _Batch) -> None:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._apply(conn, b)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: commit failed: {exc}") from exc

    @staticmethod
    def _apply(conn: sqlite3.Connection, b: _Batch) -> None:
        for client_id in b.cleared:
            for table in ("outgoing", "incoming_qos2", "sessions"):
                conn.execute(f"DELETE FROM {table} WHERE client_id = ?", (client_id,))
        for client_id in b.clear_incoming:
            conn.execute("DELETE FROM incoming_qos2 WHERE client_id = ?", (client_id,))
        if b.out_deletes:
            conn.executemany(_DELETE_OUT, b.out_deletes)
        if b.out_rows:
            conn.executemany(_PUT_OUT, _rows(b.out_rows))
        if b.out_updates:
            conn.executemany(
                _UPDATE_OUT,
                ((pid, state, cid, seq) for (cid, seq), (pid, state) in b.out_updates.items()),
            )
        if b.in_ops:
            conn.executemany(_DELETE_IN, (k for k, present in b.in_ops.items() if not present))
            conn.executemany(_PUT_IN, (k for k, present in b.in_ops.items() if present))
        if b.next_ids:
            conn.executemany(_PUT_SESSION, b.next_ids.items())


def _rows(rows: dict[_Key, StoredMessage]) -> Iterable[tuple[Any, ...]]:
    for (client_id, _), m in rows.items():
        yield (
            client_id,
            m.seq,
            m.topic,
            m.payload,
            m.qos,
            int(m.retain),
            _encode_props(m.properties),
            m.packet_id,
            int(m.state),
        )

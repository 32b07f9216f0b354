"""Durable broker state: the ``SessionStore`` protocol, its records, and two stores.

``MemoryStore`` keeps everything in dicts (the reference behaviour); ``SQLiteStore`` keeps it in
``<data dir>/wrenmq.db``. Imports only its own modules.
"""

from wrenmq.broker.persistence.base import (
    NEVER_EXPIRES,
    DeliveryRecord,
    MessageRecord,
    RetainedRecord,
    SessionRecord,
    SessionStore,
    StoreError,
    StoreSnapshot,
    SubscriptionRecord,
)
from wrenmq.broker.persistence.memory import MemoryStore
from wrenmq.broker.persistence.sqlite import DB_FILENAME, SQLiteStore, decode_will, encode_will

__all__ = [
    "DB_FILENAME",
    "NEVER_EXPIRES",
    "DeliveryRecord",
    "MemoryStore",
    "MessageRecord",
    "RetainedRecord",
    "SQLiteStore",
    "SessionRecord",
    "SessionStore",
    "StoreError",
    "StoreSnapshot",
    "SubscriptionRecord",
    "decode_will",
    "encode_will",
]

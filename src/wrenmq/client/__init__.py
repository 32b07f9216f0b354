"""The asyncio MQTT client (``Client``) and its blocking facade (``wrenmq.client.sync``).

Layer: imports ``transport``, ``protocol``, ``codec`` and ``errors``; never the broker.
"""

from wrenmq.client.auth import Authenticator
from wrenmq.client.backoff import Reconnect
from wrenmq.client.client import Client
from wrenmq.client.errors import DisconnectedError, OfflineQueueFull, StoreError
from wrenmq.client.message import FilteredMessages, Message, Messages
from wrenmq.client.scram import ScramSha256Authenticator
from wrenmq.client.store import MemorySessionStore, SessionStore, SQLiteStore
from wrenmq.codec.packets import Subscription, Will

__all__ = [
    "Authenticator",
    "Client",
    "DisconnectedError",
    "FilteredMessages",
    "MemorySessionStore",
    "Message",
    "Messages",
    "OfflineQueueFull",
    "Reconnect",
    "SQLiteStore",
    "ScramSha256Authenticator",
    "SessionStore",
    "StoreError",
    "Subscription",
    "Will",
]

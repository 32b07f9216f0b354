"""The blocking client: ``from wrenmq.sync import Client``.

A re-export of :mod:`wrenmq.client.sync`, so that the blocking facade has a short import path.
"""

from wrenmq.client.backoff import Reconnect
from wrenmq.client.errors import DisconnectedError, OfflineQueueFull
from wrenmq.client.message import Message
from wrenmq.client.sync import Client
from wrenmq.codec.packets import Subscription, Will

__all__ = [
    "Client",
    "DisconnectedError",
    "Message",
    "OfflineQueueFull",
    "Reconnect",
    "Subscription",
    "Will",
]

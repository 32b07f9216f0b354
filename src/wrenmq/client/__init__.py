"""The asyncio MQTT client (``Client``) and its blocking facade (``wrenmq.client.sync``).

Layer: imports ``protocol``, ``codec`` and ``errors``; never the broker.
"""

from wrenmq.client.backoff import Reconnect
from wrenmq.client.client import Client
from wrenmq.client.errors import DisconnectedError, OfflineQueueFull
from wrenmq.client.message import FilteredMessages, Message, Messages
from wrenmq.codec.packets import Subscription, Will

__all__ = [
    "Client",
    "DisconnectedError",
    "FilteredMessages",
    "Message",
    "Messages",
    "OfflineQueueFull",
    "Reconnect",
    "Subscription",
    "Will",
]

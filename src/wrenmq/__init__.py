"""wrenmq: a high-performance MQTT 3.1 / 3.1.1 / 5.0 client and broker for asyncio."""

from typing import TYPE_CHECKING, Any

from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.types import QoS
from wrenmq.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    LocalProtocolError,
    MQTTError,
    NegativeAckError,
    RemoteProtocolError,
    WrenError,
)

if TYPE_CHECKING:
    from wrenmq.client import Client, Message, Reconnect

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "Client",
    "ConfigError",
    "ConnectError",
    "LocalProtocolError",
    "MQTTError",
    "Message",
    "NegativeAckError",
    "QoS",
    "ReasonCode",
    "Reconnect",
    "RemoteProtocolError",
    "WrenError",
    "__version__",
]

# The client is imported on first use, so ``import wrenmq`` (and the broker) stays free of it and
# no import cycle runs through this package's __init__.
_LAZY = {"Client": "wrenmq.client", "Message": "wrenmq.client", "Reconnect": "wrenmq.client"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wrenmq' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

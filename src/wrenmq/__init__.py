"""wrenmq: a high-performance MQTT 3.1 / 3.1.1 / 5.0 client and broker for asyncio."""

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

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectError",
    "LocalProtocolError",
    "MQTTError",
    "NegativeAckError",
    "QoS",
    "ReasonCode",
    "RemoteProtocolError",
    "WrenError",
    "__version__",
]

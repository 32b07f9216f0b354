"""The exception hierarchy of wrenmq.

Every error raised on purpose by the library derives from :class:`WrenError`. Protocol errors carry
the MQTT 5 :class:`~wrenmq.codec.reason_codes.ReasonCode` that the side detecting them must send
(the codec speaks MQTT 5 reason codes for every protocol version; the encoder maps them down to
3.1.1 return codes). Imports only from ``wrenmq.codec.reason_codes``.
"""

from __future__ import annotations

from wrenmq.codec.reason_codes import ReasonCode

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectError",
    "LocalProtocolError",
    "MQTTError",
    "NegativeAckError",
    "RemoteProtocolError",
    "WrenError",
]


class WrenError(Exception):
    """Root of every exception wrenmq raises on purpose."""


class MQTTError(WrenError):
    """A protocol-level error, carrying the reason code that describes it."""

    def __init__(self, reason_code: ReasonCode, message: str = "") -> None:
        self.reason_code = ReasonCode(reason_code)
        self.message = message or self.reason_code.spec_name
        super().__init__(f"{self.message} ({self.reason_code.spec_name}, 0x{self.reason_code:02X})")


class RemoteProtocolError(MQTTError):
    """The peer broke the protocol; ``reason_code`` is what to send back before closing.

    ``protocol_level`` is set when the error was found in a CONNECT packet whose protocol level was
    already read, so that the broker can answer with a CONNACK in the client's own version.
    """

    def __init__(
        self, reason_code: ReasonCode, message: str = "", *, protocol_level: int | None = None
    ) -> None:
        super().__init__(reason_code, message)
        self.protocol_level = protocol_level


class LocalProtocolError(MQTTError):
    """This side tried to do something the protocol forbids (a bug in the caller)."""


class ConnectError(MQTTError):
    """The server refused the connection (CONNACK with a failure reason code)."""


class NegativeAckError(MQTTError):
    """A PUBACK/PUBREC/PUBCOMP/SUBACK/UNSUBACK carried a failure reason code."""


class AuthError(MQTTError):
    """Authentication failed."""

    def __init__(
        self, reason_code: ReasonCode = ReasonCode.NOT_AUTHORIZED, message: str = ""
    ) -> None:
        super().__init__(reason_code, message)


class ConfigError(WrenError):
    """A configuration file or value is invalid; ``where`` names the file and key."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)

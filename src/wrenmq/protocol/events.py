"""The events a sans-IO client connection reports from ``receive_data`` (h11 style).

Plain frozen, slotted values; imports only from ``codec`` and ``errors``. No IO, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from wrenmq.codec.packets import Auth, ConnAck, Publish
from wrenmq.codec.properties import NO_PROPERTIES, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import MQTTError

__all__ = [
    "AuthReceived",
    "Connected",
    "ConnectionRefused",
    "Disconnected",
    "Event",
    "MessageReceived",
    "PongReceived",
    "PubRecReceived",
    "PubRelReceived",
    "PublishAcked",
    "SubscribeAcked",
    "UnsubscribeAcked",
]


@dataclass(frozen=True, slots=True)
class Connected:
    """The server accepted the connection (CONNACK with Success)."""

    connack: ConnAck

    @property
    def session_present(self) -> bool:
        """Whether the server resumed a session [MQTT-3.2.2-2]."""
        return self.connack.session_present


@dataclass(frozen=True, slots=True)
class ConnectionRefused:
    """The server refused the connection (CONNACK with a failure code)."""

    connack: ConnAck

    @property
    def reason_code(self) -> ReasonCode:
        """Why the server refused."""
        return self.connack.reason_code


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An application message arrived (topic alias already resolved).

    For QoS 1 and 2 in manual-ack mode, the acknowledgement is sent only when the caller calls
    ``ClientProtocol.ack(publish.packet_id)``. The payload may be a ``memoryview`` into the
    received bytes: copy it to keep it.
    """

    publish: Publish


@dataclass(frozen=True, slots=True)
class PublishAcked:
    """The QoS 1 or 2 flow of an outgoing PUBLISH ended (PUBACK, PUBREC failure or PUBCOMP)."""

    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class PubRecReceived:
    """Durable sessions only: the server has outgoing QoS 2 message ``packet_id`` (PUBREC).

    Store that, then call ``ClientProtocol.pubrel_stored`` for the PUBREL [MQTT-4.3.3-6].
    """

    packet_id: int


@dataclass(frozen=True, slots=True)
class PubRelReceived:
    """Durable sessions only: the server released incoming QoS 2 message ``packet_id``.

    Remove the id from the store, then call ``ClientProtocol.incoming_released`` for the PUBCOMP.
    """

    packet_id: int


@dataclass(frozen=True, slots=True)
class SubscribeAcked:
    """A SUBACK: one reason code (granted QoS or failure) per requested filter."""

    packet_id: int
    reason_codes: tuple[ReasonCode, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class UnsubscribeAcked:
    """An UNSUBACK; MQTT 3.x carries no codes, so every filter reports Success there."""

    packet_id: int
    reason_codes: tuple[ReasonCode, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class PongReceived:
    """A PINGRESP arrived."""


@dataclass(frozen=True, slots=True)
class AuthReceived:
    """An AUTH packet arrived (MQTT 5 enhanced authentication)."""

    auth: Auth


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection is over at the protocol level; the IO layer should close the transport.

    ``by_server`` is True when the server sent DISCONNECT; otherwise ``error`` says which rule the
    server broke (the DISCONNECT this side owes is already in ``data_to_send()``).
    """

    reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION
    properties: Properties = NO_PROPERTIES
    by_server: bool = False
    error: MQTTError | None = None


Event = (
    Connected | ConnectionRefused | MessageReceived | PublishAcked | SubscribeAcked
    | UnsubscribeAcked | PongReceived | AuthReceived | Disconnected | PubRecReceived
    | PubRelReceived
)  # fmt: skip

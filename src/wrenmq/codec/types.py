"""Small enums shared by the codec and its users: packet types, QoS, protocol levels.

stdlib only; no IO, no clock.
"""

from __future__ import annotations

import enum

__all__ = ["MQTT_3_1", "MQTT_3_1_1", "MQTT_5", "PacketType", "QoS", "RetainHandling"]

MQTT_3_1 = 3
MQTT_3_1_1 = 4
MQTT_5 = 5


class PacketType(enum.IntEnum):
    """MQTT control packet types (the high nibble of the fixed header)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class QoS(enum.IntEnum):
    """Quality of service levels."""

    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1
    EXACTLY_ONCE = 2


class RetainHandling(enum.IntEnum):
    """When retained messages are sent for a new subscription (MQTT 5, 3.8.3.1)."""

    SEND_ON_SUBSCRIBE = 0
    SEND_IF_NEW_SUBSCRIPTION = 1
    DO_NOT_SEND = 2

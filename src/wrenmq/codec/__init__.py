"""The sans-IO MQTT codec: bytes <-> packets for MQTT 3.1, 3.1.1 and 5.0.

stdlib only; never imports asyncio, socket, ssl, selectors or time.
"""

from wrenmq.codec.decode import MAX_PACKET_SIZE, StreamDecoder, decode_packet
from wrenmq.codec.encode import PublishTemplate, encode
from wrenmq.codec.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from wrenmq.codec.properties import NO_PROPERTIES, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.types import MQTT_3_1, MQTT_3_1_1, MQTT_5, PacketType, QoS, RetainHandling

__all__ = [
    "MAX_PACKET_SIZE",
    "MQTT_3_1",
    "MQTT_3_1_1",
    "MQTT_5",
    "NO_PROPERTIES",
    "Auth",
    "ConnAck",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "Properties",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "PublishTemplate",
    "QoS",
    "ReasonCode",
    "RetainHandling",
    "StreamDecoder",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "decode_packet",
    "encode",
]

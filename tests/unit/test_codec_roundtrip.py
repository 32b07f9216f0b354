"""Hypothesis round-trips of the codec: decode(encode(p)) == p for valid packets of every level.

The strategies below build only packets the spec allows at each protocol level (3 = MQTT 3.1,
4 = 3.1.1, 5 = 5.0), so anything that fails to round-trip is a codec bug, not a test artefact.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wrenmq.codec import (
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PublishTemplate,
    PubRec,
    PubRel,
    ReasonCode,
    StreamDecoder,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    decode_packet,
    encode,
)
from wrenmq.codec.primitives import MAX_VARINT, encode_varint
from wrenmq.codec.properties import PROPERTY_TABLE, WILL
from wrenmq.codec.types import PacketType

VERSIONS = (3, 4, 5)
RC = ReasonCode

# ---------------------------------------------------------------------------------------------
# Primitive strategies

# Well-formed MQTT strings: no surrogates, no U+0000 [MQTT-1.5.4-1..2].
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
text = st.text(alphabet=CHARS, max_size=20)
nonempty_text = st.text(alphabet=CHARS, min_size=1, max_size=20)
binary = st.binary(max_size=40)
payloads = st.binary(max_size=300)
u8_bool = st.integers(0, 1)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
packet_ids = st.integers(1, 0xFFFF)
qos = st.integers(0, 2)

# Topic names: non-empty, no wildcards [MQTT-3.3.2-2]; a few fixed shapes so levels show up.
topic_names = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00+#"),
            min_size=1, max_size=30),
    st.sampled_from(["a", "a/b", "/", "//", "$SYS/broker/load", "sensors/ü/😀", " "]),
)  # fmt: skip
_level = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00+#/"), max_size=8
)
# Topic filters: levels joined by '/', '+' as a whole level, '#' only last [MQTT-4.7.1-1..2].
topic_filters = st.builds(
    lambda levels, last: "/".join([*levels, last]) if levels or last else "#",
    st.lists(st.one_of(_level, st.just("+")), max_size=4),
    st.one_of(_level, st.just("+"), st.just("#")),
).filter(bool)

# User properties: ordered, repeats allowed and likely (keys drawn often from a tiny set).
_user_key = st.one_of(st.sampled_from(["k", "key", ""]), text)
user_properties = st.lists(st.tuples(_user_key, text), max_size=5).map(tuple)

# ---------------------------------------------------------------------------------------------
# Properties

_VALUE_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "payload_format_indicator": u8_bool,
    "message_expiry_interval": u32,
    "content_type": text,
    "response_topic": topic_names,
    "correlation_data": binary,
    "session_expiry_interval": u32,
    "assigned_client_identifier": text,
    "server_keep_alive": u16,
    "authentication_method": nonempty_text,
    "authentication_data": binary,
    "request_problem_information": u8_bool,
    "will_delay_interval": u32,
    "request_response_information": u8_bool,
    "response_information": text,
    "server_reference": text,
    "reason_string": text,
    "receive_maximum": st.integers(1, 0xFFFF),
    "topic_alias_maximum": u16,
    "topic_alias": st.integers(1, 0xFFFF),
    "maximum_qos": u8_bool,
    "retain_available": u8_bool,
    "maximum_packet_size": st.integers(1, 0xFFFF_FFFF),
    "wildcard_subscription_available": u8_bool,
    "subscription_identifier_available": u8_bool,
    "shared_subscription_available": u8_bool,
}
sub_ids = st.integers(1, MAX_VARINT)


def allowed_properties(packet_type: int) -> list[str]:
    """Attribute names of the properties ``packet_type`` may carry, from the codec's own table."""
    return [s.name for s in PROPERTY_TABLE.values() if packet_type in s.packets]


@st.composite
def properties(
    draw: st.DrawFn, packet_type: int, *, exclude: frozenset[str] = frozenset()
) -> Properties:
    """Properties for ``packet_type`` (or ``WILL``): only allowed ones, with valid values."""
    values: dict[str, Any] = {}
    for name in allowed_properties(packet_type):
        if name in exclude:
            continue
        if name == "user_properties":
            values[name] = draw(user_properties)
        elif name == "subscription_identifiers":
            # PUBLISH may carry several; SUBSCRIBE at most one [MQTT-3.8.2.1.2].
            most = 3 if packet_type == PacketType.PUBLISH else 1
            values[name] = tuple(draw(st.lists(sub_ids, max_size=most)))
        elif name == "authentication_data":
            continue  # drawn below: only meaningful with an authentication method
        elif draw(st.booleans()):
            values[name] = draw(_VALUE_STRATEGIES[name])
    if values.get("authentication_method") is not None and "authentication_data" not in exclude:
        values["authentication_data"] = draw(st.none() | binary)
    props = Properties(**values)
    return props if props else NO_PROPERTIES


def props_for(version: int, packet_type: int) -> st.SearchStrategy[Properties]:
    return properties(packet_type) if version == 5 else st.just(NO_PROPERTIES)


# ---------------------------------------------------------------------------------------------
# Reason codes allowed per packet type (MQTT 5 section 2.4 and each packet's reason code table)

V5_REASONS: dict[int, list[ReasonCode]] = {
    PacketType.CONNACK: [
        RC.SUCCESS, RC.UNSPECIFIED_ERROR, RC.MALFORMED_PACKET, RC.PROTOCOL_ERROR,
        RC.IMPLEMENTATION_SPECIFIC_ERROR, RC.UNSUPPORTED_PROTOCOL_VERSION,
        RC.CLIENT_IDENTIFIER_NOT_VALID, RC.BAD_USER_NAME_OR_PASSWORD, RC.NOT_AUTHORIZED,
        RC.SERVER_UNAVAILABLE, RC.SERVER_BUSY, RC.BANNED, RC.BAD_AUTHENTICATION_METHOD,
        RC.TOPIC_NAME_INVALID, RC.PACKET_TOO_LARGE, RC.QUOTA_EXCEEDED, RC.PAYLOAD_FORMAT_INVALID,
        RC.RETAIN_NOT_SUPPORTED, RC.QOS_NOT_SUPPORTED, RC.USE_ANOTHER_SERVER, RC.SERVER_MOVED,
        RC.CONNECTION_RATE_EXCEEDED,
    ],
    PacketType.PUBACK: [
        RC.SUCCESS, RC.NO_MATCHING_SUBSCRIBERS, RC.UNSPECIFIED_ERROR,
        RC.IMPLEMENTATION_SPECIFIC_ERROR, RC.NOT_AUTHORIZED, RC.TOPIC_NAME_INVALID,
        RC.PACKET_IDENTIFIER_IN_USE, RC.QUOTA_EXCEEDED, RC.PAYLOAD_FORMAT_INVALID,
    ],
    PacketType.PUBREL: [RC.SUCCESS, RC.PACKET_IDENTIFIER_NOT_FOUND],
    PacketType.SUBACK: [
        RC.GRANTED_QOS_0, RC.GRANTED_QOS_1, RC.GRANTED_QOS_2, RC.UNSPECIFIED_ERROR,
        RC.IMPLEMENTATION_SPECIFIC_ERROR, RC.NOT_AUTHORIZED, RC.TOPIC_FILTER_INVALID,
        RC.PACKET_IDENTIFIER_IN_USE, RC.QUOTA_EXCEEDED, RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
        RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    ],
    PacketType.UNSUBACK: [
        RC.SUCCESS, RC.NO_SUBSCRIPTION_EXISTED, RC.UNSPECIFIED_ERROR,
        RC.IMPLEMENTATION_SPECIFIC_ERROR, RC.NOT_AUTHORIZED, RC.TOPIC_FILTER_INVALID,
        RC.PACKET_IDENTIFIER_IN_USE,
    ],
    PacketType.DISCONNECT: [
        RC.NORMAL_DISCONNECTION, RC.DISCONNECT_WITH_WILL_MESSAGE, RC.UNSPECIFIED_ERROR,
        RC.MALFORMED_PACKET, RC.PROTOCOL_ERROR, RC.IMPLEMENTATION_SPECIFIC_ERROR,
        RC.NOT_AUTHORIZED, RC.SERVER_BUSY, RC.SERVER_SHUTTING_DOWN, RC.KEEP_ALIVE_TIMEOUT,
        RC.SESSION_TAKEN_OVER, RC.TOPIC_FILTER_INVALID, RC.TOPIC_NAME_INVALID,
        RC.RECEIVE_MAXIMUM_EXCEEDED, RC.TOPIC_ALIAS_INVALID, RC.PACKET_TOO_LARGE,
        RC.MESSAGE_RATE_TOO_HIGH, RC.QUOTA_EXCEEDED, RC.ADMINISTRATIVE_ACTION,
        RC.PAYLOAD_FORMAT_INVALID, RC.RETAIN_NOT_SUPPORTED, RC.QOS_NOT_SUPPORTED,
        RC.USE_ANOTHER_SERVER, RC.SERVER_MOVED, RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
        RC.CONNECTION_RATE_EXCEEDED, RC.MAXIMUM_CONNECT_TIME,
        RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    ],
    PacketType.AUTH: [RC.SUCCESS, RC.CONTINUE_AUTHENTICATION, RC.RE_AUTHENTICATE],
}  # fmt: skip
V5_REASONS[PacketType.PUBREC] = V5_REASONS[PacketType.PUBACK]
V5_REASONS[PacketType.PUBCOMP] = V5_REASONS[PacketType.PUBREL]

# 3.1.1 CONNACK return codes 0-5 (3.2.2.3), as the MQTT 5 codes they decode to.
V3_CONNACK_REASONS = [
    RC.SUCCESS, RC.UNSUPPORTED_PROTOCOL_VERSION, RC.CLIENT_IDENTIFIER_NOT_VALID,
    RC.SERVER_UNAVAILABLE, RC.BAD_USER_NAME_OR_PASSWORD, RC.NOT_AUTHORIZED,
]  # fmt: skip
# 3.1.1 SUBACK return codes: granted QoS 0-2 or 0x80 Failure [MQTT-3.9.3-2].
V3_SUBACK_REASONS = [RC.GRANTED_QOS_0, RC.GRANTED_QOS_1, RC.GRANTED_QOS_2, RC.UNSPECIFIED_ERROR]


def reasons(version: int, packet_type: int) -> st.SearchStrategy[ReasonCode]:
    if version == 5:
        return st.sampled_from(V5_REASONS[packet_type])
    if packet_type == PacketType.CONNACK:
        return st.sampled_from(V3_CONNACK_REASONS)
    if packet_type == PacketType.SUBACK:
        return st.sampled_from(V3_SUBACK_REASONS)
    return st.just(RC.SUCCESS)  # acks and DISCONNECT carry no reason code below MQTT 5


# ---------------------------------------------------------------------------------------------
# Packet strategies, one per type


@st.composite
def wills(draw: st.DrawFn, version: int) -> Will:
    return Will(
        topic=draw(topic_names),
        payload=draw(binary),
        qos=draw(qos),
        retain=draw(st.booleans()),
        properties=draw(props_for(version, WILL)),
    )


@st.composite
def connects(draw: st.DrawFn, version: int) -> Connect:
    clean = draw(st.booleans())
    if version == 3:
        client_id = draw(st.text(alphabet=CHARS, min_size=1, max_size=23))  # 3.1: 1-23 chars
    elif version == 4 and not clean:
        client_id = draw(nonempty_text)  # [MQTT-3.1.3-8]: empty id needs clean session
    else:
        client_id = draw(text)
    username = draw(st.none() | text)
    # [MQTT-3.1.2-22]: no password without a user name before MQTT 5.
    password = None if version < 5 and username is None else draw(st.none() | binary)
    return Connect(
        client_id=client_id,
        protocol_level=version,
        clean_start=clean,
        keepalive=draw(u16),
        username=username,
        password=password,
        will=draw(st.none() | wills(version)),
        properties=draw(props_for(version, PacketType.CONNECT)),
    )


@st.composite
def connacks(draw: st.DrawFn, version: int) -> ConnAck:
    reason = draw(reasons(version, PacketType.CONNACK))
    # [MQTT-3.2.2-4] / [MQTT-3.2.2-6]: session present is 0 with a failure code; MQTT 3.1 has no
    # session present flag at all (the byte is reserved).
    present = draw(st.booleans()) if reason == RC.SUCCESS and version >= 4 else False
    return ConnAck(present, reason, draw(props_for(version, PacketType.CONNACK)))


@st.composite
def publishes(draw: st.DrawFn, version: int) -> Publish:
    level = draw(qos)
    props = draw(props_for(version, PacketType.PUBLISH))
    topic = draw(topic_names)
    if props.topic_alias is not None and draw(st.booleans()):
        topic = ""  # MQTT 5: an empty topic name with a topic alias [MQTT-3.3.2-8]
    return Publish(
        topic=topic,
        payload=draw(payloads),
        qos=level,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if level else False,  # [MQTT-3.3.1-2]
        packet_id=draw(packet_ids) if level else 0,
        properties=props,
    )


def acks(
    cls: Callable[[int, ReasonCode, Properties], Packet], packet_type: int, version: int
) -> st.SearchStrategy[Packet]:
    return st.builds(
        cls, packet_ids, reasons(version, packet_type), props_for(version, packet_type)
    )


@st.composite
def subscriptions(draw: st.DrawFn, version: int) -> Subscription:
    if version < 5:
        return Subscription(draw(topic_filters), draw(qos))  # options bits are 5.0 only
    return Subscription(
        draw(topic_filters),
        draw(qos),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.integers(0, 2)),
    )


def subscribes(version: int) -> st.SearchStrategy[Subscribe]:
    return st.builds(
        Subscribe,
        packet_ids,
        st.lists(subscriptions(version), min_size=1, max_size=5),  # [MQTT-3.8.3-3]
        props_for(version, PacketType.SUBSCRIBE),
    )


def subacks(version: int) -> st.SearchStrategy[SubAck]:
    return st.builds(
        SubAck,
        packet_ids,
        st.lists(reasons(version, PacketType.SUBACK), min_size=1, max_size=5),
        props_for(version, PacketType.SUBACK),
    )


def unsubscribes(version: int) -> st.SearchStrategy[Unsubscribe]:
    return st.builds(
        Unsubscribe,
        packet_ids,
        st.lists(topic_filters, min_size=1, max_size=5),  # [MQTT-3.10.3-2]
        props_for(version, PacketType.UNSUBSCRIBE),
    )


def unsubacks(version: int) -> st.SearchStrategy[UnsubAck]:
    if version < 5:
        return st.builds(UnsubAck, packet_ids)  # 3.x UNSUBACK has no payload
    return st.builds(
        UnsubAck,
        packet_ids,
        st.lists(reasons(version, PacketType.UNSUBACK), min_size=1, max_size=5),
        props_for(version, PacketType.UNSUBACK),
    )


def disconnects(version: int) -> st.SearchStrategy[Disconnect]:
    if version < 5:
        return st.just(Disconnect())
    return st.builds(
        Disconnect,
        reasons(version, PacketType.DISCONNECT),
        props_for(version, PacketType.DISCONNECT),
    )


def auths() -> st.SearchStrategy[Auth]:
    return st.builds(Auth, reasons(5, PacketType.AUTH), props_for(5, PacketType.AUTH))


def packet_strategies(version: int) -> dict[str, st.SearchStrategy[Any]]:
    """One strategy per packet type valid at ``version`` (no AUTH below 5)."""
    out: dict[str, st.SearchStrategy[Any]] = {
        "CONNECT": connects(version),
        "CONNACK": connacks(version),
        "PUBLISH": publishes(version),
        "PUBACK": acks(PubAck, PacketType.PUBACK, version),
        "PUBREC": acks(PubRec, PacketType.PUBREC, version),
        "PUBREL": acks(PubRel, PacketType.PUBREL, version),
        "PUBCOMP": acks(PubComp, PacketType.PUBCOMP, version),
        "SUBSCRIBE": subscribes(version),
        "SUBACK": subacks(version),
        "UNSUBSCRIBE": unsubscribes(version),
        "UNSUBACK": unsubacks(version),
        "PINGREQ": st.just(PingReq()),
        "PINGRESP": st.just(PingResp()),
        "DISCONNECT": disconnects(version),
    }
    if version == 5:
        out["AUTH"] = auths()
    return out


def packets(version: int) -> st.SearchStrategy[Packet]:
    """Any valid packet for ``version``."""
    return st.one_of(*packet_strategies(version).values())


CASES = [(v, name) for v in VERSIONS for name in packet_strategies(v)]

# ---------------------------------------------------------------------------------------------
# Round-trips


@pytest.mark.parametrize(("version", "name"), CASES, ids=[f"v{v}-{n}" for v, n in CASES])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip(version: int, name: str, data: st.DataObject) -> None:
    packet = data.draw(packet_strategies(version)[name], label="packet")
    wire = encode(packet, version)
    assert decode_packet(wire, version) == packet
    # Encoding is deterministic and a decoded packet encodes back to the same bytes.
    assert encode(decode_packet(wire, version), version) == wire


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_connect_roundtrip_on_a_fresh_server_stream(version: int, data: st.DataObject) -> None:
    # A server's decoder learns the level from CONNECT (version=None).
    connect = data.draw(connects(version))
    decoder = StreamDecoder()
    assert decoder.feed(encode(connect, version)) == [connect]
    assert decoder.error is None
    assert decoder.version == version


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("remaining", [4, 127, 128, 16_383, 16_384, 2_097_151])
def test_remaining_length_boundaries(version: int, remaining: int) -> None:
    # Remaining lengths at the edges of the 1-, 2- and 3-byte encodings (1.5.5).
    overhead = 3 + (1 if version == 5 else 0)  # topic "t" + property length
    publish = Publish("t", b"x" * (remaining - overhead))
    wire = encode(publish, version)
    assert len(wire) == 1 + len(encode_varint(remaining)) + remaining
    decoded = decode_packet(wire, version)
    assert decoded == publish
    assert isinstance(decoded, Publish)
    assert isinstance(decoded.payload, memoryview)  # zero-copy by design


@pytest.mark.parametrize("version", VERSIONS)
def test_large_publish_needs_a_four_byte_remaining_length(version: int) -> None:
    publish = Publish("big", b"\xab" * 2_097_152)  # remaining length > 2**21 - 1
    wire = encode(publish, version)
    n = 2 + 3 + (1 if version == 5 else 0) + 2**21  # topic + property length + payload
    assert wire[1:5] == bytes([0x80 | n & 0x7F, 0x80 | (n >> 7) & 0x7F, 0x80 | (n >> 14) & 0x7F,
                               n >> 21])  # fmt: skip
    assert decode_packet(wire, version) == publish


def test_user_properties_keep_order_and_repeats() -> None:
    pairs = (("k", "1"), ("a", "x"), ("k", "1"), ("k", "2"), ("", ""))
    publish = Publish("t", b"", properties=Properties(user_properties=pairs))
    decoded = decode_packet(encode(publish, 5), 5)
    assert isinstance(decoded, Publish)
    assert decoded.properties.user_properties == pairs


# ---------------------------------------------------------------------------------------------
# Streams: any chunking gives the same packets as one feed


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def feed_chunks(decoder: StreamDecoder, chunks: list[bytes]) -> list[Packet]:
    out: list[Packet] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
        assert decoder.error is None
    return out


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stream_chunking(version: int, data: st.DataObject) -> None:
    stream = data.draw(st.lists(packets(version), min_size=1, max_size=8), label="packets")
    wire = b"".join(encode(p, version) for p in stream)

    whole = StreamDecoder(version=version)
    assert whole.feed(wire) == stream
    assert whole.error is None
    assert whole.buffered == 0

    chunks = data.draw(chunkings(wire), label="chunks")
    chunked = StreamDecoder(version=version)
    assert feed_chunks(chunked, chunks) == stream
    assert chunked.buffered == 0


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stream_byte_at_a_time(version: int, data: st.DataObject) -> None:
    stream = data.draw(st.lists(packets(version), min_size=1, max_size=4), label="packets")
    wire = b"".join(encode(p, version) for p in stream)
    decoder = StreamDecoder(version=version)
    assert feed_chunks(decoder, [wire[i : i + 1] for i in range(len(wire))]) == stream
    assert decoder.buffered == 0


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_server_stream_starting_with_connect(version: int, data: st.DataObject) -> None:
    stream = [
        data.draw(connects(version)),
        *data.draw(st.lists(packets(version), max_size=5)),
    ]
    wire = b"".join(encode(p, version) for p in stream)
    decoder = StreamDecoder()
    assert feed_chunks(decoder, data.draw(chunkings(wire))) == stream
    assert decoder.version == version


# ---------------------------------------------------------------------------------------------
# PublishTemplate: encode once, specialise per receiver

# Per-receiver properties are supplied by for_receiver, never by the shared template.
_PER_RECEIVER = frozenset({"topic_alias", "subscription_identifiers"})


@st.composite
def receivers(draw: st.DrawFn) -> dict[str, Any]:
    version = draw(st.sampled_from(VERSIONS))
    level = draw(qos)
    params: dict[str, Any] = {
        "version": version,
        "qos": level,
        "packet_id": draw(packet_ids) if level else draw(st.sampled_from([0, 7])),
        "retain": draw(st.booleans()),
        "dup": draw(st.booleans()) if level else False,
    }
    if draw(st.booleans()):
        params["subscription_identifiers"] = tuple(draw(st.lists(sub_ids, max_size=3)))
    if draw(st.booleans()):
        params["topic_alias"] = draw(st.integers(1, 0xFFFF))
    if draw(st.booleans()):
        params["topic_alias_only"] = draw(st.booleans())
    return params


def expected_delivery(template_publish: Publish, r: dict[str, Any]) -> Publish:
    version = r["version"]
    props = NO_PROPERTIES
    topic = template_publish.topic
    if version == 5:
        alias = r.get("topic_alias")
        props = template_publish.properties.replace(
            subscription_identifiers=r.get("subscription_identifiers", ()), topic_alias=alias
        )
        if not props:
            props = NO_PROPERTIES
        if alias is not None and r.get("topic_alias_only"):
            topic = ""
    return Publish(
        topic=topic,
        payload=template_publish.payload,
        qos=r["qos"],
        retain=r["retain"],
        dup=r["dup"],
        packet_id=r["packet_id"] if r["qos"] else 0,
        properties=props,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=topic_names,
    payload=payloads,
    props=properties(PacketType.PUBLISH, exclude=_PER_RECEIVER),
    receivers=st.lists(receivers(), min_size=1, max_size=8),
)
@example(topic="t", payload=b"p", props=NO_PROPERTIES, receivers=[
    {"version": 5, "qos": 1, "packet_id": 1, "retain": False, "dup": False},
    {"version": 5, "qos": 1, "packet_id": 65535, "retain": False, "dup": False},
    {"version": 4, "qos": 0, "packet_id": 9, "retain": True, "dup": False},
    {"version": 4, "qos": 0, "packet_id": 0, "retain": True, "dup": False},
])  # fmt: skip
def test_publish_template(
    topic: str, payload: bytes, props: Properties, receivers: list[dict[str, Any]]
) -> None:
    source = Publish(topic, payload, properties=props)
    template = PublishTemplate.from_publish(source)
    for r in receivers:  # several receivers share one template and its cache
        wire = template.for_receiver(**r)
        assert decode_packet(bytes(wire), r["version"]) == expected_delivery(source, r)


@settings(max_examples=100, deadline=None)
@given(publish=publishes(5), r=receivers())
def test_publish_template_from_a_decoded_publish(publish: Publish, r: dict[str, Any]) -> None:
    # A broker builds the template from what it received: a memoryview payload.
    publish.properties = publish.properties.replace(subscription_identifiers=(), topic_alias=None)
    if not publish.topic:
        publish.topic = "t"
    received = decode_packet(encode(publish, 5), 5)
    assert isinstance(received, Publish)
    assert isinstance(received.payload, memoryview)
    template = PublishTemplate.from_publish(received)
    wire = template.for_receiver(**r)
    assert decode_packet(bytes(wire), r["version"]) == expected_delivery(publish, r)

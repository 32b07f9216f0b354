"""Fuzzing the stream decoder (the h11 invariants).

Whatever bytes arrive, ``StreamDecoder.feed`` either returns packets or records a
``RemoteProtocolError`` in ``decoder.error``; nothing else ever escapes. The result does not
depend on how the stream is chunked, and an oversized packet is refused from its fixed header.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
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
    encode,
)
from wrenmq.codec.primitives import encode_varint
from wrenmq.errors import RemoteProtocolError

VERSIONS: tuple[int | None, ...] = (None, 3, 4, 5)
FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PACKET_CLASSES = (
    Connect, ConnAck, Publish, PubAck, PubRec, PubRel, PubComp, Subscribe, SubAck, Unsubscribe,
    UnsubAck, PingReq, PingResp, Disconnect, Auth,
)  # fmt: skip
# The reason codes a decoder may report: what the spec tells a receiver to answer with.
DECODER_REASONS = {
    ReasonCode.MALFORMED_PACKET,
    ReasonCode.PROTOCOL_ERROR,
    ReasonCode.PACKET_TOO_LARGE,
    ReasonCode.TOPIC_NAME_INVALID,
    ReasonCode.TOPIC_ALIAS_INVALID,
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
}

# ---------------------------------------------------------------------------------------------
# Seed corpus: valid packets of every type, with every property a packet type may carry

_PUB_PROPS = Properties(
    payload_format_indicator=1,
    message_expiry_interval=3600,
    content_type="text/plain",
    response_topic="reply/to",
    correlation_data=b"\x00\x01",
    subscription_identifiers=(1, 268_435_455),
    topic_alias=7,
    user_properties=(("k", "v"), ("k", "v"), ("ü", "")),
)
_WILL_PROPS = Properties(
    payload_format_indicator=0,
    message_expiry_interval=10,
    content_type="ct",
    response_topic="r",
    correlation_data=b"c",
    will_delay_interval=5,
    user_properties=(("a", "b"),),
)
_CONNECT_PROPS = Properties(
    session_expiry_interval=0xFFFF_FFFF,
    authentication_method="SCRAM-SHA-1",
    authentication_data=b"data",
    request_problem_information=0,
    request_response_information=1,
    receive_maximum=20,
    topic_alias_maximum=10,
    maximum_packet_size=1024,
    user_properties=(("x", "y"),),
)
_CONNACK_PROPS = Properties(
    session_expiry_interval=60,
    assigned_client_identifier="auto-1",
    server_keep_alive=30,
    authentication_method="m",
    authentication_data=b"d",
    response_information="resp",
    server_reference="other:1883",
    reason_string="fine",
    receive_maximum=100,
    topic_alias_maximum=5,
    maximum_qos=1,
    retain_available=0,
    maximum_packet_size=65536,
    wildcard_subscription_available=1,
    subscription_identifier_available=1,
    shared_subscription_available=0,
    user_properties=(("s", "t"),),
)
_REASON_PROPS = Properties(reason_string="why", user_properties=(("k", "v"),))


def _seeds(version: int) -> list[Packet]:
    v5 = version == 5

    def p(props: Properties) -> Properties:
        return props if v5 else NO_PROPERTIES

    seeds: list[Packet] = [
        Connect("client-1", version, True, 60, "user", b"pass",
                Will("will/t", b"bye", 1, True, p(_WILL_PROPS)), p(_CONNECT_PROPS)),
        Connect("c", version, False, 0),
        ConnAck(version >= 4, ReasonCode.SUCCESS, p(_CONNACK_PROPS)),  # 3.1: no session present
        ConnAck(False, ReasonCode.NOT_AUTHORIZED),
        Publish("a/b", b"payload", 0, True),
        Publish("a/b/c", b"x" * 200, 1, False, True, 1),
        Publish("" if v5 else "t", b"", 2, False, False, 65535, p(_PUB_PROPS)),
        PubAck(1), PubRec(2), PubRel(3), PubComp(4),
        Subscribe(5, [Subscription("a/+", 1), Subscription("#", 2)],
                  p(Properties(subscription_identifiers=(9,)))),
        SubAck(5, [ReasonCode.GRANTED_QOS_1, ReasonCode.UNSPECIFIED_ERROR]),
        Unsubscribe(6, ["a/+", "#"]),
        UnsubAck(6),
        PingReq(), PingResp(), Disconnect(),
    ]  # fmt: skip
    if v5:
        seeds += [
            PubAck(7, ReasonCode.NO_MATCHING_SUBSCRIBERS, _REASON_PROPS),
            PubRec(8, ReasonCode.QUOTA_EXCEEDED),
            PubRel(9, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, _REASON_PROPS),
            Subscribe(10, [Subscription("s/#", 2, True, True, 2)], _REASON_PROPS.replace(
                reason_string=None)),
            SubAck(10, [ReasonCode.GRANTED_QOS_2], _REASON_PROPS),
            UnsubAck(11, [ReasonCode.NO_SUBSCRIPTION_EXISTED], _REASON_PROPS),
            Disconnect(ReasonCode.SERVER_MOVED, Properties(
                session_expiry_interval=1, server_reference="x", reason_string="y")),
            Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE),
            Auth(ReasonCode.CONTINUE_AUTHENTICATION, Properties(
                authentication_method="m", authentication_data=b"d", reason_string="r")),
            Auth(),
        ]  # fmt: skip
    return seeds


SEEDS: dict[int, list[bytes]] = {v: [encode(p, v) for p in _seeds(v)] for v in (3, 4, 5)}

# ---------------------------------------------------------------------------------------------
# Strategies


def seed_streams(version: int | None) -> st.SearchStrategy[bytes]:
    """Valid streams for ``version``; a server stream (None) starts with a CONNECT."""
    if version is None:
        return st.sampled_from((3, 4, 5)).flatmap(
            lambda v: st.lists(st.sampled_from(SEEDS[v][2:]), max_size=4).map(
                lambda rest: b"".join([SEEDS[v][0], *rest])
            )
        )
    return st.lists(st.sampled_from(SEEDS[version]), min_size=1, max_size=5).map(b"".join)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, overwritten, inserted or deleted."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete")))
        if op == "insert":
            buf.insert(draw(st.integers(0, len(buf))), draw(st.integers(0, 255)))
        elif buf:
            i = draw(st.integers(0, len(buf) - 1))
            if op == "flip":
                buf[i] ^= 1 << draw(st.integers(0, 7))
            elif op == "set":
                buf[i] = draw(st.integers(0, 255))
            else:
                del buf[i]
    return bytes(buf)


# Fixed header bytes of every packet type with legal flags, plus a few illegal ones.
_FIRST_BYTES = [0x10, 0x20, *range(0x30, 0x40), 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0,
                0xC0, 0xD0, 0xE0, 0xF0, 0x00, 0x60, 0x80, 0xA0, 0xF1]  # fmt: skip


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """Packets with a plausible fixed header and a correct remaining length over random bodies."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        body = draw(st.binary(max_size=60))
        parts.append(bytes([draw(st.sampled_from(_FIRST_BYTES))]) + encode_varint(len(body)) + body)
    return b"".join(parts)


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def any_stream(version: int | None) -> st.SearchStrategy[bytes]:
    """Garbage, framed garbage and mutated valid streams, alone or after valid packets."""
    garbage = st.one_of(
        st.binary(max_size=200),
        framed_garbage(),
        seed_streams(version).flatmap(mutated),
    )
    return st.one_of(garbage, st.tuples(seed_streams(version), garbage).map(b"".join))


# ---------------------------------------------------------------------------------------------
# The invariant


def run(version: int | None, chunks: list[bytes], **kwargs: Any) -> tuple[list[Packet], Any, int]:
    """Feed ``chunks``; check that only RemoteProtocolError ever comes out; return the outcome."""
    decoder = StreamDecoder(version=version, **kwargs)
    out: list[Packet] = []
    for chunk in chunks:
        if decoder.error is not None:
            break
        out.extend(decoder.feed(chunk))  # any exception escaping here fails the test
    assert all(isinstance(p, PACKET_CLASSES) for p in out)
    error = decoder.error
    if error is None:
        return out, None, decoder.buffered
    assert type(error) is RemoteProtocolError
    assert isinstance(error.reason_code, ReasonCode)
    assert error.reason_code in DECODER_REASONS, error
    with pytest.raises(RemoteProtocolError) as raised:
        decoder.feed(b"\xc0\x00")  # a stopped decoder keeps refusing, with the same error
    assert raised.value is error
    return out, error.reason_code, decoder.buffered


# ---------------------------------------------------------------------------------------------
# (a) random bytes, (b) mutated valid packets


@pytest.mark.parametrize("version", VERSIONS)
@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(version: int | None, data: bytes) -> None:
    run(version, [data])


@pytest.mark.parametrize("version", VERSIONS)
@FUZZ
@given(data=framed_garbage())
def test_framed_random_bodies(version: int | None, data: bytes) -> None:
    run(version, [data])


@pytest.mark.parametrize("version", VERSIONS)
@FUZZ
@given(data=seed_streams(None).flatmap(mutated) | st.sampled_from((3, 4, 5)).flatmap(
    lambda v: seed_streams(v).flatmap(mutated)))  # fmt: skip
def test_mutated_valid_packets(version: int | None, data: bytes) -> None:
    run(version, [data])


@pytest.mark.parametrize("version", (3, 4, 5))
def test_seed_corpus_is_valid(version: int) -> None:
    packets, error, buffered = run(version, [b"".join(SEEDS[version])])
    assert (error, buffered) == (None, 0)
    assert packets == _seeds(version)


# ---------------------------------------------------------------------------------------------
# (c) chunking never changes the outcome


@pytest.mark.parametrize("version", VERSIONS)
@FUZZ
@given(data=st.data())
def test_chunking_does_not_matter(version: int | None, data: st.DataObject) -> None:
    stream = data.draw(any_stream(version), label="stream")
    whole = run(version, [stream])
    bytewise = run(version, [stream[i : i + 1] for i in range(len(stream))])
    chunked = run(version, data.draw(chunkings(stream), label="chunks"))
    # Same packets, same error reason code (or none), same leftover partial packet.
    assert bytewise == whole
    assert chunked == whole


# ---------------------------------------------------------------------------------------------
# (d) max_packet_size


def _header_length(wire: bytes) -> int:
    """Bytes of the fixed header: the type byte and the remaining length."""
    n = 2
    while wire[n - 1] & 0x80:
        n += 1
    return n


@pytest.mark.parametrize("version", (3, 4, 5))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_oversized_packet_is_refused_from_its_fixed_header(
    version: int, data: st.DataObject
) -> None:
    wire = data.draw(st.sampled_from(SEEDS[version]), label="packet")
    limit = data.draw(st.integers(1, len(wire) - 1), label="limit")
    header = _header_length(wire)
    small = [p for p in SEEDS[version] if len(p) <= limit]
    prefix = b"".join(data.draw(st.lists(st.sampled_from(small), max_size=2))) if small else b""
    before, error, _ = run(version, [prefix], max_packet_size=limit)
    assert error is None

    # Byte by byte: no error, and at most a partial fixed header kept, until the header is read.
    decoder = StreamDecoder(version=version, max_packet_size=limit)
    assert decoder.feed(prefix) == before
    for i in range(header - 1):
        assert decoder.feed(wire[i : i + 1]) == []
        assert decoder.error is None
        assert decoder.buffered == i + 1
    assert decoder.feed(wire[header - 1 : header]) == []
    assert decoder.error is not None
    assert decoder.error.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert decoder.buffered == 0

    # In one chunk with part of the body or all of it: the packets before it, then the error.
    cut = data.draw(st.integers(header, len(wire)), label="cut")
    out, code, buffered = run(version, [prefix + wire[:cut]], max_packet_size=limit)
    assert (out, code, buffered) == (before, ReasonCode.PACKET_TOO_LARGE, 0)


@pytest.mark.parametrize("version", (3, 4, 5))
def test_packet_at_the_limit_is_accepted(version: int) -> None:
    for wire in SEEDS[version]:
        packets, error, buffered = run(version, [wire], max_packet_size=len(wire))
        assert (len(packets), error, buffered) == (1, None, 0)
        packets, error, buffered = run(version, [wire], max_packet_size=len(wire) - 1)
        assert (packets, error, buffered) == ([], ReasonCode.PACKET_TOO_LARGE, 0)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=300, deadline=None)
@given(
    first=st.sampled_from(_FIRST_BYTES),
    length=st.integers(0, 268_435_455),
    limit=st.integers(2, 1 << 20),
    junk=st.binary(max_size=20),
)
def test_declared_length_alone_decides(
    version: int | None, first: int, length: int, limit: int, junk: bytes
) -> None:
    # Only the header is needed: no body is ever sent for a packet declared too large.
    header = bytes([first]) + encode_varint(length)
    out, code, buffered = run(version, [header + junk[:length]], max_packet_size=limit)
    if len(header) + length > limit:
        assert (out, code, buffered) == ([], ReasonCode.PACKET_TOO_LARGE, 0)
    else:
        assert code != ReasonCode.PACKET_TOO_LARGE

"""Codec throughput: wrenmq's sans-IO codec against paho-mqtt's packet parsing and building.

Run from the repository root::

    .venv/bin/python benchmarks/codec.py [--quick]

Prints packets per second for each row, for wrenmq and (where paho-mqtt does the same work) for
paho-mqtt 2.x, with the ratio wrenmq / paho. Each number is the best of N timed runs
(``time.perf_counter``); the packet count of a run is calibrated from a pilot run so that one run
takes about 0.3 s (``--quick``: about 0.02 s and fewer repeats, for a smoke test). The cyclic
garbage collector is off while a run is timed, as ``timeit`` does. Before anything is timed, every
row checks that both sides produce the same bytes (encoding) or the same fields (decoding), so a
broken harness fails loudly instead of measuring nothing.

What each side runs:

* **decode PUBLISH** (64 B and 4 KiB payloads, QoS 0 and 1, MQTT 3.1.1 and 5.0): a stream of
  back-to-back PUBLISH packets with a 46-byte topic name.

  - wrenmq: one ``StreamDecoder`` per pass over the stream, fed in 64 KiB chunks as a socket would
    deliver them, so packets straddle chunk boundaries and the partial-packet path is exercised.
    Decoded payloads are ``memoryview`` slices (no copy): that is wrenmq's design, and part of what
    is measured.
  - paho (main table): paho's real receive path minus the message dispatch. ``Client._packet_read``
    reads from an in-memory socket whose ``recv`` is a bound ``io.BytesIO.read`` (a C method, so no
    Python frame is added per call; a real socket would add a syscall per call and paho makes 3-4
    of them per packet, so this favours paho). ``_packet_read`` does paho's framing (fixed header,
    remaining length, body accumulation), ``_packet_handle`` dispatches on the packet type, and
    ``_handle_publish`` is replaced on the instance by a two-line function that makes exactly the
    call paho makes, ``paho.mqtt._packet.decode_publish(command, body, protocol)``. What is cut is
    what paho does *after* parsing: building an ``MQTTMessage`` (which allocates a
    ``threading.Condition``), timestamps and topic matching for ``on_message``.
  - paho (second table), for the spread: the full client receive path (``_packet_read`` with the
    stock ``_handle_publish``; ``manual_ack`` on so no PUBACK is built, no ``on_message``, no
    logger), and ``decode_publish`` alone on bodies already cut out of the stream (no framing,
    which wrenmq's number includes): an upper bound on paho's parsing speed.

* **encode PUBLISH** (same variants): wrenmq builds a ``Publish`` per message and calls
  ``encode(publish, version)``; paho calls ``Client._send_publish(mid, topic_bytes, payload, qos,
  retain, dup)`` with ``_packet_queue`` replaced on the instance by a sink that keeps the last
  packet (the stock one also builds a dict, appends to a deque and tries to write to the socket).
  paho gets its topic already UTF-8 encoded (its ``publish()`` does that before this call); wrenmq
  encodes the ``str`` topic inside ``encode``. QoS 1 rows cycle packet ids 1..65535 on both sides.

* **fan-out PUBLISH** (``PublishTemplate.for_receiver``, QoS 1): wrenmq encodes the PUBLISH once
  per run and patches the packet id per receiver; paho has no encode-once API, so its column is the
  same ``_send_publish`` call per receiver as in the encode rows (measured once, shown twice).

* **CONNECT** (client id, will, user name and password; 3.1.1 and 5.0): wrenmq encodes a prebuilt
  ``Connect`` (the analogue of paho's preconfigured client) and decodes each CONNECT with a fresh
  ``StreamDecoder(version=None)``, as a broker does for a new connection. paho calls
  ``Client._send_connect(keepalive)``. paho is a client only and never parses CONNECT, so decoding
  has no paho column.

* **SUBSCRIBE** (three topic filters; 3.1.1 and 5.0): wrenmq builds a ``Subscribe`` per packet and
  encodes it, and decodes a back-to-back stream like the PUBLISH rows; paho calls
  ``Client._send_subscribe(0, topics)`` (which also draws the packet id from its locked counter).
  paho never parses SUBSCRIBE, so decoding has no paho column.

Limitations: MQTT 5 packets carry an empty property set on both sides (the property codecs are not
exercised); single-process, single-thread CPU time only, no sockets and no event loop; one machine,
so compare ratios rather than absolute numbers across machines. The harness loop (a Python ``for``
over a prebuilt list) is included in every number; it is the same shape on both sides except for
stream decoding, where paho's receive path is one call per packet (as in its ``loop_read``) and
wrenmq's is one ``feed`` per 64 KiB chunk, which is how each API is meant to be driven.

May import: the standard library, wrenmq (from ``src`` if it is not installed) and paho-mqtt (a test
extra; without it only the wrenmq column is printed).
"""

from __future__ import annotations

import argparse
import gc
import io
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

if find_spec("wrenmq") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wrenmq.codec import (
    Connect,
    Publish,
    PublishTemplate,
    StreamDecoder,
    Subscribe,
    Subscription,
    Will,
    encode,
)

try:
    import paho.mqtt.client as paho_client
    from paho.mqtt import _packet as paho_packet
    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError:  # paho-mqtt is only a test extra
    paho_client = None

Run = Callable[[], None]
Maker = Callable[[int], tuple[Run, int]]  # make(n) -> (run, packets one run processes)

TOPIC = "sensors/building-7/floor-3/room-12/temperature"
PAYLOADS = {"64 B": bytes(range(64)), "4 KiB": bytes(i % 251 for i in range(4096))}
VERSIONS = {4: "3.1.1", 5: "5.0"}
CHUNK = 64 * 1024  # bytes per feed() call, as a socket read would deliver them
STREAM_CAP = 16 * 1024 * 1024  # longest prebuilt stream; longer runs make several passes
CLIENT_ID = "bench-client-0001"
USERNAME = "bench-user"
PASSWORD = b"bench-secret"
WILL_TOPIC = f"clients/{CLIENT_ID}/status"
WILL_PAYLOAD = b"offline"
KEEPALIVE = 60
FILTERS = [("sensors/+/floor-3/#", 1), ("alerts/building-7/#", 2), ("$SYS/broker/load/#", 0)]


def _stream_shape(n: int, packet_len: int) -> tuple[int, int]:
    """Packets in the prebuilt stream and passes over it, so that passes * packets >= n."""
    per_stream = max(1, min(n, STREAM_CAP // packet_len))
    return per_stream, -(-n // per_stream)


def _chunks(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def _packet_ids(n: int, qos: int) -> list[int]:
    return [(i % 65535) + 1 for i in range(n)] if qos else [0] * n


# --- wrenmq -------------------------------------------------------------------------------------


def wren_decode_stream(packet: bytes, version: int) -> Maker:
    def make(n: int) -> tuple[Run, int]:
        per_stream, passes = _stream_shape(n, len(packet))
        chunks = _chunks(packet * per_stream)

        def run() -> None:
            for _ in range(passes):
                decoder = StreamDecoder(version=version)
                for chunk in chunks:
                    decoder.feed(chunk)
                if decoder.error is not None or decoder.buffered:
                    raise RuntimeError(f"wrenmq decoder stopped: {decoder.error!r}")

        return run, per_stream * passes

    return make


def wren_decode_connect(packet: bytes) -> Maker:
    def make(n: int) -> tuple[Run, int]:
        def run() -> None:
            for _ in range(n):
                StreamDecoder().feed(packet)

        return run, n

    return make


def wren_encode_publish(payload: bytes, qos: int, version: int) -> Maker:
    def make(n: int) -> tuple[Run, int]:
        pids = _packet_ids(n, qos)

        def run() -> None:
            for pid in pids:
                encode(Publish(TOPIC, payload, qos, False, False, pid), version)

        return run, n

    return make


def wren_template(payload: bytes, version: int) -> Maker:
    def make(n: int) -> tuple[Run, int]:
        pids = _packet_ids(n, 1)

        def run() -> None:
            template = PublishTemplate(TOPIC, payload)
            for pid in pids:
                template.for_receiver(version, 1, pid)

        return run, n

    return make


def wren_connect(version: int) -> Connect:
    return Connect(
        client_id=CLIENT_ID,
        protocol_level=version,
        clean_start=True,
        keepalive=KEEPALIVE,
        username=USERNAME,
        password=PASSWORD,
        will=Will(WILL_TOPIC, WILL_PAYLOAD, qos=1, retain=True),
    )


def wren_encode_connect(version: int) -> Maker:
    connect = wren_connect(version)

    def make(n: int) -> tuple[Run, int]:
        def run() -> None:
            for _ in range(n):
                encode(connect, version)

        return run, n

    return make


SUBSCRIPTIONS = [Subscription(f, q) for f, q in FILTERS]


def wren_encode_subscribe(version: int) -> Maker:
    def make(n: int) -> tuple[Run, int]:
        pids = _packet_ids(n, 1)

        def run() -> None:
            for pid in pids:
                encode(Subscribe(pid, SUBSCRIPTIONS), version)

        return run, n

    return make


# --- paho-mqtt ----------------------------------------------------------------------------------


class _MemorySocket:
    """Just enough of a socket for paho: ``recv`` is a C-level ``BytesIO.read``."""

    def __init__(self) -> None:
        self._io = io.BytesIO()
        self.recv = self._io.read
        self.sent: bytes | bytearray = b""

    def load(self, data: bytes) -> None:
        self._io = io.BytesIO(data)
        self.recv = self._io.read

    def drained(self) -> bool:
        return self._io.tell() == len(self._io.getbuffer())

    def queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: Any = None):
        """Stands in for ``Client._packet_queue``: keep the packet, send nothing."""
        self.sent = packet
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def close(self) -> None:  # paho's __del__ closes its socket
        pass


def paho_client_for(version: int, **kwargs: Any) -> tuple[Any, _MemorySocket]:
    protocol = MQTTProtocolVersion.MQTTv5 if version == 5 else MQTTProtocolVersion.MQTTv311
    client = paho_client.Client(CallbackAPIVersion.VERSION2, protocol=protocol, **kwargs)
    sock = _MemorySocket()
    client._sock = sock
    client._packet_queue = sock.queue
    return client, sock


def _parse_only(client: Any, on_decoded: Callable[[Any], None] | None = None) -> None:
    """Replace ``_handle_publish`` with the parse paho does first, and nothing after it."""
    decode_publish = paho_packet.decode_publish
    ok = MQTTErrorCode.MQTT_ERR_SUCCESS

    if on_decoded is None:

        def handle_publish() -> MQTTErrorCode:
            p = client._in_packet
            decode_publish(p["command"], p["packet"], client._protocol)
            return ok

    else:

        def handle_publish() -> MQTTErrorCode:
            p = client._in_packet
            on_decoded(decode_publish(p["command"], p["packet"], client._protocol))
            return ok

    client._handle_publish = handle_publish


def paho_decode_stream(packet: bytes, version: int, *, full_client: bool) -> Maker:
    def make(n: int) -> tuple[Run, int]:
        per_stream, passes = _stream_shape(n, len(packet))
        stream = packet * per_stream
        client, sock = paho_client_for(version, manual_ack=True)
        if not full_client:
            _parse_only(client)
        read = client._packet_read

        def run() -> None:
            for _ in range(passes):
                sock.load(stream)
                for _ in range(per_stream):
                    read()
                if not sock.drained() or client._in_packet["command"]:
                    raise RuntimeError("paho did not consume the stream packet by packet")

        return run, per_stream * passes

    return make


def paho_decode_bodies(packet: bytes, version: int) -> Maker:
    header_len = 2
    while packet[header_len - 1] & 0x80:  # continuation bit of the remaining length
        header_len += 1
    command = packet[0]
    body = packet[header_len:]
    protocol = MQTTProtocolVersion.MQTTv5 if version == 5 else MQTTProtocolVersion.MQTTv311

    def make(n: int) -> tuple[Run, int]:
        per_stream, passes = _stream_shape(n, len(packet))
        bodies = [bytearray(body) for _ in range(per_stream)]  # paho parses a bytearray
        decode_publish = paho_packet.decode_publish

        def run() -> None:
            for _ in range(passes):
                for b in bodies:
                    decode_publish(command, b, protocol)

        return run, per_stream * passes

    return make


def paho_encode_publish(payload: bytes, qos: int, version: int) -> Maker:
    topic = TOPIC.encode()

    def make(n: int) -> tuple[Run, int]:
        pids = _packet_ids(n, qos)
        client, _ = paho_client_for(version)
        send_publish = client._send_publish

        def run() -> None:
            for pid in pids:
                send_publish(pid, topic, payload, qos, False, False)

        return run, n

    return make


def paho_connect_client(version: int) -> tuple[Any, _MemorySocket]:
    client, sock = paho_client_for(version, client_id=CLIENT_ID)
    client.username_pw_set(USERNAME, PASSWORD.decode())
    client.will_set(WILL_TOPIC, WILL_PAYLOAD, qos=1, retain=True)
    return client, sock


def paho_encode_connect(version: int) -> Maker:
    def make(n: int) -> tuple[Run, int]:
        client, _ = paho_connect_client(version)
        send_connect = client._send_connect

        def run() -> None:
            for _ in range(n):
                send_connect(KEEPALIVE)

        return run, n

    return make


def paho_topics(version: int) -> list[tuple[bytes, Any]]:
    if version == 5:
        return [(f.encode(), SubscribeOptions(qos=q)) for f, q in FILTERS]
    return [(f.encode(), q) for f, q in FILTERS]


def paho_encode_subscribe(version: int) -> Maker:
    topics = paho_topics(version)

    def make(n: int) -> tuple[Run, int]:
        client, _ = paho_client_for(version)
        send_subscribe = client._send_subscribe

        def run() -> None:
            for _ in range(n):
                send_subscribe(0, topics)

        return run, n

    return make


# --- checks: both sides do the same work before anything is timed ------------------------------


def _fail(row: str, what: str) -> None:
    raise SystemExit(f"{row}: {what}; the benchmark harness is broken")


def check_publish(row: str, payload: bytes, qos: int, version: int) -> bytes:
    pid = 300 if qos else 0
    wire = encode(Publish(TOPIC, payload, qos, False, False, pid), version)
    template = PublishTemplate(TOPIC, payload).for_receiver(version, qos, pid)
    if bytes(template) != wire:
        _fail(row, "PublishTemplate and encode() disagree")
    decoded = StreamDecoder(version=version).feed(wire * 3)
    expected = (TOPIC, payload, qos, pid)
    if len(decoded) != 3 or any(
        (p.topic, bytes(p.payload), p.qos, p.packet_id) != expected for p in decoded
    ):
        _fail(row, "wrenmq does not decode its own PUBLISH")
    if paho_client is None:
        return wire
    client, sock = paho_client_for(version)
    client._send_publish(pid, TOPIC.encode(), payload, qos, False, False)
    if bytes(sock.sent) != wire:
        _fail(row, f"paho built {bytes(sock.sent)[:24]!r}..., wrenmq {wire[:24]!r}...")
    seen: list[Any] = []
    client, sock = paho_client_for(version, manual_ack=True)
    _parse_only(client, seen.append)
    sock.load(wire * 3)
    for _ in range(3):
        client._packet_read()
    if len(seen) != 3 or any(
        (r.topic.decode(), bytes(r.payload), r.qos, r.mid) != expected for r in seen
    ):
        _fail(row, "paho's parser did not see the packets wrenmq saw")
    messages: list[Any] = []
    client, sock = paho_client_for(version, manual_ack=True)
    client.on_message = lambda _client, _userdata, message: messages.append(message)
    sock.load(wire * 3)
    for _ in range(3):
        client._packet_read()
    if len(messages) != 3 or any(
        (m.topic, bytes(m.payload), m.qos, m.mid) != expected for m in messages
    ):
        _fail(row, "paho's client path did not deliver the packets wrenmq saw")
    return wire


def check_connect(row: str, version: int) -> bytes:
    wire = encode(wren_connect(version), version)
    if StreamDecoder().feed(wire) != [wren_connect(version)]:
        _fail(row, "wrenmq does not decode its own CONNECT")
    if paho_client is not None:
        client, sock = paho_connect_client(version)
        client._send_connect(KEEPALIVE)
        if bytes(sock.sent) != wire:
            _fail(row, f"paho built {bytes(sock.sent)!r}, wrenmq {wire!r}")
    return wire


def check_subscribe(row: str, version: int) -> bytes:
    wire = encode(Subscribe(1, SUBSCRIPTIONS), version)
    if StreamDecoder(version=version).feed(wire) != [Subscribe(1, SUBSCRIPTIONS)]:
        _fail(row, "wrenmq does not decode its own SUBSCRIBE")
    if paho_client is not None:
        client, sock = paho_client_for(version)
        client._send_subscribe(0, paho_topics(version))  # paho's first packet id is 1
        if bytes(sock.sent) != wire:
            _fail(row, f"paho built {bytes(sock.sent)!r}, wrenmq {wire!r}")
    return wire


# --- timing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    target: float  # seconds one timed run should take
    repeat: int  # timed runs per measurement; the best one counts
    pilot: int  # packets in the calibration run


def _time_once(run: Run) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def measure(make: Maker, settings: Settings) -> float:
    """Packets per second: calibrate the count on a pilot run, then take the best of N runs."""
    run, count = make(settings.pilot)
    run()  # warm-up
    per_packet = _time_once(run) / count
    run, count = make(max(settings.pilot, int(settings.target / per_packet)))
    best = min(_time_once(run) for _ in range(settings.repeat))
    return count / best


@dataclass(slots=True)
class Row:
    name: str
    wren: Maker
    paho: Maker | None = None
    paho_key: str = ""  # rows with the same key share one paho measurement
    extra: tuple[Maker, Maker] | None = None  # paho full client path, decode_publish only


def build_rows() -> list[Row]:
    have_paho = paho_client is not None
    rows: list[Row] = []
    for size, payload in PAYLOADS.items():
        for qos in (0, 1):
            for version, vname in VERSIONS.items():
                name = f"decode PUBLISH {size:>5} q{qos} {vname}"
                wire = check_publish(name, payload, qos, version)
                rows.append(
                    Row(
                        name,
                        wren_decode_stream(wire, version),
                        paho_decode_stream(wire, version, full_client=False) if have_paho else None,
                        extra=(
                            paho_decode_stream(wire, version, full_client=True),
                            paho_decode_bodies(wire, version),
                        )
                        if have_paho
                        else None,
                    )
                )
    for size, payload in PAYLOADS.items():
        for qos in (0, 1):
            for version, vname in VERSIONS.items():
                rows.append(
                    Row(
                        f"encode PUBLISH {size:>5} q{qos} {vname}",
                        wren_encode_publish(payload, qos, version),
                        paho_encode_publish(payload, qos, version) if have_paho else None,
                        paho_key=f"publish {size} {qos} {version}",
                    )
                )
    for size, payload in PAYLOADS.items():
        for version, vname in VERSIONS.items():
            rows.append(
                Row(
                    f"fan-out PUBLISH {size:>5} q1 {vname} (template)",
                    wren_template(payload, version),
                    paho_encode_publish(payload, 1, version) if have_paho else None,
                    paho_key=f"publish {size} 1 {version}",
                )
            )
    for version, vname in VERSIONS.items():
        wire = check_connect(f"CONNECT {vname}", version)
        rows.append(Row(f"decode CONNECT {vname}", wren_decode_connect(wire)))
        rows.append(
            Row(
                f"encode CONNECT {vname}",
                wren_encode_connect(version),
                paho_encode_connect(version) if have_paho else None,
            )
        )
    for version, vname in VERSIONS.items():
        wire = check_subscribe(f"SUBSCRIBE {vname}", version)
        rows.append(Row(f"decode SUBSCRIBE {vname} (3 filters)", wren_decode_stream(wire, version)))
        rows.append(
            Row(
                f"encode SUBSCRIBE {vname} (3 filters)",
                wren_encode_subscribe(version),
                paho_encode_subscribe(version) if have_paho else None,
            )
        )
    return rows


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ratio(wren: float, paho: float | None) -> str:
    return "-" if paho is None else f"{wren / paho:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    args = parser.parse_args(argv)
    settings = Settings(0.02, 3, 200) if args.quick else Settings(0.3, 5, 2000)

    paho_version = metadata.version("paho-mqtt") if paho_client is not None else "not installed"
    print(
        f"wrenmq codec vs paho-mqtt {paho_version}; {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()} {platform.machine()}; "
        f"best of {settings.repeat} runs of ~{settings.target:g} s"
    )
    rows = build_rows()  # runs every equivalence check before anything is timed
    width = max(len(r.name) for r in rows)
    header = f"{'row':<{width}}  {'wrenmq pkt/s':>13}  {'paho pkt/s':>13}  {'wrenmq/paho':>11}"
    print()
    print(header)
    print("-" * len(header))
    shared: dict[str, float] = {}
    extras: list[tuple[str, float, float, float]] = []
    for row in rows:
        wren = measure(row.wren, settings)
        theirs: float | None = None
        if row.paho is not None:
            if row.paho_key and row.paho_key in shared:
                theirs = shared[row.paho_key]
            else:
                theirs = measure(row.paho, settings)
                if row.paho_key:
                    shared[row.paho_key] = theirs
        print(
            f"{row.name:<{width}}  {_rate(wren):>13}  {_rate(theirs):>13}  "
            f"{_ratio(wren, theirs):>11}"
        )
        sys.stdout.flush()
        if row.extra is not None:
            full, bodies = row.extra
            extras.append((row.name, wren, measure(full, settings), measure(bodies, settings)))

    if extras:
        print()
        print("PUBLISH decoding, paho measured two more ways (pkt/s; ratio = wrenmq / paho):")
        header = (
            f"{'row':<{width}}  {'full client path':>16}  {'ratio':>7}  "
            f"{'decode_publish only':>19}  {'ratio':>7}"
        )
        print(header)
        print("-" * len(header))
        for name, wren, full, bodies in extras:
            print(
                f"{name:<{width}}  {_rate(full):>16}  {_ratio(wren, full):>7}  "
                f"{_rate(bodies):>19}  {_ratio(wren, bodies):>7}"
            )
        print()
        print("paho main column: _packet_read framing + _packet.decode_publish, no dispatch.")
        print("'full client path' adds MQTTMessage and on_message dispatch; 'decode_publish only'")
        print("parses bodies already cut out of the stream (no framing). See the module docstring.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What persistence costs: QoS 1 throughput and offline queues, wrenmq (in memory, durability
none / periodic / ack) side by side with Mosquitto (``persistence true``), in one run.

Run from the repository root::

    .venv/bin/python benchmarks/persistence.py [--only memory,ack,mosquitto] [--repeat N]
                                               [--messages 50000] [--offline 50000,200000]

Columns (each a broker process of its own, started fresh for every measurement, on an empty data
directory, pinned to core 0 with the load on core 1, as in ``broker.py``):

* ``memory``: ``wrenmq broker --no-persistence``; nothing is written anywhere.
* ``none`` / ``periodic`` / ``ack``: ``wrenmq broker --data-dir DIR`` with ``durability`` set in
  the config (``flush_interval_ms`` 50, the default). ``ack`` (the default) sends PUBACK only once
  the delivery is committed (group commit, ``synchronous=FULL``).
* ``mosquitto``: ``persistence true``, ``persistence_location DIR/``, ``autosave_interval`` left at
  its default (1800 s): Mosquitto keeps everything in memory and writes a snapshot on autosave and
  at exit, so a crash loses what came since the last snapshot. It is the usual setup, and the
  reference for speed and memory, not for durability (compare it with ``periodic``/``none``).

Every broker gets ``sys_interval 0``, warnings-only logging and ``max_inflight_messages`` 20 (both
defaults); ``max_queued_messages`` is 1000 for the connected runs (as in ``broker.py``) and
unlimited for the offline ones (10,000,000 in wrenmq, 0 in Mosquitto).

Rows:

* **connected, clean-session subscriber**: ``mqttload pubsub -P 1 -S 1 -L shared -q 1 -W 100
  -s 64 -n 50000`` as is. mqttload connects with clean session 1, so nothing is persistent and
  wrenmq writes nothing to its store: this row shows what merely enabling persistence costs.
* **connected, persistent subscriber**: the same load from a copy of mqttload built with clean
  session 0 in its CONNECT (``.bench/mqttload-clean0``: the one flags byte of ``build_connect``
  patched at build time, since mqttload has no option for it; the shared source is not touched).
  Every delivery is now recorded in the store, and in ``ack`` mode the publisher's PUBACK waits
  for the commit that holds it, or for the subscriber's PUBACK if that comes first (then the
  delivery is never written). msg/s is mqttload's ``delivered_msgs_per_s``.
* **offline N**: a persistent subscriber (clean session 0, written here, raw socket) subscribes
  and disconnects; ``mqttload pubsub -P 1 -S 0 -q 1 -W 100 -s 64 -n N`` publishes N messages
  for it (``publish``: mqttload's ``sent_msgs_per_s``, every message acknowledged); the broker's
  RSS (VmRSS) is read before and after (``RSS +MiB``); then the subscriber comes back and
  ``drain`` is N / (time from its CONNECT to the last message), every message acknowledged,
  checked complete, without duplicates and in order. The draining client is Python, pinned to
  core 1; its own CPU share is shown as ``client-bound`` when above 90% (then it, not the broker,
  may be the limit).

Ratios: ``ack/mem`` (the issue's target: ack mode >= 50% of in-memory throughput) and
``ack/mosq``; for ``RSS`` rows the target is that memory does not grow with the offline queue:
compare the rows of the two queue sizes (``none`` and ``periodic`` sit a few MiB above ``ack``
whatever the size: they hold up to 10,000 uncommitted changes, or 50 ms of them, in memory).
Checks that fail mark a row ``FAIL`` (lost, duplicated, out-of-order or missing messages,
errors, timeouts, a broker that died). With ``--repeat N`` each cell is the median of N runs.
Broker logs and configs of the last run are in ``.bench/persist-<column>/``.

Limitations: loopback, one machine with two cores shared with the load generator, MQTT 3.1.1
QoS 1 only (mqttload), 64-byte payloads; one publisher, one subscriber; the disk is whatever
backs ``.bench/`` (fsync cost varies a lot between machines: read the ratios of one run).

May import: the standard library and ``broker.py`` next to it (building mqttload, starting and
probing brokers); the brokers run as separate processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import broker as common  # benchmarks/broker.py: mqttload build, broker processes, probing

BENCH_DIR = common.BENCH_DIR
LOAD_TIMEOUT_S = 60
CLIENT_BOUND = 0.9
CONNECTED_ARGS = common._split("pubsub -P 1 -S 1 -L shared -q 1 -W 100 -s 64")
OFFLINE_ARGS = common._split("pubsub -P 1 -S 0 -L shared -q 1 -W 100 -s 64")
TOPIC = "bench/all"  # mqttload's topic for -L shared with the default prefix
UNLIMITED_WRENMQ = 10_000_000
CLEAN0_DIR = BENCH_DIR / "mqttload-clean0"
_CONNECT_FLAGS = b"{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02}"  # protocol name, level 4, clean session


# --- the brokers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    durability: str | None  # wrenmq: None = --no-persistence; "mosquitto" for Mosquitto

    @property
    def mosquitto(self) -> bool:
        return self.durability == "mosquitto"


COLUMNS = (
    Column("memory", None),
    Column("none", "none"),
    Column("periodic", "periodic"),
    Column("ack", "ack"),
    Column("mosquitto", "mosquitto"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


def _configure(column: Column, max_queued: int) -> Callable[[int, Path], list[str]]:
    """The ``BrokerSpec.configure`` of a column: writes its config, empties its data dir."""

    def argv(port: int, workdir: Path) -> list[str]:
        data = workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        if column.mosquitto:
            conf = workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                f"max_queued_messages {0 if max_queued >= UNLIMITED_WRENMQ else max_queued}\n"
                "max_connections -1\nsys_interval 0\nlog_dest stderr\nlog_type error\n"
                f"log_type warning\npersistence true\npersistence_location {data}/\n"
            )
            return [common.MOSQUITTO, "-c", str(conf)]
        conf = workdir / "wrenmq.toml"
        lines = ["sys_interval = 0", 'log_level = "warning"', f"max_queued_messages = {max_queued}"]
        if column.durability is not None:
            lines.append(f'durability = "{column.durability}"')
        conf.write_text("\n".join(lines) + "\n")
        script = Path(sys.executable).parent / "wrenmq"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "wrenmq"]
        argv = [*command, "broker", "-c", str(conf), "-p", str(port), "--data-dir", str(data)]
        return [*argv, "--no-persistence"] if column.durability is None else argv

    return argv


def start_broker(column: Column, max_queued: int) -> common.BrokerProcess:
    spec = common.BrokerSpec(f"persist-{column.name}", _configure(column, max_queued))
    proc = common.BrokerProcess(spec)
    proc.start()
    return proc


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# --- mqttload with clean session 0 --------------------------------------------------------------
def build_clean0_mqttload(source_dir: Path) -> Path:
    """mqttload built with clean session 0 in its CONNECT, in ``.bench/mqttload-clean0``."""
    CLEAN0_DIR.mkdir(parents=True, exist_ok=True)
    source = (source_dir / "mqttload.c").read_bytes()
    if source.count(_CONNECT_FLAGS) != 1:
        raise SystemExit("persistence.py: mqttload.c changed: cannot find its CONNECT flags")
    patched = source.replace(_CONNECT_FLAGS, _CONNECT_FLAGS.replace(b"0x02", b"0x00"))
    for name, data in (
        ("mqttload.c", patched),
        ("Makefile", (source_dir / "Makefile").read_bytes()),
    ):
        dst = CLEAN0_DIR / name
        if not dst.exists() or dst.read_bytes() != data:
            dst.write_bytes(data)
    done = common._run(["make", "-s"], timeout=300, cwd=CLEAN0_DIR)
    binary = CLEAN0_DIR / "mqttload"
    if done.returncode != 0 or not binary.exists():
        raise SystemExit(f"persistence.py: building mqttload failed: {common._tail(done.stderr)}")
    return binary


# --- one measurement ----------------------------------------------------------------------------
@dataclass
class Outcome:
    metrics: dict[str, float] = field(default_factory=dict)
    fails: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def run_mqttload(mqttload: Path, args: list[str], proc: common.BrokerProcess) -> Outcome:
    argv = ["taskset", "-c", common.LOAD_CORE, str(mqttload), *args]
    argv += ["-p", str(proc.port), "-B", str(proc.pid), "-t", str(LOAD_TIMEOUT_S)]
    out = Outcome()
    try:
        done = common._run(argv, timeout=LOAD_TIMEOUT_S + 30)
    except Exception as exc:  # subprocess.TimeoutExpired and OSError alike: not a measurement
        out.fails.append(f"mqttload: {exc}")
        return out
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith('{"mode"')]
    if not lines:
        out.fails.append(f"mqttload exit {done.returncode}: {common._tail(done.stderr, 2)}")
        return out
    out.raw = json.loads(lines[-1])
    common._checks(out.raw, out)  # type: ignore[arg-type]  # same fields as broker.Outcome
    if not proc.alive():
        out.fails.append("BROKER DIED")
    return out


def connected(column: Column, mqttload: Path, messages: int) -> Outcome:
    proc = start_broker(column, 1000)
    try:
        out = run_mqttload(mqttload, [*CONNECTED_ARGS, "-n", str(messages)], proc)
        if "delivered_msgs_per_s" in out.raw:
            out.metrics["rate"] = out.raw["delivered_msgs_per_s"]
        return out
    finally:
        proc.stop()


# --- the offline subscriber (MQTT 3.1.1, clean session 0) ---------------------------------------
def _connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x00\x00\x3c" + struct.pack("!H", len(cid)) + cid
    return bytes((0x10, len(body))) + body


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


class OfflineSubscriber:
    """Subscribes with clean session 0 and leaves; later drains its queue as fast as it can."""

    def __init__(self, port: int, client_id: str = "bench-offline") -> None:
        self.port = port
        self.client_id = client_id

    def _open(self) -> tuple[socket.socket, bool]:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(_connect_packet(self.client_id))
        ack = _read_exact(sock, 4)
        if ack[:2] != b"\x20\x02" or ack[3] != 0:
            raise ConnectionError(f"CONNACK {ack.hex()}")
        return sock, bool(ack[2] & 1)

    def subscribe_and_leave(self) -> None:
        sock, _ = self._open()
        with sock:
            topic = TOPIC.encode()
            body = b"\x00\x01" + struct.pack("!H", len(topic)) + topic + b"\x01"
            sock.sendall(bytes((0x82, len(body))) + body)
            suback = _read_exact(sock, 5)
            if suback != b"\x90\x03\x00\x01\x01":
                raise ConnectionError(f"SUBACK {suback.hex()}")
            sock.sendall(b"\xe0\x00")

    def drain(self, expected: int, timeout: float) -> tuple[float, float, list[str]]:
        """Receive ``expected`` messages; (seconds, own CPU share, problems)."""
        affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {int(common.LOAD_CORE)})
        try:
            return self._drain(expected, timeout)
        finally:
            os.sched_setaffinity(0, affinity)

    def _drain(self, expected: int, timeout: float) -> tuple[float, float, list[str]]:
        cpu0 = time.process_time()
        t0 = time.monotonic()
        sock, present = self._open()
        problems = [] if present else ["session not present"]
        deadline = t0 + timeout
        seen = bytearray(expected)
        received = dups = ooo = 0
        next_seq = 0
        buf = b""
        last = t0
        with sock:
            sock.settimeout(1.0)
            while received < expected and time.monotonic() < deadline:
                try:
                    chunk = sock.recv(1 << 18)
                except TimeoutError:
                    continue
                if not chunk:
                    problems.append("the broker closed the connection")
                    break
                buf = buf + chunk if buf else chunk
                acks = []
                pos, end = 0, len(buf)
                while end - pos >= 2:
                    first = buf[pos]
                    length, shift, i = 0, 0, pos + 1
                    while i < end:
                        b = buf[i]
                        i += 1
                        length |= (b & 0x7F) << shift
                        shift += 7
                        if not b & 0x80:
                            break
                    else:
                        break
                    if i + length > end:
                        break
                    if first & 0xF0 == 0x30:
                        n = (buf[i] << 8) | buf[i + 1]
                        pid_at = i + 2 + n
                        acks.append(b"\x40\x02" + buf[pid_at : pid_at + 2])
                        (seq,) = struct.unpack_from("<I", buf, pid_at + 2 + 16)
                        if seq >= expected or seen[seq]:
                            dups += 1
                        else:
                            seen[seq] = 1
                            received += 1
                            ooo += seq < next_seq
                            next_seq = max(next_seq, seq + 1)
                    pos = i + length
                buf = buf[pos:]
                if acks:
                    sock.sendall(b"".join(acks))
                    last = time.monotonic()
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")
        elapsed = max(last - t0, 1e-9)
        cpu = (time.process_time() - cpu0) / elapsed
        if received < expected:
            problems.append(f"LOST {expected - received}")
        if dups:
            problems.append(f"DUP {dups}")
        if ooo:
            problems.append(f"OOO {ooo}")
        return elapsed, cpu, problems


def offline(column: Column, mqttload: Path, n: int) -> Outcome:
    proc = start_broker(column, UNLIMITED_WRENMQ)
    try:
        sub = OfflineSubscriber(proc.port)
        sub.subscribe_and_leave()
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        out = run_mqttload(mqttload, [*OFFLINE_ARGS, "-n", str(n)], proc)
        if out.raw.get("sent") != n:
            out.fails.append(f"sent {out.raw.get('sent')} of {n}")
        if out.fails:
            return out
        out.metrics["publish"] = out.raw["sent_msgs_per_s"]
        time.sleep(0.5)  # background commits and frees settle
        out.metrics["rss"] = (rss_kib(proc.pid) - before) / 1024
        elapsed, cpu, problems = sub.drain(n, LOAD_TIMEOUT_S)
        out.fails += problems
        if not problems:
            out.metrics["drain"] = n / elapsed
        if cpu > CLIENT_BOUND:
            out.notes.append(f"client-bound {cpu:.2f}")
        if not proc.alive():
            out.fails.append("BROKER DIED")
        return out
    finally:
        proc.stop()


# --- the table ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    key: str  # results key: "connected-clean", "connected-persistent", "offline-<n>"
    metric: str
    title: str
    unit: str


def rows_for(offline_sizes: list[int]) -> list[Row]:
    rows = [
        Row("connected-clean", "rate", "connected, clean-session sub", "msg/s"),
        Row("connected-persistent", "rate", "connected, persistent sub", "msg/s"),
    ]
    for n in offline_sizes:
        label = f"offline {common._num(n)}"
        rows += [
            Row(f"offline-{n}", "publish", f"{label}: publish", "msg/s"),
            Row(f"offline-{n}", "drain", f"{label}: drain", "msg/s"),
            Row(f"offline-{n}", "rss", f"{label}: broker RSS", "+MiB"),
        ]
    return rows


Results = dict[str, dict[str, list[Outcome]]]  # row key -> column -> one Outcome per repeat


def _median(outs: list[Outcome], metric: str) -> float | None:
    values = [o.metrics[metric] for o in outs if metric in o.metrics]
    return statistics.median(values) if values else None


def _cell(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if metric == "rss" else common._num(value)


def _check(outs_by_column: dict[str, list[Outcome]]) -> str:
    parts = []
    failed = False
    for name, outs in outs_by_column.items():
        fails = sorted({f for o in outs for f in o.fails})
        notes = sorted({n for o in outs for n in o.notes})
        failed = failed or bool(fails)
        if fails or notes:
            parts.append(f"{name}: {', '.join(fails + notes)}")
    text = "; ".join(parts)
    return f"FAIL {text}" if failed else text or "ok"


def render(results: Results, columns: list[str], rows: list[Row]) -> str:
    ratios = [(a, b) for a, b in (("ack", "memory"), ("ack", "mosquitto")) if {a, b} <= {*columns}]
    head = ["", *columns, *(f"{a}/{b[:4]}" for a, b in ratios), "check"]
    table = []
    for row in rows:
        outs = {c: results.get(row.key, {}).get(c, []) for c in columns}
        values = {c: _median(outs[c], row.metric) for c in columns}
        cells = [_cell(values[c], row.metric) for c in columns]
        ratio_cells = []
        for a, b in ratios:
            va, vb = values[a], values[b]
            ratio_cells.append(f"{va / vb:.2f}" if va is not None and vb else "-")
        check = _check(outs) if row.metric in ("rate", "publish") else ""
        if row.metric == "drain":
            check = _check({c: [Outcome(notes=o.notes) for o in outs[c]] for c in columns})
            check = "" if check == "ok" else check
        table.append([f"{row.title} {row.unit}", *cells, *ratio_cells, check])
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head) - 1)]
    lines = []
    for r in [head, *table]:
        cols = [
            r[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(r[1:-1], widths[1:], strict=True)),
        ]
        lines.append("  ".join([*cols, r[-1]]).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def targets(results: Results, columns: list[str], offline_sizes: list[int]) -> list[str]:
    """The issue's targets, as measured."""
    out = []
    if {"ack", "memory"} <= {*columns}:
        for key, label in (("connected-persistent", "persistent"), ("connected-clean", "clean")):
            ack = _median(results.get(key, {}).get("ack", []), "rate")
            mem = _median(results.get(key, {}).get("memory", []), "rate")
            if ack is not None and mem:
                verdict = "met" if ack >= 0.5 * mem else "NOT met"
                out.append(
                    f"target ack >= 50% of in-memory msg/s, connected {label} sub: "
                    f"{100 * ack / mem:.0f}% ({verdict})"
                )
    if len(offline_sizes) >= 2:
        for column in columns:
            growth = [
                _median(results.get(f"offline-{n}", {}).get(column, []), "rss")
                for n in offline_sizes
            ]
            if all(g is not None for g in growth):
                shown = " / ".join(
                    f"{common._num(n)}: +{g:.1f} MiB"
                    for n, g in zip(offline_sizes, growth, strict=True)
                )
                out.append(f"RSS growth with the offline queue, {column}: {shown}")
    return out


# --- main ---------------------------------------------------------------------------------------
def _csv_columns(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in COLUMN_NAMES]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"choose from {','.join(COLUMN_NAMES)} (got {value!r})")
    return [c for c in COLUMN_NAMES if c in items]


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated message counts, got {value!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("message counts must be at least 1")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--only",
        type=_csv_columns,
        default=list(COLUMN_NAMES),
        help=f"columns, comma-separated (default: {','.join(COLUMN_NAMES)})",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is shown")
    p.add_argument("--messages", type=int, default=50_000, help="connected runs: -n (50000)")
    p.add_argument(
        "--offline",
        type=_sizes,
        default=[50_000, 200_000],
        help="offline queue sizes, comma-separated (default 50000,200000; '' for none)",
    )
    p.add_argument("--json", metavar="FILE", help="also write every raw result here")
    p.add_argument(
        "--mqttload-dir",
        type=Path,
        default=common.DEFAULT_MQTTLOAD_DIR,
        help="directory with mqttload.c and its Makefile (read only)",
    )
    args = p.parse_args(argv)
    if args.repeat < 1 or args.messages < 1:
        p.error("--repeat and --messages must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, common._on_sigterm)
    columns = [c for c in COLUMNS if c.name in args.only]
    if any(c.mosquitto for c in columns) and not os.access(common.MOSQUITTO, os.X_OK):
        print(f"{common.MOSQUITTO} not installed (make debs): mosquitto column skipped")
        columns = [c for c in columns if not c.mosquitto]
    stock = common.build_mqttload(args.mqttload_dir)
    clean0 = build_clean0_mqttload(args.mqttload_dir)
    load_avg = common._loadavg()
    t0 = time.monotonic()
    results: Results = {}

    def record(key: str, column: Column, out: Outcome) -> None:
        results.setdefault(key, {}).setdefault(column.name, []).append(out)
        shown = ", ".join(f"{k} {_cell(v, k)}" for k, v in out.metrics.items())
        flags = "; ".join(out.fails + out.notes)
        common._progress(f"  {key} {column.name}: {shown}{'  [' + flags + ']' if flags else ''}")

    for rep in range(args.repeat):
        common._progress(f"run {rep + 1}/{args.repeat}")
        for column in columns:
            for key, binary in (("connected-clean", stock), ("connected-persistent", clean0)):
                try:
                    out = connected(column, binary, args.messages)
                except RuntimeError as exc:  # the broker did not start
                    out = Outcome(fails=[f"broker {exc}"])
                record(key, column, out)
                time.sleep(common.SETTLE_S)
            for n in args.offline:
                try:
                    out = offline(column, stock, n)
                except (RuntimeError, OSError) as exc:
                    out = Outcome(fails=[f"{type(exc).__name__}: {exc}"])
                record(f"offline-{n}", column, out)
                time.sleep(common.SETTLE_S)
    elapsed = time.monotonic() - t0

    names = [c.name for c in columns]
    versions = f"wrenmq {common._wrenmq_version()}"
    if any(c.mosquitto for c in columns):
        versions += f", mosquitto {common._mosquitto_version()}"
    print(
        f"MQTT 3.1.1 QoS 1 over loopback, 64 B payloads, window 100, {args.messages} messages "
        f"connected; brokers on core {common.BROKER_CORE}, load on core {common.LOAD_CORE}; "
        f"{versions}; median of {args.repeat}; {elapsed:.0f} s; "
        f"load average {load_avg} -> {common._loadavg()}"
    )
    print()
    print(render(results, names, rows_for(args.offline)))
    print()
    for line in targets(results, names, args.offline):
        print(line)
    print(
        "memory = --no-persistence; none/periodic/ack = wrenmq durability; mosquitto = "
        "persistence true (autosave every 1800 s: in memory between snapshots)."
    )
    if args.json:
        doc = {
            key: {
                col: [
                    {"metrics": o.metrics, "fails": o.fails, "notes": o.notes, "raw": o.raw}
                    for o in outs
                ]
                for col, outs in per.items()
            }
            for key, per in results.items()
        }
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    bad = any(o.fails for per in results.values() for outs in per.values() for o in outs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Client publish throughput: wrenmq's ``Client`` against paho-mqtt and gmqtt, one run, one broker.

Run from the repository root::

    .venv/bin/python benchmarks/client.py [--repeat 3] [--only wrenmq,paho] [--qos0 50000]
                                          [--qos1 20000] [--window 100] [--loop asyncio]
                                          [--mqtt 311] [--broker-nodelay] [--json FILE]

What is measured: one client publishes N messages of 64 bytes to one topic of a Mosquitto broker
that nobody subscribes to, so the broker only reads, acknowledges and drops them; the number is
messages per second of wall time, from the first publish until

* QoS 0 (50,000 messages): the PUBACK of one QoS 1 message published after them (TCP keeps the
  order, so the broker has read every QoS 0 message by then: the time includes getting the bytes
  out, not just queueing them in the client);
* QoS 1 (20,000 messages): the last PUBACK, with at most ``--window`` (100) messages in flight:
  **wrenmq** ``Client(max_inflight=100)`` and ``asyncio.gather`` over batches of 200 (twice the
  window, at least 200) ``client.publish(..., qos=1)`` (each returns at its PUBACK; the client holds
  back what is over the window), two batches outstanding so that the pipeline does not drain at
  every batch boundary (that costs a Nagle delay at Mosquitto per batch: 15k instead of 50k msg/s);
  **paho** ``max_inflight_messages_set(100)``, ``loop_start()``, ``publish`` all, then
  ``wait_for_publish()`` on each; **gmqtt** its default flow: ``publish`` is synchronous and has no
  window, every message is written at once, and the run waits until gmqtt's in-flight store is
  empty (``_persistent_storage.wait_empty()``, what its own ``connect`` uses: gmqtt has no public
  way to wait for acknowledgements).

Also reported: CPU microseconds per message of the client process (``time.process_time``, all
threads: paho's network thread counts).

How it runs: Mosquitto (``/usr/sbin/mosquitto``, Debian's) on a free ephemeral loopback port,
pinned to core 0 (``taskset -c 0``), ``persistence false``, ``sys_interval 1``, otherwise its
defaults (so Nagle stays on for its sockets; ``--broker-nodelay`` sets ``set_tcp_nodelay true``);
each measurement is a fresh process of this script (``--worker LIB``) pinned to core 1, with its
own client id, MQTT 3.1.1 by default (``--mqtt 5`` for MQTT 5.0), the standard asyncio event loop
under both asyncio clients (``--loop uvloop``: wrenmq's client cannot connect on uvloop yet, its
``Connection.connection_made`` asserts an ``asyncio.Transport``, which uvloop's transports are
not); paho runs its own thread. The libraries take turns within each repeat (wrenmq, paho, gmqtt,
wrenmq, ...) so drift on the shared machine hits all of them; each number is the median of
``--repeat`` runs (3). Every run is checked against the broker's own count,
``$SYS/broker/publish/messages/received``, watched by a paho subscriber in this process: a run
whose messages did not all arrive is marked ``LOST`` and is not a measurement.

Needs Mosquitto (``make debs``), paho-mqtt (a test dependency) and gmqtt, which is not a wrenmq
dependency: ``make bench-client`` installs it into ``.venv`` when missing; without it the gmqtt
column is left out. Read the ratios, not the absolute numbers: the machine is shared and noisy.

May import: the standard library, wrenmq, paho-mqtt and gmqtt (each worker only its own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = "/usr/sbin/mosquitto"
BROKER_CORE, CLIENT_CORE = "0", "1"
TOPIC = "bench/client"
PAYLOAD = bytes(range(64))
MIN_BATCH = 200  # wrenmq QoS 1: publishes gathered at once, max(200, 2 x window)
RUN_TIMEOUT_S = 120.0
COUNT_TIMEOUT_S = 5.0  # $SYS is published every second
LIBS = ("wrenmq", "paho", "gmqtt")
PR_SET_PDEATHSIG = 1


# --- the workers: one library, one QoS, one process ---------------------------------------------
def _timed(fn: Callable[[], None]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return {"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


async def _wrenmq(args: argparse.Namespace) -> dict[str, float]:
    from wrenmq.client import Client

    version = 5 if args.mqtt == "5" else 4
    async with Client(
        "127.0.0.1",
        args.port,
        client_id=f"bench-wrenmq-{os.getpid()}",
        version=version,
        max_inflight=args.window,
    ) as client:
        publish = client.publish
        wall, cpu = time.perf_counter(), time.process_time()
        if args.qos == 0:
            for _ in range(args.n):
                await publish(TOPIC, PAYLOAD)
            await publish(TOPIC, PAYLOAD, qos=1)
        else:
            # Bounded batches, two outstanding: the next batch is queued behind the window
            # before the last one ends, so the pipeline never drains at a batch boundary
            # (waiting for the last PUBACK of each batch costs a Nagle delay at Mosquitto).
            size = max(MIN_BATCH, 2 * args.window)
            batches: deque[asyncio.Future[list[Any]]] = deque()
            for start in range(0, args.n, size):
                count = min(size, args.n - start)
                batches.append(
                    asyncio.gather(*[publish(TOPIC, PAYLOAD, qos=1) for _ in range(count)])
                )
                if len(batches) > 1:
                    await batches.popleft()
            for batch in batches:
                await batch
        return {"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def _paho(args: argparse.Namespace) -> dict[str, float]:
    import paho.mqtt.client as mqtt

    protocol = mqtt.MQTTv5 if args.mqtt == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{os.getpid()}", protocol=protocol
    )
    client.max_inflight_messages_set(args.window)
    client.max_queued_messages_set(0)  # unlimited: never drop
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("paho did not connect")

    def run() -> None:
        if args.qos == 0:
            for _ in range(args.n):
                client.publish(TOPIC, PAYLOAD, 0)
            client.publish(TOPIC, PAYLOAD, 1).wait_for_publish(RUN_TIMEOUT_S)
        else:
            infos = [client.publish(TOPIC, PAYLOAD, 1) for _ in range(args.n)]
            for info in infos:
                info.wait_for_publish(RUN_TIMEOUT_S)

    try:
        return _timed(run)
    finally:
        client.disconnect()
        client.loop_stop()


async def _gmqtt(args: argparse.Namespace) -> dict[str, float]:
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv50, MQTTv311

    client = gmqtt.Client(f"bench-gmqtt-{os.getpid()}")
    await client.connect("127.0.0.1", args.port, version=MQTTv50 if args.mqtt == "5" else MQTTv311)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        if args.qos == 0:
            for _ in range(args.n):
                client.publish(TOPIC, PAYLOAD, qos=0)
            client.publish(TOPIC, PAYLOAD, qos=1)
        else:
            for _ in range(args.n):
                client.publish(TOPIC, PAYLOAD, qos=1)
        await client._persistent_storage.wait_empty()
        return {"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    finally:
        await client.disconnect()


def _run_async(coro_fn: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro_fn(args))
    return asyncio.run(coro_fn(args))


def worker(args: argparse.Namespace) -> int:
    if args.worker == "wrenmq":
        result = _run_async(_wrenmq, args)
    elif args.worker == "gmqtt":
        result = _run_async(_gmqtt, args)
    else:
        result = _paho(args)
    print(json.dumps(result))
    return 0


# --- the broker and its message count -----------------------------------------------------------
def _child_setup() -> None:
    """preexec_fn: die with this script."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mosquitto(workdir: Path, nodelay: bool) -> Iterator[int]:
    """Mosquitto pinned to the broker core on a free port; yields the port."""
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nsys_interval 1\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n"
        + ("set_tcp_nodelay true\n" if nodelay else ""),
        encoding="utf-8",
    )
    log = (workdir / "mosquitto.log").open("wb")
    proc = subprocess.Popen(
        ["taskset", "-c", BROKER_CORE, MOSQUITTO, "-c", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_child_setup,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start; see {log.name}") from None
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


class ReceivedCount:
    """The broker's ``$SYS/broker/publish/messages/received``, as it changes (every second)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.value = -1
        self._cond = threading.Condition()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sys")
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *a: c.subscribe("$SYS/broker/publish/messages/received")
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._cond:
            self.value = int(message.payload)
            self._cond.notify_all()

    def wait_for(self, total: int, timeout: float = COUNT_TIMEOUT_S) -> int:
        """Wait until the count reaches ``total``; return the count then (or at the timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: self.value >= total, timeout)
            return self.value

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# --- the run ------------------------------------------------------------------------------------
@dataclass
class Cell:
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def rate(self) -> float | None:
        return statistics.median(self.rates) if self.rates and not self.failures else None

    def cpu(self) -> float | None:
        return statistics.median(self.cpu_us) if self.cpu_us and not self.failures else None


def _measure(lib: str, qos: int, n: int, port: int, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        "taskset", "-c", CLIENT_CORE, sys.executable, str(Path(__file__).resolve()),
        "--worker", lib, "--qos", str(qos), "-n", str(n), "--port", str(port),
        "--window", str(args.window), "--loop", args.loop, "--mqtt", args.mqtt,
    ]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, preexec_fn=_child_setup
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _fmt(value: float | None, spec: str) -> str:
    return "FAIL" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or not b else f"{a / b:.2f}x"


def _table(libs: list[str], cells: dict[tuple[str, int], Cell], counts: dict[int, int]) -> str:
    header = ["QoS", "messages"]
    header += [f"{lib} msg/s" for lib in libs]
    header += [f"{lib} us CPU/msg" for lib in libs]
    header += [f"wrenmq/{lib}" for lib in libs if lib != "wrenmq" and "wrenmq" in libs]
    rows = [header]
    for qos, n in counts.items():
        rates = {lib: cells[lib, qos].rate() for lib in libs}
        row = [str(qos), f"{n:,}"]
        row += [_fmt(rates[lib], ",.0f") for lib in libs]
        row += [_fmt(cells[lib, qos].cpu(), ".1f") for lib in libs]
        row += [
            _ratio(rates["wrenmq"], rates[lib])
            for lib in libs
            if lib != "wrenmq" and "wrenmq" in libs
        ]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _versions(libs: list[str]) -> str:
    from importlib.metadata import version

    names = {"wrenmq": "wrenmq", "paho": "paho-mqtt", "gmqtt": "gmqtt"}
    mosq = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    parts = [f"{names[lib]} {version(names[lib])}" for lib in libs]
    return ", ".join([*parts, mosq.replace("mosquitto version", "Mosquitto").strip()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median counts")
    parser.add_argument("--only", default=",".join(LIBS), help="libraries, e.g. wrenmq,paho")
    parser.add_argument("--qos0", type=int, default=50_000, help="messages in a QoS 0 run")
    parser.add_argument("--qos1", type=int, default=20_000, help="messages in a QoS 1 run")
    parser.add_argument("--window", type=int, default=100, help="QoS 1 messages in flight")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--broker-nodelay", action="store_true", help="Mosquitto's set_tcp_nodelay true"
    )
    parser.add_argument("--mqtt", choices=("311", "5"), default="311", help="protocol version")
    parser.add_argument("--json", metavar="FILE", help="write every run's result here")
    parser.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    parser.add_argument("--qos", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("-n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    libs = [lib for lib in args.only.split(",") if lib]
    unknown = set(libs) - set(LIBS)
    if unknown:
        parser.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    if "gmqtt" in libs and importlib.util.find_spec("gmqtt") is None:
        print("gmqtt is not installed (make bench-client installs it): left out", file=sys.stderr)
        libs.remove("gmqtt")
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        args.loop = "asyncio"
    for tool in ("taskset", MOSQUITTO):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (make debs)", file=sys.stderr)
            return 1
    counts = {0: args.qos0, 1: args.qos1}
    cells = {(lib, qos): Cell() for lib in libs for qos in counts}
    raw: list[dict[str, Any]] = []
    workdir = ROOT / ".bench" / "client"
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"client publish throughput: {_versions(libs)}", flush=True)
    print(
        f"MQTT {'5.0' if args.mqtt == '5' else '3.1.1'}, {len(PAYLOAD)}-byte payloads, "
        f"QoS 1 window {args.window}, {args.loop} loop for wrenmq and gmqtt, broker Nagle "
        f"{'off' if args.broker_nodelay else 'on (default)'}; broker on core {BROKER_CORE}, "
        f"clients on core {CLIENT_CORE}; median of {args.repeat}",
        flush=True,
    )
    with mosquitto(workdir, args.broker_nodelay) as port:
        received = ReceivedCount(port)
        try:
            total = received.wait_for(0)
            for rep in range(args.repeat):
                for qos, n in counts.items():
                    for lib in libs:
                        result = _measure(lib, qos, n, port, args)
                        expected = total + n + (1 if qos == 0 else 0)
                        total = received.wait_for(expected)
                        cell = cells[lib, qos]
                        if "error" in result:
                            cell.failures.append(result["error"])
                        elif total < expected:
                            cell.failures.append(f"LOST {expected - total} messages")
                        else:
                            cell.rates.append(n / result["seconds"])
                            cell.cpu_us.append(result["cpu"] / n * 1e6)
                        raw.append({"repeat": rep, "lib": lib, "qos": qos, "n": n, **result})
                        rate = f"{n / result['seconds']:,.0f} msg/s" if "seconds" in result else ""
                        print(f"  run {rep + 1} {lib:6} QoS {qos}: {rate or result}", flush=True)
        finally:
            received.close()
    print()
    print(_table(libs, cells, counts))
    for (lib, qos), cell in cells.items():
        for failure in cell.failures:
            print(f"FAIL {lib} QoS {qos}: {failure}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 1 if any(cell.failures for (lib, _), cell in cells.items() if lib == "wrenmq") else 0


if __name__ == "__main__":
    sys.exit(main())

"""Broker throughput, latency and connection cost: wrenmq against Mosquitto and amqtt, one run.

Run from the repository root::

    .venv/bin/python benchmarks/broker.py [--only wrenmq,mosquitto] [--scenarios a,b,c]
                                          [--repeat N] [--json FILE]

Every broker gets the same load, in the same run, from the C load generator ``mqttload``
(``../shared/tools/mqttload``: MQTT 3.1.1, 64-byte payloads, each payload carries its send time).
Its two source files are copied to ``.bench/mqttload/`` and built there with ``make``; they are
not part of this repository. The machine is shared and noisy, so read the ratios
(wrenmq / Mosquitto, wrenmq / amqtt), not the absolute numbers.

How each broker runs:

* pinned to core 0 (``taskset -c 0``), mqttload to core 1; every broker listens on a free
  ephemeral port on 127.0.0.1 (bind port 0, close, hand the port to the broker), and is used only
  once it answers an MQTT CONNECT with CONNACK on that port and the listening socket is checked to
  belong to the broker's own pid (so a stray broker that grabbed the port cannot be measured by
  mistake). mqttload gets ``-B <broker pid>`` and samples the broker's CPU and RSS from /proc.
* one broker process per broker and repeat runs the selected throughput and latency scenarios
  (a-f), then is stopped (SIGTERM, then SIGKILL) in ``finally``; scenario g always gets a freshly
  started process, because a heap that earlier scenarios grew and freed absorbs new connections
  without growing (wrenmq in one test: 3.5 KiB/conn fresh, 1.7 after a and f, 0.7 after a-f). If
  a broker dies during a scenario, that scenario is reported as failed and a fresh process serves
  the next one. Children get PR_SET_PDEATHSIG, so nothing outlives this script, and their soft
  RLIMIT_NOFILE raised to the hard limit (10,000 connections).
* **wrenmq** (``wrenmq broker -c FILE -p PORT``, uvloop): ``sys_interval = 0``,
  ``log_level = "warning"``, ``max_queued_messages = 1000`` (the default, written out).
* **wrenmq-authz** / **wrenmq-authz0** (only with ``--only``): wrenmq as above plus an
  always-allow ``Authorizer`` loaded from ``auth_plugins``, with ``auth_cache_ttl`` 60 / 0: what
  a pluggable authorizer costs when its verdicts are cached, and when every PUBLISH awaits one.
* **Mosquitto** (``/usr/sbin/mosquitto -c FILE``): ``listener PORT 127.0.0.1``,
  ``allow_anonymous true``, ``max_queued_messages 1000``, ``max_connections -1``,
  ``sys_interval 0`` and ``log_type error`` + ``warning``: like wrenmq it writes no log line per
  connection, which if anything makes Mosquitto faster and the comparison harder for wrenmq.
* **amqtt** 0.12.1 (its ``amqtt -c FILE`` command): a tcp listener on 127.0.0.1:PORT and the
  anonymous-auth plugin only (no $SYS, no packet logger). amqtt pins its dependencies, so it lives
  in its own venv, ``.venv-amqtt``, created here on first use (``pip install amqtt==0.12.1``). Its
  command line has no log level option: it logs at INFO (two lines per connection) to a file.
  amqtt is about 20 times slower, so it gets 1/10 of the messages per publisher
  (``--amqtt-scale``) and a 30 s time limit instead of 60 s; rates stay comparable, run lengths
  do not. It keeps all 10,000 connections in scenario g.

Scenarios (the anchor set in ``../shared/reference/anchors.md``), ``mqttload`` arguments, each
run with ``-s 64 -p PORT -B PID -t 60``:

- a  QoS 0, 1 -> 1: ``pubsub -P 1 -S 1 -L shared -q 0 -n 200000``
- b  QoS 1, 1 -> 1, window 100: ``pubsub -P 1 -S 1 -L shared -q 1 -W 100 -n 100000``
- c  QoS 0 fan-out 1 -> 100 (deliveries/s): ``pubsub -P 1 -S 100 -L shared -q 0 -n 5000``
- d  QoS 0 fan-in 100 -> 1 on ``bench/#``: ``pubsub -P 100 -S 1 -L wild -q 0 -n 2000``
- e  QoS 1, 50 pairs: ``pubsub -P 50 -S 50 -L pairs -q 1 -W 100 -n 2000``
- f  QoS 1 at 5,000 msg/s, p50 / p99: ``pubsub -P 1 -S 1 -L shared -q 1 -W 100 -r 5000 -n 50000``
- g  10,000 idle connections: ``conn -c 10000 -H 5``

What is reported: a-e mqttload's ``delivered_msgs_per_s`` (distinct messages received over the
time from the first send to the last receipt); f the p50 and p99 of send-to-receive latency, or
'-' when the publisher could not hold 95% of the 5,000 msg/s target (then the latency measures a
queue, not the broker); g ``conn_per_s`` and the broker's RSS per connection,
``(rss_hold_end_kb - rss_before_kb) / alive_at_end`` (RSS sampled at the end of the 5 s hold minus
RSS before the first connect). With ``--repeat N`` each number is the median of N runs.

Checks, per row: ``LOST``, ``DUP``, end reason other than ``complete`` (``timeout``, ``idle``),
``ERRORS`` (mqttload's error count), ``OOO`` (out of order per publisher), ``FAILED`` /
``DROPPED`` connections. Any of these marks the row ``FAIL``. Notes that are not failures:
``gen-bound`` (mqttload used >90% of its core, so the generator may be the limit). The exit status
is 1 if any wrenmq run failed a check or could not run, 0 otherwise.

Limitations: one machine with 2 cores, loopback only, MQTT 3.1.1 only (what all three speak),
QoS 0/1 only (mqttload), 64-byte payloads, no TLS, no persistence; a-f run in the same order on
every broker and one process, so each starts on the heap the previous ones left; a, c and d last
well under a second at Mosquitto's and wrenmq's speed (the message counts are the anchor set's),
so they swing by tens of percent from run to run: use ``--repeat 3`` for numbers to quote.

One file past the ~600-line guide on purpose: a benchmark that runs with nothing but a checkout
and ``python``, whose every step (build, start, probe, load, check, table) is read in one place.

May import: the standard library only (wrenmq, Mosquitto and amqtt run as separate processes).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
DEFAULT_MQTTLOAD_DIR = ROOT.parent / "shared" / "tools" / "mqttload"
AMQTT_VENV = ROOT / ".venv-amqtt"
AMQTT_VERSION = "0.12.1"
MOSQUITTO = "/usr/sbin/mosquitto"
BROKER_CORE, LOAD_CORE = "0", "1"
LOAD_TIMEOUT_S = 60
AMQTT_TIMEOUT_S = 30
READY_TIMEOUT_S = 30.0
SETTLE_S = 1.0  # between scenarios: let the broker finish tearing down the last clients
RATE_HELD = 0.95  # scenario f: the publisher must reach this share of the target rate
GEN_BOUND = 0.9
PR_SET_PDEATHSIG = 1


# --- scenarios ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    args: tuple[str, ...]
    kind: str  # "rate" (msg/s), "latency" (p50/p99 at a fixed rate) or "conn"
    unit: str = "msg/s"


# wrenmq with a pluggable authorizer, by name: its auth_cache_ttl (0 = asked for every packet).
AUTHZ_VARIANTS = {"wrenmq-authz": 60, "wrenmq-authz0": 0}


def _split(args: str) -> tuple[str, ...]:
    return tuple(args.split())


SCENARIOS = (
    Scenario(
        "a", "QoS 0, 1 -> 1", _split("pubsub -P 1 -S 1 -L shared -q 0 -s 64 -n 200000"), "rate"
    ),
    Scenario(
        "b",
        "QoS 1, 1 -> 1, W 100",
        _split("pubsub -P 1 -S 1 -L shared -q 1 -W 100 -s 64 -n 100000"),
        "rate",
    ),
    Scenario(
        "c",
        "QoS 0 fan-out 1 -> 100",
        _split("pubsub -P 1 -S 100 -L shared -q 0 -s 64 -n 5000"),
        "rate",
        "deliv/s",
    ),
    Scenario(
        "d",
        "QoS 0 fan-in 100 -> 1 #",
        _split("pubsub -P 100 -S 1 -L wild -q 0 -s 64 -n 2000"),
        "rate",
    ),
    Scenario(
        "e",
        "QoS 1, 50 pairs",
        _split("pubsub -P 50 -S 50 -L pairs -q 1 -W 100 -s 64 -n 2000"),
        "rate",
    ),
    Scenario(
        "f",
        "QoS 1 @ 5,000 msg/s",
        _split("pubsub -P 1 -S 1 -L shared -q 1 -W 100 -s 64 -r 5000 -n 50000"),
        "latency",
        "ms",
    ),
    Scenario("g", "10,000 idle conns", _split("conn -c 10000 -H 5"), "conn"),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)


def _arg(args: tuple[str, ...], flag: str, default: float = 0.0) -> float:
    return float(args[args.index(flag) + 1]) if flag in args else default


def _scaled(args: tuple[str, ...], scale: int) -> tuple[str, ...]:
    """``args`` with the per-publisher message count (``-n``) divided by ``scale``."""
    if scale <= 1 or "-n" not in args:
        return args
    i = args.index("-n") + 1
    return (*args[:i], str(max(1, int(args[i]) // scale)), *args[i + 1 :])


# --- child processes ----------------------------------------------------------------------------
def _child_setup() -> None:
    """preexec_fn: die with this script, and allow as many fds as the hard limit does."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run(
    argv: list[str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=_child_setup,
    )


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# --- mqttload and the amqtt venv ----------------------------------------------------------------
def build_mqttload(source_dir: Path) -> Path:
    """Copy mqttload's source into ``.bench/mqttload`` and build it there; returns the binary."""
    build = BENCH_DIR / "mqttload"
    build.mkdir(parents=True, exist_ok=True)
    for name in ("mqttload.c", "Makefile"):
        src = source_dir / name
        if not src.is_file():
            raise SystemExit(f"broker.py: {src} not found (pass --mqttload-dir)")
        dst = build / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)  # new mtime, so make rebuilds
    if shutil.which("make") is None or shutil.which("cc") is None:
        raise SystemExit("broker.py: building mqttload needs make and a C compiler (gcc)")
    done = _run(["make", "-s"], timeout=300, cwd=build)
    binary = build / "mqttload"
    if done.returncode != 0 or not binary.exists():
        raise SystemExit(f"broker.py: building mqttload failed: {_tail(done.stderr)}")
    return binary


def ensure_amqtt() -> tuple[Path | None, str]:
    """The ``amqtt`` command in ``.venv-amqtt`` (created if missing), or None and the reason."""
    python, command = AMQTT_VENV / "bin" / "python", AMQTT_VENV / "bin" / "amqtt"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('amqtt'))"]
    try:
        if command.exists() and _run(probe, 60).stdout.strip() == AMQTT_VERSION:
            return command, AMQTT_VERSION
        print(f"installing amqtt {AMQTT_VERSION} into {AMQTT_VENV.name} ...", file=sys.stderr)
        if not python.exists():
            made = _run([sys.executable, "-m", "venv", str(AMQTT_VENV)], 300)
            if made.returncode != 0:
                return None, f"venv creation failed: {_tail(made.stderr, 2)}"
        pip = [str(python), "-m", "pip", "install", "-q", f"amqtt=={AMQTT_VERSION}"]
        installed = _run(pip, 600)
        if installed.returncode != 0 or not command.exists():
            return None, f"pip install amqtt=={AMQTT_VERSION} failed: {_tail(installed.stderr, 2)}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"amqtt setup failed: {exc}"
    return command, AMQTT_VERSION


# --- brokers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerSpec:
    name: str
    configure: Callable[[int, Path], list[str]]  # (port, workdir) -> argv, config written
    load_timeout: int = LOAD_TIMEOUT_S
    scale: int = 1
    version: str = ""


def _wrenmq_argv(port: int, workdir: Path, extra: str = "") -> list[str]:
    conf = workdir / "wrenmq.toml"
    conf.write_text('sys_interval = 0\nlog_level = "warning"\nmax_queued_messages = 1000\n' + extra)
    script = Path(sys.executable).parent / "wrenmq"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "wrenmq"]
    return [*command, "broker", "-c", str(conf), "-p", str(port)]


_AUTHZ_PLUGIN = """from wrenmq.broker.hooks import Verdict


class AllowAll:
    \"\"\"Allows everything: what asking a pluggable authorizer costs by itself.\"\"\"

    async def authorize(self, client_id, username, topic, access):
        return Verdict.ALLOW
"""


def _wrenmq_authz_argv(cache_ttl: int) -> Callable[[int, Path], list[str]]:
    """wrenmq with an always-allow authorizer plugin asked on every PUBLISH and SUBSCRIBE."""

    def argv(port: int, workdir: Path) -> list[str]:
        (workdir / "benchauthz.py").write_text(_AUTHZ_PLUGIN)
        extra = f'auth_plugins = ["benchauthz:AllowAll"]\nauth_cache_ttl = {cache_ttl}\n'
        return ["env", f"PYTHONPATH={workdir}", *_wrenmq_argv(port, workdir, extra)]

    return argv


def _mosquitto_argv(port: int, workdir: Path) -> list[str]:
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\n"
        "max_connections -1\nsys_interval 0\nlog_dest stderr\nlog_type error\nlog_type warning\n"
    )
    return [MOSQUITTO, "-c", str(conf)]


def _amqtt_argv(command: Path) -> Callable[[int, Path], list[str]]:
    def argv(port: int, workdir: Path) -> list[str]:
        conf = workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        return [str(command), "-c", str(conf)]

    return argv


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# MQTT 3.1.1 CONNECT (clean session, keep alive 60, client id "bench-probe") and DISCONNECT.
_PROBE_ID = b"bench-probe"
_CONNECT = (
    bytes([0x10, 12 + len(_PROBE_ID), 0, 4])
    + b"MQTT"
    + bytes([4, 2, 0, 60, 0, len(_PROBE_ID)])
    + _PROBE_ID
)
_DISCONNECT = bytes([0xE0, 0])


def _mqtt_ready(port: int) -> bool:
    """True if the port answers CONNECT with a successful CONNACK."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
            s.sendall(_CONNECT)
            ack = b""
            while len(ack) < 4:
                chunk = s.recv(4 - len(ack))
                if not chunk:
                    return False
                ack += chunk
            s.sendall(_DISCONNECT)
            return ack == bytes([0x20, 2, 0, 0])
    except OSError:
        return False


def _listens(pid: int, port: int) -> bool:
    """True if a socket listening on ``port`` is one of ``pid``'s open files."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return True
    return False


class BrokerProcess:
    """One broker process on a fresh loopback port, pinned to BROKER_CORE."""

    def __init__(self, spec: BrokerSpec) -> None:
        self.spec = spec
        self.workdir = BENCH_DIR / spec.name
        self.log_path = self.workdir / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.started = False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            return _tail("\n".join(ln for ln in lines if not ln.startswith("--- ")), 3)
        return ""

    def start(self) -> None:
        """Start on a free port; tried again on a new port if the broker exits or another process
        answers on the port (the window between picking the port and the broker binding it)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.started:  # a fresh log per broker and repeat
            self.log_path.write_bytes(b"")
            self.started = True
        why = ""
        for _ in range(3):
            self.port = _free_port()
            argv = ["taskset", "-c", BROKER_CORE, *self.spec.configure(self.port, self.workdir)]
            with open(self.log_path, "ab") as log:
                log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_child_setup,
                    start_new_session=True,
                )
            why = self._wait_ready()
            if not why:
                return
            self.stop()
        raise RuntimeError(f"did not start: {why}")

    def _wait_ready(self) -> str:
        """'' once the broker answers CONNECT on its port, else why it did not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                return f"exited with {code}: {self.log_tail() or 'no output'}"
            if _mqtt_ready(self.port):
                if _listens(self.pid, self.port):
                    return ""
                return f"port {self.port} is answered by another process"
            time.sleep(0.1)
        raise RuntimeError(f"no CONNACK on port {self.port} within {READY_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# --- one measurement ----------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one mqttload run says: metrics, failed checks, notes, or why there is nothing."""

    metrics: dict[str, float] = field(default_factory=dict)
    fails: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _checks(data: dict[str, Any], out: Outcome) -> None:
    pairs = (
        ("lost", "LOST"),
        ("duplicates", "DUP"),
        ("errors", "ERRORS"),
        ("out_of_order", "OOO"),
        ("misrouted", "MISROUTED"),
        ("failed", "FAILED"),
        ("dropped_during_hold", "DROPPED"),
    )
    out.fails += [f"{label} {data[key]}" for key, label in pairs if data.get(key, 0)]
    if data.get("end_reason", "complete") != "complete":
        out.fails.append(str(data["end_reason"]).upper())
    if data.get("error_samples"):
        out.notes.append(f"first error: {data['error_samples'][0].get('msg', '?')}")
    if data.get("gen_cpu_util", 0.0) > GEN_BOUND:
        out.notes.append(f"gen-bound {data['gen_cpu_util']:.2f}")


def _metrics(scenario: Scenario, args: tuple[str, ...], data: dict[str, Any], out: Outcome) -> None:
    if scenario.kind == "rate":
        out.metrics["rate"] = data["delivered_msgs_per_s"]
    elif scenario.kind == "latency":
        target = _arg(args, "-r")
        if data["sent_msgs_per_s"] < RATE_HELD * target:
            out.error = f"rate not held: {_num(data['sent_msgs_per_s'])}/s of {_num(target)}/s"
        else:
            out.metrics["p50"] = data["latency_us"]["p50"] / 1000
            out.metrics["p99"] = data["latency_us"]["p99"] / 1000
    else:
        broker = data.get("broker", {})
        out.metrics["conn_s"] = data["conn_per_s"]
        alive = data.get("alive_at_end", 0)
        if alive and broker.get("rss_before_kb", -1) >= 0:
            delta = broker["rss_hold_end_kb"] - broker["rss_before_kb"]
            out.metrics["kib_conn"] = delta / alive


def run_load(mqttload: Path, broker: BrokerProcess, scenario: Scenario) -> Outcome:
    """Run one scenario against a running broker; never takes much longer than its -t."""
    spec = broker.spec
    args = _scaled(scenario.args, spec.scale)
    limit = spec.load_timeout
    argv = [
        "taskset",
        "-c",
        LOAD_CORE,
        str(mqttload),
        *args,
        "-p",
        str(broker.port),
        "-B",
        str(broker.pid),
        "-t",
        str(limit),
    ]
    out = Outcome()
    deadline = limit + _arg(args, "-H") + 30
    try:
        done = _run(argv, timeout=deadline)
    except subprocess.TimeoutExpired:
        out.error = f"mqttload did not exit within {deadline:.0f} s (killed)"
        return out
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith('{"mode"')]
    if not lines:
        out.error = f"mqttload exit {done.returncode}, no result: {_tail(done.stderr, 2)}"
    else:
        out.raw = json.loads(lines[-1])
        _checks(out.raw, out)
        _metrics(scenario, args, out.raw, out)
    if not broker.alive():
        out.error = f"broker died during the run: {broker.log_tail()}"
        out.fails.append("BROKER DIED")
    return out


# --- the run ------------------------------------------------------------------------------------
Results = dict[str, dict[str, list[Outcome]]]  # broker -> scenario key -> one Outcome per repeat


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _summary_line(out: Outcome) -> str:
    shown = ", ".join(f"{k} {_num(v)}" for k, v in out.metrics.items()) or out.error
    flags = "; ".join(out.fails + out.notes)
    return f"{shown}{'  [' + flags + ']' if flags else ''}"


def run_broker(
    spec: BrokerSpec, scenarios: list[Scenario], mqttload: Path, results: Results
) -> None:
    """Start the broker, run every scenario against it (restarting it if it dies), stop it."""
    broker = BrokerProcess(spec)
    failed_start, served = "", 0
    try:
        for scenario in scenarios:
            slot = results.setdefault(spec.name, {}).setdefault(scenario.key, [])
            if failed_start:
                slot.append(Outcome(error=failed_start))
                continue
            if scenario.kind == "conn" and broker.alive() and served:
                broker.stop()  # RSS per connection is measured on a fresh heap, see above
            if not broker.alive():
                try:
                    broker.stop()
                    broker.start()
                except RuntimeError as exc:  # the remaining scenarios get the same reason
                    failed_start = f"broker {exc}"
                    slot.append(Outcome(error=failed_start))
                    _progress(f"  {spec.name}: {failed_start}")
                    continue
            outcome = run_load(mqttload, broker, scenario)
            served += 1
            slot.append(outcome)
            _progress(f"  {spec.name} {scenario.key}: {_summary_line(outcome)}")
            time.sleep(SETTLE_S)
    finally:
        broker.stop()


# --- the table ----------------------------------------------------------------------------------
def _num(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}" if v >= 0.01 else f"{v:.4f}"


def _median(outs: list[Outcome], key: str) -> float | None:
    values = [o.metrics[key] for o in outs if key in o.metrics]
    return statistics.median(values) if values else None


ROWS = {  # scenario kind -> the rows it prints: (metric key, label suffix)
    "rate": [("rate", "")],
    "latency": [("p50", " p50"), ("p99", " p99")],
    "conn": [("conn_s", " conn/s"), ("kib_conn", " KiB/conn")],
}


def _check_text(names: list[str], outs_by_broker: dict[str, list[Outcome]]) -> tuple[str, bool]:
    """The check column of a scenario's first row, and whether any run failed a check."""
    parts, failed = [], False
    for name in names:
        outs = outs_by_broker.get(name, [])
        fails = sorted({f for o in outs for f in o.fails})
        notes = sorted({n for o in outs for n in o.notes})
        errors = sorted({o.error for o in outs if o.error and not o.metrics})
        failed = failed or bool(fails)
        items = fails + [f"- {e}" for e in errors] + notes
        if items:
            parts.append(f"{name}: {', '.join(items)}")
    text = "; ".join(parts)
    return (f"FAIL {text}" if failed else text or "ok"), failed


def render(results: Results, names: list[str], scenarios: list[Scenario], scale: int) -> str:
    label = {n: (f"amqtt (/{scale})" if n == "amqtt" and scale > 1 else n) for n in names}
    others = [n for n in names if n != "wrenmq"] if "wrenmq" in names else []
    short = {n: n.removeprefix("wrenmq-") if n.startswith("wrenmq-") else n[:5] for n in others}
    head = ["scenario", *(label[n] for n in names), *(f"w/{short[n]}" for n in others), "check"]
    rows: list[list[str]] = []
    for sc in scenarios:
        outs = {n: results.get(n, {}).get(sc.key, []) for n in names}
        check, _ = _check_text(names, outs)
        for i, (key, suffix) in enumerate(ROWS[sc.kind]):
            unit = "ms" if sc.kind == "latency" else ("" if sc.kind == "conn" else sc.unit)
            title = f"{sc.key} {sc.title}{suffix}{' ' + unit if unit else ''}"
            values = {n: _median(outs[n], key) for n in names}
            cells = [_num(v) if v is not None else "-" for v in values.values()]
            wren = values.get("wrenmq")
            ratios = [
                f"{wren / values[o]:.2f}" if wren is not None and values[o] else "-" for o in others
            ]
            rows.append([title, *cells, *ratios, check if i == 0 else ""])
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head) - 1)]
    lines = []
    for r in [head, *rows]:
        cols = [
            r[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(r[1:-1], widths[1:], strict=True)),
        ]
        lines.append("  ".join([*cols, r[-1]]).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------
def _mosquitto_version() -> str:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        first = _run([MOSQUITTO, "-h"], 10).stdout.splitlines()
        return first[0].split("version", 1)[1].strip() if first else "?"
    return "?"


def _wrenmq_version() -> str:
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version("wrenmq")
    return "?"


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def _specs(names: list[str], scale: int, skipped: dict[str, str]) -> list[BrokerSpec]:
    specs = []
    for name in names:
        if name == "wrenmq":
            specs.append(BrokerSpec("wrenmq", _wrenmq_argv, version=_wrenmq_version()))
        elif name in AUTHZ_VARIANTS:
            argv = _wrenmq_authz_argv(AUTHZ_VARIANTS[name])
            specs.append(BrokerSpec(name, argv, version=_wrenmq_version()))
        elif name == "mosquitto":
            if not os.access(MOSQUITTO, os.X_OK):
                skipped[name] = f"{MOSQUITTO} not installed (make debs)"
                continue
            specs.append(BrokerSpec("mosquitto", _mosquitto_argv, version=_mosquitto_version()))
        else:
            command, detail = ensure_amqtt()  # detail: the version, or why there is none
            if command is None:
                skipped[name] = detail
                continue
            specs.append(BrokerSpec("amqtt", _amqtt_argv(command), AMQTT_TIMEOUT_S, scale, detail))
    return specs


def _csv(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{what}: choose from {','.join(allowed)} (got {value!r})")
    return [v for v in allowed if v in items]  # canonical order


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    brokers = ("wrenmq", "mosquitto", "amqtt", *AUTHZ_VARIANTS)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--only",
        type=lambda v: _csv(v, brokers, "--only"),
        default=["wrenmq", "mosquitto", "amqtt"],
        help="brokers to run, comma-separated (default: wrenmq,mosquitto,amqtt; also "
        "wrenmq-authz, wrenmq-authz0)",
    )
    p.add_argument(
        "--scenarios",
        type=lambda v: _csv(v, SCENARIO_KEYS, "--scenarios"),
        default=list(SCENARIO_KEYS),
        help="scenarios, comma-separated (default a-g)",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is shown")
    p.add_argument("--json", metavar="FILE", help="also write every mqttload result here")
    p.add_argument(
        "--amqtt-scale",
        type=int,
        default=10,
        help="divide amqtt's messages per publisher by this (default 10)",
    )
    p.add_argument(
        "--mqttload-dir",
        type=Path,
        default=DEFAULT_MQTTLOAD_DIR,
        help="directory with mqttload.c and its Makefile (read only)",
    )
    args = p.parse_args(argv)
    if args.repeat < 1 or args.amqtt_scale < 1:
        p.error("--repeat and --amqtt-scale must be at least 1")
    return args


def _write_json(path: str, meta: dict[str, Any], results: Results) -> None:
    doc = {
        "meta": meta,
        "results": {
            broker: {
                key: [
                    {
                        "metrics": o.metrics,
                        "fails": o.fails,
                        "notes": o.notes,
                        "error": o.error,
                        "mqttload": o.raw,
                    }
                    for o in outs
                ]
                for key, outs in per.items()
            }
            for broker, per in results.items()
        },
    }
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally, which stops the brokers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    scenarios = [s for s in SCENARIOS if s.key in args.scenarios]
    mqttload = build_mqttload(args.mqttload_dir)
    skipped: dict[str, str] = {}
    specs = _specs(args.only, args.amqtt_scale, skipped)
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_start": _loadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "repeat": args.repeat,
        "versions": {s.name: s.version for s in specs},
        "skipped": skipped,
        "amqtt_scale": args.amqtt_scale,
        "scenarios": {s.key: " ".join(s.args) for s in scenarios},
    }
    t0 = time.monotonic()
    results: Results = {}
    for rep in range(args.repeat):
        for spec in specs:
            _progress(f"run {rep + 1}/{args.repeat}: {spec.name}")
            run_broker(spec, scenarios, mqttload, results)
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    meta["loadavg_end"] = _loadavg()

    names = [n for n in args.only if n not in skipped]
    versions = ", ".join(f"{s.name} {s.version}" for s in specs)
    print(
        f"MQTT 3.1.1 over loopback, 64 B payloads; brokers on core {BROKER_CORE}, mqttload on "
        f"core {LOAD_CORE}; {versions}; median of {args.repeat}; {meta['elapsed_s']:.0f} s; "
        f"load average {meta['loadavg_start']} -> {meta['loadavg_end']}"
    )
    print()
    print(render(results, names, scenarios, args.amqtt_scale))
    print()
    print(
        "ratios are wrenmq / other: above 1 is better for wrenmq in msg/s, deliv/s and conn/s "
        "rows, worse in ms and KiB/conn rows."
    )
    if "amqtt" in names and args.amqtt_scale > 1:
        print(
            f"amqtt ran 1/{args.amqtt_scale} of the messages per publisher in a-f (-t "
            f"{AMQTT_TIMEOUT_S} instead of {LOAD_TIMEOUT_S}); all 10,000 connections in g."
        )
    for name, why in skipped.items():
        print(f"{name} not run: {why}")
    if args.json:
        _write_json(args.json, meta, results)
    wren = results.get("wrenmq", {})
    bad = any(o.fails or (o.error and not o.metrics) for outs in wren.values() for o in outs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

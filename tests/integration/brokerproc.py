"""A ``wrenmq broker`` subprocess for the persistence tests: start, SIGTERM, SIGKILL, restart.

The persistence tests need what an in-process ``BrokerThread`` cannot give: a process that dies
without running any of its shutdown code. ``BrokerProcess`` runs ``wrenmq broker -p PORT
--data-dir DIR [-c FILE]`` and restarts it on the same port and data directory. The port is picked
once, free, below the kernel's ephemeral range (so no client socket takes it between a kill and the
restart). Everything the broker prints goes to one log file across restarts; ``tracebacks()``
reads it back. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
_PROBE = (  # MQTT 3.1.1 CONNECT, clean session, keep alive 10, client id "probe"
    bytes((0x10, 17, 0, 4)) + b"MQTT" + bytes((4, 0x02, 0, 10, 0, 5)) + b"probe"
)


def _wrenmq() -> list[str]:
    script = Path(sys.executable).parent / "wrenmq"
    return [str(script)] if script.exists() else [sys.executable, "-m", "wrenmq"]


def _ephemeral_low() -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def free_port() -> int:
    """A free loopback port below the ephemeral range (random, retried on collisions)."""
    rng = random.Random()  # unseeded on purpose: parallel runs must not pick the same port
    high = min(_ephemeral_low(), 65536) - 1
    for _ in range(200):
        port = rng.randint(20000, max(20001, high))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def mqtt_ready(port: int, timeout: float = 1.0) -> bool:
    """True if the port answers a CONNECT with a successful CONNACK."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(_PROBE)
            ack = b""
            while len(ack) < 4:
                chunk = s.recv(4 - len(ack))
                if not chunk:
                    return False
                ack += chunk
            s.sendall(b"\xe0\x00")
            return ack == b"\x20\x02\x00\x00"
    except OSError:
        return False


class BrokerProcess:
    """``wrenmq broker`` on a fixed loopback port and data directory, restartable.

    Args:
        workdir: Holds ``data/`` (unless ``data_dir`` is given), ``wrenmq.toml`` and
            ``broker.log``.
        config: Top-level keys written to ``wrenmq.toml`` (``{"durability": "periodic"}``).
        persistence: False adds ``--no-persistence``.
    """

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None = None,
        *,
        persistence: bool = True,
        data_dir: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.data_dir = data_dir or workdir / "data"
        self.config_path = workdir / "wrenmq.toml"
        self.log_path = workdir / "broker.log"
        self.port = free_port()
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        settings = {"sys_interval": 0, **(config or {})}
        self.config_path.write_text(
            "".join(f"{key} = {toml_value(value)}\n" for key, value in settings.items())
        )

    def argv(self) -> list[str]:
        argv = [*_wrenmq(), "broker", "-c", str(self.config_path), "-p", str(self.port)]
        argv += ["--data-dir", str(self.data_dir)]
        if not self.persistence:
            argv.append("--no-persistence")
        return argv

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the broker is not running"
        return self.proc.pid

    def start(self) -> BrokerProcess:
        """Start the broker and wait until it answers CONNECT."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not mqtt_ready(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"broker exited with {self.proc.returncode} while starting:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"broker not ready within {START_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever was not committed is gone."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> int:
        """SIGTERM, a clean shutdown; returns the exit status."""
        return self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> int:
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
            raise AssertionError(f"broker ignored signal {sig} for {STOP_TIMEOUT} s") from None

    def restart(self, sig: int = signal.SIGTERM) -> BrokerProcess:
        self._signal(sig)
        return self.start()

    def rss_kib(self) -> int:
        """The broker's resident set size (VmRSS) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tracebacks(self) -> list[str]:
        """Log lines that start a traceback or report an ERROR."""
        return [
            line
            for line in self.log().splitlines()
            if "Traceback" in line or " ERROR " in line or " CRITICAL " in line
        ]

    def close(self) -> None:
        """Teardown: make sure the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                self.terminate()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)


def run_wrenmq(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``wrenmq ARGS`` to completion (``store inspect``, a broker that must fail, ...)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*_wrenmq(), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )

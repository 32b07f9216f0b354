"""Real brokers for the client tests, each on an ephemeral loopback port, killable and restartable.

``WrenBroker`` runs a wrenmq ``Broker`` in the test's own event loop; ``Mosquitto`` runs the Debian
``/usr/sbin/mosquitto`` binary from a temporary config file. Both expose the same async surface:
``start()``, ``kill()`` (abrupt: every session is lost) and ``restart()`` on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from wrenmq.broker.broker import Broker
from wrenmq.client import Client

MOSQUITTO = "/usr/sbin/mosquitto"
HAVE_MOSQUITTO = os.access(MOSQUITTO, os.X_OK) or shutil.which("mosquitto") is not None


class TestBroker(Protocol):
    port: int
    name: str

    async def start(self) -> None: ...
    async def kill(self) -> None: ...
    async def restart(self) -> None: ...
    async def close(self) -> None: ...


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WrenBroker:
    """A wrenmq broker in the running loop."""

    name = "wrenmq"

    def __init__(self, **config: Any) -> None:
        config.setdefault("bind_address", "127.0.0.1")
        config.setdefault("sys_interval", 0)
        self.config = config
        self.port = 0
        self.broker: Broker | None = None

    async def start(self) -> None:
        self.broker = Broker(port=self.port, **self.config)
        await self.broker.start()
        self.port = self.broker.port

    async def kill(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def close(self) -> None:
        await self.kill()


class Mosquitto:
    """The Debian mosquitto binary, with ``persistence false``: a kill loses every session."""

    name = "mosquitto"

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.extra = extra
        self.anonymous = True
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    def _start_sync(self) -> None:
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            "persistence false\n"
            # Unlimited in-flight and queued messages: what the broker routes reaches the
            # subscriber's socket before the publisher's PUBACK (see the restart test).
            "max_inflight_messages 0\n"
            "max_queued_messages 0\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # As root, mosquitto would switch to user "mosquitto", who cannot read our temp files.
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"{self.extra}\n",
            encoding="utf-8",
        )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text(errors='replace')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def _kill_sync(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)

    async def start(self) -> None:
        await asyncio.to_thread(self._start_sync)

    async def kill(self) -> None:
        await asyncio.to_thread(self._kill_sync)

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def close(self) -> None:
        await self.kill()


def drop_connection(client: Client) -> None:
    """Cut the client's TCP connection as a network failure would (no DISCONNECT)."""
    conn = client._conn
    assert conn is not None, "the client is not connected"
    conn.abort()


async def eventually(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> None:
    """Wait until ``predicate()`` is true, failing after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(interval)

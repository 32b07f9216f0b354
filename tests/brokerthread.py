"""Run a real wrenmq Broker on an ephemeral loopback port in a background thread, for tests that
drive it with blocking peers (paho-mqtt, mosquitto_pub/sub, raw sockets)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from wrenmq.broker.broker import Broker

T = TypeVar("T")


class BrokerThread:
    """A broker on 127.0.0.1:<ephemeral> in its own event loop thread."""

    def __init__(
        self,
        *,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        **config: Any,
    ) -> None:
        """``config`` as for ``Broker``; ``loop_factory`` e.g. ``uvloop.new_event_loop``."""
        if "listener" not in config:
            config.setdefault("port", 0)
            config.setdefault("bind_address", "127.0.0.1")
        config.setdefault("sys_interval", 0)
        self._config = config
        self.loop = loop_factory()
        self.broker: Broker | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> BrokerThread:
        self._thread.start()
        self.broker = Broker(**self._config)
        self.run(self.broker.start())
        return self

    @property
    def port(self) -> int:
        assert self.broker is not None
        return self.broker.port

    def run(self, coro: Any, timeout: float = 10) -> Any:
        """Run a coroutine on the broker's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10) -> T:
        """Call ``fn(*args)`` on the broker's loop thread and return its result."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(invoke)
        return fut.result(timeout)

    def stop(self) -> None:
        if self.broker is not None:
            self.run(self.broker.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

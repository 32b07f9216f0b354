"""``$SYS/broker/...`` topics in Mosquitto's naming, published (retained) every ``sys_interval``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from wrenmq.broker.broker import Broker

__all__ = ["SysTree"]


class _Load:
    """An exponentially weighted per-minute rate, as Mosquitto's ``load/.../1min``."""

    __slots__ = ("last", "rate")

    def __init__(self) -> None:
        self.last = 0
        self.rate = 0.0

    def update(self, total: int, interval: float) -> float:
        per_minute = (total - self.last) * 60.0 / interval if interval > 0 else 0.0
        self.last = total
        weight = min(1.0, interval / 60.0)
        self.rate += (per_minute - self.rate) * weight
        return self.rate


class SysTree:
    """Publishes the broker's statistics under ``$SYS``."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._handle: asyncio.TimerHandle | None = None
        self._loads = {name: _Load() for name in ("mr", "ms", "br", "bs", "conn")}

    def start(self) -> None:
        """Publish now and then every ``sys_interval`` seconds (0 disables)."""
        if self.broker.config.sys_interval > 0:
            self.publish()

    def stop(self) -> None:
        """Stop publishing."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def values(self) -> dict[str, str]:
        """The current ``$SYS`` topics and their payloads."""
        from wrenmq import __version__

        b = self.broker
        s = b.stats
        interval = b.config.sys_interval
        loads = self._loads
        return {
            "$SYS/broker/version": f"wrenmq version {__version__}",
            "$SYS/broker/uptime": f"{int(time.time() - b.started_at)} seconds",
            "$SYS/broker/clients/connected": str(b.connected_count),
            "$SYS/broker/clients/disconnected": str(len(b.sessions) - b.connected_count),
            "$SYS/broker/clients/total": str(len(b.sessions)),
            "$SYS/broker/messages/received": str(s.messages_received),
            "$SYS/broker/messages/sent": str(s.messages_sent),
            "$SYS/broker/publish/messages/dropped": str(s.messages_dropped),
            "$SYS/broker/bytes/received": str(s.bytes_received),
            "$SYS/broker/bytes/sent": str(s.bytes_sent),
            "$SYS/broker/subscriptions/count": str(len(b.index)),
            "$SYS/broker/retained messages/count": str(len(b.retained)),
            "$SYS/broker/load/messages/received/1min": _fmt(
                loads["mr"].update(s.messages_received, interval)
            ),
            "$SYS/broker/load/messages/sent/1min": _fmt(
                loads["ms"].update(s.messages_sent, interval)
            ),
            "$SYS/broker/load/bytes/received/1min": _fmt(
                loads["br"].update(s.bytes_received, interval)
            ),
            "$SYS/broker/load/bytes/sent/1min": _fmt(loads["bs"].update(s.bytes_sent, interval)),
            "$SYS/broker/load/connections/1min": _fmt(
                loads["conn"].update(s.connections_total, interval)
            ),
        }

    def publish(self) -> None:
        """Publish every ``$SYS`` topic as a retained message and schedule the next round."""
        broker = self.broker
        for topic, value in self.values().items():
            broker.publish(topic, value.encode(), retain=True)
        self._handle = broker.loop.call_later(broker.config.sys_interval, self.publish)


def _fmt(rate: float) -> str:
    return f"{rate:.2f}"

"""Keep alive bookkeeping for the client side of a connection (MQTT 5 section 3.1.2.10).

Pure arithmetic on times handed in by the IO layer: the client must send *some* control packet at
least every ``interval`` seconds, and a PINGREQ left unanswered for ``ping_timeout`` seconds means
the connection is dead. Imports nothing; never reads a clock.
"""

from __future__ import annotations

import enum

__all__ = ["KeepAlive", "KeepAliveAction"]


class KeepAliveAction(enum.Enum):
    """What the keep alive wants done at a given moment."""

    NOTHING = 0
    PING = 1
    EXPIRED = 2


class KeepAlive:
    """When to send PINGREQ and when to give up waiting for PINGRESP.

    Args:
        interval: the keep alive in seconds (the server's Server Keep Alive when it sent one);
            0 turns the mechanism off [MQTT-3.1.2-20].
        ping_timeout: seconds to wait for PINGRESP; ``None`` means ``interval``.
    """

    __slots__ = ("interval", "last_sent", "ping_sent_at", "ping_timeout")

    def __init__(self, interval: float, ping_timeout: float | None = None) -> None:
        self.interval = interval
        self.ping_timeout = interval if ping_timeout is None else ping_timeout
        self.last_sent = 0.0
        self.ping_sent_at: float | None = None

    def sent(self, now: float) -> None:
        """Record that a packet was written at ``now``."""
        if now > self.last_sent:
            self.last_sent = now

    def ping_sent(self, now: float) -> None:
        """Record that a PINGREQ was written at ``now``."""
        self.sent(now)
        if self.ping_sent_at is None:
            self.ping_sent_at = now

    def pong(self) -> None:
        """A PINGRESP arrived."""
        self.ping_sent_at = None

    def deadline(self) -> float | None:
        """The next moment at which :meth:`poll` has something to do; ``None`` when disabled."""
        if not self.interval:
            return None
        ping_due = self.last_sent + self.interval
        if self.ping_sent_at is None:
            return ping_due
        return min(self.ping_sent_at + self.ping_timeout, ping_due)

    def poll(self, now: float) -> KeepAliveAction:
        """Tell what to do at ``now``: nothing, send a PINGREQ, or declare the connection dead."""
        if not self.interval:
            return KeepAliveAction.NOTHING
        if self.ping_sent_at is not None and now >= self.ping_sent_at + self.ping_timeout:
            return KeepAliveAction.EXPIRED
        # [MQTT-3.1.2-22]: without other traffic the client sends PINGREQ within the keep alive.
        if now >= self.last_sent + self.interval:
            return KeepAliveAction.PING
        return KeepAliveAction.NOTHING

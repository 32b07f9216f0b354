"""Limits against bad and hostile peers: token buckets, per source IP admission, per client rates.

Role: the policy half of the broker's protections, kept pure so it is tested without sockets or a
clock: every method takes ``now`` (seconds, any monotonic origin) and returns a decision; the
broker and its connections do the IO (close, ``pause_reading``, DISCONNECT) afterwards.

- :class:`TokenBucket`: ``rate`` tokens a second up to ``burst``. :meth:`~TokenBucket.try_take`
  admits or refuses (connections); :meth:`~TokenBucket.take` always takes and may go into debt,
  returning how long the debt takes to repay (throttling: the caller stops reading that long).
- :class:`IpLimits`: open connections and new connections per second per source address, checked
  when a socket is accepted (``max_connections_per_ip``, ``connection_rate_per_ip``), plus the
  "log once a minute per address" rule for refusals. Memory stays bounded by :meth:`IpLimits.prune`.
- :class:`ClientLimiter`: one connection's PUBLISH and byte rates (``message_rate_limit``,
  ``byte_rate_limit``).

Imports: the standard library only (no asyncio, socket or time).
"""

from __future__ import annotations

__all__ = ["ClientLimiter", "IpLimits", "TokenBucket"]

WARN_INTERVAL = 60.0  # seconds between two WARNINGs about the same address
MAX_CREDIT = 10.0  # seconds of rate a client may be credited for time the broker held it


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full at ``now``."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError(f"rate and burst must be positive, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def refill(self, now: float) -> float:
        """Add what accrued since the last call (time never runs backwards here); the balance."""
        if now > self.stamp:
            if self.tokens < self.burst:  # (a credit may have raised it above the burst)
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def credit(self, now: float, seconds: float) -> None:
        """Add ``seconds`` of rate on top of the burst (up to ``MAX_CREDIT`` seconds' worth):
        for time the peer was held up by us, when what it sent meanwhile arrives all at once."""
        self.tokens = max(
            self.refill(now),
            min(self.tokens + seconds * self.rate, self.burst + MAX_CREDIT * self.rate),
        )

    def try_take(self, now: float, amount: float = 1.0) -> bool:
        """Take ``amount`` if the balance covers it; a refusal takes nothing."""
        if self.refill(now) < amount:
            return False
        self.tokens -= amount
        return True

    def take(self, now: float, amount: float = 1.0) -> float:
        """Take ``amount`` even into debt; seconds until the balance is back at 0 (0.0 if not
        in debt)."""
        tokens = self.tokens = self.refill(now) - amount
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def full(self, now: float) -> bool:
        """True once the bucket has refilled completely: it then remembers nothing."""
        return self.refill(now) >= self.burst


class IpLimits:
    """Per source address: connections open at once and new connections per second.

    Args:
        max_connections: Open connections one address may hold; 0 = unlimited.
        rate: New connections one address may open per second; 0 = unlimited. The burst is
            ``max(1, rate)``, so a client can always reconnect once after a quiet second.
    """

    __slots__ = ("_buckets", "_open", "_warned", "burst", "max_connections", "rate")

    def __init__(self, *, max_connections: int, rate: float) -> None:
        self.max_connections = max_connections
        self.rate = rate
        self.burst = max(1.0, rate)
        self._open: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._warned: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        """Whether any per-address limit is configured."""
        return bool(self.max_connections or self.rate)

    def open_connections(self, ip: str) -> int:
        """Connections from ``ip`` admitted and not yet released."""
        return self._open.get(ip, 0)

    def admit(self, ip: str, now: float) -> str | None:
        """Count a new connection from ``ip``: None if admitted, else why it is refused.

        An admitted connection must be given back with :meth:`release` when it closes; a refused
        one takes nothing (neither a slot nor a rate token).
        """
        count = self._open.get(ip, 0)
        if self.max_connections and count >= self.max_connections:
            return f"{count} connections open from this address (max_connections_per_ip)"
        if self.rate:
            bucket = self._buckets.get(ip)
            if bucket is None:
                bucket = self._buckets[ip] = TokenBucket(self.rate, self.burst, now)
            if not bucket.try_take(now):
                return f"more than {self.rate:g} new connections a second (connection_rate_per_ip)"
        self._open[ip] = count + 1
        return None

    def release(self, ip: str) -> None:
        """An admitted connection from ``ip`` closed."""
        count = self._open.get(ip, 0) - 1
        if count > 0:
            self._open[ip] = count
        else:
            self._open.pop(ip, None)

    def should_warn(self, ip: str, now: float) -> bool:
        """True at most once per ``WARN_INTERVAL`` per address: a flood logs one line a minute."""
        last = self._warned.get(ip)
        if last is not None and now - last < WARN_INTERVAL:
            return False
        self._warned[ip] = now
        return True

    def prune(self, now: float) -> None:
        """Forget what no longer matters (full buckets, old warnings), so that many addresses
        passing by do not grow memory without bound."""
        self._buckets = {ip: b for ip, b in self._buckets.items() if not b.full(now)}
        self._warned = {ip: t for ip, t in self._warned.items() if now - t < WARN_INTERVAL}

    def tracked(self) -> int:
        """Addresses with any state: open connections, a rate bucket or a recent warning."""
        return len(self._open.keys() | self._buckets.keys() | self._warned.keys())


class ClientLimiter:
    """One client's PUBLISH rate and byte rate; a rate of 0 is not limited.

    Both buckets start full with one second's worth (at least one PUBLISH / one byte), so a
    client that keeps to its rate on average is never held up by the burst of its first second.
    """

    __slots__ = ("bytes", "logged", "messages")

    def __init__(self, *, message_rate: float, byte_rate: int, now: float) -> None:
        self.messages = (
            TokenBucket(message_rate, max(1.0, message_rate), now) if message_rate else None
        )
        self.bytes = TokenBucket(byte_rate, byte_rate, now) if byte_rate else None
        self.logged = False  # the first throttling of a connection is logged, not every one

    def publish(self, now: float) -> float:
        """One PUBLISH arrived: seconds of debt it left (0.0 = within the rate)."""
        return 0.0 if self.messages is None else self.messages.take(now)

    def received(self, n: int, now: float) -> float:
        """``n`` bytes arrived: seconds of debt they left (0.0 = within the rate)."""
        return 0.0 if self.bytes is None else self.bytes.take(now, n)

    def pardon(self, now: float, seconds: float) -> None:
        """The broker stopped reading from this client for ``seconds`` (back-pressure, unread
        output): what it sent meanwhile at its allowed rate now arrives at once and must not
        count as going over it."""
        for bucket in (self.messages, self.bytes):
            if bucket is not None:
                bucket.credit(now, seconds)

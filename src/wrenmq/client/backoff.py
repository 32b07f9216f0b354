"""Reconnect policy: exponential backoff with jitter.

Pure policy, no IO: ``Reconnect.delays()`` yields how long to wait before each attempt. Imports
only the stdlib.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Reconnect"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnect:
    """How a client reconnects after losing an established connection.

    The n-th attempt waits ``min(initial_delay * multiplier ** n, max_delay)`` seconds, reduced
    by a random fraction up to ``jitter`` so that many clients cut off together do not come back
    in lockstep.

    Args:
        initial_delay: seconds before the first attempt.
        max_delay: upper bound of the delay.
        multiplier: growth factor between attempts (>= 1).
        jitter: fraction of each delay (0..1) that is randomised away.
        max_attempts: give up after this many failed attempts; ``None`` retries forever.
    """

    initial_delay: float = 0.1
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need multiplier >= 1 and 0 <= jitter <= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None)")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Yield the delay before each reconnect attempt, ending after ``max_attempts``."""
        uniform = (rng or random).random
        delay = self.initial_delay
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield delay * (1 - self.jitter * uniform())
            delay = min(delay * self.multiplier, self.max_delay)
            attempt += 1

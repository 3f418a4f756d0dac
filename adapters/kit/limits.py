"""Input rate limits per user, checked before anything is answered (aiolimiter's leaky bucket).

A user may send `rate` commands or button presses per `period` seconds (a burst of `rate`,
then one every `period / rate`). Past that, an input is answered ("slow down") at most once
per `period`, the others are dropped without a word, so a flood costs the platform about one
reply per command taken plus one per period.
"""

from __future__ import annotations

import enum
import time

from aiolimiter import AsyncLimiter


class Admission(enum.Enum):
    """What to do with one input."""

    TAKE = "take"
    WARN = "warn"  # refused: tell the user once
    DROP = "drop"  # refused: already told


class InputLimits:
    """One leaky bucket per user key; buckets that have drained are forgotten."""

    def __init__(self, rate: int, period: float) -> None:
        self.rate = max(1, rate)
        self.period = period
        self._buckets: dict[str, AsyncLimiter] = {}
        self._warned: dict[str, float] = {}
        self._tidied = time.monotonic()
        self.refused = 0

    async def admit(self, user_key: str) -> Admission:
        """Count one input of `user_key` if the bucket has room (never waits)."""
        self._tidy()
        bucket = self._buckets.get(user_key)
        if bucket is None:
            bucket = self._buckets[user_key] = AsyncLimiter(self.rate, self.period)
        if bucket.has_capacity():
            await bucket.acquire()  # returns at once: there is room
            return Admission.TAKE
        self.refused += 1
        now = time.monotonic()
        if now - self._warned.get(user_key, -self.period) >= self.period:
            self._warned[user_key] = now
            return Admission.WARN
        return Admission.DROP

    def wait_seconds(self) -> int:
        """About how long until one more input is taken (for the "slow down" sentence)."""
        return max(1, round(self.period / self.rate))

    def _tidy(self) -> None:
        now = time.monotonic()
        if now - self._tidied < self.period:
            return
        self._tidied = now
        for key, bucket in list(self._buckets.items()):
            if bucket.has_capacity(self.rate):  # fully drained: a new bucket is the same
                del self._buckets[key]
        for key, at in list(self._warned.items()):
            if now - at >= self.period:
                del self._warned[key]

"""Results waiting for delivery, held by reference: the image store has every picture, so only
`limit` bytes of them stay in memory; the rest are read back from the store when their turn
comes (a group can take about two results a minute, so hundreds may wait)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.types import ImageResult

Load = Callable[[str], Awaitable[bytes]]


@dataclass(eq=False)
class Held:
    """One picture waiting: its store key, its size, and its bytes while the spool keeps them."""

    ref: str
    size: int
    data: bytes | None


class Spool:
    """At most `limit` bytes of waiting results in memory; `peak` is the most it held."""

    def __init__(self, limit: int, load: Load) -> None:
        self.limit = limit
        self._load = load
        self.held = 0
        self.peak = 0
        self.spilled = 0  # pictures read back from the store

    def hold(self, image: ImageResult) -> Held:
        """Take the picture's bytes over (the ImageResult lets go of them when the store has
        them, so nothing else keeps them alive while the result waits)."""
        data = image.png
        size = len(data)
        if not image.ref:  # not in the store (a test's replier): keep it, it cannot be read back
            return Held("", size, data)
        image.png = b""
        if self.held + size > self.limit:
            return Held(image.ref, size, None)
        self.held += size
        self.peak = max(self.peak, self.held)
        return Held(image.ref, size, data)

    async def read(self, held: Held) -> bytes:
        """The picture's bytes, from memory or from the store."""
        if held.data is not None:
            return held.data
        self.spilled += 1
        return await self._load(held.ref)

    def release(self, held: Held) -> None:
        """The picture is sent (or given up): its bytes leave the spool."""
        if held.data is not None and held.ref:
            self.held -= held.size
        held.data = None

"""Discord's side of the outbox: discord.py keeps Discord's per-route rate-limit buckets itself
(it reads the X-RateLimit headers and waits before a bucket runs dry, and waits out a 429), so
the outbox adds the order (results before refusals and status edits, one call in flight per
channel, a channel's status edits spaced by DISCORD_EDIT_INTERVAL) and the retries of network
errors, timeouts and 5xx for DELIVERY_RETRY_SECONDS."""

from __future__ import annotations

import aiohttp
import discord

from adapters.kit import Flood, LaneSpec, Outbox, Verdict
from bot.settings import Settings

RATE_LIMITED_PAUSE = 5.0  # discord.py gave up on a 429 (it waits out shorter ones itself)


class DiscordEdge:
    """The platform plug of Discord's outbox."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def lane_spec(self, lane: object) -> LaneSpec:
        """No windows of our own (discord.py's buckets), only the gap between status edits."""
        return LaneSpec([], progress_gap=self.settings.discord_edit_interval)

    def verdict(self, exc: BaseException) -> Flood | Verdict:
        """5xx, network errors and timeouts are transient; a 429 pauses the channel."""
        if isinstance(exc, discord.RateLimited):
            return Flood(exc.retry_after)
        if isinstance(exc, discord.HTTPException):
            if exc.status == 429:
                return Flood(RATE_LIMITED_PAUSE)
            return Verdict.TRANSIENT if exc.status >= 500 else Verdict.FATAL
        if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
            return Verdict.TRANSIENT
        return Verdict.FATAL


def make_outbox(settings: Settings) -> Outbox:
    """Discord's outbox."""
    return Outbox(
        DiscordEdge(settings),
        retry_seconds=settings.delivery_retry_seconds,
        name="discord outbox",
    )

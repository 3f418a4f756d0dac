"""Quota as a service: the quota day, the reset label users see (refills are lazy)."""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.types import QuotaView

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage.db import Database


def quota_day(now: datetime, reset: time, tz: ZoneInfo) -> str:
    """The quota day `now` falls in: days start at the reset time in the operator's time zone."""
    local = now.astimezone(tz)
    day = local.date()
    if local.timetz().replace(tzinfo=None) < reset:
        day -= timedelta(days=1)
    return day.isoformat()


def next_reset(now: datetime, reset: time, tz: ZoneInfo) -> datetime:
    """When credits next refill."""
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), reset, tzinfo=tz)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate


@dataclass
class Quotas:
    """Reserve at enqueue, settle on delivery, release on failure or cancel."""

    db: Database
    settings: Settings
    # daily credits by user key (the governor's tiers; DAILY_CREDITS / ADMIN_DAILY_CREDITS)
    allowance_of: Callable[[str], int] | None = None
    _day: tuple[float, str, str] | None = field(default=None, init=False, repr=False)

    def allowance(self, user_key: str) -> int:
        """A user's daily credits."""
        if self.allowance_of is not None:
            return self.allowance_of(user_key)
        return self.settings.allowance_for(user_key)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.quota_timezone)

    def today(self, now: datetime | None = None) -> str:
        """Current quota day."""
        if now is None:
            return self._current()[1]
        return quota_day(now, self.settings.quota_reset_time, self.tz)

    def reset_label(self, now: datetime | None = None) -> str:
        """Next refill, as users read it, e.g. '00:00 UTC'."""
        if now is None:
            return self._current()[2]
        return self._label(next_reset(now, self.settings.quota_reset_time, self.tz))

    def _label(self, when: datetime) -> str:
        return f"{when:%H:%M} {self.settings.quota_timezone}"

    def _current(self) -> tuple[float, str, str]:
        """(next refill as a timestamp, today, its label), worked out once per quota day:
        every /draw asks for both (~70 µs each with time zones)."""
        day = self._day
        if day is None or _time.time() >= day[0]:
            now = datetime.now(self.tz)
            when = next_reset(now, self.settings.quota_reset_time, self.tz)
            day = self._day = (when.timestamp(), self.today(now), self._label(when))
        return day

    async def settle(self, job_id: str) -> None:
        """The job delivered: the reservation becomes a charge."""
        await self.db.quota.settle(job_id)

    async def release(self, job_id: str) -> int:
        """The job failed or was cancelled: give the credits back (once)."""
        return int(await self.db.quota.release(job_id, today=self.today()))

    async def view(self, user_key: str, tier: str = "") -> QuotaView:
        """/quota and `drawbridge quota show`: the balance and the next refill."""
        shown = await self.db.quota.show(
            user_key, allowance=self.allowance(user_key), today=self.today()
        )
        return QuotaView(
            user_key=user_key,
            available=shown.available,
            allowance=shown.allowance,
            bonus=shown.bonus,
            reserved=shown.reserved,
            reset=self.reset_label(),
            tier=tier,
        )

    async def grant(self, user_key: str, amount: int) -> int:
        """Add persistent extra credits; returns the new available balance."""
        return int(
            await self.db.quota.grant(
                user_key,
                amount,
                allowance=self.allowance(user_key),
                today=self.today(),
            )
        )

    async def reset_all(self) -> None:
        """Write every stale account's refill now (not scheduled: lazy refills need none)."""
        await self.db.quota.reset_all(self.today(), self.allowance)

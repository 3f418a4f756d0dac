"""APScheduler jobs: backend health checks, the daily quota reset, image retention."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

if TYPE_CHECKING:
    from bot.engine import Engine

log = logging.getLogger(__name__)


def build_scheduler(engine: Engine) -> AsyncIOScheduler:
    """A scheduler with every periodic job; the caller starts and stops it."""
    settings = engine.settings
    scheduler = AsyncIOScheduler(timezone=settings.quota_timezone)
    scheduler.add_job(
        engine.dispatcher.check_all,
        IntervalTrigger(seconds=settings.health_check_interval),
        id="health",
        max_instances=1,
        coalesce=True,
    )
    reset = settings.quota_reset_time
    scheduler.add_job(
        engine.quotas.reset_all,
        CronTrigger(hour=reset.hour, minute=reset.minute, timezone=settings.quota_timezone),
        id="quota-reset",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )
    scheduler.add_job(
        _retention,
        IntervalTrigger(hours=1),
        args=[engine],
        id="retention",
        max_instances=1,
        coalesce=True,
    )
    return scheduler


async def _retention(engine: Engine) -> None:
    seconds = engine.settings.retention_days * 86400
    deleted = await asyncio.to_thread(engine.store.delete_older_than, seconds)
    if deleted:
        log.info(
            "retention: deleted %d stored images older than %s days",
            deleted,
            engine.settings.retention_days,
        )

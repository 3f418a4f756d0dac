"""APScheduler jobs: backend health checks, image and audit retention, ledger pruning.

No job resets quotas: each account refills lazily, in its first reservation (or view) of a new
quota day (storage/quota.py). The scheduled reset that wrote every stale account at
QUOTA_RESET_TIME held the database writer for seconds at 100 000 accounts, and every /draw
waited behind it (`make bench`: daily_reset_*).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from storage.prune import maintain

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
    # the hourly housekeeping, each taking the engine
    for job, name in (
        (retention, "retention"),
        (audit_retention, "audit-retention"),
        (ledger, "ledger"),
    ):
        scheduler.add_job(
            job,
            IntervalTrigger(hours=1),
            args=[engine],
            id=name,
            max_instances=1,
            coalesce=True,
        )
    return scheduler


async def audit_retention(engine: Engine) -> int:
    """Delete audit rows older than AUDIT_RETENTION_DAYS (image retention leaves them)."""
    days = engine.settings.audit_retention_days
    forgotten = await engine.db.audit.forget(datetime.now(UTC) - timedelta(days=days))
    if forgotten:
        log.info("audit retention: deleted %d rows older than %g days", forgotten, days)
    return forgotten


async def ledger(engine: Engine) -> tuple[int, int]:
    """Fold ledger rows older than LEDGER_KEEP_DAYS into per-day sums, then compact the file."""
    return await maintain(engine.db, engine.settings.ledger_keep_days)


async def retention(engine: Engine) -> tuple[int, int]:
    """Delete stored images and finished jobs (with their buttons) older than RETENTION_DAYS."""
    seconds = engine.settings.retention_days * 86400
    images = await asyncio.to_thread(engine.store.delete_older_than, seconds)
    before = datetime.now(UTC) - timedelta(seconds=seconds)
    jobs = await engine.db.jobs.delete_finished_before(before)
    if images or jobs:
        log.info(
            "retention: deleted %d images and %d finished jobs older than %g days",
            images,
            jobs,
            engine.settings.retention_days,
        )
    return images, jobs

"""`drawbridge stats` and `/admin stats`: images and credits today, in 7 and 30 days, top
users, per-backend busy share and failures, median wait — all from the audit, so image
retention does not change them."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.i18n import t
from storage.db import Database

WINDOWS = (1, 7, 30)  # days
TOP_USERS = 5


@dataclass(frozen=True)
class Window:
    """One period's totals."""

    days: int
    images: int
    credits: int
    jobs: int


@dataclass(frozen=True)
class BackendShare:
    """How much of the last 30 days one backend spent drawing, and how often it failed."""

    name: str
    busy_share: float
    jobs: int
    failures: int


@dataclass(frozen=True)
class Stats:
    """Everything the stats command shows."""

    windows: tuple[Window, ...]
    top_users: tuple[tuple[str, int, int], ...]  # user key, images, credits (30 days)
    backends: tuple[BackendShare, ...]
    median_wait: float | None
    extra: dict[str, int] = field(default_factory=dict)


async def gather(db: Database, now: datetime | None = None) -> Stats:
    """Read the last 30 days of the audit and sum them up."""
    now = now or datetime.now(UTC)
    longest = max(WINDOWS)
    entries = await db.audit.entries(since=now - timedelta(days=longest))
    windows = []
    for days in WINDOWS:
        since = now - timedelta(days=days)
        mine = [e for e in entries if e.at >= since]
        done = [e for e in mine if e.outcome == "delivered"]
        windows.append(
            Window(
                days,
                sum(_images(e.result_hash) for e in done),
                sum(e.cost for e in done),
                len(mine),
            )
        )
    images: Counter[str] = Counter()
    credits: Counter[str] = Counter()
    busy: dict[str, float] = defaultdict(float)
    jobs: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    waits = []
    for e in entries:
        if e.outcome == "delivered":
            images[e.user_key] += _images(e.result_hash)
            credits[e.user_key] += e.cost
        if e.backend:
            busy[e.backend] += e.run_seconds
            jobs[e.backend] += 1
            if e.outcome == "failed":
                failures[e.backend] += 1
            waits.append(e.wait_seconds)
    span = timedelta(days=longest).total_seconds()
    top = sorted(credits, key=lambda k: (-credits[k], k))[:TOP_USERS]
    return Stats(
        windows=tuple(windows),
        top_users=tuple((k, images[k], credits[k]) for k in top),
        backends=tuple(
            BackendShare(name, busy[name] / span, jobs[name], failures[name])
            for name in sorted(jobs)
        ),
        median_wait=statistics.median(waits) if waits else None,
    )


def _images(hashes: str) -> int:
    return len([h for h in hashes.split(",") if h])


def stats_lines(stats: Stats, locale: str | None) -> list[str]:
    """The stats as lines of text (chat and terminal alike)."""
    lines = [t(locale, "stats.title")]
    for w in stats.windows:
        lines.append(
            t(locale, "stats.window", days=w.days, images=w.images, credits=w.credits, jobs=w.jobs)
        )
    if stats.top_users:
        lines.append(t(locale, "stats.top"))
        for key, images, credits in stats.top_users:
            lines.append(t(locale, "stats.top_user", user=key, images=images, credits=credits))
    for b in stats.backends:
        share = f"{b.busy_share * 100:.1f}"
        lines.append(
            t(
                locale,
                "stats.backend",
                # unnamed backends are stored by index (WEBUI_NAMES gives them names)
                backend=t(locale, "stats.backend_index", n=b.name) if b.name.isdigit() else b.name,
                share=share,
                jobs=b.jobs,
                failures=b.failures,
            )
        )
    if stats.median_wait is not None:
        lines.append(t(locale, "stats.median_wait", seconds=f"{stats.median_wait:.1f}"))
    return lines

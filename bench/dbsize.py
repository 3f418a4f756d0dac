"""Database bytes per delivered job on an SQLite file, kept whole and with the ledger pruned.

Each job goes through the transactions the engine runs for a delivered /draw (submit with its
reservation, start, render with one result and its buttons, deliver with the settle), with a
request, reply handle and infotext of the sizes a Telegram job has. Sizes are the file after
a WAL checkpoint (TRUNCATE), minus the freshly migrated file, per job:

- db_bytes_per_job: everything kept (what each job costs until RETENTION_DAYS);
- db_bytes_per_job_kept: after retention deleted the jobs (results and buttons with them),
  ledger kept and the file compacted: what each job left for good before ledger pruning;
- db_bytes_per_job_pruned: then the ledger pruned as LEDGER_KEEP_DAYS does once the rows are
  old, and the file compacted: the per-day sums are all that is left.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import timedelta
from pathlib import Path

from storage.db import Database
from storage.lifecycle import RenderedImage
from storage.models import utcnow
from storage.prune import compact, prune_ledger

JOBS = 3000
USERS = 300
DAY = "2026-03-01"
PROMPT = "a red fox in the snow, golden hour, highly detailed, 35mm photo"
PARAMS = {
    "prompt": PROMPT,
    "negative_prompt": "blurry, low quality",
    "width": 1024,
    "height": 1024,
    "steps": 28,
    "cfg_scale": 6.5,
    "sampler_name": "DPM++ 2M",
    "scheduler": "Karras",
    "seed": -1,
    "batch_size": 1,
    "n_iter": 1,
    "checkpoint": "sdxl_base_1.0.safetensors",
    "preset": "sdxl",
    "clip_skip": 1,
}
INFOTEXT = (
    "a red fox in the snow, golden hour, highly detailed, 35mm photo\nNegative prompt: blurry, "
    "low quality\nSteps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: "
    "3141592653, Size: 1024x1024, Model hash: 31e35c80fc, Model: sdxl_base_1.0, Version: v1.10.1"
)
BUTTONS = [(0, "reroll"), (0, "variations"), (0, "upscale"), (0, "original"), (0, "delete")]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def _checkpointed(db: Database, path: Path) -> int:
    await db.read_tx(lambda conn: conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)"))
    return _size(path)


async def _deliver(db: Database, n: int) -> None:
    job, user = f"{n:032x}", f"telegram:{100000 + n % USERS}"
    await db.submit_job(
        id=job,
        user_key=user,
        platform="telegram",
        display_name=f"user {n % USERS}",
        prompt=PROMPT,
        params=PARAMS,
        cost=4,
        allowance=10**6,
        today=DAY,
        chat_id=str(100000 + n % USERS),
        reply_ref={"chat": 100000 + n % USERS, "message": 5000 + n},
        source=f"{100000 + n % USERS}:{5000 + n}",
        route="telegram:123456789",
    )
    await db.jobs.start(job, owner=None, backend="http://127.0.0.1:7860", attempts=1)
    image = RenderedImage(f"{job}-0-{'a' * 32}.png", 3141592653, 1024, 1024, INFOTEXT)
    await db.jobs.render(job, owner=None, images=[image], actions=BUTTONS)
    await db.jobs.deliver(job, owner=None)


async def run() -> dict[str, float]:
    """db_bytes_per_job, db_bytes_per_job_kept, db_bytes_per_job_pruned."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drawbridge.db"
        async with Database(f"sqlite+aiosqlite:///{path}") as db:
            empty = await _checkpointed(db, path)
            for start in range(0, JOBS, 50):
                await asyncio.gather(*(_deliver(db, n) for n in range(start, start + 50)))
            full = await _checkpointed(db, path)
            later = utcnow() + timedelta(days=91)
            await db.jobs.delete_finished_before(later)  # retention, once they are old
            await compact(db)
            kept = await _checkpointed(db, path)
            await prune_ledger(db, 90, now=later)
            await compact(db)
            pruned = await _checkpointed(db, path)
    return {
        "db_bytes_per_job": (full - empty) / JOBS,
        "db_bytes_per_job_kept": (kept - empty) / JOBS,
        "db_bytes_per_job_pruned": (pruned - empty) / JOBS,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run())))

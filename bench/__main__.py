"""`python -m bench` (`make bench`): every figure, for drawbridge and the FIFO baseline.

Prints what each step measured as it goes (stderr), then the table (stdout), and writes
bench/results.json. Exit status 0 unless --strict and a target does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    dbsize,
    dcpath,
    decodes,
    live,
    memory,
    nsfw,
    queueops,
    quota,
    report,
    scale,
    tgpath,
)
from bench.bots import KINDS

GROUPS = (
    "queue",
    "memory",
    "decodes",
    "quota",
    "overhead",
    "makespan",
    "light",
    "switches",
    "telegram",
    "discord",
    "scale",
    "nsfw",
    "dbsize",
)
LIVE: dict[str, Callable[..., Any]] = {
    "overhead": live.overhead,
    "makespan": live.makespan,
    "light": live.light_wait,
    "switches": live.model_switches,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only", action="append", choices=GROUPS, help="run only this group (repeatable)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results.json"), help="JSON file"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord.client").setLevel(logging.ERROR)  # "voice will NOT be supported"

    groups = [g for g in GROUPS if not args.only or g in args.only]
    began = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", file=sys.stderr, flush=True)

    ours: report.Results = {}
    base: report.Results = {}
    if "queue" in groups:
        log("queue operations (FairQueue vs a list)")
        q_ours, q_base = queueops.run()
        ours.update(q_ours)
        base.update(q_base)
        log(f"queue: {q_ours} baseline {q_base}")
    if "memory" in groups:
        log("memory (tracemalloc over 20 000 queued jobs; a 2048×2048 result in a subprocess)")
        m_ours, m_base, notes = memory.run()
        ours.update(m_ours)
        base.update(m_base)
        for note in notes:
            log(note)
    if "decodes" in groups:
        log("decodes (twenty 2 KB PNGs declaring 4096×4096 at once, in a subprocess each)")
        d_ours, d_base, notes = decodes.run()
        ours.update(d_ours)
        base.update(d_base)
        for note in notes:
            log(note)
    if "quota" in groups:
        log("quota reservations, 8 concurrent writers on one SQLite file")
        r_ours, r_base = asyncio.run(quota.run())
        ours.update(r_ours)
        base.update(r_base)
        log(f"quota: {r_ours} baseline (read-check-write) {r_base}")
    live_groups = [g for g in groups if g in LIVE]
    if live_groups:
        asyncio.run(_live(live_groups, ours, base, log))
    paths = [
        ("telegram", tgpath, "tg", "python-telegram-bot and a fake Bot API"),
        ("discord", dcpath, "dc", "discord.py and a fake Discord"),
    ]
    for group, path, prefix, what in paths:
        if group in groups:
            log(f"{group}: the whole path through {what}")
            found = asyncio.run(path.run(path.Config(), log))
            for q in ("p50", "p99"):  # the bare bot is the baseline column
                base[f"{prefix}_overhead_ms_{q}"] = found.pop(f"{prefix}_bare_ms_{q}")
            ours.update(found)

    if "scale" in groups:
        log("scale: the queue at 100 000 users, the day change at 100 000 accounts, a restart")
        s_ours, s_base = scale.run()
        ours.update(s_ours)
        base.update(s_base)
        log(f"scale: {s_ours} baseline {s_base}")
    if "nsfw" in groups:
        log("nsfw: NSFW_CHECK's classifier (nudenet) per picture on this CPU")
        found = nsfw.run()
        ours.update(found)
        log(f"nsfw: {found}")

    if "dbsize" in groups:
        log("dbsize: SQLite file bytes per delivered job, kept, after retention, after pruning")
        found = asyncio.run(dbsize.run())
        ours.update(found)
        log(f"dbsize: {found}")

    lines = report.table(ours, base)
    print("\n".join(lines))
    args.out.write_text("")  # fail early on an unwritable path, before the summary
    report.write(args.out, ours, base)
    failed = report.failures(ours)
    log(f"wrote {args.out}; {len(failed)} target(s) not met: {', '.join(failed) or 'none'}")
    return 1 if args.strict and failed else 0


async def _live(
    groups: list[str], ours: report.Results, base: report.Results, log: Callable[[str], None]
) -> None:
    cfg = live.Config()
    for group in groups:
        log(f"live: {group}")
        result = await LIVE[group](cfg, log)
        for kind in KINDS:
            target = ours if kind == "engine" else base
            target.update({k: v for k, v in result[kind].items() if not k.startswith("client_")})


if __name__ == "__main__":
    sys.exit(main())

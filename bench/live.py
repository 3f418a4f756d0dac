"""Live figures: both bots against the same dev-webui servers, one after the other.

Job time is dev-webui's `delay` (the time a request holds the WebUI's FIFO lock); after the lock
is released each response spends `encode_delay` "encoding PNGs", as the real WebUI does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.bots import KINDS, Bot, Kind, running
from bench.common import MODEL_A, MODEL_B, TimedWebUI, idle_gaps, median, percentile, small_request
from bench.common import webuis as start_webuis

Log = Callable[[str], None]


@dataclass(frozen=True)
class Config:
    """Job times and sizes; the defaults keep `python -m bench` near four minutes on 2 cores."""

    # overhead: one job at a time on an idle backend
    overhead_jobs: int = 100
    overhead_delay: float = 0.01
    # makespan and idle gap: the 100 jobs of 0.5 s
    makespan_jobs: int = 100
    makespan_delay: float = 0.5
    makespan_encode: float = 0.05
    # light user behind a heavy burst, (job time, encode time) per bot. The FIFO baseline runs
    # every job of the burst before the light one, so it gets 50 ms jobs: at 0.5 s its B=1000
    # run alone would take nine minutes. Waits are in job-times, so the job time cancels out
    # as long as the bot's own per-job costs are small beside it.
    light: tuple[tuple[Kind, float, float], ...] = (("engine", 0.5, 0.05), ("fifo", 0.05, 0.005))
    bursts: tuple[int, ...] = (10, 100, 1000)
    # model switches: 200 jobs alternating between two checkpoints on 2 backends
    switch_jobs: int = 200
    switch_delay_job: float = 0.05
    switch_encode: float = 0.005
    switch_cost: float = 0.1


async def _quiesce(servers: list[TimedWebUI]) -> None:
    await asyncio.wait_for(asyncio.gather(*(s.quiesce() for s in servers)), 60)


# --- overhead ------------------------------------------------------------------------------


async def overhead(cfg: Config, log: Log) -> dict[Kind, dict[str, Any]]:
    """Command accepted (submit called) → WebUI request sent (just before httpx sends), idle
    backend, one job at a time: the issue's definition. The stricter server-side figure (the
    WebUI has read the request, so it includes the loopback HTTP hop) is reported beside it."""
    out: dict[Kind, dict[str, Any]] = {}
    async with start_webuis(1) as servers:
        server = servers[0]
        for kind in KINDS:
            server.reset(delay=cfg.overhead_delay, encode_delay=0.0)
            server_ms: list[float] = []
            client_ms: list[float] = []
            async with running(kind, [server.url]) as bot:
                await _warm(bot, server)
                for i in range(cfg.overhead_jobs):
                    prompt = f"overhead {i}"
                    sent_before = len(bot.clients[0].sent)
                    accepted = time.monotonic()
                    await bot.submit("u1", small_request(prompt))
                    await bot.recorder.wait_for(i + 2, timeout=30)
                    server_ms.append((server.received[prompt] - accepted) * 1000)
                    client_ms.append((bot.clients[0].sent[sent_before] - accepted) * 1000)
                    await asyncio.sleep(0.03)  # let settling finish: the engine is idle again
            await _quiesce(servers)
            out[kind] = {
                "overhead_ms_p50": median(client_ms),
                "overhead_ms_p99": percentile(client_ms, 99),
                "overhead_received_ms_p50": median(server_ms),
                "overhead_received_ms_p99": percentile(server_ms, 99),
            }
            log(
                f"overhead {kind}: server-side p50 {median(server_ms):.2f} ms "
                f"p99 {percentile(server_ms, 99):.2f} ms; client-side (before httpx sends) "
                f"p50 {median(client_ms):.2f} ms p99 {percentile(client_ms, 99):.2f} ms"
            )
    return out


async def _warm(bot: Bot, server: TimedWebUI) -> None:
    """One job first, so connection set-up and first-use costs are not measured."""
    await bot.submit("warm", small_request("warm-up"))
    await bot.recorder.wait_for(1, timeout=30)
    await asyncio.sleep(0.05)


# --- makespan and idle gap -----------------------------------------------------------------


async def makespan(cfg: Config, log: Log) -> dict[Kind, dict[str, Any]]:
    """100 jobs of 0.5 s on 1 and on 4 backends. Makespan: first submit → last delivery,
    over jobs × job time ÷ backends. Idle gaps: every backend's lock released → next acquired,
    pooled over both runs."""
    out: dict[Kind, dict[str, Any]] = {kind: {"gaps": []} for kind in KINDS}
    for backends in (1, 4):
        async with start_webuis(backends) as servers:
            for kind in KINDS:
                for s in servers:
                    s.reset(delay=cfg.makespan_delay, encode_delay=cfg.makespan_encode)
                async with running(kind, [s.url for s in servers]) as bot:
                    start = time.monotonic()
                    for i in range(cfg.makespan_jobs):
                        await bot.submit(f"u{i % 4}", small_request(f"makespan {i}"))
                    await bot.recorder.wait_for(cfg.makespan_jobs, timeout=600)
                    end = max(bot.recorder.delivered.values())
                await _quiesce(servers)
                ideal = cfg.makespan_jobs * cfg.makespan_delay / backends
                ratio = (end - start) / ideal
                gaps = [g * 1000 for g in idle_gaps(servers)]
                holds = [h.released - h.acquired for s in servers for h in s.holds]
                out[kind][f"makespan_ratio_{backends}"] = ratio
                out[kind]["gaps"].extend(gaps)
                log(
                    f"makespan {kind} on {backends}: {end - start:.2f} s for ideal {ideal:.2f} s"
                    f" → {ratio:.4f}; idle gap median {median(gaps):.2f} ms, max "
                    f"{max(gaps):.2f} ms; mean lock hold {sum(holds) / len(holds) * 1000:.1f} ms"
                )
    for kind in KINDS:
        gaps = out[kind].pop("gaps")
        out[kind]["idle_gap_ms_median"] = median(gaps)
        out[kind]["idle_gap_ms_p95"] = percentile(gaps, 95)
    return out


# --- a light user behind a heavy burst -----------------------------------------------------


async def light_wait(cfg: Config, log: Log) -> dict[Kind, dict[str, Any]]:
    """One backend. A heavy user queues B jobs, then a light user queues one: the light job's
    wait, from its own submit to its lock acquired, in job-times."""
    out: dict[Kind, dict[str, Any]] = {kind: {} for kind in KINDS}
    async with start_webuis(1) as servers:
        for burst in cfg.bursts:
            for kind, delay, encode in cfg.light:
                jobs = await _light_once(servers[0], kind, burst, delay, encode, log)
                out[kind][f"light_wait_jobs_b{burst}"] = jobs
        # the engine with the baseline's short jobs, for the note (not a figure)
        await _light_once(servers[0], "engine", 100, cfg.light[-1][1], cfg.light[-1][2], log)
    return out


async def _light_once(
    server: TimedWebUI, kind: Kind, burst: int, delay: float, encode: float, log: Log
) -> float:
    server.reset(delay=delay, encode_delay=encode)
    async with running(kind, [server.url]) as bot:
        began = time.monotonic()
        for i in range(burst):
            await bot.submit("heavy", small_request(f"heavy {i}"))
        queued = time.monotonic() - began
        submitted = time.monotonic()
        await bot.submit("light", small_request("light"))
        wait = await asyncio.wait_for(server.wait_started("light"), 600) - submitted
        ahead = sum(1 for h in server.holds if h.acquired > submitted)
    await _quiesce([server])
    jobs = wait / delay
    log(
        f"light wait {kind} B={burst} ({delay * 1000:.0f} ms jobs): {wait * 1000:.0f} ms = "
        f"{jobs:.2f} job-times ({ahead} heavy jobs started after the light submit; submitting"
        f" the burst took {queued:.2f} s)"
    )
    return jobs


# --- model switches ----------------------------------------------------------------------


async def model_switches(cfg: Config, log: Log) -> dict[Kind, dict[str, Any]]:
    """200 jobs alternating between two checkpoints on 2 backends; checkpoint loads counted
    by the servers. The baseline runs twice: as the popular bots send jobs (the WebUI restores
    its checkpoint after each), the figure; and with drawbridge's payload, for the note."""
    out: dict[Kind, dict[str, Any]] = {}
    async with start_webuis(2) as servers:
        runs: list[tuple[Kind, bool]] = [("engine", False), ("fifo", False), ("fifo", True)]
        for kind, keep in runs:
            for s in servers:
                s.reset(
                    delay=cfg.switch_delay_job,
                    encode_delay=cfg.switch_encode,
                    switch_delay=cfg.switch_cost,
                )
            async with running(kind, [s.url for s in servers], fifo_keeps_model=keep) as bot:
                start = time.monotonic()
                for i in range(cfg.switch_jobs):
                    model = MODEL_A if i % 2 == 0 else MODEL_B
                    await bot.submit(f"u{i % 4}", small_request(f"mixed {i}", model))
                await bot.recorder.wait_for(cfg.switch_jobs, timeout=600)
                took = max(bot.recorder.delivered.values()) - start
            await _quiesce(servers)
            switches = sum(s.switches for s in servers)
            if kind not in out:
                out[kind] = {"model_switches_mixed": switches}
            how = " with drawbridge's payload (checkpoint kept loaded)" if keep else ""
            log(f"model switches {kind}{how}: {switches} in {took:.1f} s")
    return out

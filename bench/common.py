"""What every live benchmark shares: a timed dev-webui, an engine on a fresh SQLite file, a replier
that timestamps deliveries, and small statistics helpers.

All timestamps are `time.monotonic()` (the dispatcher's clock too), taken in this one process, so
server-side and bot-side times compare directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import math
import operator
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from bot.engine import Engine
from bot.errors import DrawbridgeError
from bot.presets import PresetBook
from bot.settings import Settings
from bot.types import GenerationRequest, JobResult, JobUpdate
from devwebui import DevWebUI
from storage.db import Database

# The models dev-webui serves (devwebui.fields.DEFAULT_MODELS), by the names users type.
MODEL_A = "v1-5-pruned-emaonly"
MODEL_B = "sd_xl_base_1.0"


@dataclass(frozen=True, slots=True)
class Hold:
    """One hold of the WebUI's generation lock."""

    prompt: str
    acquired: float
    released: float


class TimedLock(asyncio.Lock):
    """The WebUI's FIFO lock, recording when each holder got it and let it go."""

    def __init__(self) -> None:
        super().__init__()
        self.holds: list[Hold] = []
        self.holder = ""
        self._since = 0.0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self._since = time.monotonic()
        self.holder = ""
        return True

    def release(self) -> None:
        self.holds.append(Hold(self.holder, self._since, time.monotonic()))
        super().release()


class TimedWebUI(DevWebUI):
    """dev-webui unchanged in behaviour, plus three records for the benchmarks:
    `holds` (lock acquired/released per prompt), `received` (prompt → when a generation
    request's body had been read), `started` (prompt → lock acquired) and `switches`
    (checkpoint loads)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lock = TimedLock()
        self.received: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self._started_changed = asyncio.Event()
        self.switches = 0

    @property
    def holds(self) -> list[Hold]:
        assert isinstance(self._lock, TimedLock)
        return self._lock.holds

    def reset(self, *, delay: float, encode_delay: float, switch_delay: float = 0.0) -> None:
        """Forget the records and take new timings; the loaded checkpoint goes back to the first."""
        self.delay, self.encode_delay, self.switch_delay = delay, encode_delay, switch_delay
        self.holds.clear()
        self.received.clear()
        self.started.clear()
        self.requests.clear()
        self.switches = 0
        first = self.checkpoints[0]
        self.loaded = first
        self.options_data["sd_model_checkpoint"] = first.title
        self.options_data["sd_checkpoint_hash"] = first.sha256

    async def _txt2img(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()  # the middleware has read the whole body by now
        with contextlib.suppress(ValueError, TypeError, KeyError):
            self.received[json.loads(await request.read())["prompt"]] = now
        return await super()._txt2img(request)

    async def _generate(self, kind: str, req: dict[str, Any], *args: Any, **kw: Any) -> Any:
        assert isinstance(self._lock, TimedLock)
        self._lock.holder = prompt = str(req.get("prompt"))
        self.started[prompt] = time.monotonic()
        self._started_changed.set()
        return await super()._generate(kind, req, *args, **kw)

    async def _load(self, checkpoint: Any) -> None:
        if checkpoint is not None and checkpoint is not self.loaded:
            self.switches += 1
        await super()._load(checkpoint)

    async def quiesce(self) -> None:
        """Wait until nothing holds or waits for the lock and no request is being served
        (a stopped bot may leave a request the server still finishes)."""
        while self._lock.locked() or self._inflight:  # noqa: ASYNC110 - server internals
            await asyncio.sleep(0.01)

    async def wait_started(self, prompt: str) -> float:
        """When the job with this prompt acquired the lock (waits for it)."""
        while prompt not in self.started:
            self._started_changed.clear()
            await self._started_changed.wait()
        return self.started[prompt]


@contextlib.asynccontextmanager
async def webuis(count: int) -> AsyncIterator[list[TimedWebUI]]:
    """`count` timed dev-webui servers on 127.0.0.1."""
    async with contextlib.AsyncExitStack() as stack:
        servers = [TimedWebUI(delay=0.5, preview_every=0) for _ in range(count)]
        for server in servers:
            await stack.enter_async_context(server)
        yield servers


def bench_settings(workdir: Path, urls: Sequence[str], **values: Any) -> Settings:
    """Production defaults, except: own SQLite file and data dir, credits and per-user caps
    high enough for bursts of 1000, and `values` (a platform's token and address)."""
    defaults: dict[str, Any] = {
        "webui_urls": list(urls),
        "database_url": f"sqlite+aiosqlite:///{workdir}/drawbridge.db",
        "data_dir": workdir / "data",
        "daily_credits": 10**9,
        "max_queued_per_user": 100_000,
    }
    return Settings(_env_file=None, **{**defaults, **values})


@contextlib.asynccontextmanager
async def running_engine(servers: Sequence[DevWebUI]) -> AsyncIterator[Engine]:
    """A started engine over `servers`, with a fresh SQLite file in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-") as tmp:
        settings = bench_settings(Path(tmp), [s.url for s in servers])
        async with Database(settings.database_url) as db:
            engine = Engine(settings, db, presets=PresetBook())
            async with engine:
                yield engine


def small_request(prompt: str, model: str | None = None) -> GenerationRequest:
    """A one-credit job: 256×256, 4 steps, no hires (drawing the placeholder stays ~1 ms, so
    the lock is held for the configured job time)."""
    return GenerationRequest(prompt, width=256, height=256, steps=4, hires=False, model=model)


class Recorder:
    """One replier for every job of a run: when each job was delivered, and a counter to wait on."""

    def __init__(self) -> None:
        self.delivered: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self._changed = asyncio.Event()

    async def update(self, update: JobUpdate) -> None:
        pass

    async def deliver(self, result: JobResult) -> None:
        self.delivered[result.job_id] = time.monotonic()
        self._changed.set()

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        self.failed[job_id] = error.render("en")
        self._changed.set()

    @property
    def finished(self) -> int:
        return len(self.delivered) + len(self.failed)

    async def wait_for(self, count: int, timeout: float) -> None:
        """Until `count` jobs have been delivered or failed."""

        async def loop() -> None:
            while self.finished < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)
        if self.failed:
            raise RuntimeError(f"benchmark jobs failed: {list(self.failed.values())[:3]}")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def idle_gaps(servers: Sequence[TimedWebUI]) -> list[float]:
    """Per backend: lock released → next lock acquired, in seconds, over every backend."""
    gaps: list[float] = []
    for server in servers:
        holds = sorted(server.holds, key=lambda h: h.acquired)
        gaps.extend(b.acquired - a.released for a, b in itertools.pairwise(holds))
    return gaps


async def until(predicate: Callable[[], Any], timeout: float, step: float = 0.01) -> None:
    """Poll `predicate` every `step` seconds until it holds (TimeoutError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the bench waited too long")
        await asyncio.sleep(step)


async def in_turn(
    send: Callable[[Any, str], Awaitable[None]],
    server: TimedWebUI,
    users: Sequence[Any],
    jobs: int,
    tag: str,
) -> list[float]:
    """One /draw at a time, `send(user, prompt)`, the users in turn (each once first, to
    warm up: a returning user's settings are cached; no chat waits for its own limit): ms
    from the send to the WebUI having read the request, once it is idle again each time."""
    times: list[float] = []
    for i in range(-len(users), jobs):
        prompt = f"{tag} overhead {i}"
        sent = time.monotonic()
        await send(users[i % len(users)], prompt)
        await until(functools.partial(operator.contains, server.received, prompt), 30, 0.0005)
        if i >= 0:
            times.append((server.received[prompt] - sent) * 1000)
        await until(lambda: not server._lock.locked(), 30, step=0.002)
        await asyncio.sleep(0.15)
    return times


def overhead_figures(prefix: str, ours: Sequence[float], bare: Sequence[float]) -> dict[str, float]:
    """drawbridge's p50 and p99 beside the bare bot's, and the gap between the medians."""
    return {
        f"{prefix}_overhead_ms_p50": median(ours),
        f"{prefix}_overhead_ms_p99": percentile(ours, 99),
        f"{prefix}_bare_ms_p50": median(bare),
        f"{prefix}_bare_ms_p99": percentile(bare, 99),
        f"{prefix}_overhead_gap_ms_p50": median(ours) - median(bare),
    }


def overhead_line(platform: str, bare_bot: str, figures: dict[str, float], prefix: str) -> str:
    """The log line of an overhead run."""
    return (
        f"{platform} overhead: drawbridge p50 {figures[f'{prefix}_overhead_ms_p50']:.2f} ms p99 "
        f"{figures[f'{prefix}_overhead_ms_p99']:.2f} ms; {bare_bot} p50 "
        f"{figures[f'{prefix}_bare_ms_p50']:.2f} ms p99 {figures[f'{prefix}_bare_ms_p99']:.2f} ms"
    )


async def path_figures(
    platform: str,
    prefix: str,
    parts: Sequence[Callable[[Any, Callable[[str], None]], Awaitable[dict[str, float]]]],
    cfg: Any,
    log: Callable[[str], None],
) -> dict[str, float]:
    """Every part's figures of one platform's path, one after the other; the 429s and the
    lost results of all of them summed (`<prefix>_429s`, `<prefix>_results_lost`)."""
    out: dict[str, float] = {}
    for part in parts:
        log(f"{platform}: {getattr(part, '__name__', part)}")
        out.update(await part(cfg, log))
    out[f"{prefix}_429s"] = sum(out.pop(k) for k in list(out) if k.endswith("_floods"))
    out[f"{prefix}_results_lost"] = sum(out.pop(k) for k in list(out) if k.endswith("_lost"))
    return out

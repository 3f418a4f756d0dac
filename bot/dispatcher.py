"""Backend pool and dispatcher: late choice, one prefetch per backend, progress, failover.

Each backend has a feeder task. A feeder takes the next job from the fair queue only when its
backend is about to be free: when it has nothing in flight, or when the running job's estimated
remainder is under `prefetch_seconds`. Then at most one extra request waits on the WebUI's FIFO
lock, so the GPU goes from one job to the next without waiting for us, while fairness and
cancellation stay exact for everything still queued.

A backend that refuses connections, times out or makes no progress for `stall_timeout` is marked
down; its jobs go back to the head of the queue (up to `max_attempts`), and the health check
brings it back.

At shutdown `drain` stops feeding and hands running jobs back: each is interrupted once its
backend is proven to be drawing it (unless it will finish within the grace period anyway), and
its request is waited for, so the WebUI is not left drawing an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.checkpoints import model_key
from bot.errors import (
    DrawbridgeError,
    WebUIAuthError,
    WebUIError,
    WebUINoAPI,
)
from bot.fairqueue import Entry, FairQueue
from bot.webui.client import GenerationResult, WebUIClient

log = logging.getLogger(__name__)

# what a job asks of a backend: built just before sending, so queued jobs hold no payload
WebUICall = Callable[[WebUIClient], Awaitable[GenerationResult]]

SKIP_LIMIT = 3  # a job waiting for its model may be passed over this many times, then it runs


@dataclass(eq=False)
class Running:
    """A job handed to a backend."""

    entry: Entry
    backend: Backend
    prepare: Callable[[], Awaitable[WebUICall]]
    sent_at: float = 0.0
    started_at: float | None = None
    timestamp: str | None = None
    progress: float = 0.0
    progress_at: float = 0.0
    eta_relative: float | None = None
    cancel_requested: bool = False
    interrupted: bool = False
    task: asyncio.Task[Any] | None = None
    down_error: WebUIError | None = None
    ended: bool = False  # the request came back (or failed); nobody may cancel the task now
    hand_back: bool = False  # shutting down: an interrupted result goes back to the queue


@dataclass(eq=False)
class Backend:
    """One SD-WebUI server and what we know of it."""

    client: WebUIClient
    up: bool = True
    model: str | None = None
    last_error: str = ""
    inflight: list[Running] = field(default_factory=list)
    sec_per_credit: float = 1.0
    jobs_done: int = 0
    models: list[dict[str, Any]] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.client.base_url

    @property
    def name(self) -> str:
        return self.client.display

    def remaining(self, now: float) -> float:
        """Estimated seconds until everything in flight is done."""
        total = 0.0
        for run in self.inflight:
            expected = run.entry.cost * self.sec_per_credit
            if run.started_at is None:
                total += expected
            elif run.eta_relative is not None and run.progress > 0:
                total += max(0.0, run.eta_relative - (now - run.progress_at))
            else:
                total += max(0.0, expected - (now - run.started_at))
        return total


def head_remaining(backend: Backend, head: Running) -> float:
    """Estimated seconds until the running job on `backend` is done."""
    return max(
        0.0,
        backend.remaining(time.monotonic())
        - sum(r.entry.cost * backend.sec_per_credit for r in backend.inflight if r is not head),
    )


async def _finished(task: asyncio.Task[None] | None) -> None:
    """Let a bookkeeping task end before anything that must come after it."""
    if task is not None:
        with contextlib.suppress(Exception):
            await task


class Events:
    """What the dispatcher tells the engine; the engine turns it into storage and replies."""

    async def started(self, run: Running) -> None:
        """The job's request was sent to a backend."""

    async def progress(self, run: Running, fraction: float, preview: bytes | None) -> None:
        """A progress poll for the running job."""

    async def finished(self, run: Running, result: GenerationResult, elapsed: float) -> None:
        """The WebUI returned images."""

    async def failed(self, run: Running, error: DrawbridgeError) -> None:
        """The job failed for good (not retried)."""

    async def retrying(self, run: Running, error: WebUIError) -> None:
        """The job went back to the head of the queue after its backend failed."""

    async def discarded(self, run: Running) -> None:
        """A cancelled job's request came back; its result is dropped."""

    async def bound(self, run: Running, task: str) -> None:
        """The backend is proven to be drawing this job; `task` tells that render apart
        (`interrupt_orphan` takes it if the process dies while it draws)."""

    async def handed_back(self, run: Running) -> None:
        """Shutting down: the job's render was interrupted (or failed); it is queued again."""


class Dispatcher:
    """Feeds backends from the fair queue."""

    def __init__(
        self,
        clients: list[WebUIClient],
        queue: FairQueue,
        events: Events,
        *,
        call_for: Callable[[Entry], Awaitable[WebUICall]],
        progress_interval: float = 1.0,
        stall_timeout: float = 180.0,
        max_attempts: int = 3,
        prefetch_seconds: float = 2.0,
    ) -> None:
        self.backends = [Backend(c) for c in clients]
        self.queue = queue
        self.events = events
        self.call_for = call_for
        self.progress_interval = progress_interval
        self.stall_timeout = stall_timeout
        self.max_attempts = max_attempts
        self.prefetch_seconds = prefetch_seconds
        self.attempts: dict[str, int] = {}
        # one wake-up event per backend: notify() sets them all, each feeder clears its own
        self._wake = {id(b): asyncio.Event() for b in self.backends}
        self._tasks: list[asyncio.Task[Any]] = []
        self._runs: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._paused = False  # draining: no new job goes to a backend

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Probe backends once, then start a feeder and a progress poller per backend."""
        await asyncio.gather(*(self.check(b) for b in self.backends))
        for b in self.backends:
            self._tasks.append(asyncio.create_task(self._feed(b), name=f"feed {b.name}"))
            self._tasks.append(asyncio.create_task(self._poll(b), name=f"poll {b.name}"))

    async def stop(self) -> None:
        """Stop feeding; requests in flight are abandoned (their jobs stay queued in storage)."""
        self._closing = True
        while pending := [t for t in (*self._tasks, *self._runs) if not t.done()]:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    async def drain(self, grace: float) -> None:
        """Take no more jobs; hand back what runs: interrupt each render once it is proven ours
        (unless it should finish within the grace period), and wait up to `grace` seconds for
        the requests to come back. What is still out then is abandoned by `stop`."""
        self._paused = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for backend in self.backends:
            for run in backend.inflight:
                run.hand_back = True
        expected: dict[int, float] = {}  # when each render should be done, as first estimated
        while any(b.inflight for b in self.backends):
            now = loop.time()
            if now >= deadline:
                break
            for backend in self.backends:
                head = backend.inflight[0] if backend.inflight else None
                if head is None or head.interrupted or head.started_at is None:
                    continue
                done_by = expected.setdefault(id(head), now + head_remaining(backend, head))
                # One that should be done well within the grace is left to finish, unless
                # it runs late (estimates before a job's first progress are rough).
                if done_by > now + (deadline - now) / 2 or now > done_by + 1.0:
                    await self._interrupt_if_ours(head)
            await asyncio.sleep(min(self.progress_interval, max(0.0, deadline - loop.time())))

    async def interrupt_orphan(self, url: str, task: str) -> bool:
        """Interrupt the render a dead process left drawing on backend `url`, but only if the
        backend is provably still drawing it (`task` as `Events.bound` recorded it)."""
        backend = next((b for b in self.backends if b.url == url), None)
        if backend is None or not task.startswith("ts:"):
            return False
        stamp = task.removeprefix("ts:")
        if any(run.timestamp in (None, stamp) for run in backend.inflight[:1]):
            return False  # one of ours runs there now and might be the one it names
        try:
            prog = await backend.client.progress(skip_current_image=True)
        except WebUIError:
            return False
        if not prog.active or prog.job_timestamp != stamp:
            return False
        log.info("interrupting an orphaned render on %s", backend.name)
        with contextlib.suppress(WebUIError):
            await backend.client.interrupt()
        return True

    async def notify(self) -> None:
        """Wake the feeders (a job was queued, a backend came back, …)."""
        for event in self._wake.values():
            event.set()

    # --- health ---------------------------------------------------------------------
    async def check(self, backend: Backend) -> bool:
        """Health check: liveness plus the loaded model and catalogues; brings a backend back."""
        try:
            await backend.client.ping()
            options = await backend.client.options()
            if not backend.models:
                backend.models = await backend.client.sd_models()
                backend.samplers = [s["name"] for s in await backend.client.samplers()]
        except WebUIError as exc:
            if backend.up:
                log.warning("backend %s is down: %s", backend.name, exc.render("en"))
            backend.up = False
            backend.last_error = exc.render("en")
            return False
        except Exception as exc:  # a malformed answer is as bad as none
            backend.up = False
            backend.last_error = f"{type(exc).__name__}: {exc}"
            return False
        if not backend.inflight:
            backend.model = options.get("sd_model_checkpoint") or backend.model
        if not backend.up:
            log.info("backend %s is back", backend.name)
        backend.up = True
        backend.last_error = ""
        await self.notify()
        return True

    async def check_all(self) -> None:
        """Health-check every backend (the scheduler's job)."""
        await asyncio.gather(*(self.check(b) for b in self.backends))

    def up_backends(self) -> list[Backend]:
        return [b for b in self.backends if b.up]

    # --- feeding --------------------------------------------------------------------
    def _ready(self, backend: Backend, now: float) -> float | None:
        """None if the backend can take a job now, else seconds until it should re-check."""
        if not backend.up or len(self.queue) == 0 or self._paused:
            return self.progress_interval
        if not backend.inflight:
            return None
        if len(backend.inflight) >= 2:
            return self.progress_interval
        left = backend.remaining(now)
        # Commit the next job as late as still keeps the GPU fed: at most half the running job
        # ahead, so on short jobs a user who arrives meanwhile can still take the next slot.
        running = backend.inflight[0]
        lead = min(self.prefetch_seconds, 0.5 * running.entry.cost * backend.sec_per_credit)
        if left <= lead:
            return None
        return min(self.progress_interval, left - lead)

    async def _feed(self, backend: Backend) -> None:
        wake = self._wake[id(backend)]
        while not self._closing:
            while (wait := self._ready(backend, time.monotonic())) is not None:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await wake.wait()
            entry = self._choose(backend)
            if entry is None:  # nothing suits this backend now: wait for the queue to move
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.progress_interval):
                        await wake.wait()
                continue
            if self._closing or self._paused:
                self.queue.push_front(entry)
                if self._closing:
                    return
                continue
            run = Running(entry, backend, functools.partial(self.call_for, entry))
            backend.inflight.append(run)
            run.task = asyncio.create_task(self._run(run), name=f"job {entry.job_id}")
            self._runs.add(run.task)
            run.task.add_done_callback(self._runs.discard)
            run.task.add_done_callback(functools.partial(self._cancelled_before_start, run))

    @staticmethod
    def _next_model(backend: Backend) -> str:
        """The model a job sent now would find loaded: that of the backend's last in-flight job
        naming one (the WebUI runs them in order), else the one the backend reported."""
        for run in reversed(backend.inflight):
            if run.entry.model:
                return model_key(run.entry.model)
        return model_key(backend.model)

    def _choose(self, backend: Backend) -> Entry | None:
        """The next job for this backend: the fair head, unless another backend has its model."""
        head = self.queue.peek()
        if head is None:
            return None
        mine = self._next_model(backend)
        wanted = model_key(head.model)
        if not wanted or wanted == mine or head.skips >= SKIP_LIMIT:
            return self.queue.take(head.job_id)
        others = [b for b in self.backends if b is not backend and b.up]
        holders = [b for b in others if self._next_model(b) == wanted]
        if holders:
            match = self.queue.first_matching(
                lambda e: not e.model or model_key(e.model) == mine, depth=64
            )
            # Leaving the head to a backend that has its model costs it at most about one job
            # when that backend is as far along as this one; only a longer delay counts.
            now = time.monotonic()
            soonest = min(b.remaining(now) for b in holders)
            job_time = head.cost * backend.sec_per_credit
            if match is not None:
                if soonest > backend.remaining(now) + job_time:
                    head.skips += 1
                return self.queue.take(match.job_id)
            if backend.inflight:
                return None  # only a prefetch: leave the head to the backend that has its model
            if len(self.queue) <= len(holders) and soonest <= 3 * job_time:
                return None  # idle, but they take what is queued soon: keep this model loaded
        elif backend.inflight and any(not b.inflight for b in others):
            return None  # someone must switch: an idle backend, rather than a busy one
        return self.queue.take(head.job_id)

    # --- running --------------------------------------------------------------------
    async def _run(self, run: Running) -> None:
        backend = run.backend
        entry = run.entry
        self.attempts[entry.job_id] = self.attempts.get(entry.job_id, 0) + 1
        started: asyncio.Task[None] | None = None
        try:
            call = await run.prepare()
            run.sent_at = time.monotonic()
            if len(backend.inflight) == 1 or backend.inflight[0] is run:
                run.started_at = run.sent_at
            # bookkeeping (a DB write, replies) must not delay the request to the GPU
            started = asyncio.create_task(self.events.started(run))
            result = await call(backend.client)
            run.ended = True
            await started
        except asyncio.CancelledError:
            if run.down_error is None or self._closing:
                raise
            run.ended = True
            await _finished(started)  # its "running" update must not land after the retry's
            await self._retry_or_fail(run, run.down_error)
            return
        except WebUIError as exc:
            # before any await: the poller may see the same dead backend and must not cancel
            # this task while it is deciding the job's fate
            run.ended = True
            await _finished(started)
            if run.hand_back and not run.cancel_requested:
                await self.events.handed_back(run)
            elif exc.retryable or isinstance(exc, WebUINoAPI | WebUIAuthError):
                self._mark_down(backend, exc, exclude=run)
                await self._retry_or_fail(run, exc)
            elif run.cancel_requested:
                await self.events.discarded(run)
            else:
                await self.events.failed(run, exc)
            return
        except DrawbridgeError as exc:  # e.g. the stored init image expired
            run.ended = True
            await _finished(started)
            await self.events.failed(run, exc)
            return
        except Exception:
            run.ended = True
            await _finished(started)
            log.exception("job %s crashed on %s", entry.job_id, backend.name)
            await self.events.failed(run, DrawbridgeError())
            return
        finally:
            self._leave(run)
        elapsed = time.monotonic() - (run.started_at or run.sent_at)
        backend.jobs_done += 1
        if entry.cost > 0 and elapsed > 0:
            rate = elapsed / entry.cost
            backend.sec_per_credit = (
                rate if backend.jobs_done == 1 else 0.7 * backend.sec_per_credit + 0.3 * rate
            )
        if result.model:
            backend.model = result.model
        elif entry.model:
            backend.model = entry.model
        self.attempts.pop(entry.job_id, None)
        if run.cancel_requested:
            await self.events.discarded(run)
        elif run.hand_back and run.interrupted:
            await self.events.handed_back(run)  # a partial picture: drawn again after restart
        else:
            await self.events.finished(run, result, elapsed)

    def _cancelled_before_start(self, run: Running, task: asyncio.Task[Any]) -> None:
        """A task cancelled before its first step never enters `_run`, so no handler saw it:
        still listed in flight means exactly that. Put its job back (or fail it) here."""
        if not task.cancelled() or run not in run.backend.inflight:
            return
        self._leave(run)
        if self._closing:
            return
        error = run.down_error or WebUIError(url=run.backend.name, path="/sdapi/v1")
        retry = asyncio.get_running_loop().create_task(self._retry_or_fail(run, error))
        self._runs.add(retry)
        retry.add_done_callback(self._runs.discard)

    def _leave(self, run: Running) -> None:
        backend = run.backend
        if run in backend.inflight:
            backend.inflight.remove(run)
        now = time.monotonic()
        for other in backend.inflight:  # the waiting request now holds the WebUI's lock
            if other.started_at is None:
                other.started_at = now
        asyncio.get_running_loop().create_task(self.notify())

    def _mark_down(self, backend: Backend, error: WebUIError, *, exclude: Running | None) -> None:
        """Take a backend out; its other in-flight jobs are cancelled and go back to the queue."""
        if backend.up:
            log.warning("backend %s marked down: %s", backend.name, error.render("en"))
        backend.up = False
        backend.last_error = error.render("en")
        for other in list(backend.inflight):
            if (
                other is not exclude
                and not other.ended
                and other.task is not None
                and not other.task.done()
            ):
                other.down_error = error
                other.task.cancel()

    async def _retry_or_fail(self, run: Running, error: WebUIError) -> None:
        entry = run.entry
        tries = self.attempts.get(entry.job_id, 0)
        if run.cancel_requested:
            await self.events.discarded(run)
        elif tries >= self.max_attempts:
            self.attempts.pop(entry.job_id, None)
            await self.events.failed(run, error)
        else:
            entry.skips = 0
            self.queue.push_front(entry)
            await self.events.retrying(run, error)
            await self.notify()

    # --- progress -------------------------------------------------------------------
    async def _poll(self, backend: Backend) -> None:
        while not self._closing:
            await asyncio.sleep(self.progress_interval)
            if not backend.up or not backend.inflight:
                continue
            head = backend.inflight[0]
            if head.started_at is None:
                continue
            try:
                await self._poll_once(backend, head)
            except WebUIError as exc:
                if exc.retryable:
                    self._mark_down(backend, exc, exclude=None)
            except Exception:
                log.exception("progress poll on %s failed", backend.name)

    async def _poll_once(self, backend: Backend, head: Running) -> None:
        prog = await backend.client.progress()
        now = time.monotonic()
        if head not in backend.inflight or head is not backend.inflight[0]:
            return
        if prog.active:
            if head.timestamp is None:
                await self._adopt(head, prog.job_timestamp)
            if head.cancel_requested and not head.interrupted:
                await self._interrupt(backend, head)
            if prog.progress != head.progress:
                head.progress = prog.progress
                head.progress_at = now
                head.eta_relative = prog.eta_relative
                await self.events.progress(head, min(prog.progress, 1.0), prog.current_image)
        if head.progress_at == 0.0:
            head.progress_at = head.started_at or now
        if now - head.progress_at > self.stall_timeout:
            self._mark_down(
                backend,
                WebUIError(
                    "webui.timeout",
                    url=backend.name,
                    path="/sdapi/v1/progress",
                    seconds=int(self.stall_timeout),
                ),
                exclude=None,
            )

    async def cancel_running(self, run: Running) -> bool:
        """Interrupt a job on its backend, but only once /progress shows it is the one running."""
        run.cancel_requested = True
        return await self._interrupt_if_ours(run)

    async def _interrupt_if_ours(self, run: Running) -> bool:
        backend = run.backend
        if not backend.inflight or backend.inflight[0] is not run or run.started_at is None:
            return False  # still waiting on the WebUI's lock; the poller interrupts it later
        try:
            prog = await backend.client.progress(skip_current_image=True)
        except WebUIError:
            return False
        if not prog.active:
            return False
        if run.timestamp is None:
            await self._adopt(run, prog.job_timestamp)
        if prog.job_timestamp != run.timestamp:
            return False
        await self._interrupt(backend, run)
        return True

    async def _adopt(self, run: Running, timestamp: str) -> None:
        """The render running now is this job's: remember what tells it apart."""
        run.timestamp = timestamp
        with contextlib.suppress(Exception):  # bookkeeping must never break the job
            await self.events.bound(run, f"ts:{timestamp}")

    async def _interrupt(self, backend: Backend, run: Running) -> None:
        run.interrupted = True
        with contextlib.suppress(WebUIError):
            await backend.client.interrupt()

    def find(self, job_id: str) -> Running | None:
        """The in-flight record of a job, if it is on a backend."""
        for b in self.backends:
            for run in b.inflight:
                if run.entry.job_id == job_id:
                    return run
        return None

    def remaining_work(self, now: float | None = None) -> float:
        """Seconds of work in flight summed over up backends."""
        now = time.monotonic() if now is None else now
        return sum(b.remaining(now) for b in self.backends if b.up)

    def sec_per_credit(self) -> float:
        """Mean measured seconds per credit over backends that have run something."""
        rates = [b.sec_per_credit for b in self.backends if b.jobs_done]
        return sum(rates) / len(rates) if rates else 1.0

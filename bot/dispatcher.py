"""Backend pool and dispatcher: late choice by capability, one prefetch per backend, progress
bound to the job, failover and cool-off.

Each backend has a feeder task. A feeder takes the next job from the fair queue only when its
backend is about to be free: when it has nothing in flight, or when the running job's estimated
remainder is under `prefetch_seconds`. Then at most one extra request waits on the WebUI's FIFO
lock (none on SD.Next, whose lock has no order), so the GPU goes from one job to the next
without waiting for us, while fairness and cancellation stay exact for everything still queued.
A feeder only takes a job its backend can draw: it has the job's checkpoint, sampler, upscaler
and LoRAs (bot.backends); the fair head waits for a backend that has them.

Failures: a backend that refuses connections (or our credentials) is marked down; its jobs go
back to the head of the queue and the health check brings it back. An answer that is the
backend's failure, not the job's — 5xx (CUDA out of memory included), a 200 without pictures,
a stall, a timeout — sends the job to another backend (up to `max_attempts` tries) and cools
the backend off, twice as long each time in a row. A timed-out or stalled job is interrupted
first when it is proven ours, so the GPU does not render it twice. A model load (no sampling
step yet) is not a stall.

Progress and interrupts are bound to the job (bot.binding): nothing of another job's progress
reaches a user, and nothing not proven ours is interrupted.

At shutdown `drain` stops feeding and hands running jobs back: each is interrupted once its
backend is proven to be drawing it (unless it will finish within the grace period anyway), and
its request is waited for, so the WebUI is not left drawing an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot import binding
from bot.backends import (
    ORPHAN_WATCH,
    Backend,
    Needs,
    Running,
    WebUICall,
    frozen_notice,
)
from bot.catalogue import undrawable
from bot.checkpoints import model_key, model_label
from bot.errors import (
    DrawbridgeError,
    WebUIAuthError,
    WebUIEmptyResult,
    WebUIError,
    WebUINoAPI,
    WebUIServerError,
    WebUITimeout,
    WebUIUnreachable,
)
from bot.fairqueue import Entry, FairQueue
from bot.metrics import Metrics
from bot.payload import Target
from bot.types import Mode
from bot.webui.client import GenerationResult, Progress, TaskProgress, WebUIClient
from bot.webui.flavour import Flavour

log = logging.getLogger(__name__)

__all__ = ["Backend", "Dispatcher", "Events", "Running", "WebUICall"]

# seconds the bookkeeping of a job that starts (its "running" write and status) waits, so
# that the request's own write to the WebUI does not share the event loop and the GIL with it
SEND_FIRST = 0.003
SKIP_LIMIT = 3  # a job waiting for its model may be passed over this many times, then it runs
ON_DEMAND_GAP = (
    5.0  # seconds: a user naming something unknown refreshes a catalogue at most this often
)


def head_remaining(backend: Backend, run: Running) -> float:
    """Estimated seconds until `run` (sent and drawing on `backend`) is done."""
    return max(
        0.0,
        backend.remaining(time.monotonic())
        - sum(r.entry.cost * backend.sec_per_credit for r in backend.inflight if r is not run),
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
        call_for: Callable[[Entry, Target], Awaitable[WebUICall]],
        labels: list[str] | None = None,
        progress_interval: float = 1.0,
        stall_timeout: float = 180.0,
        max_attempts: int = 3,
        prefetch_seconds: float = 2.0,
        cooloff: float = 2.0,
        cooloff_max: float = 300.0,
        restore: bool = True,
        refresh_interval: float = 300.0,
        state_file: Path | None = None,
        metrics: Metrics | None = None,
        on_health: Callable[[Backend, bool], None] | None = None,
    ) -> None:
        labels = labels or []
        self.on_health = on_health  # a backend went down (False) or came back (True)
        self.drained: set[int] = set()  # backends (index) an admin drained: they take no job
        self.held = False  # /admin pause: queued jobs wait, running ones finish
        self.backends = [
            Backend(c, index=i + 1, label=labels[i] if i < len(labels) else "")
            for i, c in enumerate(clients)
        ]
        self.queue = queue
        self.events = events
        self.call_for = call_for
        self.progress_interval = progress_interval
        self.stall_timeout = stall_timeout
        self.max_attempts = max_attempts
        self.prefetch_seconds = prefetch_seconds
        self.cooloff = cooloff
        self.cooloff_max = cooloff_max
        self.restore = restore
        self.refresh_interval = refresh_interval
        self.state_file = state_file
        self.attempts: dict[str, int] = {}
        self.avoid: dict[str, set[int]] = {}  # job id → backends (index) it failed on
        # one wake-up event per backend: notify() sets them all, each feeder clears its own
        self._wake = {id(b): asyncio.Event() for b in self.backends}
        self._tasks: list[asyncio.Task[Any]] = []
        self._runs: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._paused = False  # draining: no new job goes to a backend
        self._asked_at = -ON_DEMAND_GAP  # the last refresh for a name nobody listed
        self._state_written: asyncio.Task[None] | None = None
        self._state_again = False
        self.metrics = metrics or Metrics(process=False)
        # backend index → when its last job left while others waited in the queue (the GPU
        # idle gap runs from there to the next job it takes)
        self._idle_since: dict[int, float] = {}

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
        await _finished(self._state_written)

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
                for run in self._sent(backend):
                    if run.interrupted or run.started_at is None:
                        continue
                    done_by = expected.setdefault(id(run), now + head_remaining(backend, run))
                    # One that should be done well within the grace is left to finish, unless
                    # it runs late (estimates before a job's first progress are rough).
                    if done_by > now + (deadline - now) / 2 or now > done_by + 1.0:
                        await self._interrupt_if_ours(run)
            await asyncio.sleep(min(self.progress_interval, max(0.0, deadline - loop.time())))

    async def interrupt_orphan(self, url: str, task: str) -> bool:
        """Interrupt the render a dead process left drawing on backend `url`, but only if the
        backend is provably still drawing it (`task` as `Events.bound` recorded it: a task id
        the WebUI binds progress to, or the job_timestamp it ran under)."""
        backend = next((b for b in self.backends if b.url == url), None)
        if backend is None:
            return False
        try:
            if task.startswith("task:"):
                seen = await backend.client.task_progress(task.removeprefix("task:"))
                drawing = seen.active
            elif task.startswith("ts:"):
                stamp = task.removeprefix("ts:")
                if any(run.timestamp in (None, stamp) for run in self._sent(backend)):
                    return False  # one of ours runs there now and might be the one it names
                prog = await backend.client.progress(skip_current_image=True)
                drawing = prog.active and prog.job_timestamp == stamp
            else:
                return False
        except WebUIError:
            return False
        if not drawing:
            return False
        log.info("interrupting an orphaned render on %s", backend.name)
        with contextlib.suppress(WebUIError):
            await backend.client.interrupt()
        return True

    async def notify(self) -> None:
        """Wake the feeders (a job was queued, a backend came back, …)."""
        self._wake_feeders()

    def _wake_feeders(self) -> None:
        for event in self._wake.values():
            event.set()

    # --- health and catalogues ---------------------------------------------------------
    async def check(self, backend: Backend) -> bool:
        """Health check: liveness, then (when it came back or they are stale) its flavour,
        frozen settings and catalogue; brings a backend back."""
        try:
            await backend.client.ping()
            listing = backend.listing
            stale = listing is None or time.monotonic() - listing.fetched_at > self.refresh_interval
            if backend.identity is None or not backend.up or stale:
                await backend.identify()
                await backend.refresh()
        except WebUIError as exc:
            if backend.up:
                log.warning("backend %s is down: %s", backend.name, exc.render("en"))
                self._health(backend, False)
            backend.up = False
            backend.last_error = exc.render("en")
            self._state_changed()
            return False
        except Exception as exc:  # a malformed answer is as bad as none
            if backend.up:
                log.warning("backend %s is down: %s: %s", backend.name, type(exc).__name__, exc)
                self._health(backend, False)
            backend.up = False
            backend.last_error = f"{type(exc).__name__}: {exc}"
            self._state_changed()
            return False
        if not backend.up:
            log.info("backend %s is back", backend.name)
            self._health(backend, True)
        backend.up = True
        backend.last_error = ""
        self._state_changed()
        await self.notify()
        return True

    async def check_all(self) -> None:
        """Health-check every backend (the scheduler's job)."""
        await asyncio.gather(*(self.check(b) for b in self.backends))

    async def refresh_for_unknown(self) -> bool:
        """Before refusing a name no backend listed: fetch the catalogues again (at most once
        per ON_DEMAND_GAP seconds); True when one was fetched."""
        now = time.monotonic()
        if now - self._asked_at < ON_DEMAND_GAP:
            return False
        self._asked_at = now
        return await self.refresh_catalogues(min_age=0.0)

    async def refresh_catalogues(self, min_age: float = 0.0) -> bool:
        """Fetch every up backend's catalogue again (unless fetched in the last `min_age`
        seconds); True when one was fetched. Failures leave the old catalogue."""

        async def one(backend: Backend) -> bool:
            try:
                return await backend.refresh(min_age=min_age)
            except Exception as exc:
                log.info("catalogue of %s not refreshed: %s", backend.name, exc)
                return False

        fetched = await asyncio.gather(*(one(b) for b in self.backends if b.up))
        if any(fetched):
            await self.notify()
        return any(fetched)

    def _health(self, backend: Backend, up: bool) -> None:
        if self.on_health is not None:
            try:
                self.on_health(backend, up)
            except Exception as exc:  # a notice never stops a health check
                log.warning("backend notice failed: %s", exc)

    def up_backends(self) -> list[Backend]:
        """Backends that answer (cooling off or not)."""
        return [b for b in self.backends if b.up]

    def can_draw(self, needs: Needs) -> list[Backend]:
        """Backends whose catalogue has everything `needs` asks for."""
        return [b for b in self.backends if b.listing is not None and not b.lacks(needs)]

    # --- feeding --------------------------------------------------------------------
    def _ready(self, backend: Backend, now: float) -> float | None:
        """None if the backend can take a job now, else seconds until it should re-check."""
        if not backend.up or len(self.queue) == 0 or self._paused:
            return self.progress_interval
        if self.held or backend.index in self.drained:
            return self.progress_interval
        cooling = backend.cooling(now)
        if cooling > 0:
            return min(self.progress_interval, cooling)
        if not backend.inflight:
            return None
        if len(backend.inflight) >= 2 or not backend.prefetch:
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
                await self._fail_undrawable(backend)
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
            self._start(backend, entry)

    def kick(self) -> None:
        """A job was queued: a backend with nothing in flight takes the next job now, a loop
        turn before its feeder would wake; then the feeders are woken as by `notify`."""
        if not self._closing:
            now = time.monotonic()
            for backend in self.backends:
                if backend.inflight or self._ready(backend, now) is not None:
                    continue
                entry = self._choose(backend)
                if entry is not None:
                    self._start(backend, entry)
        self._wake_feeders()

    def _start(self, backend: Backend, entry: Entry) -> None:
        run = Running(entry, backend, functools.partial(self.call_for, entry))
        backend.inflight.append(run)
        run.task = asyncio.create_task(self._run(run), name=f"job {entry.job_id}")
        self._runs.add(run.task)
        run.task.add_done_callback(self._runs.discard)
        run.task.add_done_callback(functools.partial(self._cancelled_before_start, run))

    def _next_model(self, backend: Backend) -> str:
        """The model a job sent now would find loaded: that of the backend's last in-flight job
        naming one (the WebUI runs them in order), else the one we believe it has."""
        for run in reversed(backend.inflight):
            if run.entry.model:
                return model_key(run.entry.model)
        return model_key(backend.loaded)

    def _fits(self, backend: Backend, entry: Entry) -> bool:
        """Whether `backend` may draw `entry`: it has what the job needs, and it is not a
        backend the job already failed on while another one that can draw it is around."""
        needs = entry.needs
        if isinstance(needs, Needs) and backend.lacks(needs):
            return False
        failed_on = self.avoid.get(entry.job_id)
        if failed_on and backend.index in failed_on:
            return not any(
                b is not backend
                and b.up
                and b.index not in failed_on
                and not (isinstance(needs, Needs) and b.lacks(needs))
                for b in self.backends
            )
        return True

    def _choose(self, backend: Backend) -> Entry | None:
        """The next job for this backend: the fair head if it can draw it and no other backend
        has its model loaded, else the first job it suits."""
        head = self.queue.peek()
        if head is None:
            return None
        if not self._fits(backend, head):
            # the head waits for a backend that has what it needs; this one takes another
            match = self.queue.first_matching(lambda e: self._fits(backend, e), depth=64)
            return self.queue.take(match.job_id) if match is not None else None
        mine = self._next_model(backend)
        wanted = model_key(head.model)
        if not wanted or wanted == mine or head.skips >= SKIP_LIMIT:
            return self.queue.take(head.job_id)
        others = [b for b in self.backends if b is not backend and b.available()]
        holders = [b for b in others if self._next_model(b) == wanted and self._fits(b, head)]
        if holders:
            match = self.queue.first_matching(
                lambda e: self._fits(backend, e) and (not e.model or model_key(e.model) == mine),
                depth=64,
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
        elif backend.inflight and any(not b.inflight and self._fits(b, head) for b in others):
            return None  # someone must switch: an idle backend, rather than a busy one
        return self.queue.take(head.job_id)

    async def _fail_undrawable(self, backend: Backend) -> None:
        """A queued job no backend can draw any more (its checkpoint was removed, say) fails and
        is refunded instead of waiting for ever; only backends that listed a catalogue judge."""
        head = self.queue.peek()
        if head is None or not isinstance(head.needs, Needs):
            return
        listed = [b for b in self.backends if b.listing is not None]
        if not listed or any(not b.lacks(head.needs) for b in listed):
            return
        if self.queue.take(head.job_id) is None:
            return
        log.info("job %s: no backend can draw it any more", head.job_id)
        run = Running(head, backend, functools.partial(self.call_for, head))
        await self.events.failed(run, undrawable(head.needs, self.backends))

    # --- running --------------------------------------------------------------------
    async def _run(self, run: Running) -> None:
        backend = run.backend
        entry = run.entry
        attempt = self.attempts[entry.job_id] = self.attempts.get(entry.job_id, 0) + 1
        started: asyncio.Task[None] | None = None
        target: Target | None = None
        try:
            if backend.binds_tasks and run.needs.mode is not Mode.UPSCALE:
                run.task_id = binding.task_id(entry.job_id, attempt)
            target = backend.target_for(run.needs, restore=self.restore, task_id=run.task_id)
            call = await run.prepare(target)
            if run.cancel_requested:  # cancelled while we got it ready: never sent
                run.ended = True
                await self.events.discarded(run)
                return
            if not self._sent(backend):
                backend.changed_at = time.monotonic()  # the stall watch starts with this job
            if run.task_id is None:
                # timestamp mode: what /progress shows before this request exists
                baseline = await backend.client.progress(skip_current_image=True)
                run.baseline = baseline.job_timestamp
            run.sent_at = time.monotonic()
            if len(backend.inflight) == 1 or backend.inflight[0] is run:
                run.started_at = run.sent_at
                idle_since = self._idle_since.pop(backend.index, None)
                if idle_since is not None:
                    self.metrics.idle_gap(run.sent_at - idle_since)
            # bookkeeping (a DB write, replies) must not delay the request to the GPU: it
            # starts once httpx has had the loop to itself to write the request
            started = asyncio.create_task(self._started_after_send(run))
            result = await call(backend.client)
            run.ended = True
            self._verify(run, target, result)
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
            await self._failed_on_backend(run, exc)
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
        self._succeeded(run, target, result)
        self.attempts.pop(entry.job_id, None)
        self.avoid.pop(entry.job_id, None)
        if run.cancel_requested:
            await self.events.discarded(run)
        elif run.hand_back and run.interrupted:
            await self.events.handed_back(run)  # a partial picture: drawn again after restart
        else:
            await self.events.finished(
                run, result, time.monotonic() - (run.started_at or run.sent_at)
            )

    async def _started_after_send(self, run: Running) -> None:
        await asyncio.sleep(SEND_FIRST)
        await self.events.started(run)

    def _verify(self, run: Running, target: Target, result: GenerationResult) -> None:
        """A result drawn with another checkpoint than the one named is not the job's: A1111
        silently ignores a checkpoint it does not know (its catalogue was stale)."""
        named = target.checkpoint if run.needs.model else None
        if named and result.model and model_key(result.model) != model_key(named):
            log.warning(
                "backend %s drew job %s with %s instead of %s; its catalogue is stale",
                run.backend.name,
                run.entry.job_id,
                result.model,
                model_label(named),
            )
            run.backend.listing = None  # refreshed by the next health check; lacks() all now
            raise WebUIEmptyResult("webui.wrong_model", url=run.backend.name, path="/sdapi/v1")

    def _succeeded(self, run: Running, target: Target | None, result: GenerationResult) -> None:
        backend = run.backend
        entry = run.entry
        elapsed = time.monotonic() - (run.started_at or run.sent_at)
        backend.jobs_done += 1
        backend.failures = 0
        backend.cooling_until = 0.0
        if entry.cost > 0 and elapsed > 0:
            rate = elapsed / entry.cost
            backend.sec_per_credit = (
                rate if backend.jobs_done == 1 else 0.7 * backend.sec_per_credit + 0.3 * rate
            )
        restores_at_once = backend.flavour is Flavour.SDNEXT and self.restore
        if target is not None and target.checkpoint and backend.frozen is not None:
            if not restores_at_once:  # SD.Next reloads its own model at once when restoring
                backend.loaded = target.checkpoint
        if run.task_id and backend.identity and "force_task_id" not in result.parameters:
            # an A1111 older than 1.6 drops the field: bind its progress by timestamp instead
            log.info(
                "backend %s ignores force_task_id; binding progress by timestamp", backend.name
            )
            backend.identity = dataclasses.replace(backend.identity, binds_tasks=False)

    async def _failed_on_backend(self, run: Running, exc: WebUIError) -> None:
        """Decide a job's fate after its request failed on its backend."""
        backend = run.backend
        if run.cancel_requested:
            # our own interrupt's partial or empty answer: nobody's failure
            await self.events.discarded(run)
            return
        if run.hand_back:
            await self.events.handed_back(run)  # shutting down: drawn again after restart
            return
        if isinstance(exc, WebUIAuthError | WebUINoAPI):
            # a configuration error, not an outage: the operator is told, the job is not
            # retried on this backend (only on another that is up) and fails politely
            self._mark_down(backend, exc, exclude=run)
            log.error(
                "backend %s: %s (a configuration error; job %s is not retried on it)",
                backend.name,
                exc.render("en"),
                run.entry.job_id,
            )
            if any(b is not backend for b in self.up_backends()):
                await self._retry_or_fail(run, exc)
            else:
                self.attempts.pop(run.entry.job_id, None)
                self.avoid.pop(run.entry.job_id, None)
                await self.events.failed(run, exc)
            return
        if isinstance(exc, WebUIUnreachable):
            self._mark_down(backend, exc, exclude=run)
            await self._retry_or_fail(run, exc)
            return
        if not exc.retryable:
            await self.events.failed(run, exc)
            return
        if isinstance(exc, WebUITimeout):
            await self._abandon(run)
        if exc.key == "webui.wrong_model":
            log.info("job %s goes to a backend that has its checkpoint", run.entry.job_id)
        else:
            self._cool_off(backend, exc)
        await self._retry_or_fail(run, exc)

    async def _abandon(self, run: Running) -> None:
        """A request we stop waiting for keeps running on the WebUI: interrupt it now if it is
        proven ours and running, else (task mode) watch for it to start and interrupt it then."""
        backend = run.backend
        with contextlib.suppress(WebUIError):
            if run.task_id is not None:
                seen = await backend.client.task_progress(run.task_id)
                if seen.active:
                    await self._interrupt(backend, run)
                elif seen.queued:
                    backend.orphans[run.task_id] = time.monotonic() + ORPHAN_WATCH
            elif run.timestamp is not None:
                prog = await backend.client.progress(skip_current_image=True)
                if prog.active and prog.job_timestamp == run.timestamp:
                    await self._interrupt(backend, run)

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
        held = run in backend.inflight and run.started_at is not None
        if run in backend.inflight:
            backend.inflight.remove(run)
        now = time.monotonic()
        for other in backend.inflight:  # the waiting request now holds the WebUI's lock
            if other.started_at is None:
                other.started_at = now
                if held:
                    self.metrics.idle_gap(0.0)  # prefetched: the WebUI went straight on
        if held and not backend.inflight and len(self.queue) and backend.available(now):
            self._idle_since[backend.index] = now
        elif held:
            self._idle_since.pop(backend.index, None)
        asyncio.get_running_loop().create_task(self.notify())

    def _mark_down(self, backend: Backend, error: WebUIError, *, exclude: Running | None) -> None:
        """Take a backend out; its other in-flight jobs are cancelled and go back to the queue."""
        if backend.up:
            log.warning("backend %s marked down: %s", backend.name, error.render("en"))
            self._health(backend, False)
        backend.up = False
        backend.last_error = error.render("en")
        self._idle_since.pop(backend.index, None)  # down is not an idle gap
        self._state_changed()
        self._cancel_inflight(backend, error, exclude=exclude)

    def _cancel_inflight(
        self, backend: Backend, error: WebUIError, *, exclude: Running | None
    ) -> None:
        for other in list(backend.inflight):
            if (
                other is not exclude
                and not other.ended
                and other.task is not None
                and not other.task.done()
            ):
                other.down_error = error
                other.task.cancel()

    def _cool_off(self, backend: Backend, error: WebUIError) -> None:
        """A backend that failed a job takes none for a while, twice as long each time in a row."""
        backend.failures += 1
        delay = min(self.cooloff_max, self.cooloff * 2 ** (backend.failures - 1))
        backend.cooling_until = max(backend.cooling_until, time.monotonic() + delay)
        backend.last_error = error.render("en")
        self._idle_since.pop(backend.index, None)  # cooling off is not an idle gap
        log.warning(
            "backend %s failed a job (%s); it cools off for %g s (%d failure(s) in a row)",
            backend.name,
            backend.last_error,
            delay,
            backend.failures,
        )
        self._state_changed()

    async def _retry_or_fail(self, run: Running, error: WebUIError) -> None:
        entry = run.entry
        tries = self.attempts.get(entry.job_id, 0)
        if run.cancel_requested:
            await self.events.discarded(run)
        elif tries >= self.max_attempts:
            self.attempts.pop(entry.job_id, None)
            self.avoid.pop(entry.job_id, None)
            await self.events.failed(run, error)
        else:
            self.avoid.setdefault(entry.job_id, set()).add(run.backend.index)
            entry.skips = 0
            self.queue.push_front(entry)
            await self.events.retrying(run, error)
            await self.notify()

    # --- progress -------------------------------------------------------------------
    async def _poll(self, backend: Backend) -> None:
        while not self._closing:
            await asyncio.sleep(self.progress_interval)
            if not backend.up:
                continue
            if not any(r.sent_at and not r.ended for r in backend.inflight) and not backend.orphans:
                continue
            try:
                await self._poll_once(backend)
            except WebUIError as exc:
                if exc.retryable and not isinstance(exc, WebUIServerError):
                    self._mark_down(backend, exc, exclude=None)
            except Exception:
                log.exception("progress poll on %s failed", backend.name)

    def _sent(self, backend: Backend) -> list[Running]:
        return [r for r in backend.inflight if r.sent_at and not r.ended]

    async def _poll_once(self, backend: Backend) -> None:
        runs = self._sent(backend)
        by_stamp = [r for r in runs if r.task_id is None]
        prog = await backend.client.progress(skip_current_image=not by_stamp)
        now = time.monotonic()
        sig = binding.signature(prog)
        if sig != backend.signature:
            backend.signature, backend.changed_at = sig, now
        backend.sampling = binding.sampling(prog)
        for run in runs:
            if run.task_id is not None and not run.ended:
                seen = await backend.client.task_progress(run.task_id, preview_id=run.preview_id)
                if not run.ended and run in backend.inflight:
                    await self._observe_task(run, seen, time.monotonic())
        if by_stamp:
            await self._observe_timestamp(backend, [r for r in runs if not r.ended], prog, now)
        await self._watch_orphans(backend)
        await self._check_stall(backend, now)

    async def _observe_task(self, run: Running, seen: TaskProgress, now: float) -> None:
        """Task mode: /internal/progress for the job's own task id."""
        run.proven = seen.active
        if seen.completed:
            run.server_done = True
        if not seen.active:
            return
        if run.task_id is not None:
            await self._announce(run, f"task:{run.task_id}")
        if seen.preview is not None and seen.preview_id >= 0:
            run.preview_id = seen.preview_id
        await self._use(run, seen.progress or 0.0, seen.eta, seen.preview, now)

    async def _observe_timestamp(
        self, backend: Backend, runs: list[Running], prog: Progress, now: float
    ) -> None:
        """Timestamp mode: adopt a changed job_timestamp, then compare it before every use."""
        for run in runs:
            run.proven = False
        if not prog.active or not prog.job_timestamp:
            return
        stamp = prog.job_timestamp
        owner = next((r for r in runs if r.timestamp == stamp), None)
        if owner is None:
            for i, run in enumerate(runs):
                if run.timestamp is not None:
                    continue
                earlier_bound = all(r.timestamp is not None for r in runs[:i])
                if (
                    earlier_bound
                    and run.task_id is None
                    and stamp != run.baseline
                    and stamp not in backend.seen_timestamps
                    and binding.looks_like(prog, run.needs, backend.flavour)
                ):
                    run.timestamp = stamp
                    backend.seen_timestamps = [*backend.seen_timestamps, stamp][
                        -binding.SEEN_KEPT :
                    ]
                    owner = run
                    await self._announce(run, f"ts:{stamp}")
                break
        if owner is None or owner.server_done:
            return
        if binding.fell_back(owner.progress, prog.progress) or not binding.looks_like(
            prog, owner.needs, backend.flavour
        ):
            owner.server_done = True  # a new job started within the same second
            return
        owner.proven = True
        await self._use(owner, prog.progress, prog.eta_relative, prog.current_image, now)

    async def _use(
        self, run: Running, fraction: float, eta: float | None, preview: bytes | None, now: float
    ) -> None:
        """A look proven to be this job's: interrupt it if it was cancelled, else report it."""
        if run.started_at is None:
            run.started_at = now
        if run.cancel_requested:
            if not run.interrupted and binding.interruptible(eta):
                await self._interrupt(run.backend, run)
            return
        if fraction != run.progress or preview is not None:
            run.progress = fraction
            run.progress_at = now
            run.eta_relative = eta
            await self.events.progress(run, min(fraction, 1.0), preview)

    async def _watch_orphans(self, backend: Backend) -> None:
        """Interrupt abandoned requests of ours once they run; forget them when done."""
        now = time.monotonic()
        for task_id, until in list(backend.orphans.items()):
            if now > until:
                backend.orphans.pop(task_id, None)
                continue
            seen = await backend.client.task_progress(task_id)
            if seen.active:
                log.info("interrupting abandoned request %s on %s", task_id, backend.name)
                backend.orphans.pop(task_id, None)
                with contextlib.suppress(WebUIError):
                    await backend.client.interrupt()
            elif seen.completed or not seen.known:
                backend.orphans.pop(task_id, None)

    async def _check_stall(self, backend: Backend, now: float) -> None:
        """Sampling that shows no change for `stall_timeout`: interrupt the job if it is ours,
        send our jobs elsewhere and cool the backend off. Loading a model is not a stall."""
        runs = self._sent(backend)
        if not runs or not backend.sampling or backend.changed_at == 0.0:
            return
        if now - backend.changed_at <= self.stall_timeout:
            return
        error = WebUITimeout(
            "webui.stalled",
            url=backend.name,
            path="/sdapi/v1/progress",
            seconds=f"{self.stall_timeout:g}",
        )
        backend.changed_at = now
        for run in runs:
            if run.proven and not run.interrupted:
                await self._interrupt(backend, run)
            elif run.task_id is not None:
                backend.orphans[run.task_id] = now + ORPHAN_WATCH
        self._cool_off(backend, error)
        self._cancel_inflight(backend, error, exclude=None)

    async def cancel_running(self, run: Running) -> bool:
        """Interrupt a job on its backend, but only once it is proven to be the one running
        there (else the poller interrupts it when it is, or its result is dropped)."""
        run.cancel_requested = True
        return await self._interrupt_if_ours(run)

    async def _interrupt_if_ours(self, run: Running) -> bool:
        """Interrupt the job's render if the backend is proven to be drawing it now."""
        backend = run.backend
        if run.ended or not run.sent_at:
            return False
        try:
            if run.task_id is not None:
                seen = await backend.client.task_progress(run.task_id)
                ours, eta = seen.active, seen.eta
            else:
                prog = await backend.client.progress(skip_current_image=True)
                ours = (
                    prog.active
                    and run.timestamp is not None
                    and prog.job_timestamp == run.timestamp
                    and not run.server_done
                    and not binding.fell_back(run.progress, prog.progress)
                    and binding.looks_like(prog, run.needs, backend.flavour)
                )
                eta = prog.eta_relative
        except WebUIError:
            return False
        if not ours or run.ended or not binding.interruptible(eta):
            return False
        await self._interrupt(backend, run)
        return True

    async def _announce(self, run: Running, task: str) -> None:
        """Tell the engine, once, that the backend is proven to be drawing this job."""
        if run.bound:
            return
        run.bound = True
        with contextlib.suppress(Exception):  # bookkeeping must never break the job
            await self.events.bound(run, task)

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

    # --- what `drawbridge backends` reads ------------------------------------------------
    def _state_changed(self) -> None:
        """Write the pool's state file soon (writes are coalesced, and run off the loop)."""
        if self.state_file is None or self._closing:
            return
        if self._state_written is not None and not self._state_written.done():
            self._state_again = True
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to write from
            self._state_written = asyncio.get_running_loop().create_task(self._write_state())

    async def _write_state(self) -> None:
        while True:
            self._state_again = False
            assert self.state_file is not None
            data = state_of(self.backends)
            try:
                await asyncio.to_thread(write_state, self.state_file, data)
            except OSError as exc:
                log.warning("could not write %s: %s", self.state_file, exc)
                return
            if not self._state_again:
                return


def state_of(backends: list[Backend]) -> dict[str, Any]:
    """What the running service knows of its backends that a fresh probe cannot see: cool-off,
    failures in a row, the last error."""
    wall = time.time()
    now = time.monotonic()
    return {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "backends": [
            {
                "url": b.url,
                "up": b.up,
                "flavour": b.flavour.value,
                "failures": b.failures,
                "cooling_until": wall + b.cooling(now) if b.cooling(now) else None,
                "last_error": b.last_error,
                "frozen": frozen_notice(b) if b.frozen != frozenset() else None,
            }
            for b in backends
        ],
    }


def write_state(path: Path, data: dict[str, Any]) -> None:
    """Replace the state file atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)

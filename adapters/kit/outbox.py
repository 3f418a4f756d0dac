"""One outbox per platform: every message a bot sends leaves through it, in our order.

    handlers, repliers ──send(lane, call, priority, key)──► Outbox ──► the platform's call

* **Lanes.** One queue per chat (a "lane"); one call in flight per lane, so a chat sees its
  messages in order, and a slow upload in one chat never holds up another.
* **Priorities.** `Priority.RESULT` (results and first acknowledgements) before
  `Priority.NOTICE` (answers to commands, failure messages) before `Priority.REFUSAL` before
  `Priority.PROGRESS` (status edits) before `Priority.CLEANUP` (deleting old statuses). Across
  lanes, the same priority goes round robin (the lane served longest ago first), so a chat
  with a backlog never holds up one with a single message.
* **Coalescing.** A call sent with a `key` that is still waiting joins it: the waiting item
  stays in its place (taking the higher priority) and runs once, with the newest call, so a
  status shows its newest state in one edit instead of a backlog of edits.
* **Budgets.** Each lane has the platform's windows (Telegram: 1 message/s per chat, 20/min per
  group) and all lanes share a global one (30/s); a call holds its place from its start and is
  counted when answered, so network delays never bunch calls up at the platform. Low-priority
  calls may use only part of a shared window (`Window.low_share`), so a result always finds
  room. Status edits of a lane run at most every `LaneSpec.progress_gap` seconds.
* **Flood control.** The platform's 429 (`Flood`, with its retry_after) pauses only its lane.
* **Retries.** Network errors, timeouts and 5xx (the platform says which: `Verdict.TRANSIENT`)
  are retried with exponential backoff and jitter (tenacity) for `retry_seconds`, then the
  caller's future raises `GaveUp`; calls sent with `forever=True` (a "could not deliver"
  message, deleting a stale status) retry until the outbox closes.

Nothing here knows a platform: the adapter gives the lane specs and the error verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

log = logging.getLogger(__name__)

T = TypeVar("T")
Lane = Hashable
SETTLE = 0.002  # seconds the scheduler waits after a wake-up before it dispatches


class Priority(enum.IntEnum):
    """What goes first; lower values first."""

    RESULT = 0  # results and first acknowledgements
    NOTICE = 1  # answers to commands, "could not deliver", "cancelled"
    REFUSAL = 2  # refused commands, "slow down"
    PROGRESS = 3  # status edits: positions, progress, previews
    CLEANUP = 4  # deleting statuses that made way for a result


class Verdict(enum.Enum):
    """How the outbox treats a failed call."""

    TRANSIENT = "transient"  # network error, timeout, 5xx: retry with backoff
    FATAL = "fatal"  # the call itself is wrong (or the chat is gone): raise it to the caller


class Flood(Exception):
    """The platform's flood control (429): wait `retry_after` seconds before this lane's next call."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"flood control: retry after {retry_after:g} s")
        self.retry_after = retry_after


class GaveUp(Exception):
    """A call kept failing for the whole retry time; `last` is its last error."""

    def __init__(self, last: BaseException) -> None:
        super().__init__(f"gave up after retrying: {type(last).__name__}: {last}")
        self.last = last


class Window:
    """At most `count` calls in any `per` seconds; calls of low priority may fill only
    `low_share` of it.

    A call holds a place from its start (`reserve`) and is counted at the time it was answered
    (`settle`): the platform saw it at some moment in between, so however long the network took,
    the platform never sees more than `count` in any `per` seconds.
    """

    def __init__(self, count: int, per: float, *, low_share: float = 1.0) -> None:
        self.count = max(1, count)
        self.per = per
        self.low_count = max(1, math.floor(self.count * low_share))
        self.inflight = 0
        self._stamps: deque[float] = deque()

    def _forget(self, now: float) -> None:
        while self._stamps and self._stamps[0] <= now - self.per:
            self._stamps.popleft()

    def used(self, now: float) -> int:
        """Calls within the window now, those in flight included."""
        self._forget(now)
        return len(self._stamps) + self.inflight

    def free_at(self, now: float, *, low: bool = False) -> float:
        """When a call (of low priority or not) may go: `now` if it may go now, `inf` if only
        a call in flight can make room."""
        limit = (self.low_count if low else self.count) - self.inflight
        self._forget(now)
        if len(self._stamps) < limit:
            return now
        if limit <= 0:
            return math.inf
        return self._stamps[len(self._stamps) - limit] + self.per

    def reserve(self) -> None:
        """A call starts: it holds a place until `settle`."""
        self.inflight += 1

    def settle(self, now: float) -> None:
        """The call started with `reserve` was answered at `now`."""
        self.inflight = max(0, self.inflight - 1)
        self._stamps.append(now)

    def take(self, now: float) -> None:
        """Count a call made at `now` (one not reserved)."""
        self._stamps.append(now)

    @property
    def idle(self) -> bool:
        """Whether nothing is counted any more (the window may be forgotten)."""
        self._forget(time.monotonic())
        return not self._stamps and not self.inflight


@dataclass
class LaneSpec:
    """A lane's windows (besides the global one) and the least time between its status edits."""

    windows: list[Window] = field(default_factory=list)
    progress_gap: float = 0.0


class Platform(Protocol):
    """What the adapter plugs in."""

    def lane_spec(self, lane: Lane) -> LaneSpec:
        """The windows and edit gap of a new lane (a chat)."""
        ...

    def verdict(self, exc: BaseException) -> Flood | Verdict:
        """Flood control, a transient failure, or a fatal one."""
        ...


@dataclass(eq=False)
class _Item:
    seq: int
    priority: int
    key: Hashable | None
    call: Callable[[], Awaitable[Any]]
    counts: bool
    paces: bool  # starts the lane's gap between status edits
    patience: float | None  # seconds of retries (None: the outbox's; inf: until it closes)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    deadline: float | None = None
    not_before: float = 0.0


@dataclass(eq=False)
class _Lane:
    name: Lane
    spec: LaneSpec
    items: list[_Item] = field(default_factory=list)
    keyed: dict[Hashable, _Item] = field(default_factory=dict)
    busy: bool = False
    paused_until: float = 0.0
    last_progress: float = -math.inf
    last_start: float = -math.inf

    def head(self) -> _Item:
        return min(self.items, key=lambda i: (i.priority, i.seq))


class Outbox:
    """The scheduler; `async with` runs it. `send` never waits for the platform itself: the
    future it returns does."""

    def __init__(
        self,
        platform: Platform,
        *,
        global_window: Window | None = None,
        retry_seconds: float = 600.0,
        backoff_max: float = 30.0,
        name: str = "outbox",
    ) -> None:
        self.platform = platform
        self.global_window = global_window
        self.retry_seconds = retry_seconds
        self.backoff_max = max(0.05, min(backoff_max, retry_seconds / 4 or backoff_max))
        self.name = name
        self._lanes: dict[Lane, _Lane] = {}
        self._waiting: set[_Lane] = set()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._calls: set[asyncio.Task[None]] = set()
        # what the outbox did, for tests, the bench and the log
        self.sent = 0
        self.floods = 0
        self.retries = 0
        self.gave_up = 0

    # --- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._runner = asyncio.create_task(self._run(), name=f"{self.name} scheduler")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop: calls in flight are cancelled, waiting ones fail with CancelledError, and so
        does every send after this (nothing would run it: a delivery waiting on one would hold
        up shutdown; its result is kept and goes out after the restart)."""
        self._closed = True
        runner, self._runner = self._runner, None
        while runner is not None and not runner.done():
            runner.cancel()  # again if a cancellation was swallowed on the way
            await asyncio.wait({runner}, timeout=1.0)
        if runner is not None and not runner.cancelled():
            runner.exception()  # retrieved: it ended on its own
        calls = list(self._calls)
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        for lane in self._lanes.values():
            for item in lane.items:
                _settle(item, cancel=True)
            lane.items.clear()
            lane.keyed.clear()
        self._waiting.clear()

    @property
    def running(self) -> bool:
        """Whether `async with` has started it and it has not closed."""
        return self._runner is not None

    # --- sending ---------------------------------------------------------------------------
    def send(
        self,
        lane: Lane,
        call: Callable[[], Awaitable[T]],
        *,
        priority: Priority = Priority.NOTICE,
        key: Hashable | None = None,
        counts: bool = True,
        forever: bool = False,
        patience: float | None = None,
        paces: bool | None = None,
        delay: float = 0.0,
    ) -> asyncio.Future[T]:
        """Queue `call` (one platform call) on `lane`; the future gives its result or raises
        (`GaveUp` after the retry time). With a `key` still waiting on the lane, the waiting
        item is kept in its place and runs once, the newest `call`, for every caller's future.
        `counts=False`: the platform does not count it in its message limits (deletions).
        `patience`: seconds of retries instead of the outbox's; `forever`: until it closes.
        `paces`: whether it starts the lane's gap between status edits (default: status
        edits, `Priority.PROGRESS`, do; a status's first showing does too). `delay`: not
        before this many seconds from now."""
        if forever:
            patience = math.inf
        if paces is None:
            paces = priority == Priority.PROGRESS
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.cancel()
            return future
        state = self._lane(lane)
        waiting = state.keyed.get(key) if key is not None else None
        if waiting is not None:
            waiting.priority = min(waiting.priority, priority)
            waiting.paces = waiting.paces or paces
            waiting.call = call
            waiting.futures.append(future)
        else:
            item = _Item(next(self._seq), priority, key, call, counts, paces, patience, [future])
            state.items.append(item)
            if key is not None:
                state.keyed[key] = item
            self._waiting.add(state)
        self._wake.set()
        return future

    def post(
        self,
        lane: Lane,
        call: Callable[[], Awaitable[Any]],
        *,
        what: str = "message",
        **options: Any,
    ) -> asyncio.Future[Any]:
        """`send` for callers that do not wait: a failure is logged (as `what`), not raised."""
        future = self.send(lane, call, **options)
        future.add_done_callback(lambda done: _log_failure(done, self.name, what))
        return future

    def cancel(self, lane: Lane, key: Hashable) -> bool:
        """Drop the waiting item with `key` (its futures are cancelled); False if none waits."""
        state = self._lanes.get(lane)
        item = state.keyed.pop(key, None) if state is not None else None
        if state is None or item is None:
            return False
        state.items.remove(item)
        _settle(item, cancel=True)
        return True

    def progress_gap(self, lane: Lane) -> float:
        """The least time between two status edits on `lane`."""
        return self._lane(lane).spec.progress_gap

    def waiting(self, lane: Lane | None = None) -> int:
        """Items not yet started (on one lane, or on all)."""
        if lane is not None:
            state = self._lanes.get(lane)
            return len(state.items) if state is not None else 0
        return sum(len(state.items) for state in self._lanes.values())

    def _lane(self, lane: Lane) -> _Lane:
        state = self._lanes.get(lane)
        if state is None:
            state = self._lanes[lane] = _Lane(lane, self.platform.lane_spec(lane))
        return state

    # --- scheduling ------------------------------------------------------------------------
    async def _run(self) -> None:
        tidied = time.monotonic()
        while True:
            now = time.monotonic()
            wake = self._dispatch(now)
            if now - tidied > 60.0:
                self._tidy()
                tidied = now
            self._wake.clear()
            timeout = None if wake is None else max(0.0, wake - time.monotonic())
            # asyncio.timeout, not wait_for: in Python 3.11 a wait_for whose inner wait ends
            # just as the task is cancelled swallows the cancellation (gh-86296), and this
            # loop then ran on and held up shutdown for ever (a burst's last sends waking it)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            # Let what woke us finish its step first (the dispatcher sends a new job to the
            # WebUI right after queueing it, before its acknowledgement needs to go), and take
            # a burst of sends in one pass.
            await asyncio.sleep(SETTLE)

    def _dispatch(self, now: float) -> float | None:
        """Start every item that may go now; when the next one may (None: on the next event)."""
        wake: float | None = None

        def later(at: float) -> None:
            nonlocal wake
            wake = at if wake is None else min(wake, at)

        ready: list[tuple[_Item, _Lane]] = []
        for state in list(self._waiting):
            if not state.items:
                self._waiting.discard(state)
                continue
            if state.busy:
                continue
            if state.paused_until > now:
                later(state.paused_until)
                continue
            item = state.head()
            if item.not_before > now:
                later(item.not_before)
                continue
            if item.priority >= Priority.PROGRESS and item.priority != Priority.CLEANUP:
                gap_end = state.last_progress + state.spec.progress_gap
                if gap_end > now:
                    later(gap_end)
                    continue
            if item.counts:
                low = item.priority >= Priority.REFUSAL
                free = max((w.free_at(now, low=low) for w in state.spec.windows), default=now)
                if free > now:
                    if free < math.inf:
                        later(free)
                    continue
            ready.append((item, state))
        # by priority; then the lane served longest ago first (round robin: a chat with a
        # backlog never holds up one with a single message), then the oldest item
        ready.sort(key=lambda pair: (pair[0].priority, pair[1].last_start, pair[0].seq))
        for item, state in ready:
            if item.counts and self.global_window is not None:
                low = item.priority >= Priority.REFUSAL
                free = self.global_window.free_at(now, low=low)
                if free > now:
                    if free < math.inf:  # else a call in flight makes room when it ends
                        later(free)
                    continue
                self.global_window.reserve()
            if item.counts:
                for window in state.spec.windows:
                    window.reserve()
            self._start(state, item, now)
        return wake

    def _start(self, state: _Lane, item: _Item, now: float) -> None:
        state.items.remove(item)
        if item.key is not None and state.keyed.get(item.key) is item:
            del state.keyed[item.key]
        if not state.items:
            self._waiting.discard(state)
        state.busy = True
        state.last_start = now
        if item.paces:
            state.last_progress = now
        task = asyncio.create_task(self._call(state, item))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _call(self, state: _Lane, item: _Item) -> None:
        try:
            result = await self._attempts(item)
        except Flood as flood:
            self.floods += 1
            state.paused_until = time.monotonic() + flood.retry_after
            log.info(
                "%s: flood control on %s: paused %.1f s", self.name, state.name, flood.retry_after
            )
            self._requeue(state, item)
        except asyncio.CancelledError:
            _settle(item, cancel=True)
            raise
        except BaseException as exc:
            if isinstance(exc, GaveUp):
                self.gave_up += 1
            _settle(item, error=exc)
        else:
            self.sent += 1
            _settle(item, result=result)
        finally:
            now = time.monotonic()
            if item.counts:
                for window in state.spec.windows:
                    window.settle(now)
                if self.global_window is not None:
                    self.global_window.settle(now)
            state.busy = False
            if state.items:
                self._waiting.add(state)
            self._wake.set()

    async def _attempts(self, item: _Item) -> Any:
        """The call, retried on transient failures until its deadline; a Flood goes up."""

        def transient(exc: BaseException) -> bool:
            return self.platform.verdict(exc) is Verdict.TRANSIENT

        def stop(state: RetryCallState) -> bool:
            now = time.monotonic()
            if item.deadline is None:
                patience = self.retry_seconds if item.patience is None else item.patience
                item.deadline = now + patience
            return now >= item.deadline

        def before_sleep(state: RetryCallState) -> None:
            self.retries += 1
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            log.info(
                "%s: call failed (attempt %d), retrying: %s",
                self.name,
                state.attempt_number,
                _why(error),
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(transient),
            stop=stop,
            wait=wait_exponential_jitter(multiplier=0.25, max=self.backoff_max, jitter=0.25),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await item.call()
                    except BaseException as exc:
                        verdict = self.platform.verdict(exc)
                        if isinstance(verdict, Flood):
                            raise verdict from None
                        raise
        except (Flood, asyncio.CancelledError):
            raise
        except BaseException as exc:
            if self.platform.verdict(exc) is Verdict.TRANSIENT:
                raise GaveUp(exc) from None
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _requeue(self, state: _Lane, item: _Item) -> None:
        newer = state.keyed.get(item.key) if item.key is not None else None
        if newer is not None:  # a newer state of the same thing waits: it supersedes this one
            newer.futures.extend(item.futures)
            newer.priority = min(newer.priority, item.priority)
            return
        state.items.append(item)
        if item.key is not None:
            state.keyed[item.key] = item

    def _tidy(self) -> None:
        """Forget lanes with nothing waiting, nothing in flight and nothing counted."""
        for name, state in list(self._lanes.items()):
            if state.items or state.busy or state.paused_until > time.monotonic():
                continue
            if all(w.idle for w in state.spec.windows):
                del self._lanes[name]


def _settle(
    item: _Item, *, result: Any = None, error: BaseException | None = None, cancel: bool = False
) -> None:
    for future in item.futures:
        if future.done():
            continue
        if cancel:
            future.cancel()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    item.futures.clear()


def _log_failure(future: asyncio.Future[Any], name: str, what: str) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.warning("%s: %s not sent: %s", name, what, _why(exc))


def _why(exc: BaseException | None) -> str:
    return "?" if exc is None else f"{type(exc).__name__}: {exc}"

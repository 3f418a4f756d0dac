"""The kit's outbox, spool and input limits on their own, with a small platform plugged in (what a
platform answers is the only thing faked here)."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.kit import (
    Admission,
    Flood,
    GaveUp,
    InputLimits,
    LaneSpec,
    Outbox,
    Priority,
    Spool,
    Verdict,
    Window,
)
from bot.types import ImageResult

pytestmark = pytest.mark.timeout(30)


class Down(Exception):
    """The platform is unreachable."""


class Wrong(Exception):
    """The platform refused the call itself."""


class Platform:
    """Lanes of one call per `per` seconds; Down is transient, Wrong fatal."""

    def __init__(self, per: float = 0.0, gap: float = 0.0) -> None:
        self.per, self.gap = per, gap

    def lane_spec(self, lane: object) -> LaneSpec:
        windows = [Window(1, self.per)] if self.per else []
        return LaneSpec(windows, progress_gap=self.gap)

    def verdict(self, exc: BaseException) -> Flood | Verdict:
        if isinstance(exc, Flood):
            return exc
        return Verdict.TRANSIENT if isinstance(exc, Down) else Verdict.FATAL


def recorder(log: list[tuple[str, float]], name: str, result: object = None):
    async def call() -> object:
        log.append((name, time.monotonic()))
        return result

    return call


async def test_results_go_before_progress_and_refusals_under_a_tight_budget() -> None:
    log: list[tuple[str, float]] = []
    outbox = Outbox(Platform(), global_window=Window(1, 0.05))
    futures = [
        outbox.send("a", recorder(log, "edit a"), priority=Priority.PROGRESS),
        outbox.send("b", recorder(log, "refusal b"), priority=Priority.REFUSAL),
        outbox.send("c", recorder(log, "result c"), priority=Priority.RESULT),
        outbox.send("d", recorder(log, "result d"), priority=Priority.RESULT),
    ]
    async with outbox:
        await asyncio.gather(*futures)
    assert [name for name, _ in log] == ["result c", "result d", "refusal b", "edit a"]


async def test_a_waiting_status_is_coalesced_to_its_newest_state() -> None:
    shown: list[str] = []
    state = {"text": ""}

    async def show() -> None:
        shown.append(state["text"])

    outbox = Outbox(Platform())
    futures = []
    for i in range(10):
        state["text"] = f"position {10 - i}"
        futures.append(outbox.send("chat", show, priority=Priority.PROGRESS, key="status"))
    async with outbox:
        await asyncio.gather(*futures)
    assert shown == ["position 1"]
    assert all(f.done() and f.result() is None for f in futures)  # one call answered all


async def test_status_edits_of_a_lane_are_spaced_by_its_gap() -> None:
    log: list[tuple[str, float]] = []
    async with Outbox(Platform(gap=0.3)) as outbox:
        for i in range(3):
            await outbox.send("chat", recorder(log, f"edit {i}"), priority=Priority.PROGRESS)
        await outbox.send("chat", recorder(log, "result"), priority=Priority.RESULT)
    times = [t for _, t in log]
    assert times[1] - times[0] >= 0.28 and times[2] - times[1] >= 0.28
    assert times[3] - times[2] < 0.2  # a result is not held by the edit gap


async def test_flood_control_pauses_only_its_lane() -> None:
    log: list[tuple[str, float]] = []
    floods = {"a": 1}

    async def flooded() -> str:
        if floods["a"]:
            floods["a"] -= 1
            raise Flood(0.5)
        log.append(("a", time.monotonic()))
        return "a sent"

    async with Outbox(Platform()) as outbox:
        began = time.monotonic()
        a = outbox.send("a", flooded, priority=Priority.RESULT)
        b = outbox.send("b", recorder(log, "b", "b sent"), priority=Priority.RESULT)
        assert await b == "b sent"
        assert await a == "a sent"
    (_, a_at), (_, b_at) = sorted(log, key=lambda e: e[0])
    assert b_at - began < 0.2 <= 0.5 <= a_at - began
    assert outbox.floods == 1


async def test_transient_failures_are_retried_then_given_up() -> None:
    attempts = {"n": 0}

    async def flaky() -> str:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise Down()
        return "sent"

    async def dead() -> None:
        raise Down()

    async def wrong() -> None:
        raise Wrong()

    async with Outbox(Platform(), retry_seconds=0.8) as outbox:
        assert await outbox.send("a", flaky) == "sent"
        began = time.monotonic()
        with pytest.raises(GaveUp) as gave_up:
            await outbox.send("b", dead)
        assert 0.8 <= time.monotonic() - began < 5
        assert isinstance(gave_up.value.last, Down)
        with pytest.raises(Wrong):  # not retried
            await outbox.send("c", wrong)
    assert attempts["n"] == 3 and outbox.gave_up == 1


async def test_a_lane_keeps_its_order_and_one_call_in_flight() -> None:
    inflight = {"n": 0, "most": 0}
    order: list[int] = []

    def call(i: int):
        async def run() -> None:
            inflight["n"] += 1
            inflight["most"] = max(inflight["most"], inflight["n"])
            await asyncio.sleep(0.01)
            order.append(i)
            inflight["n"] -= 1

        return run

    async with Outbox(Platform()) as outbox:
        await asyncio.gather(*(outbox.send("chat", call(i)) for i in range(10)))
    assert order == list(range(10)) and inflight["most"] == 1


async def test_a_window_counts_calls_in_flight_and_when_they_were_answered() -> None:
    window = Window(2, 1.0)
    now = time.monotonic()
    window.reserve()
    window.reserve()
    assert window.free_at(now) == float("inf")  # only a call in flight can make room
    window.settle(now + 0.5)  # answered late: counted from then
    assert window.free_at(now + 0.6) == now + 1.5  # one in flight, one counted: full
    window.settle(now + 0.7)
    assert window.free_at(now + 0.8) == now + 1.5
    assert window.free_at(now + 1.6) == now + 1.6  # the first answer has left the window


async def test_low_priority_leaves_room_in_a_shared_window() -> None:
    window = Window(10, 60.0, low_share=0.7)
    now = time.monotonic()
    for _ in range(7):
        assert window.free_at(now, low=True) == now
        window.take(now)
    assert window.free_at(now, low=True) > now  # refusals and edits stop at 7 …
    assert window.free_at(now) == now  # … a result still goes


def test_the_spool_holds_at_most_its_limit_in_memory() -> None:
    async def load(ref: str) -> bytes:
        return stored[ref]

    stored = {f"ref{i}": bytes([i]) * 1000 for i in range(10)}
    spool = Spool(3500, load)
    images = [ImageResult(stored[f"ref{i}"], i, 8, 8, ref=f"ref{i}") for i in range(10)]
    held = [spool.hold(image) for image in images]
    assert spool.held == 3000 and spool.peak == 3000
    assert all(image.png == b"" for image in images)  # the results let go of their bytes
    assert asyncio.run(spool.read(held[9])) == stored["ref9"]  # read back from the store
    for one in held:
        spool.release(one)
    assert spool.held == 0 and spool.spilled == 1


async def test_input_limits_take_then_warn_once_then_drop() -> None:
    limits = InputLimits(3, 600.0)
    seen = [await limits.admit("telegram:1") for _ in range(6)]
    assert seen == [Admission.TAKE] * 3 + [Admission.WARN] + [Admission.DROP] * 2
    assert await limits.admit("telegram:2") is Admission.TAKE  # another user is not affected


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_closing_as_a_send_wakes_the_scheduler_ends_it(turns: int) -> None:
    """Shutdown while the last sends of a burst wake the scheduler, which also waits for a
    lane's window: the close comes through at every point of its wake-up (a wait_for there
    swallowed it in Python 3.11, and shutdown waited for ever)."""
    log: list[tuple[str, float]] = []
    outbox = Outbox(Platform(per=30.0))
    await outbox.__aenter__()
    outbox.send("chat", recorder(log, "first"))
    waiting = outbox.send("chat", recorder(log, "behind it, for 30 s"))
    await asyncio.sleep(0.05)  # the scheduler sleeps until the lane's window opens
    outbox.send("other", recorder(log, "last"))
    for _ in range(turns):
        await asyncio.sleep(0)
    await asyncio.wait_for(outbox.close(), 5)
    assert not outbox.running and waiting.cancelled()


async def test_a_send_after_closing_fails_at_once_and_never_runs() -> None:
    """A delivery that reaches the outbox after shutdown closed it must not wait for a
    scheduler that is gone (shutdown then waited its whole grace for that step)."""
    log: list[tuple[str, float]] = []
    outbox = Outbox(Platform())
    async with outbox:
        await outbox.send("chat", recorder(log, "before"))
    late = outbox.send("chat", recorder(log, "after the close"))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(late, 1)
    posted = outbox.post("chat", recorder(log, "posted after the close"), what="test")
    assert posted.cancelled() and outbox.waiting() == 0
    assert [what for what, _ in log] == ["before"]

"""Progress and interrupts bound to the job: the WebUI encodes after releasing its lock, so the
next job already runs while the last answer is in flight, and a shared WebUI runs other
clients' jobs. Nobody sees another's preview; nothing not proven ours is interrupted.

Task mode (A1111 >= 1.6 and Forge in webui mode: force_task_id + POST /internal/progress) and
timestamp mode (A1111 --nowebui, SD.Next: job_timestamp) are both exercised. A job_timestamp
has a resolution of one second, so the timestamp-mode jobs here last longer than that."""

from __future__ import annotations

import asyncio

import pytest

from devwebui import DevWebUI
from tests.harness.engine import ALICE, BOB, eventually, running_engine, small
from tests.harness.memory import MemoryReplier
from tests.harness.webui import hue, seed_hue, sent

FOREIGN_SEED = 999_999  # the seed dev-webui colours a foreign job's previews with

MODES = [
    pytest.param({}, 0.4, id="task-id"),
    pytest.param({"nowebui": True}, 1.05, id="timestamp"),
]


def same_hue(a: float, b: float) -> bool:
    return min(abs(a - b), 1 - abs(a - b)) < 0.02


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("options", "delay"), MODES)
async def test_back_to_back_jobs_show_only_their_own_previews(tmp_path, options, delay):
    async with (
        DevWebUI(delay=delay, encode_delay=0.5, preview_every=1, **options) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        alice, bob = MemoryReplier("alice"), MemoryReplier("bob")
        await engine.submit(ALICE, small("alice's fox", seed=11, steps=12), alice)
        await engine.submit(BOB, small("bob's owl", seed=22, steps=12), bob)
        await alice.wait(lambda r: r.results, timeout=15)
        await bob.wait(lambda r: r.results, timeout=15)
        for replier, seed in ((alice, 11), (bob, 22)):
            previews = [u.preview for u in replier.updates if u.preview]
            assert previews, f"{replier.name} saw no preview at all"
            wrong = [hue(p) for p in previews if not same_hue(hue(p), seed_hue(seed))]
            assert not wrong, f"{replier.name} was shown another job's preview"


@pytest.mark.parametrize(("options", "delay"), MODES)
async def test_a_cancel_in_the_hand_over_window_interrupts_nothing_else(tmp_path, options, delay):
    async with (
        DevWebUI(delay=delay, encode_delay=0.7, **options) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        alice, bob = MemoryReplier("alice"), MemoryReplier("bob")
        first = await engine.submit(ALICE, small("alice's fox", steps=8), alice)
        await engine.submit(BOB, small("bob's owl", steps=8), bob)
        # alice's picture is drawn and being encoded (her status still says drawing); bob's runs
        await until(lambda: len(webui.passes) == 1 and webui.state.job_count != 0)
        assert not alice.results
        await asyncio.sleep(0.2)  # a few polls in the window
        await engine.cancel(ALICE, first.job_id)
        await bob.wait(lambda r: r.finished, timeout=15)
        assert bob.results, bob.failures
        assert "/sdapi/v1/interrupt" not in [path for path, _ in webui.requests]
        assert webui.cut_short == []  # bob's picture was drawn in full
        await until(lambda: engine.dispatcher.find(first.job_id) is None)  # her answer came
        assert not alice.results  # and was dropped
        view = await eventually(lambda: engine.quotas.view(ALICE.key), lambda v: v.reserved == 0)
        assert view.available == 10_000  # refunded


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="a1111-task-id"),
        pytest.param({"nowebui": True}, id="a1111-timestamp"),
        pytest.param({"flavor": "sdnext"}, id="sdnext-timestamp"),
    ],
)
async def test_a_foreign_client_on_the_same_webui_is_never_interrupted(tmp_path, options):
    async with (
        DevWebUI(delay=0.6, preview_every=1, **options) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        foreign = asyncio.create_task(webui.foreign_job(seconds=1.1, steps=20))
        await until(lambda: webui.state.job_count != 0)  # the other client's job holds the lock
        alice = MemoryReplier("alice")
        handle = await engine.submit(ALICE, small("alice's fox", steps=6), alice)
        await until(lambda: len(sent(webui)) == 1)  # her request waits behind it
        await asyncio.sleep(0.2)
        await engine.cancel(ALICE, handle.job_id)
        job = await foreign
        assert not job.interrupted and job.steps_done == 20
        assert not any(
            same_hue(hue(u.preview), seed_hue(FOREIGN_SEED)) for u in alice.updates if u.preview
        ), "alice was shown the other client's preview"
        # her own job, once it ran, was interrupted: proven hers
        await until(lambda: any(asked == 6 for _, asked in webui.cut_short))
        await asyncio.sleep(0.3)
        assert not alice.results


async def test_a_job_queued_behind_a_foreign_one_shows_no_progress_until_it_runs(tmp_path):
    async with (
        DevWebUI(delay=0.5, preview_every=1) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        foreign = asyncio.create_task(webui.foreign_job(seconds=0.8, steps=20))
        await until(lambda: webui.state.job_count != 0)
        alice = MemoryReplier("alice")
        await engine.submit(ALICE, small("alice's fox", seed=11, steps=10), alice)
        await foreign
        running = [u.progress for u in alice.updates if u.progress]
        assert running == [], "the other client's progress was shown as alice's"
        await alice.wait(lambda r: r.results, timeout=10)
        shown = [u.progress for u in alice.updates if u.progress]
        assert shown and shown == sorted(shown)  # her own, and only forwards

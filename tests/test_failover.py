"""Failures that are the backend's, not the job's: an empty 200, a 500 (CUDA out of memory), a
proxy's 503, a stall, a timeout. The job is drawn elsewhere and delivered once; the backend
cools off, longer each time in a row; a job we stop waiting for is interrupted, so the GPU
does not render it twice; a model load is not a stall."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.backend_report import backend_lines
from bot.types import Requester
from devwebui import DevWebUI
from tests.harness.engine import ALICE, eventually, running_engine, small
from tests.harness.memory import MemoryReplier
from tests.harness.webui import sent

ONLY_HERE = ("v1-5-pruned-emaonly.safetensors", "only-here.safetensors")


@pytest.mark.parametrize(
    ("fault", "flavor"),
    [("empty", "a1111"), ("oom", "a1111"), ("oom", "sdnext"), ("unavailable", "a1111")],
)
async def test_a_backends_failure_is_drawn_on_the_other_backend_once(tmp_path, fault, flavor):
    async with (
        DevWebUI(delay=0.1, flavor=flavor) as bad,
        DevWebUI(delay=0.1) as good,
        running_engine(tmp_path, [bad, good], backend_cooloff=5.0) as engine,
    ):
        bad.fail_next(fault, times=100)
        replier = MemoryReplier()
        users = [Requester("test", f"u{i}") for i in range(4)]
        handles = [await engine.submit(u, small(f"job {i}"), replier) for i, u in enumerate(users)]
        await replier.wait(lambda r: r.finished >= 4, timeout=15)
        assert not replier.failures, replier.failures
        delivered = [r.job_id for r in replier.results]
        assert sorted(delivered) == sorted(h.job_id for h in handles)  # each exactly once
        assert sent(bad), "the failing backend was never tried"
        assert any(u.note == "queue.retrying" for u in replier.updates)
        backend = engine.dispatcher.backends[0]
        assert backend.failures >= 1 and backend.cooling() > 0
        for user, handle in zip(users, handles, strict=True):
            view = await eventually(
                lambda u=user: engine.quotas.view(u.key), lambda v: not v.reserved
            )
            assert view.available == 10_000 - handle.cost  # charged once


async def test_a_backend_that_keeps_failing_cools_off_longer_each_time(tmp_path):
    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(tmp_path, [webui], backend_cooloff=0.1, max_attempts=3) as engine,
    ):
        webui.fail_next("oom", times=3)
        replier = MemoryReplier()
        handle = await engine.submit(ALICE, small(), replier)
        await replier.wait(lambda r: r.failures, timeout=10)
        job_id, error, refunded = replier.failures[0]
        assert refunded == handle.cost
        assert error.key == "webui.out_of_memory"  # the WebUI's raw text stays in the log
        tried = [t for (path, _), t in zip(webui.requests, webui.arrived, strict=True)
                 if path == "/sdapi/v1/txt2img"]  # fmt: skip
        assert len(tried) == 3
        assert tried[1] - tried[0] >= 0.1 and tried[2] - tried[1] >= 0.2  # 0.1 s, then 0.2 s
        # what `drawbridge backends` shows, from the running service's state file
        lines, _ = await eventually(
            lambda: backend_lines(engine.settings, engine.db),
            lambda found: any("failures in a row" in line for line in found[0]),
        )
        assert any(
            "after 3 failures in a row" in line or "3 failures in a row" in line for line in lines
        )
        # it comes back (after 0.4 s more): the next job is drawn there, the count starts again
        await engine.submit(ALICE, small("again"), replier)
        await replier.wait(lambda r: r.results, timeout=10)
        assert engine.dispatcher.backends[0].failures == 0


async def test_a_stalled_job_is_interrupted_then_drawn_elsewhere(tmp_path):
    other = DevWebUI(delay=0.1)
    await other.start()
    port = other.port
    await other.kill()  # down at first, so the job goes to the one that gets stuck
    async with (
        DevWebUI(delay=0.3) as stuck,
        running_engine(tmp_path, [stuck, other], stall_timeout=0.4) as engine,
    ):
        stuck.fail_next("hang")
        replier = MemoryReplier()
        handle = await engine.submit(ALICE, small("wedged"), replier)
        async with DevWebUI(delay=0.1, port=port) as good:
            await engine.dispatcher.check_all()  # what the health check runs: it is back
            await replier.wait(lambda r: r.finished, timeout=15)
        assert [r.job_id for r in replier.results] == [handle.job_id]
        assert len(stuck.cut_short) == 1  # we interrupted it there: proven ours
        assert [p for p, _ in stuck.requests].count("/sdapi/v1/interrupt") == 1
        assert len(sent(good)) == 1 and any(u.note == "queue.retrying" for u in replier.updates)
        assert engine.dispatcher.backends[0].failures == 1


async def test_a_model_load_is_not_a_stall(tmp_path):
    async with (
        DevWebUI(delay=0.1, switch_delay=1.0) as webui,
        running_engine(tmp_path, [webui], stall_timeout=0.3) as engine,
    ):
        replier = MemoryReplier()
        await engine.submit(ALICE, small(model="sd_xl_base_1.0"), replier)
        await replier.wait(lambda r: r.finished, timeout=10)
        assert replier.results, replier.failures
        assert len(sent(webui)) == 1 and not webui.cut_short
        assert not any(u.note == "queue.retrying" for u in replier.updates)


async def test_a_timed_out_job_is_interrupted_before_it_is_queued_again(tmp_path):
    async with (
        DevWebUI(delay=3.0, models=ONLY_HERE) as slow,
        running_engine(tmp_path, [slow], webui_timeout=1.0, max_attempts=2, backend_cooloff=0.1)
        as engine,
    ):  # fmt: skip
        replier = MemoryReplier()
        await engine.submit(ALICE, small(model="only-here"), replier)
        await replier.wait(lambda r: r.failures, timeout=15)
        wanted = ("/sdapi/v1/txt2img", "/sdapi/v1/interrupt")

        async def sent() -> list[str]:  # the last interrupt may follow the failure's report
            return [path for path, _ in slow.requests if path in wanted]

        paths = await eventually(sent, lambda p: len(p) >= 4)
        # each attempt was interrupted before the next was sent: the GPU never renders it twice
        assert paths[:4] == [
            "/sdapi/v1/txt2img", "/sdapi/v1/interrupt", "/sdapi/v1/txt2img", "/sdapi/v1/interrupt",
        ]  # fmt: skip
        await eventually(lambda: asyncio.sleep(0, len(slow.cut_short)), lambda n: n == 2)
        assert replier.failures[0][1].key == "webui.too_slow"


async def test_an_abandoned_request_is_interrupted_once_it_runs(tmp_path):
    async with (
        DevWebUI(delay=0.3, models=ONLY_HERE) as webui,
        running_engine(tmp_path, [webui], webui_timeout=0.5, max_attempts=1) as engine,
    ):
        foreign = asyncio.create_task(webui.foreign_job(seconds=1.5, steps=10))
        replier = MemoryReplier()
        await engine.submit(ALICE, small(model="only-here", steps=5), replier)
        await replier.wait(lambda r: r.failures, timeout=10)  # timed out waiting for the lock
        job = await foreign
        assert not job.interrupted  # not ours: untouched
        started = time.monotonic()
        while not any(asked == 5 for _, asked in webui.cut_short):  # ours, once it ran
            assert time.monotonic() - started < 5, "the abandoned request was never interrupted"
            await asyncio.sleep(0.02)

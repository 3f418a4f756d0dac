"""The core end to end: engine + dispatcher + quotas over real dev-webui servers and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from bot.engine import Engine
from bot.errors import NotAllowed, QueueFull, QuotaExceeded
from bot.presets import Preset, PresetBook
from bot.types import Cancelled, GenerationRequest, JobState, Requester
from devwebui import DevWebUI
from storage.db import Database
from tests.harness.engine import ADMIN, ALICE, BOB, eventually, running_engine, small
from tests.harness.memory import MemoryReplier
from tests.harness.settings import make_settings


async def test_job_runs_with_exact_values_and_is_charged(tmp_path):
    async with DevWebUI(delay=0.05) as webui, running_engine(tmp_path, [webui]) as engine:
        replier = MemoryReplier()
        handle = await engine.submit(
            ALICE,
            engine.parser.parse("a red fox --seed 42 --steps 20 --size 512x512 --no-hires"),
            replier,
        )
        await replier.wait(lambda r: r.finished)
        assert replier.results, replier.failures
        result = replier.results[0]
        assert (result.images[0].width, result.images[0].height) == (512, 512)
        assert result.images[0].seed == 42
        path, body = [r for r in webui.requests if r[0].endswith("/txt2img")][-1]
        assert (body["seed"], body["steps"], body["width"], body["height"]) == (42, 20, 512, 512)
        view = await eventually(lambda: engine.quotas.view(ALICE.key), lambda v: v.reserved == 0)
        assert handle.cost == 1
        assert view.available == 10_000 - 1 and view.reserved == 0


async def test_burst_from_one_user_does_not_starve_another(tmp_path):
    """50 queued jobs from one user; another user's single job starts within two job-times."""
    async with DevWebUI(delay=0.05) as webui, running_engine(tmp_path, [webui]) as engine:
        log: list[tuple[str, str, str]] = []
        heavy = MemoryReplier("heavy", log)
        light = MemoryReplier("light", log)
        for i in range(50):
            await engine.submit(ALICE, small(f"burst {i}"), heavy)
        await heavy.wait(lambda r: len(r.results) >= 2)
        log.append(("submit", "light", ""))
        await engine.submit(BOB, small("just one"), light)
        await light.wait(lambda r: r.results, timeout=20)
        marker = log.index(("submit", "light", ""))
        light_start = log.index(("started", "light", light.results[0].job_id))
        heavy_dispatched = [e for e in log[marker:light_start] if e[:2] == ("started", "heavy")]
        heavy_finished = [e for e in log[marker:light_start] if e[:2] == ("done", "heavy")]
        # Ahead of the light job: only what was already on the backend (one running, one
        # waiting on the WebUI's lock), so it starts within two job-times of being queued.
        assert len(heavy_dispatched) <= 1
        assert len(heavy_finished) <= 2
        assert len(heavy.results) < 50  # the burst was still going when light ran


async def test_per_user_cap_refuses_with_a_clear_message(tmp_path):
    async with (
        DevWebUI(delay=0.3) as webui,
        running_engine(tmp_path, [webui], max_queued_per_user=2) as engine,
    ):
        replier = MemoryReplier()
        for _ in range(4):  # two go to the backend at once (running + prefetched)
            with contextlib.suppress(QueueFull):
                await engine.submit(ALICE, small(), replier)
        with pytest.raises(QueueFull) as info:
            await engine.submit(ALICE, small(), replier)
        assert info.value.render("en") == (
            "You already have 2 jobs waiting (the limit is 2). "
            "Wait for one to finish or /cancel one."
        )
        await engine.submit(BOB, small(), MemoryReplier())  # others are not affected


async def test_quota_exhausted_charges_nothing_and_queues_nothing(tmp_path):
    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(tmp_path, [webui], daily_credits=3) as engine,
    ):
        replier = MemoryReplier()
        with pytest.raises(QuotaExceeded) as info:
            await engine.submit(
                ALICE,
                engine.parser.parse("fox --n 4 --size 512x512 --steps 20 --no-hires"),
                replier,
            )
        assert "This needs 4 credits and you have 3 left." in info.value.render("en")
        assert len(engine.queue) == 0 and not replier.updates
        assert (await engine.quotas.view(ALICE.key)).available == 3


async def test_credits_refill_at_the_reset_time_while_the_bot_runs(tmp_path):
    """The quota day is worked out once and kept until the next refill: a user out of credits
    is refused with the refill time, and draws again right after it, without a restart."""
    soon = datetime.now(UTC) + timedelta(seconds=2)
    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(
            tmp_path, [webui], daily_credits=1, quota_reset_time=soon.strftime("%H:%M:%S")
        ) as engine,
    ):
        replier = MemoryReplier()
        await engine.submit(ALICE, small("first"), replier)
        with pytest.raises(QuotaExceeded) as info:
            await engine.submit(ALICE, small("second"), replier)
        assert f"{soon:%H:%M} UTC" in info.value.render("en")
        await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.3)
        handle = await engine.submit(ALICE, small("after the refill"), replier)
        assert handle.cost == 1 and (await engine.quotas.view(ALICE.key)).available == 0


async def test_position_and_eta(tmp_path):
    async with DevWebUI(delay=0.4) as webui, running_engine(tmp_path, [webui]) as engine:
        replier = MemoryReplier()
        handles = [await engine.submit(ALICE, small(f"p{i}"), replier) for i in range(4)]
        await asyncio.sleep(0.1)
        queued = [h for h in handles if h.job_id in engine.queue]
        positions = [engine.position(h.job_id) for h in queued]
        assert [p for p, _ in positions] == list(range(1, len(queued) + 1))
        etas = [eta for _, eta in positions]
        assert etas == sorted(etas) and etas[0] > 0
        first_update = replier.updates[0]
        assert first_update.state is JobState.QUEUED and first_update.position is not None


async def test_cancel_queued_refunds_and_never_runs(tmp_path):
    async with DevWebUI(delay=0.3) as webui, running_engine(tmp_path, [webui]) as engine:
        replier = MemoryReplier()
        handles = [await engine.submit(ALICE, small(f"c{i}"), replier) for i in range(4)]
        last = handles[-1]
        assert last.job_id in engine.queue
        with pytest.raises(NotAllowed):
            await engine.cancel(BOB, last.job_id)
        cancelled = await engine.cancel(ALICE, last.job_id)
        assert cancelled == Cancelled(last.job_id, last.cost)
        await replier.wait(lambda r: len(r.results) == 3, timeout=10)
        prompts = [b["prompt"] for p, b in webui.requests if p.endswith("/txt2img")]
        assert "c3" not in prompts
        job_id, error, credits = replier.failures[0]
        assert job_id == last.job_id and credits == last.cost
        assert error.render("en") == (
            f"Cancelled. Your {last.cost} credit{' was' if last.cost == 1 else 's were'} returned."
        )
        await eventually(lambda: engine.quotas.view(ALICE.key), lambda v: v.reserved == 0)


async def test_cancel_running_interrupts_after_progress_confirms(tmp_path):
    async with DevWebUI(delay=2.0) as webui, running_engine(tmp_path, [webui]) as engine:
        replier = MemoryReplier()
        handle = await engine.submit(ALICE, small("long one"), replier)
        await replier.wait(lambda r: any(u.progress and u.progress > 0 for u in r.updates))
        before = (await engine.quotas.view(ALICE.key)).available
        cancelled = await engine.cancel(ADMIN, handle.job_id)  # an admin may cancel anyone's
        assert cancelled.refunded == handle.cost
        paths = [p for p, _ in webui.requests]
        assert "/sdapi/v1/interrupt" in paths
        # the interrupt came after a progress poll that showed the job running
        assert paths.index("/sdapi/v1/interrupt") > paths.index("/sdapi/v1/progress")
        assert (await engine.quotas.view(ALICE.key)).available == before + handle.cost
        await asyncio.sleep(0.3)
        assert not replier.results  # partial images of a cancelled job are dropped


async def test_failure_refunds_and_says_why(tmp_path):
    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(tmp_path, [webui], max_attempts=1) as engine,
    ):
        webui.fail_next("oom")
        replier = MemoryReplier()
        handle = await engine.submit(
            ALICE, GenerationRequest("fox", width=256, height=256, steps=4), replier
        )
        await replier.wait(lambda r: r.failures)
        job_id, error, refunded = replier.failures[0]
        assert refunded == handle.cost
        # the user reads what to do; the host, route and raw error text stay in the log
        said = error.render("en")
        assert said.startswith("The drawing server ran out of GPU memory") and "--size" in said
        assert webui.url.split("//")[1] not in said and "sdapi" not in said
        view = await engine.quotas.view(ALICE.key)
        assert view.available == 10_000 and view.reserved == 0


async def test_an_upscaler_no_backend_has_is_refused_before_anything_is_charged(tmp_path):
    presets = PresetBook(default=Preset(hr_upscaler="No Such Upscaler"))
    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(tmp_path, [webui], presets=presets) as engine,
    ):
        from bot.errors import NoBackendCanDraw

        with pytest.raises(NoBackendCanDraw) as info:
            await engine.submit(
                ALICE, GenerationRequest("fox", width=256, height=256, steps=4), MemoryReplier()
            )
        assert info.value.render("en").startswith(
            "None of the drawing servers has the upscaler 'No Such Upscaler'."
        )
        assert len(engine.queue) == 0 and not [p for p, _ in webui.requests if "txt2img" in p]
        assert (await engine.quotas.view(ALICE.key)).available == 10_000


async def test_three_backends_one_killed_every_job_completes_once(tmp_path):
    backends = [DevWebUI(delay=0.3) for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for b in backends:
            await stack.enter_async_context(b)
        async with running_engine(tmp_path, backends) as engine:
            replier = MemoryReplier()
            users = [Requester("test", f"u{i}") for i in range(4)]
            handles = []
            for i in range(12):
                handles.append(await engine.submit(users[i % 4], small(f"job {i}"), replier))
            victim = backends[1]
            await replier.wait(
                lambda r: any(u.state is JobState.RUNNING for u in r.updates), timeout=5
            )
            await asyncio.sleep(0.1)
            await victim.kill()
            await replier.wait(lambda r: r.finished >= 12, timeout=30)
            delivered = [r.job_id for r in replier.results]
            assert sorted(delivered) == sorted(h.job_id for h in handles)
            assert len(delivered) == len(set(delivered))  # exactly once
            assert not replier.failures
            assert any(u.note == "queue.retrying" for u in replier.updates)
            down = [b for b in engine.dispatcher.backends if not b.up]
            assert [b.url for b in down] == [victim.url]
            assert "Could not connect to the WebUI at" in down[0].last_error


async def test_backend_comes_back_after_health_check(tmp_path):
    webui = DevWebUI(delay=0.05)
    await webui.start()
    port = webui.port
    await webui.kill()
    async with running_engine(tmp_path, [webui]) as engine:
        assert not engine.dispatcher.up_backends()
        replier = MemoryReplier()
        await engine.submit(ALICE, small(), replier)
        revived = DevWebUI(delay=0.05, port=port)
        async with revived:
            await engine.dispatcher.check_all()  # what the APScheduler job runs
            await replier.wait(lambda r: r.results, timeout=10)


async def test_ledger_sums_to_balances_after_mixed_outcomes(tmp_path):
    async with DevWebUI(delay=0.1) as webui, running_engine(tmp_path, [webui]) as engine:
        replier = MemoryReplier()
        handles = [await engine.submit(ALICE, small(f"l{i}"), replier) for i in range(5)]
        await engine.cancel(ALICE, handles[-1].job_id)
        await replier.wait(lambda r: r.finished >= 5, timeout=15)
        view = await eventually(lambda: engine.quotas.view(ALICE.key), lambda v: v.reserved == 0)
        spent = sum(h.cost for h in handles[:-1])
        assert view.available == 10_000 - spent
        ledger = await engine.db.quota.ledger_balance(
            ALICE.key, allowance=10_000, today=engine.quotas.today()
        )
        assert ledger == view.available


async def test_model_is_validated_against_backends(tmp_path):
    async with DevWebUI(delay=0.05) as webui, running_engine(tmp_path, [webui]) as engine:
        from bot.errors import OptionError

        with pytest.raises(OptionError) as info:
            await engine.submit(ALICE, small(model="nonexistent-model"), MemoryReplier())
        assert info.value.render("en").startswith("--model must be one of:")
        with pytest.raises(OptionError):
            await engine.submit(ALICE, small(sampler="k_euler"), MemoryReplier())
        assert len(engine.queue) == 0


async def test_progress_carries_the_webui_preview(tmp_path):
    async with (
        DevWebUI(delay=1.0, preview_every=1) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        replier = MemoryReplier()
        await engine.submit(ALICE, small(steps=10), replier)
        await replier.wait(lambda r: any(u.preview for u in r.updates), timeout=10)
        preview = next(u.preview for u in replier.updates if u.preview)
        assert preview.startswith(b"\x89PNG")


async def test_queued_jobs_survive_a_restart(tmp_path):
    webui = DevWebUI(delay=0.05)
    await webui.start()
    port = webui.port
    await webui.kill()  # nothing can run: the jobs stay queued
    settings = make_settings(tmp_path, [webui.url])
    first = MemoryReplier("before restart")
    async with Database(settings.database_url) as db:
        async with Engine(settings, db) as engine:
            handles = [await engine.submit(ALICE, small(f"r{i}"), first) for i in range(2)]
            cli_handle = await engine.submit(Requester("cli", "x"), small("cli job"), first)
    revived = DevWebUI(delay=0.05, port=port)
    async with revived, Database(settings.database_url) as db:
        engine = Engine(settings, db)
        resumed: list[tuple[Requester, dict]] = []
        second = MemoryReplier("after restart")

        def factory(requester, reply_ref):
            resumed.append((requester, reply_ref))
            return second

        engine.register_replier("test", factory)
        async with engine:
            await second.wait(lambda r: len(r.results) == 2, timeout=10)
        assert sorted(r.job_id for r in second.results) == sorted(h.job_id for h in handles)
        assert {r.key for r, _ in resumed} == {ALICE.key}
        # a job whose platform cannot be resumed is failed and refunded, not left hanging
        row = await db.jobs.get(cli_handle.job_id)
        assert row.state == "failed"
        assert (await engine.quotas.view("cli:x")).reserved == 0


async def test_scheduler_has_health_and_retention_jobs_and_no_reset(tmp_path):
    """Quotas refill lazily per account: nothing is scheduled at the reset time."""
    from bot.scheduler import build_scheduler

    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(
            tmp_path, [webui], quota_reset_time="04:30", quota_timezone="Asia/Shanghai"
        ) as engine,
    ):
        scheduler = build_scheduler(engine)
        scheduler.start()
        try:
            jobs = {job.id: job for job in scheduler.get_jobs()}
            assert set(jobs) == {"health", "retention", "audit-retention", "ledger"}
            await engine.quotas.reset_all()  # still there for whoever wants it; repeatable
            await engine.quotas.reset_all()
        finally:
            scheduler.shutdown(wait=False)


async def test_queued_jobs_hear_their_new_position(tmp_path):
    async with DevWebUI(delay=0.2) as webui, running_engine(tmp_path, [webui]) as engine:
        repliers = [MemoryReplier(f"r{i}") for i in range(5)]
        for i, r in enumerate(repliers):
            await engine.submit(Requester("test", f"user{i}"), small(f"q{i}"), r)
        last = repliers[-1]
        await last.wait(lambda r: r.results, timeout=15)
        positions = [u.position for u in last.updates if u.state is JobState.QUEUED]
        # it started at the back and moved up, one place at a time, never backwards
        assert positions[0] >= 3 and positions == sorted(positions, reverse=True), positions
        assert 1 in positions


async def test_retention_deletes_old_images_and_jobs(tmp_path):
    import os
    import time as _time

    from bot.scheduler import retention

    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(tmp_path, [webui], retention_days=1) as engine,
    ):
        replier = MemoryReplier()
        handle = await engine.submit(ALICE, small(), replier)
        await replier.wait(lambda r: r.results)
        (result,) = replier.results
        assert result.job_id == handle.job_id
        key = result.images[0].keys["original"]
        assert (await engine.original(key)).png.startswith(b"\x89PNG")
        assert await retention(engine) == (0, 0)  # nothing is old yet
        old = _time.time() - 2 * 86400
        for path in (tmp_path / "data" / "images").rglob("*.png"):
            os.utime(path, (old, old))
        from datetime import UTC, datetime, timedelta

        from sqlalchemy import update

        from storage.jobs import JOBS

        async with engine.db.write() as conn:
            await conn.execute(
                update(JOBS).values(finished_at=datetime.now(UTC) - timedelta(days=2))
            )
        images, jobs = await retention(engine)
        assert images >= 1 and jobs == 1
        from bot.errors import NotFound

        with pytest.raises(NotFound) as info:
            await engine.original(key)
        assert "This button no longer works" in info.value.render("en")


async def test_a_job_cancelled_before_its_task_starts_is_not_lost(tmp_path):
    """The backend is marked down in the same loop turn a job was handed to it."""
    async with DevWebUI(delay=0.2) as a, DevWebUI(delay=0.2) as b:
        async with running_engine(tmp_path, [a, b]) as engine:
            replier = MemoryReplier()
            dispatcher = engine.dispatcher
            handle = await engine.submit(ALICE, small("fragile"), replier)
            # find the job's task before it has run a single step, then kill its backend
            run = dispatcher.find(handle.job_id)
            while run is None:
                await asyncio.sleep(0)
                run = dispatcher.find(handle.job_id)
            from bot.errors import WebUIUnreachable

            dispatcher._mark_down(
                run.backend, WebUIUnreachable(url=run.backend.name, path="/x"), exclude=None
            )
            await replier.wait(lambda r: r.finished, timeout=10)
            assert [r.job_id for r in replier.results] == [handle.job_id]

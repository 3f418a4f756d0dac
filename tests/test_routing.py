"""Routing by capability in a mixed, changing fleet: a job goes only to a backend that has its
checkpoint, sampler, upscaler and LoRAs; nothing is drawn with another model; a user who asks
for what no backend has is told which backends exist and what each offers (by name, never by
host or port); a checkpoint added while drawbridge runs is usable without a restart."""

from __future__ import annotations

import asyncio

from bot.i18n import t
from bot.types import GenerationRequest
from devwebui import DevWebUI
from tests.harness.engine import ALICE, eventually, running_engine, small
from tests.harness.memory import MemoryChat, MemoryReplier, memory_service
from tests.harness.webui import sent

V15 = "v1-5-pruned-emaonly.safetensors"


def models_in(server: DevWebUI) -> list[str]:
    return [b.get("override_settings", {}).get("sd_model_checkpoint", "") for b in sent(server)]


async def test_a_checkpoint_on_one_backend_only_is_drawn_there(tmp_path):
    async with (
        DevWebUI(delay=0.1) as common,
        DevWebUI(delay=0.1, models=(V15, "rare.safetensors")) as holder,
        running_engine(tmp_path, [common, holder]) as engine,
    ):
        replier = MemoryReplier()
        for i in range(3):
            await engine.submit(ALICE, small(f"rare {i}", model="rare"), replier)
            await engine.submit(ALICE, small(f"plain {i}"), replier)
        await replier.wait(lambda r: r.finished == 6, timeout=15)
        assert len(replier.results) == 6, replier.failures
        assert not any("rare" in m for m in models_in(common))
        assert sum("rare.safetensors [" in m for m in models_in(holder)) == 3
        rare = [r for r in replier.results if r.prompt.startswith("rare")]
        assert {r.model for r in rare} == {"rare"}  # as the WebUI reported it drew them


async def test_a_lora_is_drawn_where_it_is(tmp_path):
    async with (
        DevWebUI(delay=0.05, loras=["add_detail"]) as one,
        DevWebUI(delay=0.05, loras=["film_grain"]) as other,
        running_engine(tmp_path, [one, other]) as engine,
    ):
        replier = MemoryReplier()
        for i in range(3):
            await engine.submit(ALICE, small(f"grainy {i} <lora:film_grain:0.7>"), replier)
        await replier.wait(lambda r: r.finished == 3, timeout=15)
        assert len(replier.results) == 3 and not sent(one) and len(sent(other)) == 3


async def test_a_checkpoint_added_while_running_is_usable_without_restart(tmp_path):
    async with (
        DevWebUI(delay=0.05) as first,
        DevWebUI(delay=0.05) as second,
        running_engine(tmp_path, [first, second]) as engine,
    ):
        listed = [p for p, _ in second.requests].count("/sdapi/v1/sd-models")
        second.add_checkpoint("late-arrival.safetensors", scanned=True)  # the UI's refresh button
        replier = MemoryReplier()
        await engine.submit(ALICE, small(model="late-arrival"), replier)
        await replier.wait(lambda r: r.finished, timeout=10)
        assert replier.results, replier.failures
        assert replier.results[0].model == "late-arrival"
        assert [p for p, _ in second.requests].count("/sdapi/v1/sd-models") == listed + 1
        assert not sent(first)
        assert "late-arrival" in [c.label for c in engine.checkpoints()]  # autocomplete too


async def test_what_no_backend_has_is_refused_naming_each_backends_offer(tmp_path):
    async with (
        DevWebUI(delay=0.05, models=("anime.safetensors",), loras=["add_detail"]) as a,
        DevWebUI(delay=0.05, models=("photo.safetensors",), loras=["film_grain"]) as b,
        memory_service(tmp_path, [a, b], webui_names=["big gpu"]) as service,
    ):
        alice = MemoryChat(service, "alice")
        together = await alice.send("/draw a fox <lora:film_grain:0.8> --model anime")
        assert together == (
            "No single drawing server has the checkpoint 'anime', the LoRA 'film_grain' "
            "together. What each one offers:\n"
            "• big gpu: checkpoints anime; LoRAs add_detail\n"
            "• backend 2: checkpoints photo; LoRAs film_grain"
        )
        nowhere = await alice.send("/draw a fox <lora:nowhere:1>")
        assert nowhere.startswith("None of the drawing servers has the LoRA 'nowhere'.")
        chinese = MemoryChat(service, "li", locale="zh")
        answer = await chinese.send("/draw a fox <lora:nowhere:1>")
        assert "后端 2" in answer and "没有任何绘图服务器" in answer
        for text in (together, nowhere, answer):
            assert "127.0.0.1" not in text and str(a.port) not in text
        assert "10000 credits left today" in await alice.send("/quota")  # nothing charged
        assert not sent(a) and not sent(b)


async def test_a_stale_catalogue_never_draws_with_another_model(tmp_path):
    other = DevWebUI(delay=0.05, models=(V15, "ghost.safetensors"))
    await other.start()
    port = other.port
    await other.kill()  # down at first: the job goes to the backend that lost the model
    async with (
        DevWebUI(delay=0.05, models=(V15, "ghost.safetensors")) as losing,
        running_engine(tmp_path, [losing, other]) as engine,
    ):
        # the file is deleted after drawbridge listed it: A1111 would silently draw with V15
        losing.checkpoints = [c for c in losing.checkpoints if "ghost" not in c.name]
        replier = MemoryReplier()
        handle = await engine.submit(ALICE, small(model="ghost"), replier)
        await eventually(lambda: asyncio.sleep(0, len(sent(losing))), lambda n: n == 1)
        async with DevWebUI(delay=0.05, models=(V15, "ghost.safetensors"), port=port) as holder:
            await engine.dispatcher.check_all()
            await replier.wait(lambda r: r.finished, timeout=10)
        assert [r.job_id for r in replier.results] == [handle.job_id], replier.failures
        assert replier.results[0].model == "ghost"  # the picture drawn with V15 was not used
        assert len(sent(holder)) == 1


async def test_a_queued_job_whose_checkpoint_vanished_everywhere_is_refunded(tmp_path):
    async with (
        DevWebUI(delay=1.5, models=(V15, "ghost.safetensors")) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        replier = MemoryReplier()
        await engine.submit(ALICE, small("first"), replier)
        ghost = await engine.submit(ALICE, small("second", model="ghost"), replier)
        assert ghost.job_id in engine.queue  # waits for the first
        webui.checkpoints = [c for c in webui.checkpoints if "ghost" not in c.name]
        await engine.dispatcher.refresh_catalogues(min_age=0)
        await replier.wait(lambda r: r.failures, timeout=10)
        job_id, error, refunded = replier.failures[0]
        assert (job_id, refunded) == (ghost.job_id, ghost.cost)
        assert error.render("en").startswith(
            "None of the drawing servers has the checkpoint 'ghost'"
        )
        assert not any("ghost" in m for m in models_in(webui))


async def test_unknown_names_are_still_refused_after_a_refresh(tmp_path):
    async with DevWebUI(delay=0.05) as webui, running_engine(tmp_path, [webui]) as engine:
        from bot.errors import OptionError

        before = [p for p, _ in webui.requests].count("/sdapi/v1/sd-models")
        try:
            await engine.submit(
                ALICE, GenerationRequest("fox", model="nonexistent"), MemoryReplier()
            )
        except OptionError as exc:
            assert exc.render("en").startswith("--model must be one of: sd_xl_base_1.0, v1-5")
        else:
            raise AssertionError("an unknown checkpoint was queued")
        assert [p for p, _ in webui.requests].count("/sdapi/v1/sd-models") == before + 1
        assert t("en", "route.missing.model", name="x") == "the checkpoint 'x'"


async def test_the_health_check_refreshes_a_stale_catalogue(tmp_path):
    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(tmp_path, [webui], catalogue_refresh_interval=0.2) as engine,
    ):
        listed = [p for p, _ in webui.requests].count("/sdapi/v1/sd-models")
        await engine.dispatcher.check_all()  # fresh: only a ping
        assert [p for p, _ in webui.requests].count("/sdapi/v1/sd-models") == listed
        webui.add_checkpoint("scheduled.safetensors", scanned=True)
        await asyncio.sleep(0.25)
        await engine.dispatcher.check_all()  # what the scheduler runs every HEALTH_CHECK_INTERVAL
        assert "scheduled" in [c.label for c in engine.checkpoints()]

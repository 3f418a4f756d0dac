"""The engine against each flavour of WebUI, as dev-webui plays them (forks.md): a default /draw
(hires on) comes back at the size it was charged for, drawn as asked, on every fork."""

from __future__ import annotations

import logging

import pytest

from bot.types import GenerationRequest, Mode
from bot.webui import Flavour
from devwebui import DevWebUI
from tests.harness.engine import ALICE, eventually, running_engine
from tests.harness.env import LogRecords
from tests.harness.memory import MemoryReplier
from tests.harness.pictures import png_bytes, sample_photo
from tests.harness.webui import fork_fields, sent

FOX = GenerationRequest("a red fox", seed=7)  # the default preset: 512×768, 28 steps, hires ×2


@pytest.mark.parametrize(
    ("flavor", "flavour", "binds"),
    [
        ("a1111", Flavour.A1111, True),
        ("forge", Flavour.FORGE, True),
        ("sdnext", Flavour.SDNEXT, False),
    ],
)
async def test_each_backend_is_known_by_its_flavour(tmp_path, flavor, flavour, binds):
    async with (
        DevWebUI(delay=0.05, flavor=flavor) as webui,
        DevWebUI(delay=0.05, nowebui=True) as api_only,
        running_engine(tmp_path, [webui, api_only]) as engine,
    ):
        first, second = engine.dispatcher.backends
        assert (first.flavour, first.binds_tasks) == (flavour, binds)
        # A1111 started with --nowebui has no /internal/progress: bound by timestamp
        assert (second.flavour, second.binds_tasks) == (Flavour.A1111, False)
        assert first.listing is not None and "v1-5-pruned-emaonly" in first.offers("model")


async def test_default_draw_on_forge_runs_its_hires_pass_at_the_users_cfg(tmp_path):
    async with (
        DevWebUI(delay=0.05, flavor="forge") as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        replier = MemoryReplier()
        handle = await engine.submit(ALICE, FOX, replier)
        await replier.wait(lambda r: r.finished)
        assert not replier.failures, replier.failures  # no 500 TypeError after the first pass
        (image,) = replier.results[0].images
        assert (image.width, image.height) == (1024, 1536)
        first, hires = webui.passes
        assert (first.kind, first.size, first.cfg, first.negative) == (
            "first",
            (512, 768),
            7.0,
            True,
        )
        # Forge's hr_cfg default 1.0 would replace the CFG and drop the negative prompt
        assert (hires.kind, hires.size, hires.cfg, hires.negative) == (
            "hires", (1024, 1536), 7.0, True,
        )  # fmt: skip
        assert handle.cost == 9  # what was drawn: 512×768×28 + 1024×1536×20


async def test_default_draw_on_sdnext_is_upscaled_with_its_clip_skip(tmp_path):
    async with (
        DevWebUI(delay=0.05, flavor="sdnext") as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        replier = MemoryReplier()
        handle = await engine.submit(ALICE, FOX, replier)
        await replier.wait(lambda r: r.finished)
        assert not replier.failures, replier.failures
        (image,) = replier.results[0].images
        # SD.Next's hr_resize_mode default 0 is a same-size refine: charged 1024×1536, drawn 512×768
        assert (image.width, image.height) == (1024, 1536)
        first, hires = webui.passes
        assert (first.size, hires.size) == ((512, 768), (1024, 1536))
        assert first.clip_skip == hires.clip_skip == 2  # SD.Next reads the clip_skip field
        assert handle.cost == 9


@pytest.mark.parametrize("flavor", ["a1111", "forge", "sdnext"])
async def test_upscale_really_upscales(tmp_path, flavor):
    async with (
        DevWebUI(delay=0.05, flavor=flavor) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        replier = MemoryReplier()
        small = GenerationRequest("a fox", width=256, height=256, steps=4, hires=False)
        await engine.submit(ALICE, small, replier)
        await replier.wait(lambda r: r.results)
        key = replier.results[0].images[0].keys["upscale"]
        await engine.press(ALICE, key, replier)
        await replier.wait(lambda r: len(r.results) == 2)
        assert not replier.failures, replier.failures
        (image,) = replier.results[1].images
        assert (image.width, image.height) == (512, 512)
        (body,) = sent(webui, "extra-single-image")
        # the preset's "R-ESRGAN 4x+" under this backend's own name (SD.Next: "RealESRGAN 4x+";
        # an unknown name there is a silent no-op)
        assert body["upscaler_1"] == ("RealESRGAN 4x+" if flavor == "sdnext" else "R-ESRGAN 4x+")


@pytest.mark.parametrize("flavor", ["a1111", "forge", "sdnext"])
async def test_what_is_sent_exists_in_that_flavours_request_model(tmp_path, flavor):
    async with (
        DevWebUI(delay=0.05, flavor=flavor) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        replier = MemoryReplier()
        await engine.submit(
            ALICE, GenerationRequest("fox", steps=4, model="sd_xl_base_1.0"), replier
        )
        ref = engine.store.put(png_bytes(sample_photo()))
        img2img = GenerationRequest("blue", mode=Mode.IMG2IMG, init_image=ref, steps=4)
        await engine.submit(ALICE, img2img, replier, init_size=(320, 240))
        await replier.wait(lambda r: r.finished == 2)
        assert len(replier.results) == 2, replier.failures
        fields = fork_fields(flavor)
        for kind in ("txt2img", "img2img"):
            (body,) = sent(webui, kind)
            assert set(body) <= set(fields[kind]), set(body) - set(fields[kind])


async def test_a_shared_webui_keeps_its_settings_and_nothing_reloads(tmp_path):
    async with (
        DevWebUI(delay=0.05, switch_delay=0.05) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        replier = MemoryReplier()
        for _ in range(2):
            request = GenerationRequest("fox", steps=4, hires=False, model="sd_xl_base_1.0")
            await engine.submit(ALICE, request, replier)
        await engine.submit(ALICE, GenerationRequest("fox", steps=4, hires=False), replier)
        await replier.wait(lambda r: len(r.results) == 3)
        # the other users of this WebUI keep their model setting and clip skip …
        options = webui.options_data
        assert options["sd_model_checkpoint"].startswith("v1-5-pruned-emaonly.safetensors")
        assert options["CLIP_stop_at_last_layers"] == 1
        # … and the model was loaded once: a job naming none names the loaded one
        assert [t.split(" [")[0] for t in webui.model_loads] == ["sd_xl_base_1.0.safetensors"]
        assert [p.clip_skip for p in webui.passes] == [2, 2, 2]
        assert all(b["override_settings_restore_afterwards"] is True for b in sent(webui))


async def test_an_operator_may_let_the_webui_keep_the_last_jobs_settings(tmp_path):
    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(tmp_path, [webui], webui_restore_settings=False) as engine,
    ):
        replier = MemoryReplier()
        await engine.submit(ALICE, GenerationRequest("fox", steps=4, hires=False), replier)
        await replier.wait(lambda r: r.results)
        assert sent(webui)[0]["override_settings_restore_afterwards"] is False
        assert webui.options_data["CLIP_stop_at_last_layers"] == 2


@pytest.mark.parametrize("flavor", ["a1111", "sdnext"])
async def test_a_frozen_server_is_never_overridden_and_the_operator_told_once(tmp_path, flavor):
    async with (
        DevWebUI(delay=0.05, flavor=flavor, freeze_settings=True) as frozen,
        DevWebUI(delay=0.05) as free,
    ):
        with LogRecords(logging.WARNING, "bot") as logs:
            async with running_engine(tmp_path, [frozen, free]) as engine:
                replier = MemoryReplier()
                plain = GenerationRequest("fox", steps=4, hires=False)
                for _ in range(3):
                    await engine.submit(ALICE, plain, replier)
                xl = GenerationRequest("fox", steps=4, hires=False, model="sd_xl_base_1.0")
                await engine.submit(ALICE, xl, replier)
                await replier.wait(lambda r: r.finished == 4)
                assert not replier.failures, replier.failures  # no "changing settings is disabled"
                view = await eventually(
                    lambda: engine.quotas.view(ALICE.key), lambda v: v.reserved == 0
                )
        assert sent(frozen), "the frozen server drew nothing"
        assert all("override_settings" not in body for body in sent(frozen))
        # the job naming another checkpoint went where it can be drawn with it
        assert [b["override_settings"]["sd_model_checkpoint"] for b in sent(free) if "xl" in str(b)]
        assert not any("xl" in str(b.get("override_settings")) for b in sent(frozen))
        notices = [r for r in logs.records if "refuses to change its settings" in r.getMessage()]
        assert len(notices) == 1
        assert view.available == 10_000 - 4  # four jobs drawn, each charged once

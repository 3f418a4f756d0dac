"""dev-webui plays each fork as forks.md describes it (Forge dfdcbab6, SD.Next 431bcc36), and
can be driven by a second, foreign client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from devwebui import DevWebUI, fields
from tests.harness.pictures import b64, solid_png
from tests.harness.webui import fork_fields

TXT2IMG = "/sdapi/v1/txt2img"
IMG2IMG = "/sdapi/v1/img2img"
EXTRAS = "/sdapi/v1/extra-single-image"
HIRES = {"prompt": "x", "negative_prompt": "blurry", "steps": 2, "width": 64, "height": 64,
         "enable_hr": True, "denoising_strength": 0.5, "hr_upscaler": "Latent"}  # fmt: skip


async def call(server: DevWebUI, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.request(method, path, json=body)


def size_of(encoded: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
        return img.size


@pytest.mark.parametrize(
    ("flavor", "model", "table"),
    [
        ("forge", "txt2img", fields.FORGE_TXT2IMG_FIELDS),
        ("forge", "img2img", fields.FORGE_IMG2IMG_FIELDS),
        ("sdnext", "txt2img", fields.SDNEXT_TXT2IMG_FIELDS),
        ("sdnext", "img2img", fields.SDNEXT_IMG2IMG_FIELDS),
    ],
)
def test_fork_tables_match_the_forks_request_models(flavor, model, table):
    ours = {name: {"json_type": t, "default": d, "nullable": n} for name, t, d, n in table}
    assert ours == fork_fields(flavor)[model]


async def test_flavours_tell_themselves_apart_as_the_real_ones_do(make_devwebui):
    a1111, forge, sdnext = [await make_devwebui(flavor=f) for f in ("a1111", "forge", "sdnext")]
    assert (await call(a1111, "GET", "/sdapi/v1/version")).status_code == 404
    assert (await call(forge, "GET", "/sdapi/v1/version")).status_code == 404
    assert (await call(sdnext, "GET", "/sdapi/v1/version")).json()["app"] == "sd.next"
    assert "forge_additional_modules" in (await call(forge, "GET", "/sdapi/v1/options")).json()
    assert not any(
        k.startswith("forge_") for k in (await call(a1111, "GET", "/sdapi/v1/options")).json()
    )
    assert (await call(sdnext, "GET", "/sdapi/v1/schedulers")).status_code == 404


async def test_forge_hires_without_its_modules_fails_after_the_first_pass(make_devwebui):
    forge = await make_devwebui(flavor="forge")
    resp = await call(forge, "POST", TXT2IMG, HIRES)
    assert resp.status_code == 500
    assert resp.json() == {
        "error": "TypeError",
        "detail": "",
        "body": "",
        "message": "argument of type 'NoneType' is not iterable",
    }
    assert [p.kind for p in forge.passes] == ["first"]  # the first pass had already run


async def test_forge_runs_the_hires_pass_at_hr_cfg(make_devwebui):
    forge = await make_devwebui(flavor="forge")
    modules = {"hr_additional_modules": ["Use same choices"], "cfg_scale": 6}
    resp = await call(forge, "POST", TXT2IMG, HIRES | modules)
    assert resp.status_code == 200 and size_of(resp.json()["images"][0]) == (128, 128)
    first, hires = forge.passes
    assert (first.cfg, first.negative) == (6.0, True)
    assert (hires.cfg, hires.negative) == (1.0, False)  # its default drops the negative prompt
    resp = await call(forge, "POST", TXT2IMG, HIRES | modules | {"hr_cfg": 6})
    assert (forge.passes[-1].cfg, forge.passes[-1].negative) == (6.0, True)
    assert (await call(forge, "POST", IMG2IMG, {"prompt": "x"})).json() == {
        "detail": "Init image not found"
    }  # FastAPI's own body: Forge's api_middleware is disabled


async def test_sdnext_hires_does_not_upscale_unless_told(make_devwebui):
    sdnext = await make_devwebui(flavor="sdnext")
    resp = await call(sdnext, "POST", TXT2IMG, HIRES)
    assert size_of(resp.json()["images"][0]) == (64, 64)  # hr_resize_mode 0: a same-size refine
    latent = {"hr_upscaler": "Latent Bilinear"}  # its name for A1111's "Latent"
    resp = await call(sdnext, "POST", TXT2IMG, HIRES | latent | {"hr_resize_mode": 1})
    assert size_of(resp.json()["images"][0]) == (128, 128)
    resp = await call(sdnext, "POST", TXT2IMG, HIRES | {"hr_upscaler": "RealESRGAN 4x+"})
    assert [p.kind for p in sdnext.passes][-1] == "first"  # no second pass without hr_force


async def test_sdnext_reads_clip_skip_from_the_request(make_devwebui):
    sdnext = await make_devwebui(flavor="sdnext")
    body = {"prompt": "x", "steps": 2, "width": 64, "height": 64}
    override = {"override_settings": {"CLIP_stop_at_last_layers": 2}}
    info = json.loads((await call(sdnext, "POST", TXT2IMG, body | override)).json()["info"])
    assert info["clip_skip"] == 1 and "sd_model_name" not in info  # the option is read by nothing
    await call(sdnext, "POST", TXT2IMG, body | {"clip_skip": 2})
    assert [p.clip_skip for p in sdnext.passes] == [1, 2]


async def test_sdnext_returns_an_unknown_upscalers_picture_unchanged(make_devwebui):
    sdnext = await make_devwebui(flavor="sdnext")
    picture = {"image": b64(solid_png(100, 76)), "upscaling_resize": 2}
    resp = await call(sdnext, "POST", EXTRAS, picture | {"upscaler_1": "R-ESRGAN 4x+"})
    assert resp.status_code == 200 and size_of(resp.json()["image"]) == (100, 76)
    resp = await call(sdnext, "POST", EXTRAS, picture | {"upscaler_1": "RealESRGAN 4x+"})
    assert size_of(resp.json()["image"]) == (200, 152)


@pytest.mark.parametrize("fault", ["oom", "empty"])
async def test_sdnext_errors_end_in_a_200_without_pictures(make_devwebui, fault):
    sdnext = await make_devwebui(flavor="sdnext")
    sdnext.fail_next(fault)
    resp = await call(sdnext, "POST", TXT2IMG, {"prompt": "x", "steps": 2})
    assert (resp.status_code, resp.json()["images"]) == (200, [])


async def test_a1111_out_of_memory_is_a_500_and_a_proxy_503(make_devwebui):
    a1111 = await make_devwebui()
    a1111.fail_next("oom")
    a1111.fail_next("unavailable")
    resp = await call(a1111, "POST", TXT2IMG, {"prompt": "x", "steps": 2})
    assert (resp.status_code, resp.json()["error"]) == (500, "OutOfMemoryError")
    resp = await call(a1111, "POST", TXT2IMG, {"prompt": "x", "steps": 2})
    assert (resp.status_code, resp.text) == (503, "Service Unavailable")


async def test_sdnext_resize_mode_and_mask_dilation(make_devwebui):
    sdnext = await make_devwebui(flavor="sdnext")
    init = {"prompt": "x", "steps": 2, "init_images": [b64(solid_png(96, 64))], "width": 64,
            "height": 64}  # fmt: skip
    resp = await call(sdnext, "POST", IMG2IMG, init | {"resize_mode": 0})
    assert size_of(resp.json()["images"][0]) == (96, 64)  # "None": not resized
    resp = await call(sdnext, "POST", IMG2IMG, init | {"resize_mode": 1})
    assert size_of(resp.json()["images"][0]) == (64, 64)
    mask = Image.new("L", (96, 64))
    mask.paste(255, (40, 24, 56, 40))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    inpaint = init | {"resize_mode": 0, "mask": b64(buf.getvalue()), "denoising_strength": 1.0}

    def changed(resp: httpx.Response) -> int:
        with Image.open(io.BytesIO(base64.b64decode(resp.json()["images"][0]))) as out:
            out = out.convert("RGB")
            return sum(out.getpixel((x, 32)) != (40, 90, 160) for x in range(96))

    narrow = changed(await call(sdnext, "POST", IMG2IMG, inpaint | {"inpaint_full_res_padding": 0}))
    wide = changed(await call(sdnext, "POST", IMG2IMG, inpaint | {"inpaint_full_res_padding": 8}))
    assert (narrow, wide) == (16, 32)  # the padding grows the repainted area on SD.Next


async def test_sdnext_restoring_an_override_reloads_at_once(make_devwebui):
    sdnext = await make_devwebui(flavor="sdnext")
    body = {
        "prompt": "x",
        "steps": 1,
        "override_settings": {"sd_model_checkpoint": "sd_xl_base_1.0"},
    }
    await call(sdnext, "POST", TXT2IMG, body)
    assert [t.split(" [")[0] for t in sdnext.model_loads] == [
        "sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors",
    ]  # fmt: skip


async def test_task_ids_bind_progress_to_one_request(make_devwebui):
    a1111 = await make_devwebui(delay=1.0, preview_every=1)
    job = asyncio.create_task(
        call(a1111, "POST", TXT2IMG, {"prompt": "x", "steps": 4, "force_task_id": "task(mine)"})
    )
    seen: set[tuple[bool, bool, bool]] = set()
    previews = 0
    while not job.done():
        body = (await call(a1111, "POST", "/internal/progress", {"id_task": "task(mine)"})).json()
        seen.add((body["queued"], body["active"], body["completed"]))
        previews += bool(body["live_preview"])
        other = (
            await call(a1111, "POST", "/internal/progress", {"id_task": "task(theirs)"})
        ).json()
        assert not other["active"] and other["live_preview"] is None
        await asyncio.sleep(0.02)
    assert (await job).status_code == 200
    assert (False, True, False) in seen and previews
    done = (await call(a1111, "POST", "/internal/progress", {"id_task": "task(mine)"})).json()
    assert (done["active"], done["completed"]) == (False, True)
    nowebui = await make_devwebui(nowebui=True)
    assert (await call(nowebui, "POST", "/internal/progress", {"id_task": "x"})).status_code == 404


async def test_freeze_settings_refuses_every_change(make_devwebui):
    frozen = await make_devwebui(freeze_settings=True)
    assert (await call(frozen, "GET", "/sdapi/v1/cmd-flags")).json()["freeze_settings"] is True
    body = {"prompt": "x", "steps": 1, "override_settings": {"CLIP_stop_at_last_layers": 2}}
    resp = await call(frozen, "POST", TXT2IMG, body)
    assert (resp.status_code, resp.json()["errors"]) == (500, "changing settings is disabled")
    assert (await call(frozen, "POST", TXT2IMG, {"prompt": "x", "steps": 1})).status_code == 200
    sdnext = await make_devwebui(flavor="sdnext", freeze_settings=True)
    assert (await call(sdnext, "GET", "/sdapi/v1/cmd-flags")).json()["freeze"] is True
    xl = {"prompt": "x", "steps": 1, "override_settings": {"sd_model_checkpoint": "sd_xl_base_1.0"}}
    assert (await call(sdnext, "POST", TXT2IMG, xl)).status_code == 200
    assert sdnext.model_loads == []  # SD.Next's --freeze silently keeps its own model


async def test_a_foreign_job_holds_the_lock_and_can_be_interrupted(make_devwebui):
    server = await make_devwebui(delay=0.2)
    foreign = asyncio.create_task(server.foreign_job(seconds=0.6, steps=6))
    for _ in range(500):
        if server.state.job:
            break
        await asyncio.sleep(0.01)
    assert server.state.job.startswith("task(foreign-")  # a UI job names itself by its task id
    ours = asyncio.create_task(call(server, "POST", TXT2IMG, {"prompt": "x", "steps": 2}))
    await asyncio.sleep(0.1)
    assert not ours.done()  # waits for the lock
    await call(server, "POST", "/sdapi/v1/interrupt")
    job = await foreign
    assert job.interrupted and job.steps_done < 6
    assert (await ours).status_code == 200  # the next job's begin cleared the flag


async def test_added_checkpoints_appear_once_rescanned(make_devwebui):
    server = await make_devwebui()
    server.add_checkpoint("new.safetensors")
    titles = [m["title"] for m in (await call(server, "GET", "/sdapi/v1/sd-models")).json()]
    assert not any(t.startswith("new.safetensors") for t in titles)
    await call(server, "POST", "/sdapi/v1/refresh-checkpoints")
    titles = [m["title"] for m in (await call(server, "GET", "/sdapi/v1/sd-models")).json()]
    assert any(t.startswith("new.safetensors [") for t in titles)


def test_the_cli_offers_every_flavour(capsys):
    import devwebui

    with pytest.raises(SystemExit):
        devwebui.main(["--help"])
    out = capsys.readouterr().out
    assert "--flavor {a1111,forge,sdnext}" in out and "--freeze-settings" in out

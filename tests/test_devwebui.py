"""DevWebUI follows the SD-WebUI contract: validation, error bodies, FIFO lock, progress, auth."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

import devwebui as dev
from devwebui import DevWebUI, fields
from tests.harness.pictures import b64, solid_png
from tests.harness.webui import contract_fields, free_port

TXT2IMG = "/sdapi/v1/txt2img"
IMG2IMG = "/sdapi/v1/img2img"
EXTRAS = "/sdapi/v1/extra-single-image"


async def post(server: DevWebUI, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        if body is None:
            return await http.post(path, **kw)
        return await http.post(path, json=body, **kw)


async def get(server: DevWebUI, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.get(path, **kw)


def info_of(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    info: dict[str, Any] = json.loads(resp.json()["info"])
    return info


# --- the field tables -------------------------------------------------------------------------


def test_contract_copy_has_the_field_lists() -> None:
    fields = contract_fields()
    assert len(fields["txt2img"]) == 55
    assert len(fields["img2img"]) == 57
    assert len(fields["extra-single-image"]) == 14
    assert fields["txt2img"]["steps"] == {"json_type": "integer", "default": 50, "nullable": True}
    assert fields["img2img"]["denoising_strength"]["nullable"] is False


@pytest.mark.parametrize(
    ("model", "table"),
    [
        ("txt2img", fields.TXT2IMG_FIELDS),
        ("img2img", fields.IMG2IMG_FIELDS),
        ("extra-single-image", fields.EXTRAS_FIELDS),
    ],
)
def test_dev_tables_match_the_contract(model: str, table: list[fields.Field]) -> None:
    ours = {name: {"json_type": t, "default": d, "nullable": n} for name, t, d, n in table}
    assert ours == contract_fields()[model]
    assert [f[0] for f in table] == list(contract_fields()[model])


# --- requests, parameters, validation ------------------------------------------------------------


async def test_requests_are_recorded_and_unknown_keys_ignored(devwebui: DevWebUI) -> None:
    body = {"prompt": "x", "steps": 3, "cfg": 9, "sampler": "Euler a", "seed": 1}
    resp = await post(devwebui, TXT2IMG, body)
    assert devwebui.requests == [(TXT2IMG, body)]
    params = resp.json()["parameters"]
    assert "cfg" not in params and "sampler" not in params
    assert params["cfg_scale"] == 7.0
    assert set(params) == set(contract_fields()["txt2img"])
    assert info_of(resp)["sampler_name"] == "Euler"  # sampler_index's default, not "sampler"


async def test_img2img_echoes_every_field(devwebui: DevWebUI) -> None:
    body = {"prompt": "x", "steps": 2, "init_images": [b64(solid_png(64, 64))]}
    resp = await post(devwebui, IMG2IMG, body)
    params = resp.json()["parameters"]
    assert set(params) == set(contract_fields()["img2img"])
    assert params["init_images"] is None and params["denoising_strength"] == 0.75
    resp = await post(devwebui, IMG2IMG, body | {"include_init_images": True})
    assert resp.json()["parameters"]["init_images"] == body["init_images"]


async def test_lenient_coercion(devwebui: DevWebUI) -> None:
    body = {"prompt": 12, "steps": "3", "width": "256", "height": 256.9, "cfg_scale": "5"}
    resp = await post(devwebui, TXT2IMG, body | {"send_images": "yes", "seed": "77"})
    params = resp.json()["parameters"]
    assert params["prompt"] == "12"
    assert (params["steps"], params["width"], params["height"]) == (3, 256, 256)
    assert params["cfg_scale"] == 5.0 and params["send_images"] is True
    assert info_of(resp)["seed"] == 77
    image = Image.open(io.BytesIO(base64.b64decode(resp.json()["images"][0])))
    assert image.size == (256, 256)


async def test_422_for_wrong_types(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, TXT2IMG, {"steps": "many", "width": [1], "send_images": "maybe"})
    assert resp.status_code == 422
    assert resp.json() == {
        "detail": [
            {"loc": ["body", "steps"], "msg": "value is not a valid integer",
             "type": "type_error.integer"},
            {"loc": ["body", "width"], "msg": "value is not a valid integer",
             "type": "type_error.integer"},
            {"loc": ["body", "send_images"], "msg": "value could not be parsed to a boolean",
             "type": "type_error.bool"},
        ]
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (TXT2IMG, "sampler_index"),
        (TXT2IMG, "script_args"),
        (TXT2IMG, "send_images"),
        (TXT2IMG, "save_images"),
        (TXT2IMG, "alwayson_scripts"),
        (IMG2IMG, "denoising_strength"),
        (IMG2IMG, "include_init_images"),
    ],
)
async def test_422_for_null_in_non_nullable_fields(devwebui: DevWebUI, path: str, field: str):
    resp = await post(devwebui, path, {"prompt": "x", field: None})
    assert resp.status_code == 422
    assert resp.json()["detail"] == [
        {"loc": ["body", field], "msg": "none is not an allowed value",
         "type": "type_error.none.not_allowed"}
    ]  # fmt: skip


async def test_null_allowed_where_the_model_allows_it(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, TXT2IMG, {"prompt": "x", "steps": 2, "denoising_strength": None})
    assert resp.status_code == 200


async def test_422_for_bodies_that_are_not_objects(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, TXT2IMG, [1, 2])
    assert resp.json()["detail"][0]["msg"] == "value is not a valid dict"
    resp = await post(devwebui, TXT2IMG)
    assert resp.status_code == 422
    assert resp.json()["detail"] == [
        {"loc": ["body"], "msg": "field required", "type": "value_error.missing"}
    ]


# --- error bodies ----------------------------------------------------------------------------------


async def test_hires_without_denoising_fails_after_the_first_pass(devwebui: DevWebUI) -> None:
    started = time.monotonic()
    resp = await post(devwebui, TXT2IMG, {"prompt": "x", "steps": 2, "enable_hr": True})
    assert time.monotonic() - started >= devwebui.delay
    assert resp.status_code == 500
    assert resp.json() == {
        "error": "TypeError",
        "detail": "",
        "body": "",
        "errors": "'>' not supported between instances of 'NoneType' and 'int'",
    }


async def test_500_shapes(devwebui: DevWebUI) -> None:
    hires = {"prompt": "x", "enable_hr": True, "denoising_strength": 0.5, "hr_upscaler": "Nope"}
    resp = await post(devwebui, TXT2IMG, hires)
    assert (resp.status_code, resp.json()["error"]) == (500, "Exception")
    assert resp.json()["errors"] == "could not find upscaler named Nope"

    resp = await post(devwebui, TXT2IMG, {"override_settings": {"bogus_key": 1}})
    assert resp.json() == {"error": "KeyError", "detail": "", "body": "", "errors": "'bogus_key'"}

    resp = await post(devwebui, IMG2IMG, {"init_images": ["@@@"]})
    assert resp.status_code == 500
    assert resp.json() == {
        "error": "HTTPException",
        "detail": "Invalid encoded image",
        "body": "",
        "errors": "",
    }

    two = [b64(solid_png(8, 8))] * 2
    resp = await post(devwebui, IMG2IMG, {"init_images": two, "steps": 1})
    assert resp.json()["errors"] == "bad number of images passed: 2; expecting 1 or less"


async def test_img2img_without_init_images_is_404(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, IMG2IMG, {"prompt": "x"})
    assert resp.status_code == 404
    assert resp.json() == {
        "error": "HTTPException",
        "detail": "Init image not found",
        "body": "",
        "errors": "",
    }


async def test_unknown_routes_are_fastapi_404(devwebui: DevWebUI) -> None:
    resp = await get(devwebui, "/sdapi/v1/nope")
    assert (resp.status_code, resp.json()) == (404, {"detail": "Not Found"})


# --- samplers, models, options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "sampler", "schedule"),
    [
        ("k_euler", "DPM++ 2M", "Automatic"),  # aliases are not accepted: silent fallback
        ("Euler a Karras", "Euler a", "Karras"),
        ("DPM++ 2M Karras", "DPM++ 2M", "Automatic"),  # Karras is DPM++ 2M's own default
        ("UniPC", "UniPC", "Automatic"),
    ],
)
async def test_sampler_resolution(devwebui: DevWebUI, asked: str, sampler: str, schedule: str):
    info = info_of(await post(devwebui, TXT2IMG, {"sampler_name": asked, "steps": 1}))
    assert info["sampler_name"] == sampler
    assert f"Sampler: {sampler}, Schedule type: {schedule}," in info["infotexts"][0]


async def test_sampler_404_mode(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(sampler_404=True)
    resp = await post(server, TXT2IMG, {"sampler_name": "k_euler"})
    assert resp.status_code == 404
    assert resp.json()["detail"] == "Sampler not found"


async def test_override_checkpoint(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(switch_delay=0.2)
    xl = {"sd_model_checkpoint": "sd_xl_base_1.0"}
    started = time.monotonic()
    info = info_of(await post(server, TXT2IMG, {"steps": 1, "override_settings": xl}))
    assert info["sd_model_name"] == "sd_xl_base_1.0"
    assert time.monotonic() - started >= server.delay + 0.2  # one switch
    # restored afterwards: the setting names the old model again, but the weights stay until a
    # job names no model (processing.py:828-830, 853-858)
    options = (await get(server, "/sdapi/v1/options")).json()
    assert options["sd_model_checkpoint"].startswith("v1-5-pruned-emaonly.safetensors [")
    assert len(server.model_loads) == 1
    info_of(await post(server, TXT2IMG, {"steps": 1, "override_settings": xl}))
    assert len(server.model_loads) == 1  # named again: nothing reloads
    info = info_of(await post(server, TXT2IMG, {"steps": 1}))
    assert info["sd_model_name"] == "v1-5-pruned-emaonly" and len(server.model_loads) == 2

    keep = {"steps": 1, "override_settings": xl, "override_settings_restore_afterwards": False}
    info_of(await post(server, TXT2IMG, keep))
    options = (await get(server, "/sdapi/v1/options")).json()
    assert options["sd_model_checkpoint"].startswith("sd_xl_base_1.0.safetensors [")

    unknown = {"steps": 1, "override_settings": {"sd_model_checkpoint": "nope"}}
    resp = await post(server, TXT2IMG, unknown)
    assert info_of(resp)["sd_model_name"] == "sd_xl_base_1.0"
    assert resp.json()["parameters"]["override_settings"] == {}  # popped, as the real one does


async def test_post_options(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, "/sdapi/v1/options", {"sd_model_checkpoint": "nope"})
    assert resp.json() == {
        "error": "RuntimeError",
        "detail": "",
        "body": "",
        "errors": "model 'nope' not found",
    }
    resp = await post(devwebui, "/sdapi/v1/options", {"sd_model_checkpoint": "sd_xl_base_1.0"})
    assert (resp.status_code, resp.json()) == (200, None)
    options = (await get(devwebui, "/sdapi/v1/options")).json()
    assert options["sd_model_checkpoint"].startswith("sd_xl_base_1.0")
    assert options["jpeg_quality"] == 80.0 and options["eta_noise_seed_delta"] == 0
    assert isinstance(options["eta_noise_seed_delta"], int)


# --- concurrency and progress ------------------------------------------------------------------


async def test_generations_run_one_at_a_time_in_fifo_order(devwebui: DevWebUI) -> None:
    finished: list[int] = []

    async def one(n: int) -> None:
        resp = await post(devwebui, TXT2IMG, {"prompt": f"job {n}", "steps": 2})
        assert resp.status_code == 200
        finished.append(n)

    started = time.monotonic()
    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(one(n)))
        await asyncio.sleep(0.02)  # fix the arrival order
    await asyncio.gather(*tasks)
    assert finished == [0, 1, 2, 3]
    assert time.monotonic() - started >= 4 * devwebui.delay


async def test_encoding_happens_after_the_lock(make_devwebui: Callable[..., Any]) -> None:
    # a long encode against short renders, so the two shapes stay a second apart however
    # loaded the machine: 0.1 + 0.1 + 2.0 overlapped, 2 × (0.1 + 2.0) under the lock
    server = await make_devwebui(delay=0.1, encode_delay=2.0)
    started = time.monotonic()
    small = {"steps": 1, "width": 64, "height": 64}
    await asyncio.gather(*(post(server, TXT2IMG, small) for _ in range(2)))
    elapsed = time.monotonic() - started
    assert 2.2 <= elapsed < 3.2


async def test_idle_progress_shape(devwebui: DevWebUI) -> None:
    body = (await get(devwebui, "/sdapi/v1/progress")).json()
    assert body == {
        "progress": 0,
        "eta_relative": 0,
        "state": {
            "skipped": False,
            "interrupted": False,
            "stopping_generation": False,
            "job": "",
            "job_count": 0,
            "job_timestamp": "0",
            "job_no": 0,
            "sampling_step": 0,
            "sampling_steps": 0,
        },
        "current_image": None,
        "textinfo": None,
    }


async def test_running_progress_follows_the_formula(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(delay=0.3)
    job = asyncio.create_task(post(server, TXT2IMG, {"steps": 10, "n_iter": 2}))
    seen = []
    for _ in range(60):
        body = (await get(server, "/sdapi/v1/progress")).json()
        state = body["state"]
        if state["job_count"] > 0 and state["sampling_step"] > 0:
            expected = 0.01 + state["job_no"] / 2 + state["sampling_step"] / (10 * 2)
            assert body["progress"] == pytest.approx(min(expected, 1.0))  # capped at 1
            assert state["job"] == f"Batch {state['job_no'] + 1} out of 2"
            assert re.fullmatch(r"\d{14}", state["job_timestamp"])
            seen.append(state["job_no"])
        if job.done():
            break
        await asyncio.sleep(0.02)
    assert (await job).status_code == 200
    assert 0 in seen and 1 in seen


async def test_interrupt_and_skip_bodies(devwebui: DevWebUI) -> None:
    assert (await post(devwebui, "/sdapi/v1/interrupt")).json() == {}
    skip = await post(devwebui, "/sdapi/v1/skip")
    assert (skip.status_code, skip.json()) == (200, None)


# --- images -------------------------------------------------------------------------------------


async def test_images_carry_their_infotext(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, TXT2IMG, {"prompt": "fox", "steps": 1, "batch_size": 2})
    info = info_of(resp)
    for encoded, text in zip(resp.json()["images"], info["infotexts"], strict=True):
        assert not encoded.startswith("data:")
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert image.format == "PNG"
        assert image.info["parameters"] == text


@pytest.mark.parametrize(
    ("extra", "size"),
    [
        ({}, (512, 512)),
        ({"width": 500, "height": 300}, (496, 296)),  # latents are 1/8 size
        ({"enable_hr": True, "denoising_strength": 0.4}, (1024, 1024)),
        ({"enable_hr": True, "denoising_strength": 0.4, "hr_resize_x": 640}, (640, 640)),
        ({"enable_hr": True, "denoising_strength": 0.4, "hr_resize_x": 640, "hr_resize_y": 480},
         (640, 480)),
    ],
)  # fmt: skip
async def test_txt2img_sizes(devwebui: DevWebUI, extra: dict[str, Any], size: tuple[int, int]):
    resp = await post(devwebui, TXT2IMG, {"steps": 1} | extra)
    image = Image.open(io.BytesIO(base64.b64decode(resp.json()["images"][0])))
    assert image.size == size


async def test_send_images_false_gives_no_images(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, TXT2IMG, {"steps": 1, "send_images": False})
    assert resp.json()["images"] == []
    assert len(info_of(resp)["infotexts"]) == 1


@pytest.mark.parametrize(
    ("extra", "size"),
    [
        ({"upscaling_resize": 2}, (200, 144)),  # Upscaler.upscale rounds down to a multiple of 8
        ({"resize_mode": 1, "upscaling_resize_w": 300, "upscaling_resize_h": 300}, (300, 300)),
        ({"upscaler_1": "None"}, (100, 75)),
    ],
)
async def test_extra_single_image_sizes(devwebui: DevWebUI, extra: dict[str, Any], size: Any):
    body = {"image": b64(solid_png(100, 75)), "upscaler_1": "R-ESRGAN 4x+"} | extra
    resp = await post(devwebui, EXTRAS, body)
    assert resp.status_code == 200, resp.text
    image = Image.open(io.BytesIO(base64.b64decode(resp.json()["image"])))
    assert image.size == size


async def test_extra_single_image_errors(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, EXTRAS, {"image": b64(solid_png(8, 8)), "resize_mode": 2})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["msg"] == "unexpected value; permitted: 0, 1"
    resp = await post(devwebui, EXTRAS, {"image": b64(solid_png(8, 8)), "upscaler_1": "Nope"})
    assert resp.json()["error"] == "AssertionError"
    resp = await post(devwebui, EXTRAS, {})
    assert resp.json()["detail"] == "Invalid encoded image"


async def test_png_info(devwebui: DevWebUI) -> None:
    resp = await post(devwebui, "/sdapi/v1/png-info", {})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["msg"] == "field required"
    resp = await post(devwebui, "/sdapi/v1/png-info", {"image": b64(solid_png(8, 8))})
    assert resp.json()["info"] == ""


# --- auth, --api, lifecycle ------------------------------------------------------------------


async def test_auth(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(auth=("u", "p"))
    resp = await post(server, TXT2IMG, {"steps": "not even valid"})
    assert resp.status_code == 401  # auth is checked before validation
    assert resp.json() == {
        "error": "HTTPException",
        "detail": "Not authenticated",
        "body": "",
        "errors": "",
    }
    assert "www-authenticate" not in resp.headers
    resp = await get(server, "/sdapi/v1/progress", auth=("u", "wrong"))
    assert resp.json()["detail"] == "Incorrect username or password"
    assert (await get(server, "/sdapi/v1/progress", auth=("u", "p"))).status_code == 200
    assert (await get(server, "/sdapi/v1/loras")).status_code == 200
    assert (await get(server, "/internal/ping")).json() == {}


async def test_without_api(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(api=False)
    for path in ("/sdapi/v1/txt2img", "/sdapi/v1/progress", "/sdapi/v1/sd-models"):
        resp = await get(server, path)
        assert resp.status_code == 404
        assert resp.headers["content-type"].startswith("text/html")
    assert (await get(server, "/internal/ping")).status_code == 200


async def test_kill_cuts_running_requests_and_restart_reuses_the_port(
    make_devwebui: Callable[..., Any],
) -> None:
    server = await make_devwebui(delay=2.0)
    job = asyncio.create_task(post(server, TXT2IMG, {"steps": 5}))
    for _ in range(100):
        if server.state.job:
            break
        await asyncio.sleep(0.01)
    port = server.port
    await server.kill()
    with pytest.raises(httpx.TransportError):
        await job
    with pytest.raises(httpx.ConnectError):
        await get(server, "/internal/ping")
    assert not server.state.job  # the job was torn down with the server
    await server.start()
    assert server.port == port
    assert (await get(server, "/internal/ping")).status_code == 200


def test_docstring_and_cli_help_say_placeholder(capsys: pytest.CaptureFixture[str]) -> None:
    assert "PLACEHOLDER" in (dev.__doc__ or "")
    with pytest.raises(SystemExit):
        dev.main(["--help"])
    assert "PLACEHOLDER" in capsys.readouterr().out


async def test_serve_runs_until_sigint(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devwebui")
    port = free_port()
    task = asyncio.create_task(dev.serve(port, 0.05))
    url = f"http://127.0.0.1:{port}/internal/ping"
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                assert (await http.get(url)).json() == {}
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("serve() never listened")
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(task, 5)
        with pytest.raises(httpx.ConnectError):
            await http.get(url)
    assert f"(placeholder images) listening on http://127.0.0.1:{port}" in caplog.text

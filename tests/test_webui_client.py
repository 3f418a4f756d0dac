"""WebUIClient against a real DevWebUI on 127.0.0.1, plus fork error shapes via MockTransport."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.errors import (
    WebUIAuthError,
    WebUIEmptyResult,
    WebUIError,
    WebUINoAPI,
    WebUIRequestError,
    WebUIServerError,
    WebUITimeout,
    WebUIUnreachable,
)
from bot.webui import WebUIClient, sniff_image_type
from devwebui import DevWebUI
from tests.harness.pictures import b64, image_size, solid_png
from tests.harness.webui import contract_fields, free_port

TXT2IMG = "/sdapi/v1/txt2img"
IMG2IMG = "/sdapi/v1/img2img"


def host(server: DevWebUI) -> str:
    return f"127.0.0.1:{server.port}"


async def poll(client: WebUIClient, until: Callable[[Any], bool], limit: float = 5.0) -> Any:
    """Poll /progress until `until(progress)` holds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        progress = await client.progress()
        if until(progress):
            return progress
        await asyncio.sleep(0.01)
    raise AssertionError("progress never reached the expected state")


# --- generation round trips -------------------------------------------------------------------


async def test_txt2img_round_trip(webui_client: WebUIClient, devwebui: DevWebUI) -> None:
    payload = {"prompt": "a red fox", "steps": 4, "width": 512, "height": 768}
    payload |= {"seed": 1234, "batch_size": 2}
    result = await webui_client.txt2img(payload)

    assert len(result.images) == 2
    assert all(sniff_image_type(img) == "png" for img in result.images)
    assert (result.width, result.height) == (512, 768)
    assert image_size(result.images[1]) == (512, 768)
    assert result.seeds == [1234, 1235]
    assert "Seed: 1235" in result.infotexts[1]
    assert result.infotexts[0].startswith("a red fox\nSteps: 4")
    assert result.model == "v1-5-pruned-emaonly"
    assert result.info["all_seeds"] == [1234, 1235]
    assert result.parameters["steps"] == 4
    assert devwebui.requests[-1] == (TXT2IMG, payload)


async def test_txt2img_random_seed_gives_consecutive_seeds(webui_client: WebUIClient) -> None:
    result = await webui_client.txt2img({"prompt": "x", "steps": 2, "n_iter": 3, "seed": -1})
    first = result.seeds[0]
    assert first >= 0
    assert result.seeds == [first, first + 1, first + 2]


async def test_txt2img_hires_returns_upscaled_size(webui_client: WebUIClient) -> None:
    payload = {"prompt": "x", "steps": 2, "enable_hr": True, "hr_scale": 1.5}
    result = await webui_client.txt2img(payload | {"denoising_strength": 0.5})
    assert (result.width, result.height) == (768, 768)
    assert result.info["width"] == 512  # info keeps the first-pass size


async def test_img2img_round_trip(webui_client: WebUIClient, devwebui: DevWebUI) -> None:
    init = b64(solid_png(640, 384))
    payload = {"prompt": "a cat", "init_images": [init], "width": 320, "height": 256}
    result = await webui_client.img2img(payload | {"steps": 8, "seed": 7})

    assert (result.width, result.height) == (320, 256)
    assert result.seeds == [7]
    assert "Denoising strength: 0.75" in result.infotexts[0]
    assert result.parameters["init_images"] is None  # not echoed without include_init_images
    assert devwebui.requests[-1][1]["init_images"] == [init]


async def test_inpaint_only_masked_keeps_the_original_size(webui_client: WebUIClient) -> None:
    mask = Image.new("L", (640, 384), 0)
    mask.paste(255, (100, 100, 200, 200))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    payload = {"init_images": [b64(solid_png(640, 384))], "mask": b64(buf.getvalue())}
    result = await webui_client.img2img(payload | {"steps": 4, "width": 256, "height": 256})
    assert (result.width, result.height) == (640, 384)


# --- progress, interrupt, skip ----------------------------------------------------------------


async def test_progress_while_a_job_runs(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(delay=0.4)
    async with WebUIClient(server.url) as client:
        idle = await client.progress()
        assert not idle.active and idle.progress == 0 and idle.current_image is None

        job = asyncio.create_task(client.txt2img({"prompt": "x", "steps": 20}))
        early = await poll(client, lambda p: p.active and p.state["sampling_step"] > 0)
        late = await poll(client, lambda p: p.current_image is not None)
        assert late.progress > early.progress > 0
        assert late.state["job"] == "scripts_txt2img"
        assert sniff_image_type(late.current_image) == "png"
        assert len(late.job_timestamp) == 14 and late.job_timestamp.isdigit()
        skipped = await client.progress(skip_current_image=True)
        assert skipped.current_image is None
        await job
        assert not (await client.progress()).active


async def test_interrupt_returns_partial_result(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(delay=1.2)
    async with WebUIClient(server.url) as client:
        job = asyncio.create_task(client.txt2img({"prompt": "x", "steps": 10, "n_iter": 3}))
        await poll(client, lambda p: p.state["sampling_step"] > 0)
        await client.interrupt()
        result = await job
    assert len(result.images) == 1
    assert result.seeds == result.info["all_seeds"][:1]
    assert len(server.cut_short) == 1 and server.cut_short[0][0] < 10


async def test_skip_ends_the_current_batch_only(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(delay=0.4)
    async with WebUIClient(server.url) as client:
        job = asyncio.create_task(client.txt2img({"prompt": "x", "steps": 10, "n_iter": 2}))
        await poll(client, lambda p: p.state["sampling_step"] > 0)
        await client.skip()
        result = await job
    assert len(result.images) == 2
    # only the first batch stopped early; the second ran all its steps
    assert len(server.cut_short) == 1 and server.cut_short[0][0] < 10


# --- listings and tools -------------------------------------------------------------------------


async def test_listings(webui_client: WebUIClient) -> None:
    models = await webui_client.sd_models()
    assert [m["model_name"] for m in models] == ["v1-5-pruned-emaonly", "sd_xl_base_1.0"]
    samplers = [s["name"] for s in await webui_client.samplers()]
    assert samplers[0] == "DPM++ 2M" and "Euler a" in samplers and len(samplers) == 20
    schedulers = [s["label"] for s in await webui_client.schedulers()]
    assert schedulers[:3] == ["Automatic", "Uniform", "Karras"]
    assert "R-ESRGAN 4x+" in [u["name"] for u in await webui_client.upscalers()]
    assert {"name", "alias", "path", "metadata"} <= set((await webui_client.loras())[0])
    options = await webui_client.options()
    assert options["sd_model_checkpoint"] == models[0]["title"]
    assert options["CLIP_stop_at_last_layers"] == 1.0
    assert isinstance(options["CLIP_stop_at_last_layers"], float)
    assert set(await webui_client.memory()) == {"ram", "cuda"}
    await webui_client.ping()


async def test_extra_single_image(webui_client: WebUIClient, devwebui: DevWebUI) -> None:
    image = solid_png(300, 200)
    out = await webui_client.extra_single_image(image, upscaler="Lanczos", scale=2.0)
    assert image_size(out) == (600, 400)
    path, payload = devwebui.requests[-1]
    assert path == "/sdapi/v1/extra-single-image"
    assert set(payload) == set(contract_fields()["extra-single-image"])
    assert payload["upscaler_1"] == "Lanczos" and payload["upscaling_resize"] == 2.0
    assert base64.b64decode(payload["image"]) == image


async def test_png_info_returns_the_infotext(webui_client: WebUIClient) -> None:
    result = await webui_client.txt2img({"prompt": "lighthouse", "steps": 3, "seed": 5})
    info = await webui_client.png_info(result.images[0])
    assert info["info"] == result.infotexts[0]
    assert info["parameters"]["Seed"] == "5"
    assert info["parameters"]["Prompt"] == "lighthouse"


# --- errors from the dev server ------------------------------------------------------------------


async def expect(call: Any, kind: type[WebUIError], message: str) -> WebUIError:
    with pytest.raises(kind) as caught:
        await call
    assert str(caught.value) == message
    assert caught.value.render("en") == message
    return caught.value


async def test_422_wrong_type(webui_client: WebUIClient, devwebui: DevWebUI) -> None:
    err = await expect(
        webui_client.txt2img({"prompt": "x", "steps": "many"}),
        WebUIRequestError,
        f"The WebUI at {host(devwebui)} rejected /sdapi/v1/txt2img "
        "(422: steps: value is not a valid integer).",
    )
    assert err.params["status"] == 422 and not err.retryable


async def test_422_null_where_the_model_refuses_it(webui_client: WebUIClient, devwebui: DevWebUI):
    await expect(
        webui_client.txt2img({"prompt": "x", "sampler_index": None, "steps": None}),
        WebUIRequestError,
        f"The WebUI at {host(devwebui)} rejected /sdapi/v1/txt2img "
        "(422: sampler_index: none is not an allowed value).",
    )


async def test_500_type_error_body_uses_errors(webui_client: WebUIClient, devwebui: DevWebUI):
    await expect(
        webui_client.txt2img({"prompt": "x", "steps": 2, "enable_hr": True}),
        WebUIRequestError,
        f"The WebUI at {host(devwebui)} rejected /sdapi/v1/txt2img (500: TypeError: '>' not "
        "supported between instances of 'NoneType' and 'int').",
    )


async def test_500_unknown_upscaler_and_override(webui_client: WebUIClient, devwebui: DevWebUI):
    hires = {"prompt": "x", "steps": 2, "enable_hr": True, "denoising_strength": 0.5}
    await expect(
        webui_client.txt2img(hires | {"hr_upscaler": "Bogus"}),
        WebUIRequestError,
        f"The WebUI at {host(devwebui)} rejected /sdapi/v1/txt2img "
        "(500: Exception: could not find upscaler named Bogus).",
    )
    await expect(
        webui_client.txt2img({"prompt": "x", "override_settings": {"no_such_option": 1}}),
        WebUIRequestError,
        f"The WebUI at {host(devwebui)} rejected /sdapi/v1/txt2img "
        "(500: KeyError: 'no_such_option').",
    )


async def test_img2img_errors(webui_client: WebUIClient, devwebui: DevWebUI) -> None:
    await expect(
        webui_client.img2img({"prompt": "x"}),
        WebUIRequestError,
        f"The WebUI at {host(devwebui)} rejected /sdapi/v1/img2img (404: Init image not found).",
    )
    await expect(
        webui_client.img2img({"prompt": "x", "init_images": ["not an image!"]}),
        WebUIRequestError,
        f"The WebUI at {host(devwebui)} rejected /sdapi/v1/img2img (500: Invalid encoded image).",
    )


async def test_unknown_sampler_404(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(sampler_404=True)
    async with WebUIClient(server.url) as client:
        await expect(
            client.txt2img({"prompt": "x", "sampler_name": "k_euler"}),
            WebUIRequestError,
            f"The WebUI at {host(server)} does not know that sampler. "
            "See /models for the samplers it has.",
        )


async def test_closed_port_is_unreachable() -> None:
    port = free_port()
    async with WebUIClient(f"http://127.0.0.1:{port}", connect_timeout=2.0) as client:
        err = await expect(
            client.txt2img({"prompt": "x"}),
            WebUIUnreachable,
            f"Could not connect to the WebUI at 127.0.0.1:{port} — is it running, "
            "and is WEBUI_URLS right?",
        )
        assert err.retryable
        with pytest.raises(WebUIUnreachable):
            await client.ping()


async def test_backend_dying_mid_job_is_unreachable(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(delay=2.0)
    async with WebUIClient(server.url) as client:
        job = asyncio.create_task(client.txt2img({"prompt": "x", "steps": 10}))
        await poll(client, lambda p: p.active)
        await server.kill()
        with pytest.raises(WebUIUnreachable) as caught:
            await job
        assert caught.value.params["path"] == TXT2IMG


async def test_timeout(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(delay=1.0)
    async with WebUIClient(server.url, timeout=0.2) as client:
        err = await expect(
            client.txt2img({"prompt": "x", "steps": 5}),
            WebUITimeout,
            f"The WebUI at {host(server)} did not answer /sdapi/v1/txt2img within 0.2 s "
            "— it may be overloaded.",
        )
        assert err.retryable


async def test_auth_ok_missing_and_wrong(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(auth=("alice", "s3cret"))
    async with WebUIClient(server.url, auth=("alice", "s3cret")) as client:
        assert (await client.txt2img({"prompt": "x", "steps": 2})).images
    async with WebUIClient(server.url) as client:
        await expect(
            client.sd_models(),
            WebUIAuthError,
            f"The WebUI at {host(server)} refused our credentials (Not authenticated) — "
            "check WEBUI_AUTH against its --api-auth.",
        )
        assert await client.loras()  # the Lora extension's route is never protected
    async with WebUIClient(server.url, auth=("alice", "wrong")) as client:
        await expect(
            client.txt2img({"prompt": "x"}),
            WebUIAuthError,
            f"The WebUI at {host(server)} refused our credentials (Incorrect username or "
            "password) — check WEBUI_AUTH against its --api-auth.",
        )


async def test_without_api_flag(make_devwebui: Callable[..., Any]) -> None:
    server = await make_devwebui(api=False)
    async with WebUIClient(server.url) as client:
        await expect(
            client.txt2img({"prompt": "x"}),
            WebUINoAPI,
            f"The WebUI at {host(server)} answered 404 on /sdapi/v1/txt2img "
            "— was it started with --api?",
        )
        with pytest.raises(WebUINoAPI):
            await client.ping()


# --- credentials never leak ------------------------------------------------------------------


SECRET = "s3cret-pw"


def _leaks(request: httpx.Request) -> list[str]:
    """Places other than the Authorization header where the secret shows up."""
    token = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    found = []
    for name, value in request.headers.items():
        if name.lower() != "authorization" and (SECRET in value or token in value):
            found.append(name)
    if SECRET in str(request.url) or "alice" in str(request.url):
        found.append("url")
    if SECRET.encode() in request.content or token.encode() in request.content:
        found.append("body")
    return found


async def test_credentials_only_in_the_authorization_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200, json={"info": "", "items": {}, "parameters": {}})

    transport = httpx.MockTransport(handler)
    async with WebUIClient("http://webui:7860", auth=("alice", SECRET), transport=transport) as c:
        await c.png_info(solid_png(8, 8))
        await c.interrupt()
    token = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert [r.headers["authorization"] for r in seen] == [f"Basic {token}"] * 2
    assert [_leaks(r) for r in seen] == [[], []]


async def test_credentials_in_the_url_move_to_the_header(
    make_devwebui: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # named too: a bot started in this process earlier (setup_logging) quietened httpx
    caplog.set_level(logging.DEBUG, logger="httpx")
    server = await make_devwebui(auth=("alice", SECRET))
    url = f"http://alice:{SECRET}@127.0.0.1:{server.port}"
    async with WebUIClient(url) as client:
        assert client.base_url == server.url
        assert client.display == host(server)
        await client.sd_models()
        await server.kill()
        with pytest.raises(WebUIUnreachable) as caught:
            await client.sd_models()
    assert SECRET not in str(caught.value) and "alice" not in str(caught.value)
    assert "httpx" in {r.name for r in caplog.records}  # httpx did log the requests …
    assert not [r for r in caplog.records if SECRET in r.getMessage()]  # … without secrets


# --- shapes only forks produce (MockTransport) ------------------------------------------------


def mock(status: int, body: Any = None, *, text: str | None = None, **headers: str):
    """A WebUIClient whose every request gets this one answer."""

    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return WebUIClient("http://webui.lan:7860", transport=httpx.MockTransport(handler))


WHERE = "The WebUI at webui.lan:7860"
LONG = "x" * 500


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (
            401,
            {"detail": "Not authenticated"},  # Forge: FastAPI default, WWW-Authenticate kept
            WebUIAuthError,
            f"{WHERE} refused our credentials (Not authenticated) — check WEBUI_AUTH "
            "against its --api-auth.",
        ),
        (
            401,
            {
                "error": "HTTPException",
                "code": 401,
                "detail": "Unauthorized",
                "body": "",
                "errors": "",
            },
            WebUIAuthError,
            f"{WHERE} refused our credentials (Unauthorized) — check WEBUI_AUTH "
            "against its --api-auth.",
        ),
        (
            404,
            {"detail": "Not Found"},
            WebUINoAPI,
            f"{WHERE} answered 404 on /sdapi/v1/txt2img — was it started with --api?",
        ),
        (
            404,
            {"error": "HTTPException", "detail": "Sampler not found", "body": "", "errors": ""},
            WebUIRequestError,
            f"{WHERE} does not know that sampler. See /models for the samplers it has.",
        ),
        (
            404,
            {
                "error": "HTTPException",
                "code": 404,
                "detail": "Sampler not found",
                "body": "",
                "errors": "Sampler not found",
            },
            WebUIRequestError,
            f"{WHERE} does not know that sampler. See /models for the samplers it has.",
        ),
        (
            422,
            {
                "detail": [
                    {
                        "type": "int_from_float",
                        "loc": ["body", "steps"],
                        "msg": "Input should be a valid integer, got a number with a "
                        "fractional part",
                        "input": 20.7,
                        "url": "https://errors.pydantic.dev/2.8/v/int_from_float",
                    }
                ]
            },
            WebUIRequestError,
            f"{WHERE} rejected /sdapi/v1/txt2img (422: steps: Input should be a valid integer, "
            "got a number with a fractional part).",
        ),
        (
            422,
            {"error": "HTTPException", "detail": "Script 'X' not found", "body": "", "errors": ""},
            WebUIRequestError,
            f"{WHERE} rejected /sdapi/v1/txt2img (422: Script 'X' not found).",
        ),
        (
            500,
            {
                "error": "OutOfMemoryError",
                "detail": "",
                "body": "",
                "message": "CUDA out of memory",
            },
            WebUIRequestError,
            f"{WHERE} rejected /sdapi/v1/txt2img (500: OutOfMemoryError: CUDA out of memory).",
        ),
        (
            500,
            {"error": "RuntimeError", "code": 500, "detail": "", "body": "", "errors": "boom"},
            WebUIRequestError,
            f"{WHERE} rejected /sdapi/v1/txt2img (500: RuntimeError: boom).",
        ),
        (
            500,
            "TypeError: unsupported operand",  # SD.Next: a bare JSON string
            WebUIRequestError,
            f"{WHERE} rejected /sdapi/v1/txt2img (500: TypeError: unsupported operand).",
        ),
        (
            400,
            {"error": "Init image is none"},  # SD.Next img2img without init_images
            WebUIRequestError,
            f"{WHERE} rejected /sdapi/v1/txt2img (400: Init image is none).",
        ),
        (
            500,
            {"error": "HTTPException", "detail": LONG, "body": "", "errors": ""},
            WebUIRequestError,
            f"{WHERE} rejected /sdapi/v1/txt2img (500: {'x' * 199}…).",
        ),
    ],
)
async def test_fork_error_shapes(status: int, body: Any, kind: type, message: str) -> None:
    async with mock(status, body, **({"WWW-Authenticate": "Basic"} if status == 401 else {})) as c:
        await expect(c.txt2img({"prompt": "x"}), kind, message)


async def test_html_404_means_no_api() -> None:
    async with mock(404, text="<html><body>Not Found</body></html>") as client:
        await expect(
            client.sd_models(),
            WebUINoAPI,
            f"{WHERE} answered 404 on /sdapi/v1/sd-models — was it started with --api?",
        )


async def test_proxy_502_html_is_the_backends_failure() -> None:
    async with mock(502, text="<html>Bad Gateway</html>") as client:
        with pytest.raises(WebUIServerError) as caught:
            await client.txt2img({"prompt": "x"})
    assert caught.value.retryable  # tried on another backend, this one cools off
    assert "rejected /sdapi/v1/txt2img (502: Bad Gateway)" in caught.value.render("en")


async def test_schedulers_missing_on_old_versions_and_sdnext() -> None:
    async with mock(404, {"detail": "Not Found"}) as client:
        assert await client.schedulers() == []
    sdnext = {
        "error": "HTTPException",
        "code": 404,
        "detail": "Not Found",
        "body": "",
        "errors": "",
    }
    async with mock(404, sdnext) as client:
        assert await client.schedulers() == []


@pytest.mark.parametrize(
    "answer",
    [
        {"text": "<html>hello</html>"},
        {"json": {"images": ["bm90IGFuIGltYWdl"], "info": "{}"}},  # base64 of "not an image"
        {"json": {"detail": "something"}},
    ],
)
async def test_200_that_is_not_an_image_result(answer: dict[str, Any]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, **answer))
    async with WebUIClient("http://webui.lan:7860", transport=transport) as client:
        await expect(
            client.txt2img({"prompt": "x"}),
            WebUIRequestError,
            f"{WHERE} sent an answer on /sdapi/v1/txt2img that is not an image result.",
        )


@pytest.mark.parametrize(
    "body",
    [
        {"images": [], "parameters": {}, "info": ""},  # SD.Next with no model, or any error
        {"images": [], "parameters": {}, "info": json.dumps({"seed": 1})},  # A1111 interrupted
        {"images": ["grid"], "info": json.dumps({"index_of_first_image": 1})},  # only a grid
    ],
)
async def test_200_without_pictures_is_the_backends_failure(body: dict[str, Any]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with WebUIClient("http://webui.lan:7860", transport=transport) as client:
        with pytest.raises(WebUIEmptyResult) as caught:
            await client.txt2img({"prompt": "x"})
    assert caught.value.retryable  # another backend may draw it
    assert "webui.lan" not in caught.value.render("en")  # chat users never see hosts
    assert "without any picture" in caught.value.render("en")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried_elsewhere(status: int) -> None:
    body = {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory"}
    async with mock(status, body) as client:
        with pytest.raises(WebUIServerError) as caught:
            await client.txt2img({"prompt": "x"})
    assert caught.value.retryable and caught.value.params["status"] == status


async def test_task_progress_binds_to_one_request() -> None:
    answers = {
        "queued": {"active": False, "queued": True, "completed": False, "progress": None,
                   "eta": None, "live_preview": None, "id_live_preview": -1,
                   "textinfo": "In queue: 1/1"},
        "running": {"active": True, "queued": False, "completed": False, "progress": 0.5,
                    "eta": 2.5, "live_preview": "data:image/png;base64," + b64(solid_png(8, 8)),
                    "id_live_preview": 3, "textinfo": None},
    }  # fmt: skip
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=answers[sent[-1]["id_task"]])

    transport = httpx.MockTransport(handler)
    async with WebUIClient("http://webui.lan:7860", transport=transport) as client:
        queued = await client.task_progress("queued")
        running = await client.task_progress("running", preview_id=2)
    assert (queued.queued, queued.active, queued.known, queued.preview) == (True, False, True, None)
    assert (running.active, running.progress, running.eta, running.preview_id) == (
        True, 0.5, 2.5, 3,
    )  # fmt: skip
    assert running.preview is not None and running.preview.startswith(b"\x89PNG")
    assert sent[1] == {"id_task": "running", "id_live_preview": 2, "live_preview": True}


async def test_version_and_cmd_flags_are_optional() -> None:
    async with mock(404, {"detail": "Not Found"}) as client:
        assert await client.version() is None  # A1111 and Forge
        assert await client.cmd_flags() is None
        assert await client.latent_upscale_modes() == []  # SD.Next
    async with mock(200, {"app": "sd.next"}) as client:
        assert await client.version() == {"app": "sd.next"}


def _jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buf, "JPEG")
    return buf.getvalue()


async def test_grid_and_extra_images_are_dropped_and_jpeg_is_read() -> None:
    info = {
        "seed": 10,
        "all_seeds": [10, 11],
        "infotexts": ["grid", "first", "second"],
        "index_of_first_image": 1,
        "sd_model_name": "m",
    }
    images = [solid_png(1024, 512), _jpeg(504, 256), _jpeg(504, 256), solid_png(64, 64)]
    body = {"images": [b64(x) for x in images], "parameters": {}, "info": json.dumps(info)}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with WebUIClient("http://webui.lan:7860", transport=transport) as client:
        result = await client.txt2img({"prompt": "x"})
    assert result.images == images[1:3]
    assert [sniff_image_type(x) for x in result.images] == ["jpeg", "jpeg"]
    assert (result.width, result.height) == (504, 256)
    assert result.infotexts == ["first", "second"]
    assert result.seeds == [10, 11]
    assert result.model == "m"


async def test_seeds_fall_back_to_seed_plus_index() -> None:
    info = {"seed": 99, "infotexts": ["a", "b"]}
    body = {"images": [b64(solid_png(8, 8))] * 2, "info": json.dumps(info)}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with WebUIClient("http://webui.lan:7860", transport=transport) as client:
        result = await client.txt2img({"prompt": "x"})
    assert result.seeds == [99, 100]
    assert result.model == ""


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), WebUIUnreachable),
        (httpx.RemoteProtocolError("server disconnected"), WebUIUnreachable),
        (httpx.ReadError("reset by peer"), WebUIUnreachable),
        (httpx.ReadTimeout("slow"), WebUITimeout),
        (httpx.ConnectTimeout("slow"), WebUITimeout),
    ],
)
async def test_transport_failures(exc: Exception, kind: type[WebUIError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with WebUIClient(
        "http://webui.lan:7860", connect_timeout=3, transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(kind) as caught:
            await client.progress()
    assert caught.value.params["url"] == "webui.lan:7860"
    assert caught.value.params["path"] == "/sdapi/v1/progress"
    if isinstance(exc, httpx.ConnectTimeout):
        assert caught.value.params["seconds"] == "3"

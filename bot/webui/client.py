"""Async HTTP client for one SD-WebUI backend (AUTOMATIC1111, Forge, SD.Next).

Every failure leaves this module as a typed `bot.errors.WebUIError` whose sentence names the
backend by host:port (never by a URL with credentials) and says what to do about it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
from PIL import Image, UnidentifiedImageError

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

log = logging.getLogger(__name__)

API = "/sdapi/v1"
# Calls that never wait for the WebUI's generation lock get a short read timeout, so a dead
# backend is noticed in seconds, not after the generation timeout.
QUICK_TIMEOUT = 30.0
# a request body made of scalars and strings up to this many characters is serialised on the
# event loop (tens of µs); anything else (init images, masks, ControlNet maps, nested script
# arguments) in a thread, where a body of several MB does not hold the loop
INLINE_JSON_CHARS = 4096
DETAIL_LIMIT = 200

# POST /sdapi/v1/extra-single-image request model, every field with the contract's default.
EXTRAS_DEFAULTS: dict[str, Any] = {
    "image": "",
    "resize_mode": 0,
    "show_extras_results": True,
    "gfpgan_visibility": 0,
    "codeformer_visibility": 0,
    "codeformer_weight": 0,
    "upscaling_resize": 2,
    "upscaling_resize_w": 512,
    "upscaling_resize_h": 512,
    "upscaling_crop": True,
    "upscaler_1": "None",
    "upscaler_2": "None",
    "extras_upscaler_2_visibility": 0,
    "upscale_first": False,
}


class BadResponse(ValueError):
    """A 200 answer that is not what the route promises (internal; becomes WebUIRequestError)."""


class EmptyAnswer(BadResponse):
    """A 200 image answer without a single picture (internal; becomes WebUIEmptyResult)."""


@dataclass
class GenerationResult:
    """Decoded answer of txt2img / img2img."""

    images: list[bytes]
    info: dict[str, Any]
    seeds: list[int]
    infotexts: list[str]
    width: int
    height: int
    model: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Progress:
    """Answer of GET /sdapi/v1/progress, preview decoded."""

    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: bytes | None
    textinfo: str | None

    @property
    def active(self) -> bool:
        """True while the WebUI runs a job (any job, not necessarily ours)."""
        running = self.state.get("job_count", 0) != 0 and bool(self.state.get("job"))
        return running or self.progress > 0

    @property
    def job_timestamp(self) -> str:
        """'YYYYmmddHHMMSS' of the job the WebUI runs or ran last; tells jobs apart."""
        return str(self.state.get("job_timestamp") or "")

    @property
    def job(self) -> str:
        """What the WebUI calls the running job ("scripts_txt2img" for API jobs on A1111)."""
        return str(self.state.get("job") or "")

    @property
    def sampling(self) -> tuple[int, int]:
        """(step, steps) of the running sampling pass; (0, 0) while loading or idle."""
        return _int(self.state.get("sampling_step")), _int(self.state.get("sampling_steps"))


@dataclass
class TaskProgress:
    """Answer of POST /internal/progress for one task id (A1111 >= 1.6 and Forge, webui mode):
    the only progress a WebUI binds to one request."""

    active: bool
    queued: bool
    completed: bool
    progress: float | None
    eta: float | None
    preview: bytes | None
    preview_id: int
    textinfo: str | None

    @property
    def known(self) -> bool:
        """False when the WebUI has never heard of the task id."""
        return self.active or self.queued or self.completed


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def sniff_image_type(data: bytes) -> str | None:
    """'png', 'jpeg', 'webp' or 'gif' from the magic bytes; None if not an image we know."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _decode_image(text: Any) -> bytes:
    """Base64 image (with or without a data: prefix) → bytes that really are an image."""
    if not isinstance(text, str):
        raise BadResponse("an image is not a string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadResponse("an image is not valid base64") from exc
    if sniff_image_type(data) is None:
        raise BadResponse("an image is not PNG, JPEG, WEBP or GIF")
    return data


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header (Pillow reads only the header here)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise BadResponse("an image header is unreadable") from exc


def _parse_generation(content: bytes) -> GenerationResult:
    """Parse and decode a txt2img/img2img body; runs in a worker thread (bodies are MBs)."""
    try:
        return _generation(content)
    except BadResponse:
        raise
    except (TypeError, KeyError, ValueError) as exc:
        raise BadResponse(str(exc) or type(exc).__name__) from exc


def _generation(content: bytes) -> GenerationResult:
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise BadResponse("not JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("images"), list):
        raise BadResponse("no images list")
    if not body["images"]:
        raise EmptyAnswer("no pictures")
    raw_info = body.get("info")
    try:
        info = json.loads(raw_info) if isinstance(raw_info, str) else raw_info
    except ValueError as exc:
        raise BadResponse("info is not JSON") from exc
    if not isinstance(info, dict):
        # SD.Next answers 200 {images: [], info: ""} when no model is loaded.
        raise BadResponse("info is not an object")

    first = info.get("index_of_first_image", 0)
    first = first if isinstance(first, int) and first > 0 else 0
    encoded = body["images"][first:]
    if not encoded:
        # SD.Next on any pipeline error (CUDA out of memory too), A1111 interrupted while
        # loading a model: a 200 without pictures is the backend's failure, not a result.
        raise EmptyAnswer("no pictures")
    infotexts = [str(x) for x in info.get("infotexts") or []][first:]
    # Forge appends extra_images (ControlNet maps), A1111 may append masks: anything past the
    # last infotext is not a generated picture.
    if infotexts and len(encoded) > len(infotexts):
        encoded = encoded[: len(infotexts)]
    images = [_decode_image(x) for x in encoded]
    width, height = _image_size(images[0]) if images else (0, 0)

    all_seeds = info.get("all_seeds")
    if isinstance(all_seeds, list) and len(all_seeds) >= len(images):
        seeds = [int(s) for s in all_seeds[: len(images)]]
    else:
        seed = info.get("seed")
        base = int(seed) if isinstance(seed, int | float) else -1
        seeds = [base + i for i in range(len(images))]
    params = body.get("parameters")
    return GenerationResult(
        images=images,
        info=info,
        seeds=seeds,
        infotexts=infotexts,
        width=width,
        height=height,
        model=str(info.get("sd_model_name") or ""),
        parameters=params if isinstance(params, dict) else {},
    )


def _parse_progress(content: bytes) -> Progress:
    """Parse GET /progress; a broken preview is dropped rather than failing the poll."""
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise BadResponse("not JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("state", {}), dict):
        raise BadResponse("not a progress object")
    preview: bytes | None = None
    if body.get("current_image"):
        try:
            preview = _decode_image(body["current_image"])
        except BadResponse:
            preview = None
    textinfo = body.get("textinfo")
    try:
        return Progress(
            progress=float(body.get("progress") or 0.0),
            eta_relative=float(body.get("eta_relative") or 0.0),
            state=body.get("state") or {},
            current_image=preview,
            textinfo=textinfo if isinstance(textinfo, str) else None,
        )
    except (TypeError, ValueError) as exc:
        raise BadResponse("progress is not a number") from exc


def _parse_task_progress(content: bytes) -> TaskProgress:
    """Parse POST /internal/progress; a broken preview is dropped rather than failing the poll."""
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise BadResponse("not JSON") from exc
    if not isinstance(body, dict) or "active" not in body:
        raise BadResponse("not a task progress object")
    preview: bytes | None = None
    if body.get("live_preview"):
        try:
            preview = _decode_image(body["live_preview"])
        except BadResponse:
            preview = None

    def number(key: str) -> float | None:
        value = body.get(key)
        return float(value) if isinstance(value, int | float) else None

    textinfo = body.get("textinfo")
    return TaskProgress(
        active=body.get("active") is True,
        queued=body.get("queued") is True,
        completed=body.get("completed") is True,
        progress=number("progress"),
        eta=number("eta"),
        preview=preview,
        preview_id=_int(body.get("id_live_preview")) if body.get("id_live_preview") else -1,
        textinfo=textinfo if isinstance(textinfo, str) else None,
    )


def _clip(text: str, limit: int = DETAIL_LIMIT) -> str:
    """One line of at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _validation_detail(items: list[Any]) -> str:
    """FastAPI 422 items (pydantic 1 {loc,msg,type} or 2 {type,loc,msg,input,url}) → text."""
    parts = []
    for item in items:
        if not isinstance(item, dict):
            parts.append(str(item))
            continue
        loc = item.get("loc") or []
        name = str(loc[-1]) if loc else "body"
        parts.append(f"{name}: {item.get('msg', '?')}")
    return "; ".join(parts)


def _error_detail(body: Any) -> str:
    """The most useful sentence in an A1111 / Forge / SD.Next error body."""
    if isinstance(body, str):
        return body  # SD.Next sends some errors as a bare JSON string
    if not isinstance(body, dict):
        return ""
    detail = body.get("detail")
    if isinstance(detail, list):
        return _validation_detail(detail)
    if detail:
        return str(detail)
    # Non-HTTP exceptions carry an empty detail and the text in `errors` (A1111, SD.Next) or
    # `message` (Forge); the class name tells e.g. a TypeError from an OOM.
    error = str(body.get("error") or "")
    text = str(body.get("errors") or body.get("message") or "")
    if error and text and error != "HTTPException":
        return f"{error}: {text}"
    return text or error


class WebUIClient:
    """One SD-WebUI backend behind a keep-alive httpx client."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.username and auth is None:
            # Credentials written into WEBUI_URLS move to the Authorization header so they
            # never appear in request URLs, httpx's INFO logs or our messages.
            auth = (url.username, url.password or "")
        url = url.copy_with(username=None, password=None)
        self._base_url = str(url).rstrip("/")
        port = url.port or (443 if url.scheme == "https" else 80)
        host = f"[{url.host}]" if ":" in url.host else url.host
        self._display = f"{host}:{port}"
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            auth=httpx.BasicAuth(*auth) if auth else None,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            follow_redirects=False,
            # No proxies or .netrc from the environment: a WebUI is a LAN service and its
            # credentials come from WEBUI_AUTH only.
            trust_env=False,
        )

    @property
    def base_url(self) -> str:
        """The backend's URL, without credentials."""
        return self._base_url

    @property
    def display(self) -> str:
        """host:port for messages."""
        return self._display

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the keep-alive connections."""
        await self._http.aclose()

    # --- generation -------------------------------------------------------------------

    async def txt2img(self, payload: dict[str, Any]) -> GenerationResult:
        """POST /sdapi/v1/txt2img; waits for the WebUI's queue and the job."""
        return await self._generate(f"{API}/txt2img", payload)

    async def img2img(self, payload: dict[str, Any]) -> GenerationResult:
        """POST /sdapi/v1/img2img (inpainting too, with `mask` in the payload)."""
        return await self._generate(f"{API}/img2img", payload)

    async def _generate(self, path: str, payload: dict[str, Any]) -> GenerationResult:
        resp = await self._post_json(path, payload, quick=False)
        try:
            return await asyncio.to_thread(_parse_generation, resp.content)
        except EmptyAnswer as exc:
            log.warning("WebUI %s answered %s with no pictures", self._display, path)
            raise WebUIEmptyResult(url=self._display, path=path) from exc
        except BadResponse as exc:
            raise self._bad_response(path, str(exc)) from exc

    async def extra_single_image(
        self, image: bytes, *, upscaler: str = "R-ESRGAN 4x+", scale: float = 2.0
    ) -> bytes:
        """Upscale one image by `scale` with `upscaler` (a name from upscalers())."""
        path = f"{API}/extra-single-image"
        payload = dict(EXTRAS_DEFAULTS)
        payload["image"] = await asyncio.to_thread(_b64, image)
        payload["upscaler_1"] = upscaler
        payload["upscaling_resize"] = scale
        body = await self._post_json(path, payload, quick=False)
        try:
            data = await asyncio.to_thread(json.loads, body.content)
            if not isinstance(data, dict):
                raise BadResponse("not an object")
            return await asyncio.to_thread(_decode_image, data.get("image"))
        except ValueError as exc:  # BadResponse is a ValueError too
            raise self._bad_response(path, str(exc)) from exc

    # --- job control ------------------------------------------------------------------

    async def progress(self, skip_current_image: bool = False) -> Progress:
        """GET /sdapi/v1/progress, with the live preview decoded unless skipped."""
        path = f"{API}/progress"
        params = {"skip_current_image": "true" if skip_current_image else "false"}
        resp = await self._send("GET", path, params=params)
        try:
            return await asyncio.to_thread(_parse_progress, resp.content)
        except BadResponse as exc:
            raise self._bad_response(path, str(exc)) from exc

    async def task_progress(self, task_id: str, *, preview_id: int = -1) -> TaskProgress:
        """POST /internal/progress for one task id (the `force_task_id` of a request): whether
        the WebUI has it queued, runs it now or has finished it, with its own preview."""
        path = "/internal/progress"
        body = {"id_task": task_id, "id_live_preview": preview_id, "live_preview": True}
        resp = await self._post_json(path, body)
        try:
            return await asyncio.to_thread(_parse_task_progress, resp.content)
        except BadResponse as exc:
            raise self._bad_response(path, str(exc)) from exc

    async def interrupt(self) -> None:
        """Stop the running job; the WebUI then answers its request with partial images."""
        await self._send("POST", f"{API}/interrupt")

    async def skip(self) -> None:
        """Skip the current batch of the running job."""
        await self._send("POST", f"{API}/skip")

    async def ping(self) -> None:
        """Cheap liveness probe that works with and without --nowebui; raises when down."""
        await self._send("GET", f"{API}/progress", params={"skip_current_image": "true"})

    # --- listings -----------------------------------------------------------------------

    async def sd_models(self) -> list[dict[str, Any]]:
        """Checkpoints: [{title, model_name, hash, sha256, filename, config}]."""
        return await self._get_list(f"{API}/sd-models")

    async def samplers(self) -> list[dict[str, Any]]:
        """Samplers: [{name, aliases, options}]."""
        return await self._get_list(f"{API}/samplers")

    async def schedulers(self) -> list[dict[str, Any]]:
        """Schedulers; [] on WebUIs without the route (A1111 < 1.9.1, SD.Next)."""
        return await self._optional_list(f"{API}/schedulers")

    async def upscalers(self) -> list[dict[str, Any]]:
        """Upscalers: [{name, model_name, model_path, model_url, scale}]."""
        return await self._get_list(f"{API}/upscalers")

    async def loras(self) -> list[dict[str, Any]]:
        """LoRAs: [{name, alias, path, metadata}]."""
        return await self._get_list(f"{API}/loras")

    async def embeddings(self) -> list[str]:
        """Loaded textual-inversion embeddings: GET /embeddings {loaded: {name: …}, skipped}."""
        found = await self._get_dict(f"{API}/embeddings")
        loaded = found.get("loaded")
        return [str(name) for name in loaded] if isinstance(loaded, dict) else []

    async def prompt_styles(self) -> list[dict[str, Any]]:
        """The styles saved in the WebUI: [{name, prompt, negative_prompt}]."""
        return await self._get_list(f"{API}/prompt-styles")

    async def controlnet_models(self) -> list[str]:
        """sd-webui-controlnet's models: GET /controlnet/model_list {model_list: [...]}."""
        found = await self._get_dict("/controlnet/model_list")
        return [str(m) for m in found.get("model_list") or []]

    async def controlnet_modules(self) -> list[str]:
        """Its preprocessors: GET /controlnet/module_list {module_list: [...]}."""
        found = await self._get_dict("/controlnet/module_list")
        return [str(m) for m in found.get("module_list") or []]

    async def controlnet_detect(self, image: bytes, module: str) -> bytes:
        """The preprocessor's detected map of an image: POST /controlnet/detect."""
        path = "/controlnet/detect"
        body = {
            "controlnet_module": module,
            "controlnet_input_images": [await asyncio.to_thread(_b64, image)],
        }
        resp = await self._post_json(path, body, quick=False)
        images = self._json_of(resp, path, dict).get("images") or []
        if not images or not isinstance(images[0], str):
            raise self._bad_response(path, "no detected map")
        return base64.b64decode(images[0])

    async def latent_upscale_modes(self) -> list[dict[str, Any]]:
        """Latent hires upscalers of A1111/Forge ([{name}]); [] where the route is gone (SD.Next
        lists its latent ones with the other upscalers)."""
        return await self._optional_list(f"{API}/latent-upscale-modes")

    async def scripts(self) -> dict[str, Any]:
        """Selectable and always-on scripts: {txt2img: [...], img2img: [...]} (A1111/Forge)."""
        return await self._get_dict(f"{API}/scripts")

    async def version(self) -> dict[str, Any] | None:
        """GET /sdapi/v1/version: SD.Next answers it, A1111 and Forge have no such route."""
        return await self._optional_dict(f"{API}/version")

    async def cmd_flags(self) -> dict[str, Any] | None:
        """The command line the WebUI was started with (--freeze-settings …); None without it."""
        return await self._optional_dict(f"{API}/cmd-flags")

    async def refresh_checkpoints(self) -> None:
        """Let the WebUI rescan its checkpoint folder (waits for the running job)."""
        await self._send("POST", f"{API}/refresh-checkpoints", quick=False)

    async def refresh_loras(self) -> None:
        """Let the WebUI rescan its LoRA folder."""
        await self._send("POST", f"{API}/refresh-loras")

    async def options(self) -> dict[str, Any]:
        """GET /sdapi/v1/options (read only: changing options would affect every user)."""
        return await self._get_dict(f"{API}/options")

    async def memory(self) -> dict[str, Any]:
        """RAM and CUDA memory: {ram: {...}, cuda: {...}}."""
        return await self._get_dict(f"{API}/memory")

    async def png_info(self, image: bytes) -> dict[str, Any]:
        """Infotext of an image: {info, items, parameters}."""
        path = f"{API}/png-info"
        resp = await self._post_json(path, {"image": await asyncio.to_thread(_b64, image)})
        return self._json_of(resp, path, dict)

    async def interrogate(self, image: bytes, model: str = "clip") -> str:
        """A caption of an image by the WebUI's interrogator ("clip" or "deepdanbooru"); it
        waits for the generation lock like a render."""
        path = f"{API}/interrogate"
        body = {"image": await asyncio.to_thread(_b64, image), "model": model}
        resp = await self._post_json(path, body, quick=False)
        return str(self._json_of(resp, path, dict).get("caption") or "")

    # --- plumbing -----------------------------------------------------------------------

    async def _get_list(self, path: str) -> list[dict[str, Any]]:
        resp = await self._send("GET", path)
        return self._json_of(resp, path, list)

    async def _optional_list(self, path: str) -> list[dict[str, Any]]:
        try:
            return await self._get_list(path)
        except WebUINoAPI:
            return []
        except WebUIRequestError as exc:
            if exc.params.get("status") == 404:
                return []
            raise

    async def _optional_dict(self, path: str) -> dict[str, Any] | None:
        """A route some forks do not have: None when it is missing (no API, or a 404)."""
        try:
            return await self._get_dict(path)
        except WebUINoAPI:
            return None
        except WebUIRequestError as exc:
            if exc.params.get("status") == 404:
                return None
            raise

    async def _get_dict(self, path: str) -> dict[str, Any]:
        resp = await self._send("GET", path)
        return self._json_of(resp, path, dict)

    def _json_of(self, resp: httpx.Response, path: str, kind: type) -> Any:
        try:
            data = resp.json()
        except ValueError as exc:
            raise self._bad_response(path, "not JSON") from exc
        if not isinstance(data, kind):
            raise self._bad_response(path, f"not a JSON {kind.__name__}")
        return data

    async def _post_json(
        self, path: str, payload: dict[str, Any], *, quick: bool = True
    ) -> httpx.Response:
        # Init images make bodies of several MB: serialise those off the event loop; a plain
        # txt2img body right here (the thread hop cost more than the work, ~0.7 ms on its way)
        if _flat_and_small(payload):
            content = json.dumps(payload)
        else:
            content = await asyncio.to_thread(json.dumps, payload)
        headers = {"Content-Type": "application/json"}
        return await self._send("POST", path, content=content, headers=headers, quick=quick)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: str | None = None,
        headers: dict[str, str] | None = None,
        quick: bool = True,
    ) -> httpx.Response:
        read = min(self._timeout, QUICK_TIMEOUT) if quick else self._timeout
        timeout = httpx.Timeout(read, connect=self._connect_timeout)
        try:
            resp = await self._http.request(
                method, path, params=params, content=content, headers=headers, timeout=timeout
            )
        except httpx.ConnectTimeout as exc:
            raise self._timeout_error(path, self._connect_timeout) from exc
        except httpx.TimeoutException as exc:
            raise self._timeout_error(path, read) from exc
        except httpx.TransportError as exc:
            log.debug("WebUI %s unreachable on %s: %s", self._display, path, type(exc).__name__)
            raise WebUIUnreachable(url=self._display, path=path) from exc
        if resp.status_code >= 400:
            raise self._error_from(resp, path)
        return resp

    def _timeout_error(self, path: str, seconds: float) -> WebUITimeout:
        return WebUITimeout(url=self._display, path=path, seconds=f"{seconds:g}")

    def _bad_response(self, path: str, why: str) -> WebUIRequestError:
        log.warning("WebUI %s sent an unexpected answer on %s: %s", self._display, path, why)
        return WebUIRequestError(
            "webui.bad_response", url=self._display, path=path, status=200, detail=why
        )

    def _error_from(self, resp: httpx.Response, path: str) -> WebUIError:
        """Map an HTTP error answer of any A1111 / Forge / SD.Next shape to a typed error."""
        status = resp.status_code
        try:
            body: Any = resp.json()
        except ValueError:
            body = None  # HTML or text: a proxy, or a WebUI without this route
        where = {"url": self._display, "path": path}
        detail = _clip(_error_detail(body))
        if status == 401:
            return WebUIAuthError(**where, detail=detail or "Unauthorized")
        if status == 404:
            if body is None or detail == "Not Found":
                if path.startswith(API):
                    return WebUINoAPI(**where)
                return WebUIRequestError(**where, status=404, detail="Not Found")
            if "sampler not found" in detail.lower():
                return WebUIRequestError(
                    "webui.sampler_not_found", **where, status=404, detail=detail
                )
        if body is None:
            # e.g. a reverse proxy's 502/503/504 for a WebUI that is down or restarting
            detail = _clip(resp.reason_phrase or resp.text) or str(status)
        # 5xx is the backend failing (out of memory, restarting), not the request being wrong
        kind = WebUIServerError if status >= 500 else WebUIRequestError
        return kind(**where, status=status, detail=detail or resp.reason_phrase)


def _flat_and_small(payload: dict[str, Any]) -> bool:
    """Whether a body holds only scalars, short strings and one level of containers of those
    (override_settings, styles): cheap to serialise on the loop. Checked without serialising."""
    for value in payload.values():
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list | tuple):
            if not all(_small(item) for item in value):
                return False
        elif not _small(value):
            return False
    return True


def _small(value: Any) -> bool:
    """A scalar (bools are ints) or a string of at most INLINE_JSON_CHARS."""
    if isinstance(value, str):
        return len(value) <= INLINE_JSON_CHARS
    return value is None or isinstance(value, int | float)


def _b64(data: bytes) -> str:
    """Plain base64 text (the WebUI accepts it without a data: prefix)."""
    return base64.b64encode(data).decode("ascii")

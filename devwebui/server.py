"""The stand-in WebUI server: shared state, checkpoints, the routes, and running it."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from PIL import Image, ImageFilter, ImageOps

from devwebui.fields import (
    ADETAILER_MODELS,
    ALWAYSON_SCRIPTS,
    API,
    CONTROL_MODELS,
    CONTROL_MODULES,
    DEFAULT_MODELS,
    EMBEDDINGS,
    EXTENSION_SCRIPTS,
    EXTRAS_FIELDS,
    FORGE_IMG2IMG_FIELDS,
    FORGE_OPTION_DEFAULTS,
    FORGE_TXT2IMG_FIELDS,
    IMG2IMG_FIELDS,
    LATENT_UPSCALE_MODES,
    LORAS,
    OPTION_DEFAULTS,
    PNG_INFO_FIELDS,
    RESTRICTED_OPTIONS,
    SAMPLERS,
    SCHEDULERS,
    SDNEXT_IMG2IMG_FIELDS,
    SDNEXT_SAMPLERS,
    SDNEXT_TXT2IMG_FIELDS,
    SDNEXT_UPSCALERS,
    STYLES,
    TXT2IMG_FIELDS,
    UPSCALERS,
    VERSION,
    Field,
)
from devwebui.pictures import (
    decode_image,
    draw_placeholder,
    encode_png,
    hires_size,
    infotext,
    int_value,
    parse_infotext,
    preview_png,
    round8,
)
from devwebui.validation import (
    BadValue,
    HTTPError,
    ValidationFailed,
    exception_body,
    to_bool,
    validate,
)

log = logging.getLogger(__name__)

FLAVORS = ("a1111", "forge", "sdnext")
# what fail_next() can make the next generation do
FAULTS = ("oom", "empty", "unavailable", "hang")

# --- shared state ---------------------------------------------------------------------------------


@dataclass
class State:
    """modules/shared_state.State: what /progress reports."""

    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    time_start: float = 0.0
    current_image: str | None = None
    preview_step: int = 0
    preview_id: int = 0  # state.id_live_preview: changes with every new preview
    textinfo: str | None = None
    offset: float = 0.01  # A1111/Forge report 0.01 from the start; SD.Next does not

    def begin(self, job: str) -> None:
        """Start a job (state.begin)."""
        self.sampling_step = 0
        self.job_count = -1
        self.job_no = 0
        self.job_timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
        self.current_image = None
        self.preview_step = 0
        self.preview_id = 0
        self.skipped = self.interrupted = self.stopping_generation = False
        self.textinfo = None
        self.job = job
        self.time_start = time.time()

    def nextjob(self) -> None:
        """Advance to the next batch or the hires pass (state.nextjob)."""
        self.job_no += 1
        self.sampling_step = 0
        self.preview_step = 0

    def end(self) -> None:
        """Finish; other fields stay stale, as in the real WebUI."""
        self.job = ""
        self.job_count = 0

    def as_dict(self) -> dict[str, Any]:
        """state in /progress (SD.Next has no stopping_generation)."""
        stopping = {"stopping_generation": self.stopping_generation} if self.offset else {}
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            **stopping,
            "job": self.job,
            "job_count": self.job_count,
            "job_timestamp": self.job_timestamp,
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }

    def progress(self, skip_current_image: bool) -> dict[str, Any]:
        """The body of GET /sdapi/v1/progress."""
        if self.job_count == 0:
            return {
                "progress": 0,
                "eta_relative": 0,
                "state": self.as_dict(),
                "current_image": None,
                "textinfo": self.textinfo,
            }
        progress = self.offset
        if self.job_count > 0:
            progress += self.job_no / self.job_count
            if self.sampling_steps > 0:
                progress += 1 / self.job_count * self.sampling_step / self.sampling_steps
        elapsed = time.time() - self.time_start
        return {
            "progress": min(progress, 1.0),
            "eta_relative": elapsed / progress - elapsed if progress > 0 else 0,
            "state": self.as_dict(),
            "current_image": None if skip_current_image else self.current_image,
            "textinfo": self.textinfo,
        }


@dataclass
class Checkpoint:
    """One entry of /sd-models."""

    name: str  # file name relative to models/Stable-diffusion, with extension
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def shorthash(self) -> str:
        return self.sha256[:10]

    @property
    def model_name(self) -> str:
        return self.name.rsplit(".", 1)[0].replace("/", "_").replace("\\", "_")

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]"

    @property
    def name_for_extra(self) -> str:
        """What info's sd_model_name carries: the file name without folder or extension."""
        return self.name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]

    def aliases(self) -> set[str]:
        """Names override_settings / POST /options accept (checkpoint_aliases)."""
        base = self.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        return {
            self.title,
            self.name,
            self.model_name,
            self.shorthash,
            self.sha256,
            base,
            f"{base} [{self.shorthash}]",
        }

    def as_dict(self) -> dict[str, Any]:
        """/sd-models item."""
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.shorthash,
            "sha256": self.sha256,
            "filename": f"/models/Stable-diffusion/{self.name}",
            "config": None,
        }


@dataclass
class _Job:
    """What a finished generation hands to the encoder."""

    images: list[Image.Image]
    infotexts: list[str]
    info: dict[str, Any]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTML_404 = (
    "<!DOCTYPE html><html><head><title>404: Not Found</title></head>"
    "<body><h1>404: Not Found</h1></body></html>"
)


@dataclass
class Pass:
    """One sampling pass as the GPU would have run it: what tests check a fork really drew."""

    kind: str  # "first" or "hires"
    steps: int
    cfg: float
    negative: bool  # whether the negative prompt took part (Forge drops it at hires cfg 1.0)
    size: tuple[int, int]
    clip_skip: int
    model: str | None


@dataclass
class ForeignJob:
    """What became of a job another client ran on this server (foreign_job())."""

    task_id: str
    interrupted: bool = False
    steps_done: int = 0


class _Empty(Exception):
    """The generation ends with a 200 without pictures."""


class DevWebUI:
    """A stand-in SD-WebUI on a local port that answers with placeholder pictures."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.5,
        encode_delay: float = 0.0,
        auth: tuple[str, str] | None = None,
        api: bool = True,
        sampler_404: bool | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        switch_delay: float = 0.0,
        preview_every: int = 10,
        flavor: str = "a1111",
        freeze_settings: bool = False,
        nowebui: bool = False,
        loras: Sequence[str] = LORAS,
        extensions: Sequence[str] = (),
        styles: Sequence[tuple[str, str, str]] = STYLES,
        control_models: Sequence[str] = CONTROL_MODELS,
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, not {flavor!r}")
        self.host = host
        self.port = port
        self.delay = delay
        self.encode_delay = encode_delay
        self.auth = auth
        self.api = api
        self.flavor = flavor
        # v1.6-1.9 and SD.Next answer 404 for an unknown sampler; 1.10 silently swaps it
        self.sampler_404 = flavor == "sdnext" if sampler_404 is None else sampler_404
        self.switch_delay = switch_delay
        self.preview_every = preview_every
        self.freeze_settings = freeze_settings
        self.nowebui = nowebui
        self.checkpoints = [Checkpoint(name) for name in models]
        self.loras = list(loras)
        unknown = set(extensions) - set(EXTENSION_SCRIPTS)
        if unknown:
            raise ValueError(f"extensions must be among {', '.join(EXTENSION_SCRIPTS)}")
        self.extensions = set(extensions)
        self.styles = list(styles)
        self.control_models = list(control_models)
        self.control_units: list[dict[str, Any]] = []  # every ControlNet unit that ran
        # checkpoint files on disk the WebUI has not scanned yet (POST /refresh-checkpoints)
        self.unscanned: list[Checkpoint] = []
        # the weights in memory; options_data["sd_model_checkpoint"] is the *setting*, which
        # A1111 restores after a job without reloading (processing.py:853-858)
        self.loaded = self.checkpoints[0] if self.checkpoints else None
        self.options_data: dict[str, Any] = dict(OPTION_DEFAULTS)
        if flavor == "forge":
            self.options_data.update(FORGE_OPTION_DEFAULTS)
        if self.loaded is not None:
            self.options_data["sd_model_checkpoint"] = self.loaded.title
            self.options_data["sd_checkpoint_hash"] = self.loaded.sha256
        self.requests: list[tuple[str, Any]] = []
        self.arrived: list[float] = []  # time.monotonic() of each of them
        # (steps done, steps asked) of each sampling pass stopped by /skip or /interrupt
        self.cut_short: list[tuple[int, int]] = []
        self.passes: list[Pass] = []
        self.model_loads: list[str] = []  # titles of every checkpoint (re)load
        self.foreign: list[ForeignJob] = []
        self.faults: list[str] = []
        self.state = State(offset=0.0 if flavor == "sdnext" else 0.01)
        # the WebUI's task bookkeeping (modules/progress.py)
        self.pending_tasks: dict[str, float] = {}
        self.current_task: str | None = None
        self.finished_tasks: list[str] = []
        self._lock = asyncio.Lock()  # FIFO: waiters are woken in arrival order
        self._inflight: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """http://host:port of the running server."""
        return f"http://{self.host}:{self.port}"

    @property
    def txt2img_fields(self) -> list[Field]:
        """This flavour's txt2img request model."""
        return {"forge": FORGE_TXT2IMG_FIELDS, "sdnext": SDNEXT_TXT2IMG_FIELDS}.get(
            self.flavor, TXT2IMG_FIELDS
        )

    @property
    def img2img_fields(self) -> list[Field]:
        """This flavour's img2img request model."""
        return {"forge": FORGE_IMG2IMG_FIELDS, "sdnext": SDNEXT_IMG2IMG_FIELDS}.get(
            self.flavor, IMG2IMG_FIELDS
        )

    @property
    def upscaler_names(self) -> list[str]:
        """What GET /upscalers lists (SD.Next: its own names, latent ones among them)."""
        table = SDNEXT_UPSCALERS if self.flavor == "sdnext" else UPSCALERS
        return [name for name, _ in table]

    # --- what tests (and a second client) do to it -------------------------------------------

    def fail_next(self, fault: str, times: int = 1) -> None:
        """Make the next `times` generations fail: "oom" (CUDA out of memory: a 500 on
        A1111/Forge, a 200 without pictures on SD.Next), "empty" (a 200 without pictures, as
        A1111 interrupted during a model load), "unavailable" (a proxy's 503) or "hang" (sampling
        stops advancing until interrupted)."""
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
        self.faults.extend([fault] * times)

    def add_checkpoint(self, name: str, *, scanned: bool = False) -> Checkpoint:
        """A checkpoint file dropped into the models folder; listed once the WebUI rescans
        (POST /refresh-checkpoints, or at once with scanned=True, as the UI's refresh button)."""
        checkpoint = Checkpoint(name)
        if scanned:
            self.checkpoints.append(checkpoint)
        else:
            self.unscanned.append(checkpoint)
        return checkpoint

    async def foreign_job(
        self, *, seconds: float | None = None, steps: int = 20, ui: bool = True
    ) -> ForeignJob:
        """Run a job of another client on this server, holding the generation lock as a UI
        user's job does (its state.job is its task id; an API client's reads scripts_txt2img).
        Returns once it is done or interrupted."""
        task_id = f"task(foreign-{random.randrange(16**7):07x})"
        job = ForeignJob(task_id)
        self.foreign.append(job)
        self.pending_tasks[task_id] = time.time()
        async with self._lock:
            st = self.state
            st.begin(task_id if ui else "scripts_txt2img")
            self._start_task(task_id)
            try:
                st.job_count = 1
                seconds = self.delay if seconds is None else seconds
                st.sampling_steps, st.sampling_step = steps, 0
                loop = asyncio.get_running_loop()
                start = loop.time()
                for step in range(1, steps + 1):
                    if st.interrupted:
                        job.interrupted = True
                        break
                    await asyncio.sleep(max(0.0, start + seconds * step / steps - loop.time()))
                    st.sampling_step = job.steps_done = step
                    if self.preview_every > 0 and step % self.preview_every == 0:
                        self._set_preview(preview_png(999_999, step / steps))
                job.interrupted = job.interrupted or st.interrupted
            finally:
                self._finish_task(task_id)
                st.end()
        return job

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; a restarted server keeps the port it got the first time."""
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024**2)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("dev-webui (placeholder images) listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening; running requests get a second to finish."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def kill(self) -> None:
        """Die abruptly: refuse new connections and cut the open ones mid-request."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        if runner.server is not None:
            for conn in list(runner.server.connections):
                if conn.transport is not None:
                    conn.transport.abort()
        for task in list(self._inflight):
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- plumbing -----------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        get, post = app.router.add_get, app.router.add_post
        post(f"{API}/txt2img", self._txt2img)
        post(f"{API}/img2img", self._img2img)
        post(f"{API}/extra-single-image", self._extra_single_image)
        post(f"{API}/png-info", self._png_info)
        post(f"{API}/interrogate", self._interrogate)
        get(f"{API}/progress", self._progress)
        post(f"{API}/interrupt", self._interrupt)
        post(f"{API}/skip", self._skip)
        get(f"{API}/sd-models", self._sd_models)
        get(f"{API}/samplers", self._samplers)
        get(f"{API}/upscalers", self._upscalers)
        get(f"{API}/loras", self._loras)
        post(f"{API}/refresh-loras", self._null)
        get(f"{API}/options", self._get_options)
        post(f"{API}/options", self._set_options)
        get(f"{API}/cmd-flags", self._cmd_flags)
        get(f"{API}/scripts", self._scripts)
        get(f"{API}/prompt-styles", self._prompt_styles)
        get(f"{API}/embeddings", self._embeddings)
        if "controlnet" in self.extensions:  # the extension adds its own routes
            get("/controlnet/model_list", self._control_model_list)
            get("/controlnet/module_list", self._control_module_list)
            post("/controlnet/detect", self._control_detect)
        get(f"{API}/memory", self._memory)
        post(f"{API}/refresh-checkpoints", self._refresh_checkpoints)
        if self.flavor == "sdnext":  # SD.Next removed these and added /version
            get(f"{API}/version", self._version)
        else:
            get(f"{API}/schedulers", self._schedulers)
            get(f"{API}/latent-upscale-modes", self._latent_upscale_modes)
        get("/internal/ping", self._ping)
        if not self.nowebui:  # the Gradio app's routes: not with --nowebui
            post("/internal/progress", self._internal_progress)
            get("/internal/pending-tasks", self._pending_tasks)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record, route-check, authenticate, and turn exceptions into the WebUI's bodies."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append((request.path, body))
        self.arrived.append(time.monotonic())

        path = request.path
        # The Lora extension registers its routes itself: they exist without --api and
        # are not covered by --api-auth.
        lora_route = path in (f"{API}/loras", f"{API}/refresh-loras")
        if path.startswith(API) and not self.api and not lora_route:
            return web.Response(status=404, text=_HTML_404, content_type="text/html")
        missing = request.match_info.http_exception
        if missing is not None:
            return web.json_response({"detail": missing.reason}, status=missing.status)
        if path.startswith(API) and self.auth is not None and not lora_route:
            refused = self._refuse_auth(request)
            if refused:
                body = exception_body(HTTPError(401, refused), self.flavor)
                return web.json_response(body, status=401)

        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await handler(request)
        except ValidationFailed as exc:
            return web.json_response({"detail": exc.items}, status=422)
        except HTTPError as exc:
            return web.json_response(exception_body(exc, self.flavor), status=exc.status)
        except _Unavailable:
            # what a reverse proxy in front of a restarting WebUI answers
            return web.Response(status=503, text="Service Unavailable", content_type="text/plain")
        except Exception as exc:
            log.warning("dev-webui: %s on %s: %s", type(exc).__name__, path, exc)
            return web.json_response(exception_body(exc, self.flavor), status=500)
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _refuse_auth(self, request: web.Request) -> str | None:
        """FastAPI HTTPBasic + A1111's check; the reason, or None when the caller may pass."""
        assert self.auth is not None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return "Not authenticated"
        try:
            user, sep, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, ValueError):
            return "Invalid authentication credentials"
        if not sep:
            return "Invalid authentication credentials"
        if (user, password) != tuple(self.auth):
            return "Incorrect username or password"
        return None

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            raise ValidationFailed(
                [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]
            )
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                [{"loc": ["body", exc.pos], "msg": exc.msg, "type": "value_error.jsondecode"}]
            ) from exc

    # --- tasks (modules/progress.py) ----------------------------------------------------------

    def _start_task(self, task_id: str) -> None:
        self.current_task = task_id
        self.pending_tasks.pop(task_id, None)

    def _finish_task(self, task_id: str) -> None:
        if self.current_task == task_id:
            self.current_task = None
        self.finished_tasks.append(task_id)
        del self.finished_tasks[:-16]

    def _set_preview(self, image: str) -> None:
        self.state.current_image = image
        self.state.preview_id += 1

    # --- samplers, scripts, checkpoints ----------------------------------------------------

    def resolve_sampler(self, name: str | None, scheduler: str | None) -> tuple[str, str]:
        """v1.10 get_sampler_and_scheduler: unknown names fall back to 'DPM++ 2M'."""
        if self.flavor == "sdnext":  # no schedulers; its own sampler names
            name = name or "UniPC"
            if not any(s[0] == name for s in SDNEXT_SAMPLERS):
                raise HTTPError(404, "Sampler not found")
            return name, "Default"
        by_key = {s[0]: s for s in SCHEDULERS} | {s[1]: s for s in SCHEDULERS}
        found = by_key.get(scheduler or "", SCHEDULERS[0])
        name = name or SAMPLERS[0][0]
        for sched in SCHEDULERS:
            suffix = next((" " + x for x in (sched[1], sched[0]) if name.endswith(" " + x)), None)
            if suffix:
                found, name = sched, name[: -len(suffix)]
                break
        sampler = next((s for s in SAMPLERS if s[0] == name), None)
        if sampler is None:
            if self.sampler_404:  # v1.6-1.9 and SD.Next
                raise HTTPError(404, "Sampler not found")
            sampler = SAMPLERS[0]
        if sampler[2].get("scheduler") == found[0]:
            found = SCHEDULERS[0]
        return sampler[0], found[1]

    def check_scripts(self, req: dict[str, Any]) -> None:
        """Selectable scripts do not exist here; always-on ones by their built-in titles and
        those of the installed extensions (api.py init_script_args: 422 for any other)."""
        if req.get("script_name") and req["script_name"] != "none":
            raise HTTPError(422, f"Script '{req['script_name']}' not found")
        installed = {EXTENSION_SCRIPTS[e].lower() for e in self.extensions}
        for title, value in (req.get("alwayson_scripts") or {}).items():
            if title.lower() not in ALWAYSON_SCRIPTS | installed:
                raise HTTPError(422, f"always on script {title} not found")
            if title.lower() == "adetailer":
                _check_adetailer(value)
            if title.lower() == "controlnet":
                self._check_control(value)

    def _check_control(self, value: Any) -> None:
        """ControlNetUnit validation (args.py): known module and model, weight 0..2,
        guidance_start <= guidance_end, a decodable image; a bad unit fails the request."""
        args = value.get("args") if isinstance(value, dict) else None
        for unit in args or []:
            if not isinstance(unit, dict) or not unit.get("enabled"):
                continue
            if unit.get("module", "none") not in CONTROL_MODULES:
                raise ValueError(f"module({unit.get('module')}) not found in supported modules.")
            if unit.get("model", "None") not in (*self.control_models, "None"):
                raise ValueError(f"model({unit.get('model')}) not found in supported models.")
            if not 0.0 <= float(unit.get("weight", 1.0)) <= 2.0:
                raise ValueError("weight must be between 0 and 2")
            start, end = unit.get("guidance_start", 0.0), unit.get("guidance_end", 1.0)
            if start > end:
                raise ValueError(f"guidance_start({start}) > guidance_end({end})")
            decode_image(str(unit.get("image") or unit.get("input_image") or ""))
            self.control_units.append(unit)

    async def _control_model_list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"model_list": self.control_models})

    async def _control_module_list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"module_list": list(CONTROL_MODULES)})

    async def _control_detect(self, request: web.Request) -> web.StreamResponse:
        """The preprocessor's map of each input image: edges for canny, grey depth else."""
        body = await self._body(request)
        module = body.get("controlnet_module", "none") if isinstance(body, dict) else "none"
        images = body.get("controlnet_input_images") or [] if isinstance(body, dict) else []
        if module not in CONTROL_MODULES:
            return web.json_response({"images": [], "info": "Module not available"})
        if not images:
            return web.json_response({"images": [], "info": "No image selected"})

        def detect() -> list[str]:
            out = []
            for raw in images:
                grey = decode_image(str(raw)).convert("L")
                picture = grey.filter(ImageFilter.FIND_EDGES) if module == "canny" else grey
                out.append(encode_png(picture.convert("RGB"), ""))
            return out

        return web.json_response({"images": await asyncio.to_thread(detect), "info": "Success"})

    def _styled(self, prompt: str, req: dict[str, Any]) -> str:
        """styles.py apply_styles_to_prompt: each named style, unknown names ignored."""
        for name in req.get("styles") or []:
            style = next((s for s in self.styles if s[0] == name), None)
            if style is None:
                continue
            text = style[1]
            prompt = text.replace("{prompt}", prompt) if "{prompt}" in text else f"{prompt}, {text}"
        return prompt

    def find_checkpoint(self, name: Any) -> Checkpoint | None:
        """The checkpoint any alias names, or None."""
        return next((c for c in self.checkpoints if name in c.aliases()), None)

    async def _load(self, checkpoint: Checkpoint | None) -> None:
        """Load weights (a model switch costs switch_delay)."""
        if checkpoint is not None and checkpoint is not self.loaded:
            await asyncio.sleep(self.switch_delay)
            self.loaded = checkpoint
            self.model_loads.append(checkpoint.title)

    def _set_model_option(self, checkpoint: Checkpoint) -> None:
        self.options_data["sd_model_checkpoint"] = checkpoint.title
        self.options_data["sd_checkpoint_hash"] = checkpoint.sha256

    def _frozen(self, key: str, value: Any) -> None:
        """options.py:98: with --freeze-settings any change is an AssertionError (A1111/Forge)."""
        if self.freeze_settings and self.flavor != "sdnext":
            raise AssertionError("changing settings is disabled")

    async def _apply_overrides(self, req: dict[str, Any]) -> dict[str, Any]:
        """processing.py override_settings; returns the values to restore afterwards."""
        overrides = req.get("override_settings") or {}
        if self.flavor == "sdnext":  # overrides equal to the current value are dropped first
            for key in list(overrides):
                if self.options_data.get(key) == overrides[key]:
                    overrides.pop(key)
        stored = {k: self.options_data[k] for k in overrides if k in self.options_data}
        wanted = self.find_checkpoint(overrides.get("sd_model_checkpoint"))
        if wanted is None:
            named = overrides.pop("sd_model_checkpoint", None)  # unknown: silently ignored
            if named is not None or self.flavor != "sdnext":
                # and the setting's model is (re)loaded (processing.py:828-830): the weights a
                # restoring job left in memory go when a job names no model
                setting = self.options_data.get("sd_model_checkpoint")
                await self._load(self.find_checkpoint(setting))
        for key, value in overrides.items():
            if self.options_data.get(key) == value and key != "sd_model_checkpoint":
                continue
            if key not in OPTION_DEFAULTS and key not in self.options_data:
                raise KeyError(key)
            if key in RESTRICTED_OPTIONS:
                continue
            if self.freeze_settings and self.flavor == "sdnext":
                continue  # SD.Next's --freeze: the change is silently ignored
            if key == "sd_model_checkpoint":
                assert wanted is not None
                if self.options_data.get(key) != value:
                    self._frozen(key, value)
                    self._set_model_option(wanted)
                await self._load(wanted)
            else:
                self._frozen(key, value)
                self.options_data[key] = value
        return stored

    async def _restore(self, req: dict[str, Any], stored: dict[str, Any]) -> None:
        """processing.py:853-858: A1111/Forge set the old values back (a setattr, frozen or not;
        weights stay until a job names no model); SD.Next reloads the old model at once."""
        if req.get("override_settings_restore_afterwards") is False:
            return
        for key, value in stored.items():
            if self.freeze_settings and self.flavor == "sdnext":
                continue
            if self.freeze_settings:
                raise AssertionError("changing settings is disabled")
            if key == "sd_model_checkpoint":
                old = self.find_checkpoint(value)
                if old is not None:
                    self._set_model_option(old)
                    if self.flavor == "sdnext":
                        await self._load(old)
            else:
                self.options_data[key] = value

    def _check_upscalers(self, req: dict[str, Any]) -> None:
        if req.get("enable_hr") and self.flavor != "sdnext":
            name = req.get("hr_upscaler")
            known = {u[0] for u in UPSCALERS} | set(LATENT_UPSCALE_MODES)
            if name is not None and name not in known:
                raise Exception(f"could not find upscaler named {name}")
            hr_ckpt = req.get("hr_checkpoint_name")
            if hr_ckpt and hr_ckpt != "Use same checkpoint" and not self.find_checkpoint(hr_ckpt):
                raise Exception(f"Could not find checkpoint with name {hr_ckpt}")
        refiner = req.get("refiner_checkpoint")
        if refiner and refiner != "None" and not self.find_checkpoint(refiner):
            raise Exception(f"Could not find checkpoint with name {refiner}")

    # --- the generation loop -----------------------------------------------------------------

    async def _sample(self, steps: int, seed: int, *, hang: bool = False) -> None:
        """One sampling pass of `delay` seconds; stops early on interrupt or skip. A hanging
        pass stops advancing after its first steps until it is interrupted."""
        st = self.state
        st.sampling_steps, st.sampling_step, st.preview_step = steps, 0, 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step in range(1, steps + 1):
            if st.interrupted or st.skipped:
                self.cut_short.append((step - 1, steps))
                return
            if hang and step > 2:
                # stuck, as a wedged GPU: only /interrupt (a flag, as in the real state) ends it
                while not st.interrupted:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                continue
            # Sleep to a deadline, not a fixed slice, so 150 steps still take `delay` in total.
            await asyncio.sleep(max(0.0, start + self.delay * step / steps - loop.time()))
            st.sampling_step = step
            if self.preview_every > 0 and step - st.preview_step >= self.preview_every:
                self._set_preview(preview_png(seed, step / steps))
                st.preview_step = step

    async def _generate(
        self,
        kind: str,
        req: dict[str, Any],
        sampler: str,
        scheduler: str,
        init: list[Any] | None = None,
        mask: Image.Image | None = None,
    ) -> _Job:
        """Everything the WebUI does while it holds the lock."""
        st = self.state
        st.begin(f"scripts_{kind}")
        task_id = req["_task_id"]
        self._start_task(task_id)
        try:
            # img2img decodes its init images only once it holds the lock (api.py).
            images = [decode_image(x) for x in init] if init is not None else None
            stored = await self._apply_overrides(req)
            try:
                return await self._passes(kind, req, sampler, scheduler, images, mask)
            finally:
                await self._restore(req, stored)
        finally:
            self._finish_task(task_id)
            st.end()

    async def _passes(
        self,
        kind: str,
        req: dict[str, Any],
        sampler: str,
        scheduler: str,
        init: list[Image.Image] | None,
        mask: Image.Image | None,
    ) -> _Job:
        st = self.state
        prompt = req.get("prompt")
        if prompt is None:
            raise AssertionError  # process_images_inner asserts it: 500 AssertionError
        prompt = self._styled(prompt, req)
        self._check_upscalers(req)
        fault = self.faults.pop(0) if self.faults else None
        n_iter, batch = max(1, int_value(req, "n_iter")), max(1, int_value(req, "batch_size"))
        if init is not None and len(init) > batch:
            raise RuntimeError(
                f"bad number of images passed: {len(init)}; expecting {batch} or less"
            )
        steps = max(1, int_value(req, "steps"))
        width, height = int_value(req, "width"), int_value(req, "height")
        denoise = req.get("denoising_strength")
        hires = kind == "txt2img" and bool(req.get("enable_hr"))
        if init is not None and self.flavor != "sdnext":
            steps = int(min(denoise or 0.0, 0.999) * steps) + 1  # img2img runs t_enc + 1 steps
        seed = _fixed_seed(req.get("seed"))
        subseed = _fixed_seed(req.get("subseed"))
        total = n_iter * batch
        strength = req.get("subseed_strength") or 0
        seeds = [seed + (i if strength == 0 else 0) for i in range(total)]
        subseeds = [subseed + i for i in range(total)]
        cfg = float(req["cfg_scale"]) if req.get("cfg_scale") is not None else 7.0
        negative = bool(req.get("negative_prompt"))

        st.job_count = n_iter * (2 if hires else 1)
        images: list[Image.Image] = []
        texts: list[str] = []
        for n in range(n_iter):
            if st.interrupted:
                break
            if n_iter > 1:
                st.job = f"Batch {n + 1} out of {n_iter}"
            st.skipped = False
            size = (round8(width), round8(height))
            if init is not None and self.flavor == "sdnext" and not req.get("resize_mode"):
                size = init[0].size  # SD.Next's resize mode 0 is "None": no resize at all
            bases = [init[(n * batch + j) % len(init)] if init else None for j in range(batch)]
            # The cards are drawn while the pass runs when their size is known now (no hires
            # pass after it): the lock is then held for `delay`, as on a GPU whose job time
            # includes the decode, not `delay` plus the ~6 ms of drawing text on a card.
            drawing = (
                [
                    asyncio.ensure_future(
                        asyncio.to_thread(
                            self._picture, size, seeds[n * batch + j], prompt, "", req, base, mask
                        )
                    )
                    for j, base in enumerate(bases)
                ]
                if fault is None and not hires
                else []
            )
            try:
                await self._sample(steps, seeds[n * batch], hang=fault == "hang")
            finally:  # the threads finish either way; a card that failed is drawn (and fails)
                done = await asyncio.gather(*drawing, return_exceptions=True)  # again below
            drawn = [x for x in done if isinstance(x, Image.Image)]
            drawn = drawn if len(drawn) == len(drawing) else []
            self._ran("first", steps, cfg, negative, size, req)
            if fault == "oom":
                if self.flavor == "sdnext":
                    raise _Empty  # processing_diffusers.py:127-145: the error ends in []
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if fault == "empty":
                raise _Empty
            if hires and not st.interrupted:
                size = await self._hires_pass(req, steps, seeds[n * batch], cfg, negative, size)
            if self._adetailer_on(req) and not st.interrupted:  # its inpaint of each face
                for _ in range(batch):
                    self._ran("adetailer", steps, cfg, negative, (512, 512), req)
            elif req.get("restore_faces") and not st.interrupted:
                self._ran("restore_faces", 0, cfg, negative, size, req)
            note = "interrupted" if st.interrupted else ""
            for j in range(batch):
                s = seeds[n * batch + j]
                params = self._infotext_params(req, sampler, scheduler, s, hires)
                texts.append(infotext(prompt, req.get("negative_prompt") or "", params))
                if drawn and not note:
                    images.append(drawn[j])
                    continue
                images.append(
                    await asyncio.to_thread(
                        self._picture, size, s, prompt, note, req, bases[j], mask
                    )
                )
            st.nextjob()
        if st.interrupted and self.flavor == "sdnext":
            raise _Empty  # SD.Next returns no pictures for an interrupted job
        info = self._info(req, prompt, sampler, scheduler, seeds, subseeds, texts, hires)
        return _Job(images=images, infotexts=texts, info=info)

    async def _hires_pass(
        self,
        req: dict[str, Any],
        steps: int,
        seed: int,
        cfg: float,
        negative: bool,
        size: tuple[int, int],
    ) -> tuple[int, int]:
        """The second pass of hires fix, as each fork runs it; returns the output size."""
        st = self.state
        if self.flavor == "sdnext":
            # processing_diffusers.py:176: the upscale runs only with hr_resize_mode > 0; the
            # second pass after a latent upscaler or with hr_force
            upscaler = req.get("hr_upscaler") or "None"
            if (req.get("hr_resize_mode") or 0) > 0 and upscaler in self.upscaler_names[1:]:
                size = hires_size(req)
            strength = req.get("hr_denoising_strength") or req.get("denoising_strength") or 0
            if (upscaler.lower().startswith("latent") or req.get("hr_force")) and strength > 0:
                st.nextjob()
                hr_steps = int_value(req, "hr_second_pass_steps") or steps
                await self._sample(hr_steps, seed)
                self._ran("hires", hr_steps, cfg, negative, size, req)
            return size
        if req.get("denoising_strength") is None:
            raise TypeError("'>' not supported between instances of 'NoneType' and 'int'")
        if self.flavor == "forge":
            if req.get("hr_additional_modules") is None:  # processing.py:1197, 1405
                raise TypeError("argument of type 'NoneType' is not iterable")
            # hr_cfg replaces cfg_scale in the second pass; at 1.0 there is no negative pass
            cfg = req["hr_cfg"] if req.get("hr_cfg") is not None else 1.0
            negative = negative and cfg != 1.0
        st.nextjob()
        hr_steps = int_value(req, "hr_second_pass_steps") or steps
        await self._sample(hr_steps, seed)
        size = hires_size(req)
        self._ran("hires", hr_steps, cfg, negative, size, req)
        return size

    def _clip_skip(self, req: dict[str, Any]) -> int:
        """The clip skip a job really ran with: SD.Next reads the request's clip_skip field (its
        CLIP_stop_at_last_layers option is read by nothing), the others the option."""
        if self.flavor == "sdnext":
            return int(req.get("clip_skip") or 1)
        return int(self.options_data.get("CLIP_stop_at_last_layers") or 1)

    def _ran(
        self,
        kind: str,
        steps: int,
        cfg: float,
        negative: bool,
        size: tuple[int, int],
        req: dict[str, Any],
    ) -> None:
        if self.state.interrupted:
            return
        model = self.loaded.title if self.loaded else None
        self.passes.append(Pass(kind, steps, cfg, negative, size, self._clip_skip(req), model))

    @staticmethod
    def _picture(
        size: tuple[int, int],
        seed: int,
        prompt: str,
        note: str,
        req: dict[str, Any],
        base: Image.Image | None,
        mask: Image.Image | None,
    ) -> Image.Image:
        """The placeholder; for img2img blended over the init image, inside the mask if any."""
        if base is None:
            return draw_placeholder(size, seed, prompt, note)
        if mask is not None and req.get("inpaint_full_res", True) and mask.convert("L").getbbox():
            size = base.size  # "only masked" pastes the result back into the original
        drawn = draw_placeholder(size, seed, prompt, note)
        init = base.convert("RGB").resize(size)
        if mask is None:
            strength = req.get("denoising_strength")
            return Image.blend(init, drawn, 0.75 if strength is None else min(1.0, strength))
        alpha = mask.getchannel("A") if mask.mode == "RGBA" else mask.convert("L")
        if req.get("inpainting_mask_invert"):
            alpha = ImageOps.invert(alpha)
        alpha = alpha.resize(size)
        grow = int(req.get("_dilate") or 0)
        if grow > 0:  # SD.Next dilates the mask by the padding on every inpaint
            alpha = alpha.point(lambda v: 255 if v > 128 else 0).filter(
                ImageFilter.MaxFilter(2 * min(grow, 64) + 1)
            )
        return Image.composite(drawn, init, alpha)

    def _infotext_params(
        self, req: dict[str, Any], sampler: str, scheduler: str, seed: int, hires: bool
    ) -> dict[str, Any]:
        img2img = "init_images" in req
        ckpt = self.loaded
        clip_skip = self._clip_skip(req)
        params: dict[str, Any] = {
            "Steps": int_value(req, "steps"),
            "Sampler": sampler,
            "Schedule type": scheduler,
            "CFG scale": req.get("cfg_scale") if req.get("cfg_scale") is not None else 7.0,
            "Seed": seed,
            "Size": f"{int_value(req, 'width')}x{int_value(req, 'height')}",
            "Model hash": ckpt.shorthash if ckpt else None,
            "Model": ckpt.name_for_extra if ckpt else None,
            "Denoising strength": req.get("denoising_strength") if hires or img2img else None,
            "Clip skip": clip_skip if clip_skip > 1 else None,
        }
        if req.get("restore_faces") and not self._adetailer_on(req):
            params["Face restoration"] = "CodeFormer"
        if self._adetailer_on(req):
            params["ADetailer model"] = _adetailer_args(req)[0].get("ad_model")
        if hires:
            params["Hires upscale"] = None if req.get("hr_resize_x") else req.get("hr_scale")
            params["Hires steps"] = req.get("hr_second_pass_steps") or None
            params["Hires upscaler"] = req.get("hr_upscaler") or "Latent"
            if self.flavor == "forge":
                params["Hires CFG Scale"] = req.get("hr_cfg")
        params["Version"] = VERSION
        return params

    def _info(
        self,
        req: dict[str, Any],
        prompt: str,
        sampler: str,
        scheduler: str,
        seeds: list[int],
        subseeds: list[int],
        texts: list[str],
        hires: bool,
    ) -> dict[str, Any]:
        """Processed.js(): the info JSON (SD.Next's has no sd_model_name)."""
        ckpt = self.loaded
        negative = req.get("negative_prompt") or ""
        extra: dict[str, Any] = {"Schedule type": scheduler}
        if hires:
            extra["Hires upscale"] = req.get("hr_scale")
            extra["Hires upscaler"] = req.get("hr_upscaler") or "Latent"
        info = {
            "prompt": prompt,
            "all_prompts": [prompt] * len(seeds),
            "negative_prompt": negative,
            "all_negative_prompts": [negative] * len(seeds),
            "seed": seeds[0],
            "all_seeds": seeds,
            "subseed": subseeds[0],
            "all_subseeds": subseeds,
            "subseed_strength": req.get("subseed_strength") or 0,
            "width": int_value(req, "width"),
            "height": int_value(req, "height"),
            "sampler_name": sampler,
            "cfg_scale": req.get("cfg_scale") if req.get("cfg_scale") is not None else 7.0,
            "steps": int_value(req, "steps"),
            "batch_size": int_value(req, "batch_size"),
            "restore_faces": req.get("restore_faces"),
            "face_restoration_model": None,
            "sd_model_name": ckpt.name_for_extra if ckpt else None,
            "sd_model_hash": ckpt.shorthash if ckpt else None,
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": req.get("seed_resize_from_w"),
            "seed_resize_from_h": req.get("seed_resize_from_h"),
            "denoising_strength": req.get("denoising_strength"),
            "extra_generation_params": extra,
            "index_of_first_image": 0,
            "infotexts": texts,
            "styles": req.get("styles") or [],
            "job_timestamp": self.state.job_timestamp,
            "clip_skip": self._clip_skip(req),
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }
        if self.flavor == "sdnext":
            info.pop("sd_model_name")
        return info

    async def _respond(self, job: _Job, req: dict[str, Any]) -> web.Response:
        """Encode after the lock is released, as the real API does (api.py:488, 559): the
        next queued request already runs while this answer is encoded and sent."""
        await asyncio.sleep(self.encode_delay)

        def encode() -> str:
            images = (
                [encode_png(img, txt) for img, txt in zip(job.images, job.infotexts, strict=True)]
                if req.get("send_images", True)
                else []
            )
            info = json.dumps(job.info, default=lambda o: None)
            echo = {k: v for k, v in req.items() if not k.startswith("_")}
            body = {"images": images, "parameters": echo, "info": info}
            return json.dumps(body)

        return web.Response(text=await asyncio.to_thread(encode), content_type="application/json")

    @staticmethod
    def _empty(req: dict[str, Any]) -> web.Response:
        """A 200 without pictures (SD.Next after any pipeline error; A1111 interrupted while
        loading a model)."""
        echo = {k: v for k, v in req.items() if not k.startswith("_")}
        return web.json_response({"images": [], "parameters": echo, "info": ""})

    def _task_of(self, req: dict[str, Any], kind: str) -> None:
        """api.py:433: the request's force_task_id (where the fork has one) or a new id, queued
        before the lock is taken."""
        task_id = req.get("force_task_id") or f"task({kind}-{random.randrange(16**7):07x})"
        req["_task_id"] = task_id
        self.pending_tasks[task_id] = time.time()

    def _take_unavailable(self) -> None:
        if self.faults and self.faults[0] == "unavailable":
            self.faults.pop(0)
            raise _Unavailable

    # --- routes ----------------------------------------------------------------------------

    async def _txt2img(self, request: web.Request) -> web.StreamResponse:
        req = validate(self.txt2img_fields, await self._body(request))
        self._take_unavailable()
        sampler, scheduler = self.resolve_sampler(
            req["sampler_name"] or req["sampler_index"], req.get("scheduler")
        )
        self.check_scripts(req)
        self._task_of(req, "txt2img")
        try:
            async with self._lock:
                job = await self._generate("txt2img", req, sampler, scheduler)
        except _Empty:
            return self._empty(req)
        finally:
            self.pending_tasks.pop(req["_task_id"], None)
        return await self._respond(job, req)

    async def _img2img(self, request: web.Request) -> web.StreamResponse:
        req = validate(self.img2img_fields, await self._body(request))
        self._take_unavailable()
        init = req["init_images"]
        if init is None:
            if self.flavor == "sdnext":
                raise HTTPError(400, "Init image is none")
            raise HTTPError(404, "Init image not found")
        mask = decode_image(req["mask"]) if req["mask"] else None
        sampler, scheduler = self.resolve_sampler(
            req["sampler_name"] or req["sampler_index"], req.get("scheduler")
        )
        self.check_scripts(req)
        if not init:
            raise IndexError("list index out of range")
        if self.flavor == "sdnext" and mask is not None:
            req["_dilate"] = req.get("inpaint_full_res_padding") or 0  # masking.py:413-414
        self._task_of(req, "img2img")
        try:
            async with self._lock:
                job = await self._generate("img2img", req, sampler, scheduler, init, mask)
        except _Empty:
            return self._empty(req)
        finally:
            self.pending_tasks.pop(req["_task_id"], None)
        if not req.get("include_init_images"):
            req["init_images"] = req["mask"] = None
        return await self._respond(job, req)

    async def _extra_single_image(self, request: web.Request) -> web.StreamResponse:
        req = validate(EXTRAS_FIELDS, await self._body(request))
        image = decode_image(req["image"])
        async with self._lock:
            st = self.state
            st.begin("extras")
            try:
                names = set(self.upscaler_names)
                unknown = [req[k] for k in ("upscaler_1", "upscaler_2") if req[k] not in names]
                if unknown and self.flavor != "sdnext":
                    raise AssertionError(f"could not find upscaler named {unknown[0]}")
                await self._sample(1, 0)
                if unknown and req["upscaler_1"] in unknown:
                    # SD.Next (postprocessing_upscale.py:67-73): the picture comes back as it was
                    result = image.convert("RGB")
                else:
                    result = await asyncio.to_thread(_upscale, image, req)
            finally:
                st.end()
        await asyncio.sleep(self.encode_delay)
        info = f"Postprocess upscale by: {req['upscaling_resize']:g}, "
        info += f"Postprocess upscaler: {req['upscaler_1']}"
        encoded = await asyncio.to_thread(encode_png, result, info)
        return web.json_response({"image": encoded, "html_info": f"<p>{info}</p>"})

    async def _png_info(self, request: web.Request) -> web.StreamResponse:
        req = validate(PNG_INFO_FIELDS, await self._body(request))
        image = decode_image(req["image"].strip())
        items = {k: v for k, v in image.info.items() if isinstance(v, str)}
        text = items.pop("parameters", "")
        return web.json_response({"info": text, "items": items, "parameters": parse_infotext(text)})

    async def _interrogate(self, request: web.Request) -> web.StreamResponse:
        """api.py:630-647: CLIP or DeepDanbooru under the generation lock; {caption}."""
        body = await self._body(request)
        if not isinstance(body, dict) or body.get("image") is None:
            raise ValidationFailed(
                [{"loc": ["body", "image"], "msg": "none is not an allowed value"}]
            )
        model = body.get("model", "clip")
        image = decode_image(str(body["image"]).strip())
        if model not in ("clip", "deepdanbooru"):
            raise HTTPError(404, "Model not found")
        async with self._lock:
            self.state.begin("interrogate")
            try:
                await asyncio.sleep(self.delay / 4)
                colour = _colour_word(image)
            finally:
                self.state.end()
        if model == "clip":
            caption = f"a placeholder picture with a {colour} background, digital art"
        else:
            caption = f"no_humans, simple_background, {colour}_background"
        return web.json_response({"caption": caption})

    async def _progress(self, request: web.Request) -> web.StreamResponse:
        try:
            skip = to_bool(request.query.get("skip_current_image", "false"))
        except BadValue as bad:
            loc = ["query", "skip_current_image"]
            raise ValidationFailed([{"loc": loc, "msg": bad.msg, "type": bad.kind}]) from bad
        return web.json_response(self.state.progress(skip))

    async def _internal_progress(self, request: web.Request) -> web.StreamResponse:
        """progress.py:87-98: the progress of one task id, its preview only while it runs."""
        body = await self._body(request)
        id_task = str(body.get("id_task")) if isinstance(body, dict) else ""
        active = id_task == self.current_task
        queued = id_task in self.pending_tasks
        completed = id_task in self.finished_tasks
        if not active:
            textinfo = "Waiting..."
            if queued:
                order = sorted(self.pending_tasks, key=lambda x: self.pending_tasks[x])
                textinfo = f"In queue: {order.index(id_task) + 1}/{len(order)}"
            return web.json_response(
                {
                    "active": False,
                    "queued": queued,
                    "completed": completed,
                    "progress": None,
                    "eta": None,
                    "live_preview": None,
                    "id_live_preview": -1,
                    "textinfo": textinfo,
                }
            )
        st = self.state
        progress = 0.0
        if st.job_count > 0:
            progress += st.job_no / st.job_count
        if st.sampling_steps > 0 and st.job_count > 0:
            progress += 1 / st.job_count * st.sampling_step / st.sampling_steps
        progress = min(progress, 1.0)
        elapsed = time.time() - st.time_start
        eta = elapsed / progress - elapsed if progress > 0 else None
        preview, preview_id = None, body.get("id_live_preview", -1)
        if body.get("live_preview", True) and st.current_image and st.preview_id != preview_id:
            preview = f"data:image/png;base64,{st.current_image}"
            preview_id = st.preview_id
        return web.json_response(
            {
                "active": True,
                "queued": queued,
                "completed": completed,
                "progress": progress,
                "eta": eta,
                "live_preview": preview,
                "id_live_preview": preview_id,
                "textinfo": st.textinfo,
            }
        )

    async def _pending_tasks(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"size": len(self.pending_tasks), "tasks": list(self.pending_tasks)}
        )

    async def _interrupt(self, request: web.Request) -> web.StreamResponse:
        self.state.interrupted = True
        return web.json_response({})

    async def _skip(self, request: web.Request) -> web.StreamResponse:
        self.state.skipped = True
        return web.json_response(None)

    async def _null(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(None)

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"app": "sd.next", "updated": "2025-03-02", "hash": "431bcc36", "url": "dev-webui"}
        )

    async def _cmd_flags(self, request: web.Request) -> web.StreamResponse:
        """vars(shared.cmd_opts), the few flags a client looks at."""
        flags: dict[str, Any] = {"api": self.api, "nowebui": self.nowebui, "listen": False}
        if self.flavor == "sdnext":
            flags["freeze"] = self.freeze_settings
        else:
            flags["freeze_settings"] = self.freeze_settings
            flags["freeze_settings_in_sections"] = None
            flags["freeze_specific_settings"] = None
        return web.json_response(flags)

    async def _scripts(self, request: web.Request) -> web.StreamResponse:
        # api.py get_scripts_list: the lowercased titles of selectable and always-on scripts
        installed = sorted(EXTENSION_SCRIPTS[e].lower() for e in self.extensions)
        return web.json_response(
            {
                "txt2img": ["x/y/z plot", *installed],
                "img2img": ["x/y/z plot", "sd upscale", *installed],
            }
        )

    def _adetailer_on(self, req: dict[str, Any]) -> bool:
        """ADetailer is installed and the request enables it with at least one model."""
        return "adetailer" in self.extensions and bool(_adetailer_args(req))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """api.py get_embeddings: {loaded: {name: {step, sd_checkpoint, …}}, skipped: {}}."""
        loaded = {
            name: {
                "step": None,
                "sd_checkpoint": None,
                "sd_checkpoint_name": None,
                "shape": 768,
                "vectors": 1,
            }
            for name in EMBEDDINGS
        }
        return web.json_response({"loaded": loaded, "skipped": {}})

    async def _prompt_styles(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            [{"name": n, "prompt": p, "negative_prompt": neg} for n, p, neg in self.styles]
        )

    async def _sd_models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([c.as_dict() for c in self.checkpoints])

    async def _samplers(self, request: web.Request) -> web.StreamResponse:
        table = SDNEXT_SAMPLERS if self.flavor == "sdnext" else SAMPLERS
        return web.json_response([{"name": n, "aliases": a, "options": o} for n, a, o in table])

    async def _schedulers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            [
                {
                    "name": name,
                    "label": label,
                    "aliases": None,
                    "default_rho": rho,
                    "need_inner_model": name in ("karras", "exponential", "polyexponential"),
                }
                for name, label, rho in SCHEDULERS
            ]
        )

    async def _upscalers(self, request: web.Request) -> web.StreamResponse:
        table = SDNEXT_UPSCALERS if self.flavor == "sdnext" else UPSCALERS
        return web.json_response(
            [
                {
                    "name": name,
                    "model_name": None if name == "None" else name,
                    "model_path": None,
                    "model_url": None,
                    "scale": scale,
                }
                for name, scale in table
            ]
        )

    async def _latent_upscale_modes(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([{"name": n} for n in LATENT_UPSCALE_MODES])

    async def _loras(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            [
                {"name": n, "alias": n, "path": f"/models/Lora/{n}.safetensors", "metadata": {}}
                for n in self.loras
            ]
        )

    async def _get_options(self, request: web.Request) -> web.StreamResponse:
        out: dict[str, Any] = {}
        for key, value in self.options_data.items():
            default = OPTION_DEFAULTS.get(key, FORGE_OPTION_DEFAULTS.get(key))
            nonzero_int = type(default) is int and default != 0
            out[key] = float(value) if nonzero_int and isinstance(value, int | float) else value
        return web.json_response(out)

    async def _set_options(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ValidationFailed(
                [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
            )
        if "sd_model_checkpoint" in body:
            wanted = self.find_checkpoint(body["sd_model_checkpoint"])
            if wanted is None:
                raise RuntimeError(f"model {body['sd_model_checkpoint']!r} not found")
        for key, value in body.items():
            if self.options_data.get(key) == value or key in RESTRICTED_OPTIONS:
                continue
            if key not in OPTION_DEFAULTS and key not in self.options_data:
                raise KeyError(key)
            self._frozen(key, value)
            if key == "sd_model_checkpoint":
                checkpoint = self.find_checkpoint(value)
                assert checkpoint is not None
                async with self._lock:  # a checkpoint change waits for the running job
                    self._set_model_option(checkpoint)
                    await self._load(checkpoint)
            else:
                self.options_data[key] = value
        return web.json_response(None)

    async def _memory(self, request: web.Request) -> web.StreamResponse:
        total = 16 * 1024**3
        return web.json_response(
            {
                "ram": {"free": total * 0.6, "used": total * 0.4, "total": float(total)},
                "cuda": {"error": "unavailable"},
            }
        )

    async def _refresh_checkpoints(self, request: web.Request) -> web.StreamResponse:
        async with self._lock:
            self.checkpoints.extend(self.unscanned)
            self.unscanned.clear()
            return web.json_response(None)

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})


class OutOfMemoryError(RuntimeError):
    """torch.cuda.OutOfMemoryError, as the WebUI's error body names it."""


class _Unavailable(Exception):
    """Answer as a proxy in front of a restarting WebUI does: 503."""


def _adetailer_args(req: dict[str, Any]) -> list[dict[str, Any]]:
    """The enabled ADetailer tabs of a request ([] when it is off): args are [enable,
    skip_img2img, {ad_model, ...}, ...] (is_ad_enabled/get_args), the first bool optional."""
    value = (req.get("alwayson_scripts") or {}).get("ADetailer") or {}
    args = value.get("args") or [] if isinstance(value, dict) else []
    if args and isinstance(args[0], bool) and not args[0]:
        return []
    return [a for a in args if isinstance(a, dict) and a.get("ad_model", "None") != "None"]


def _check_adetailer(value: Any) -> None:
    """ADetailerArgs validation: an unknown ad_model is a ValueError (a 500)."""
    for arg in _adetailer_args({"alwayson_scripts": {"ADetailer": value}}):
        if arg["ad_model"] not in ADETAILER_MODELS:
            raise ValueError(f"[-] ADetailer: ValidationError: ad_model {arg['ad_model']!r}")


def _colour_word(image: Image.Image) -> str:
    """The nearest plain colour name of the picture's average colour."""
    r, g, b = image.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))  # type: ignore[misc]
    names = {
        "black": (0, 0, 0),
        "white": (255, 255, 255),
        "red": (200, 40, 40),
        "green": (40, 160, 60),
        "blue": (40, 80, 200),
        "yellow": (220, 200, 40),
        "grey": (128, 128, 128),
    }
    return min(
        names, key=lambda n: sum((a - c) ** 2 for a, c in zip((r, g, b), names[n], strict=True))
    )


def _fixed_seed(seed: Any) -> int:
    """get_fixed_seed: -1, null or '' draw a random seed."""
    if seed is None or seed == "" or seed == -1:
        return random.randrange(4294967294)
    return int(seed)


def _upscale(image: Image.Image, req: dict[str, Any]) -> Image.Image:
    """Extras upscale: Upscaler.upscale rounds to multiples of 8; mode 1 crops to w x h."""
    if req["upscaler_1"] == "None":
        return image.convert("RGB")
    scale = float(req["upscaling_resize"])
    target_w, target_h = req["upscaling_resize_w"], req["upscaling_resize_h"]
    if req["resize_mode"] == 1:
        scale = max(target_w / image.width, target_h / image.height)
    size = (int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8))
    result = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    if req["resize_mode"] == 1 and req["upscaling_crop"]:
        cropped = Image.new("RGB", (target_w, target_h))
        cropped.paste(
            result, (target_w // 2 - result.width // 2, target_h // 2 - result.height // 2)
        )
        result = cropped
    return result


# --- running it ---------------------------------------------------------------------------------


async def serve(port: int, delay: float, host: str = "127.0.0.1", **options: Any) -> None:
    """Serve placeholder images on host:port until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        async with DevWebUI(host=host, port=port, delay=delay, **options) as server:
            # start() logs the address; the caller (the CLI) prints its own banner.
            log.info("dev-webui: %g s per job; SIGINT or SIGTERM stops it", server.delay)
            await stop.wait()
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def run_devwebui(
    host: str = "127.0.0.1", port: int = 7860, delay: float = 0.5, **options: Any
) -> None:
    """Blocking: serve placeholder images until SIGINT or SIGTERM."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(port, delay, host, **options))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m devwebui` and `drawbridge dev-webui`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds per job (default 0.5)")
    parser.add_argument(
        "--flavor",
        choices=FLAVORS,
        default="a1111",
        help="which WebUI to play: AUTOMATIC1111 1.10, Forge or SD.Next (default a1111)",
    )
    parser.add_argument(
        "--encode-delay",
        type=float,
        default=0.3,
        help="seconds a response is encoded after the lock is released (default 0.3)",
    )
    parser.add_argument("--switch-delay", type=float, default=0.0, help="seconds per model switch")
    parser.add_argument("--auth", metavar="USER:PASS", help="require HTTP Basic (--api-auth)")
    parser.add_argument("--no-api", action="store_true", help="act like a WebUI without --api")
    parser.add_argument("--nowebui", action="store_true", help="no /internal/* routes (--nowebui)")
    parser.add_argument(
        "--freeze-settings", action="store_true", help="refuse every setting change"
    )
    parser.add_argument("--sampler-404", action="store_true", help="unknown sampler -> 404")


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """DevWebUI keyword arguments from parsed options (host, port and delay aside)."""
    return {
        "flavor": args.flavor,
        "encode_delay": args.encode_delay,
        "switch_delay": args.switch_delay,
        "auth": tuple(args.auth.split(":", 1)) if args.auth else None,
        "api": not args.no_api,
        "nowebui": args.nowebui,
        "freeze_settings": args.freeze_settings,
        "sampler_404": True if args.sampler_404 else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """python -m devwebui [--port P] [--delay S] [--flavor a1111|forge|sdnext] …"""
    parser = argparse.ArgumentParser(
        prog="dev-webui",
        description="A stand-in Stable Diffusion WebUI (AUTOMATIC1111, Forge or SD.Next API) for "
        "development. It draws PLACEHOLDER pictures (a coloured gradient with the prompt written "
        "on it), not real images, and needs no GPU.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_devwebui(args.host, args.port, args.delay, **options_of(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

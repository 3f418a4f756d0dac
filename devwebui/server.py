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
from PIL import Image, ImageOps

from devwebui.fields import (
    ALWAYSON_SCRIPTS,
    API,
    DEFAULT_MODELS,
    EXTRAS_FIELDS,
    IMG2IMG_FIELDS,
    LATENT_UPSCALE_MODES,
    LORAS,
    OPTION_DEFAULTS,
    PNG_INFO_FIELDS,
    RESTRICTED_OPTIONS,
    SAMPLERS,
    SCHEDULERS,
    TXT2IMG_FIELDS,
    UPSCALERS,
    VERSION,
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
    textinfo: str | None = None

    def begin(self, job: str) -> None:
        """Start a job (state.begin)."""
        self.sampling_step = 0
        self.job_count = -1
        self.job_no = 0
        self.job_timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
        self.current_image = None
        self.preview_step = 0
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
        """state in /progress."""
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "stopping_generation": self.stopping_generation,
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
        progress = 0.01
        if self.job_count > 0:
            progress += self.job_no / self.job_count
            if self.sampling_steps > 0:
                progress += 1 / self.job_count * self.sampling_step / self.sampling_steps
        elapsed = time.time() - self.time_start
        return {
            "progress": min(progress, 1.0),
            "eta_relative": elapsed / progress - elapsed,
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
        sampler_404: bool = False,
        models: Sequence[str] = DEFAULT_MODELS,
        switch_delay: float = 0.0,
        preview_every: int = 10,
    ) -> None:
        self.host = host
        self.port = port
        self.delay = delay
        self.encode_delay = encode_delay
        self.auth = auth
        self.api = api
        self.sampler_404 = sampler_404
        self.switch_delay = switch_delay
        self.preview_every = preview_every
        self.checkpoints = [Checkpoint(name) for name in models]
        self.loaded = self.checkpoints[0] if self.checkpoints else None
        self.options_data: dict[str, Any] = dict(OPTION_DEFAULTS)
        if self.loaded is not None:
            self.options_data["sd_model_checkpoint"] = self.loaded.title
            self.options_data["sd_checkpoint_hash"] = self.loaded.sha256
        self.requests: list[tuple[str, Any]] = []
        # (steps done, steps asked) of each sampling pass stopped by /skip or /interrupt
        self.cut_short: list[tuple[int, int]] = []
        self.state = State()
        self._lock = asyncio.Lock()  # FIFO: waiters are woken in arrival order
        self._inflight: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """http://host:port of the running server."""
        return f"http://{self.host}:{self.port}"

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
        get(f"{API}/progress", self._progress)
        post(f"{API}/interrupt", self._interrupt)
        post(f"{API}/skip", self._skip)
        get(f"{API}/sd-models", self._sd_models)
        get(f"{API}/samplers", self._samplers)
        get(f"{API}/schedulers", self._schedulers)
        get(f"{API}/upscalers", self._upscalers)
        get(f"{API}/latent-upscale-modes", self._latent_upscale_modes)
        get(f"{API}/loras", self._loras)
        post(f"{API}/refresh-loras", self._null)
        get(f"{API}/options", self._get_options)
        post(f"{API}/options", self._set_options)
        get(f"{API}/memory", self._memory)
        post(f"{API}/refresh-checkpoints", self._refresh_checkpoints)
        get("/internal/ping", self._ping)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record, route-check, authenticate, and turn exceptions into the WebUI's bodies."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append((request.path, body))

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
                return web.json_response(exception_body(HTTPError(401, refused)), status=401)

        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await handler(request)
        except ValidationFailed as exc:
            return web.json_response({"detail": exc.items}, status=422)
        except HTTPError as exc:
            return web.json_response(exception_body(exc), status=exc.status)
        except Exception as exc:
            log.warning("dev-webui: %s on %s: %s", type(exc).__name__, path, exc)
            return web.json_response(exception_body(exc), status=500)
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

    # --- samplers, scripts, checkpoints ----------------------------------------------------

    def resolve_sampler(self, name: str | None, scheduler: str | None) -> tuple[str, str]:
        """v1.10 get_sampler_and_scheduler: unknown names fall back to 'DPM++ 2M'."""
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

    @staticmethod
    def check_scripts(req: dict[str, Any]) -> None:
        """Selectable scripts do not exist here; always-on ones only by their built-in titles."""
        if req.get("script_name"):
            raise HTTPError(422, f"Script '{req['script_name']}' not found")
        for title in req.get("alwayson_scripts") or {}:
            if title.lower() not in ALWAYSON_SCRIPTS:
                raise HTTPError(422, f"always on script {title} not found")

    def find_checkpoint(self, name: Any) -> Checkpoint | None:
        """The checkpoint any alias names, or None."""
        return next((c for c in self.checkpoints if name in c.aliases()), None)

    async def _load(self, checkpoint: Checkpoint | None) -> None:
        if checkpoint is not None and checkpoint is not self.loaded:
            await asyncio.sleep(self.switch_delay)
            self.loaded = checkpoint
            self.options_data["sd_model_checkpoint"] = checkpoint.title
            self.options_data["sd_checkpoint_hash"] = checkpoint.sha256

    async def _apply_overrides(self, req: dict[str, Any]) -> dict[str, Any]:
        """processing.py override_settings; returns the values to restore afterwards."""
        overrides = req.get("override_settings") or {}
        stored = {k: self.options_data[k] for k in overrides if k in self.options_data}
        wanted = self.find_checkpoint(overrides.get("sd_model_checkpoint"))
        if wanted is None:
            overrides.pop("sd_model_checkpoint", None)  # unknown checkpoint: silently ignored
        for key, value in overrides.items():
            if self.options_data.get(key) == value:
                continue
            if key not in OPTION_DEFAULTS:
                raise KeyError(key)
            if key in RESTRICTED_OPTIONS:
                continue
            if key == "sd_model_checkpoint":
                await self._load(wanted)
            else:
                self.options_data[key] = value
        return stored

    async def _restore(self, req: dict[str, Any], stored: dict[str, Any]) -> None:
        if req.get("override_settings_restore_afterwards") is False:
            return
        for key, value in stored.items():
            if key == "sd_model_checkpoint":
                await self._load(self.find_checkpoint(value) or self.loaded)
            else:
                self.options_data[key] = value

    def _check_upscalers(self, req: dict[str, Any]) -> None:
        if req.get("enable_hr"):
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

    async def _sample(self, steps: int, seed: int) -> None:
        """One sampling pass of `delay` seconds; stops early on interrupt or skip."""
        st = self.state
        st.sampling_steps, st.sampling_step, st.preview_step = steps, 0, 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step in range(1, steps + 1):
            if st.interrupted or st.skipped:
                self.cut_short.append((step - 1, steps))
                return
            # Sleep to a deadline, not a fixed slice, so 150 steps still take `delay` in total.
            await asyncio.sleep(max(0.0, start + self.delay * step / steps - loop.time()))
            st.sampling_step = step
            if self.preview_every > 0 and step - st.preview_step >= self.preview_every:
                st.current_image = preview_png(seed, step / steps)
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
        try:
            # img2img decodes its init images only once it holds the lock (api.py).
            images = [decode_image(x) for x in init] if init is not None else None
            stored = await self._apply_overrides(req)
            try:
                return await self._passes(kind, req, sampler, scheduler, images, mask)
            finally:
                await self._restore(req, stored)
        finally:
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
        self._check_upscalers(req)
        n_iter, batch = max(1, int_value(req, "n_iter")), max(1, int_value(req, "batch_size"))
        if init is not None and len(init) > batch:
            raise RuntimeError(
                f"bad number of images passed: {len(init)}; expecting {batch} or less"
            )
        steps = max(1, int_value(req, "steps"))
        width, height = int_value(req, "width"), int_value(req, "height")
        denoise = req.get("denoising_strength")
        hires = kind == "txt2img" and bool(req.get("enable_hr"))
        if init is not None:
            steps = int(min(denoise or 0.0, 0.999) * steps) + 1  # img2img runs t_enc + 1 steps
        seed = _fixed_seed(req.get("seed"))
        subseed = _fixed_seed(req.get("subseed"))
        total = n_iter * batch
        strength = req.get("subseed_strength") or 0
        seeds = [seed + (i if strength == 0 else 0) for i in range(total)]
        subseeds = [subseed + i for i in range(total)]

        st.job_count = n_iter * (2 if hires else 1)
        images: list[Image.Image] = []
        texts: list[str] = []
        for n in range(n_iter):
            if st.interrupted:
                break
            if n_iter > 1:
                st.job = f"Batch {n + 1} out of {n_iter}"
            st.skipped = False
            await self._sample(steps, seeds[n * batch])
            size = (round8(width), round8(height))
            if hires and not st.interrupted:
                if denoise is None:
                    raise TypeError("'>' not supported between instances of 'NoneType' and 'int'")
                st.nextjob()
                await self._sample(
                    int_value(req, "hr_second_pass_steps") or steps, seeds[n * batch]
                )
                size = hires_size(req)
            note = "interrupted" if st.interrupted else ""
            for j in range(batch):
                s = seeds[n * batch + j]
                params = self._infotext_params(req, sampler, scheduler, s, hires)
                texts.append(infotext(prompt, req.get("negative_prompt") or "", params))
                base = init[(n * batch + j) % len(init)] if init else None
                images.append(
                    await asyncio.to_thread(self._picture, size, s, prompt, note, req, base, mask)
                )
            st.nextjob()

        info = self._info(req, prompt, sampler, scheduler, seeds, subseeds, texts, hires)
        return _Job(images=images, infotexts=texts, info=info)

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
        return Image.composite(drawn, init, alpha.resize(size))

    def _infotext_params(
        self, req: dict[str, Any], sampler: str, scheduler: str, seed: int, hires: bool
    ) -> dict[str, Any]:
        img2img = "init_images" in req
        ckpt = self.loaded
        clip_skip = int(self.options_data.get("CLIP_stop_at_last_layers") or 1)
        params: dict[str, Any] = {
            "Steps": int_value(req, "steps"),
            "Sampler": sampler,
            "Schedule type": scheduler,
            "CFG scale": req.get("cfg_scale") if req.get("cfg_scale") is not None else 7.0,
            "Seed": seed,
            "Size": f"{int_value(req, 'width')}x{int_value(req, 'height')}",
            "Model hash": ckpt.shorthash if ckpt else None,
            "Model": ckpt.model_name if ckpt else None,
            "Denoising strength": req.get("denoising_strength") if hires or img2img else None,
            "Clip skip": clip_skip if clip_skip > 1 else None,
        }
        if hires:
            params["Hires upscale"] = None if req.get("hr_resize_x") else req.get("hr_scale")
            params["Hires steps"] = req.get("hr_second_pass_steps") or None
            params["Hires upscaler"] = req.get("hr_upscaler") or "Latent"
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
        """Processed.js(): the info JSON."""
        ckpt = self.loaded
        negative = req.get("negative_prompt") or ""
        extra: dict[str, Any] = {"Schedule type": scheduler}
        if hires:
            extra["Hires upscale"] = req.get("hr_scale")
            extra["Hires upscaler"] = req.get("hr_upscaler") or "Latent"
        return {
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
            "sd_model_name": ckpt.model_name if ckpt else None,
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
            "clip_skip": int(self.options_data.get("CLIP_stop_at_last_layers") or 1),
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }

    async def _respond(self, job: _Job, req: dict[str, Any]) -> web.Response:
        """Encode after the lock is released, as the real API does."""
        await asyncio.sleep(self.encode_delay)

        def encode() -> str:
            images = (
                [encode_png(img, txt) for img, txt in zip(job.images, job.infotexts, strict=True)]
                if req.get("send_images", True)
                else []
            )
            info = json.dumps(job.info, default=lambda o: None)
            body = {"images": images, "parameters": req, "info": info}
            return json.dumps(body)

        return web.Response(text=await asyncio.to_thread(encode), content_type="application/json")

    # --- routes ----------------------------------------------------------------------------

    async def _txt2img(self, request: web.Request) -> web.StreamResponse:
        req = validate(TXT2IMG_FIELDS, await self._body(request))
        sampler, scheduler = self.resolve_sampler(
            req["sampler_name"] or req["sampler_index"], req["scheduler"]
        )
        self.check_scripts(req)
        async with self._lock:
            job = await self._generate("txt2img", req, sampler, scheduler)
        return await self._respond(job, req)

    async def _img2img(self, request: web.Request) -> web.StreamResponse:
        req = validate(IMG2IMG_FIELDS, await self._body(request))
        init = req["init_images"]
        if init is None:
            raise HTTPError(404, "Init image not found")
        mask = decode_image(req["mask"]) if req["mask"] else None
        sampler, scheduler = self.resolve_sampler(
            req["sampler_name"] or req["sampler_index"], req["scheduler"]
        )
        self.check_scripts(req)
        if not init:
            raise IndexError("list index out of range")
        async with self._lock:
            job = await self._generate("img2img", req, sampler, scheduler, init, mask)
        if not req["include_init_images"]:
            req["init_images"] = req["mask"] = None
        return await self._respond(job, req)

    async def _extra_single_image(self, request: web.Request) -> web.StreamResponse:
        req = validate(EXTRAS_FIELDS, await self._body(request))
        image = decode_image(req["image"])
        async with self._lock:
            st = self.state
            st.begin("extras")
            try:
                names = {u[0] for u in UPSCALERS}
                for key in ("upscaler_1", "upscaler_2"):
                    if req[key] not in names:
                        raise AssertionError(f"could not find upscaler named {req[key]}")
                await self._sample(1, 0)
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

    async def _progress(self, request: web.Request) -> web.StreamResponse:
        try:
            skip = to_bool(request.query.get("skip_current_image", "false"))
        except BadValue as bad:
            loc = ["query", "skip_current_image"]
            raise ValidationFailed([{"loc": loc, "msg": bad.msg, "type": bad.kind}]) from bad
        return web.json_response(self.state.progress(skip))

    async def _interrupt(self, request: web.Request) -> web.StreamResponse:
        self.state.interrupted = True
        return web.json_response({})

    async def _skip(self, request: web.Request) -> web.StreamResponse:
        self.state.skipped = True
        return web.json_response(None)

    async def _null(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(None)

    async def _sd_models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([c.as_dict() for c in self.checkpoints])

    async def _samplers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([{"name": n, "aliases": a, "options": o} for n, a, o in SAMPLERS])

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
        return web.json_response(
            [
                {
                    "name": name,
                    "model_name": None if name == "None" else name,
                    "model_path": None,
                    "model_url": None,
                    "scale": scale,
                }
                for name, scale in UPSCALERS
            ]
        )

    async def _latent_upscale_modes(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([{"name": n} for n in LATENT_UPSCALE_MODES])

    async def _loras(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            [
                {"name": n, "alias": n, "path": f"/models/Lora/{n}.safetensors", "metadata": {}}
                for n in LORAS
            ]
        )

    async def _get_options(self, request: web.Request) -> web.StreamResponse:
        out: dict[str, Any] = {}
        for key, value in self.options_data.items():
            default = OPTION_DEFAULTS[key]
            nonzero_int = type(default) is int and default != 0
            out[key] = float(value) if nonzero_int and isinstance(value, int | float) else value
        out["sd_model_checkpoint"] = self.loaded.title if self.loaded else None
        out["sd_checkpoint_hash"] = self.loaded.sha256 if self.loaded else ""
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
            if key not in OPTION_DEFAULTS:
                raise KeyError(key)
            if key == "sd_model_checkpoint":
                async with self._lock:  # a checkpoint change waits for the running job
                    await self._load(self.find_checkpoint(value))
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
            return web.json_response(None)

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})


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


def main(argv: Sequence[str] | None = None) -> int:
    """python -m devwebui [--port P] [--delay S] …"""
    parser = argparse.ArgumentParser(
        prog="dev-webui",
        description="A stand-in Stable Diffusion WebUI (AUTOMATIC1111 API) for development. "
        "It draws PLACEHOLDER pictures (a coloured gradient with the prompt written on it), "
        "not real images, and needs no GPU.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds per job (default 0.5)")
    parser.add_argument("--encode-delay", type=float, default=0.0, help="seconds after a job")
    parser.add_argument("--switch-delay", type=float, default=0.0, help="seconds per model switch")
    parser.add_argument("--auth", metavar="USER:PASS", help="require HTTP Basic (--api-auth)")
    parser.add_argument("--no-api", action="store_true", help="act like a WebUI without --api")
    parser.add_argument("--sampler-404", action="store_true", help="unknown sampler -> 404")
    args = parser.parse_args(argv)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_devwebui(
        args.host,
        args.port,
        args.delay,
        encode_delay=args.encode_delay,
        switch_delay=args.switch_delay,
        auth=auth,
        api=not args.no_api,
        sampler_404=args.sampler_404,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""dev-webui: a stand-in SD-WebUI API server that draws PLACEHOLDER pictures, not real images.

It speaks the AUTOMATIC1111 v1.10 HTTP API (the routes drawbridge uses) closely enough to
develop and test the bot without a GPU: same request validation and error bodies, one FIFO
generation lock, /progress with live previews, interrupt/skip, auth. Every "generated" image
is a gradient coloured by its seed with the prompt written on it, at exactly the size the real
WebUI would return.

Timing rule: each sampling pass takes `delay` seconds inside the lock (a request runs n_iter
passes, twice as many with hires fix), so a default request holds the lock for `delay`
seconds; `steps` only sets how finely /progress advances. After the lock is released the
response spends `encode_delay` seconds "encoding", like the real WebUI's PNG encoding.
A checkpoint change (override_settings, POST /options) costs `switch_delay` extra.

`DevWebUI.requests` records every request as (path, JSON body or None), /progress polls
included, so tests can assert on exact payloads.

Not followed: http(s) URLs as input images are never fetched (500, as if requests were
disabled); styles, scripts, VAEs and face restoration are accepted but do nothing; resize_mode
and mask blur do not change the picture. With api=False the Lora extension's /sdapi/v1/loras
still answers, as it does on a real WebUI started without --api.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import colorsys
import contextlib
import copy
import hashlib
import io
import json
import logging
import random
import re
import signal
import textwrap
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from PIL import Image, ImageDraw, ImageFont, ImageOps
from PIL.PngImagePlugin import PngInfo

log = logging.getLogger(__name__)

VERSION = "v1.10.1"
API = "/sdapi/v1"
DEFAULT_MODELS = ("v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors")

# --- request models (contract: 55 txt2img and 57 img2img fields) ----------------------------
# (name, json_type, default, nullable); tests/test_devwebui.py checks these against the
# contract copy in tests/data/webui_fields.json.
Field = tuple[str, str, Any, bool]

_HEAD: list[Field] = [
    ("prompt", "string", "", True),
    ("negative_prompt", "string", "", True),
    ("styles", "array<string>", None, True),
    ("seed", "integer", -1, True),
    ("subseed", "integer", -1, True),
    ("subseed_strength", "number", 0, True),
    ("seed_resize_from_h", "integer", -1, True),
    ("seed_resize_from_w", "integer", -1, True),
    ("sampler_name", "string", None, True),
    ("scheduler", "string", None, True),
    ("batch_size", "integer", 1, True),
    ("n_iter", "integer", 1, True),
    ("steps", "integer", 50, True),
    ("cfg_scale", "number", 7.0, True),
    ("width", "integer", 512, True),
    ("height", "integer", 512, True),
    ("restore_faces", "boolean", None, True),
    ("tiling", "boolean", None, True),
    ("do_not_save_samples", "boolean", False, True),
    ("do_not_save_grid", "boolean", False, True),
    ("eta", "number", None, True),
]
_SAMPLING: list[Field] = [
    ("s_min_uncond", "number", None, True),
    ("s_churn", "number", None, True),
    ("s_tmax", "number", None, True),
    ("s_tmin", "number", None, True),
    ("s_noise", "number", None, True),
    ("override_settings", "object", None, True),
    ("override_settings_restore_afterwards", "boolean", True, True),
    ("refiner_checkpoint", "string", None, True),
    ("refiner_switch_at", "number", None, True),
    ("disable_extra_networks", "boolean", False, True),
    ("firstpass_image", "string", None, True),
    ("comments", "object", None, True),
]
_HIRES: list[Field] = [
    ("enable_hr", "boolean", False, True),
    ("firstphase_width", "integer", 0, True),
    ("firstphase_height", "integer", 0, True),
    ("hr_scale", "number", 2.0, True),
    ("hr_upscaler", "string", None, True),
    ("hr_second_pass_steps", "integer", 0, True),
    ("hr_resize_x", "integer", 0, True),
    ("hr_resize_y", "integer", 0, True),
    ("hr_checkpoint_name", "string", None, True),
    ("hr_sampler_name", "string", None, True),
    ("hr_scheduler", "string", None, True),
    ("hr_prompt", "string", "", True),
    ("hr_negative_prompt", "string", "", True),
]
_INIT: list[Field] = [
    ("init_images", "array", None, True),
    ("resize_mode", "integer", 0, True),
    ("image_cfg_scale", "number", None, True),
    ("mask", "string", None, True),
    ("mask_blur_x", "integer", 4, True),
    ("mask_blur_y", "integer", 4, True),
    ("mask_blur", "integer", None, True),
    ("mask_round", "boolean", True, True),
    ("inpainting_fill", "integer", 0, True),
    ("inpaint_full_res", "boolean", True, True),
    ("inpaint_full_res_padding", "integer", 0, True),
    ("inpainting_mask_invert", "integer", 0, True),
    ("initial_noise_multiplier", "number", None, True),
    ("latent_mask", "string", None, True),
]
_SCRIPTS: list[Field] = [
    ("script_name", "string", None, True),
    ("script_args", "array", [], False),
    ("send_images", "boolean", True, False),
    ("save_images", "boolean", False, False),
    ("alwayson_scripts", "object", {}, False),
    ("infotext", "string", None, True),
]
_TASK: list[Field] = [
    ("force_task_id", "string", None, True),
    ("sampler_index", "string", "Euler", False),
]
TXT2IMG_FIELDS: list[Field] = [
    *_HEAD,
    ("denoising_strength", "number", None, True),  # base-class default wins: null
    *_SAMPLING,
    *_HIRES,
    *_TASK,
    *_SCRIPTS,
]
IMG2IMG_FIELDS: list[Field] = [
    *_HEAD,
    ("denoising_strength", "number", 0.75, False),
    *_SAMPLING,
    *_INIT,
    *_TASK,
    ("include_init_images", "boolean", False, False),
    *_SCRIPTS,
]
EXTRAS_FIELDS: list[Field] = [
    ("image", "string", "", False),
    ("resize_mode", "integer (0|1)", 0, False),
    ("show_extras_results", "boolean", True, False),
    ("gfpgan_visibility", "number 0..1", 0, False),
    ("codeformer_visibility", "number 0..1", 0, False),
    ("codeformer_weight", "number 0..1", 0, False),
    ("upscaling_resize", "number >0", 2, False),
    ("upscaling_resize_w", "integer >=1", 512, False),
    ("upscaling_resize_h", "integer >=1", 512, False),
    ("upscaling_crop", "boolean", True, False),
    ("upscaler_1", "string", "None", False),
    ("upscaler_2", "string", "None", False),
    ("extras_upscaler_2_visibility", "number 0..1", 0, False),
    ("upscale_first", "boolean", False, False),
]
PNG_INFO_FIELDS: list[Field] = [("image", "string", ..., False)]  # ... = required

# --- listings (v1.10) ------------------------------------------------------------------------
SAMPLERS: list[tuple[str, list[str], dict[str, str]]] = [
    ("DPM++ 2M", ["k_dpmpp_2m"], {"scheduler": "karras"}),
    ("DPM++ SDE", ["k_dpmpp_sde"], {"scheduler": "karras", "second_order": "True"}),
    ("DPM++ 2M SDE", ["k_dpmpp_2m_sde"], {"scheduler": "exponential", "brownian_noise": "True"}),
    ("DPM++ 2M SDE Heun", ["k_dpmpp_2m_sde_heun"], {"scheduler": "exponential"}),
    ("DPM++ 2S a", ["k_dpmpp_2s_a"], {"scheduler": "karras", "uses_ensd": "True"}),
    (
        "DPM++ 3M SDE",
        ["k_dpmpp_3m_sde"],
        {"scheduler": "exponential", "discard_next_to_last_sigma": "True"},
    ),
    ("Euler a", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": "True"}),
    ("Euler", ["k_euler"], {}),
    ("LMS", ["k_lms"], {}),
    ("Heun", ["k_heun"], {"second_order": "True"}),
    ("DPM2", ["k_dpm_2"], {"discard_next_to_last_sigma": "True", "second_order": "True"}),
    ("DPM2 a", ["k_dpm_2_a"], {"discard_next_to_last_sigma": "True", "uses_ensd": "True"}),
    ("DPM fast", ["k_dpm_fast"], {"uses_ensd": "True"}),
    ("DPM adaptive", ["k_dpm_ad"], {"uses_ensd": "True"}),
    ("Restart", ["restart"], {"scheduler": "karras", "second_order": "True"}),
    ("DDIM", ["ddim"], {}),
    ("DDIM CFG++", ["ddim_cfgpp"], {}),
    ("PLMS", ["plms"], {}),
    ("UniPC", ["unipc"], {}),
    ("LCM", ["k_lcm"], {}),
]
SCHEDULERS: list[tuple[str, str, float]] = [  # name, label, default_rho (-1 = unset)
    ("automatic", "Automatic", -1),
    ("uniform", "Uniform", -1),
    ("karras", "Karras", 7.0),
    ("exponential", "Exponential", -1),
    ("polyexponential", "Polyexponential", 1.0),
    ("sgm_uniform", "SGM Uniform", -1),
    ("kl_optimal", "KL Optimal", -1),
    ("align_your_steps", "Align Your Steps", -1),
    ("simple", "Simple", -1),
    ("normal", "Normal", -1),
    ("ddim", "DDIM", -1),
    ("beta", "Beta", -1),
]
UPSCALERS: list[tuple[str, float | None]] = [
    ("None", None),
    ("Lanczos", 4),
    ("Nearest", 4),
    ("DAT x2", 2),
    ("DAT x3", 3),
    ("DAT x4", 4),
    ("ESRGAN_4x", 4),
    ("LDSR", 4),
    ("R-ESRGAN 4x+", 4),
    ("R-ESRGAN 4x+ Anime6B", 4),
    ("ScuNET GAN", 4),
    ("ScuNET PSNR", 4),
    ("SwinIR 4x", 4),
]
LATENT_UPSCALE_MODES = [
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
]
LORAS = ["add_detail", "film_grain"]
ALWAYSON_SCRIPTS = {"refiner", "seed", "extra options", "hypertile", "soft inpainting"}

# GET /options: defaults of the keys a client may look at. Ints with a non-zero default are
# served as floats, like the real response model does (CLIP_stop_at_last_layers -> 1.0).
OPTION_DEFAULTS: dict[str, Any] = {
    "sd_model_checkpoint": None,
    "sd_checkpoint_hash": "",
    "sd_vae": "Automatic",
    "CLIP_stop_at_last_layers": 1,
    "eta_noise_seed_delta": 0,
    "samples_format": "png",
    "samples_save": True,
    "grid_save": True,
    "return_grid": True,
    "grid_only_if_multiple": True,
    "enable_pnginfo": True,
    "live_previews_enable": True,
    "show_progress_every_n_steps": 10,
    "live_previews_image_format": "png",
    "jpeg_quality": 80,
    "overlay_inpaint": True,
    "return_mask": False,
    "return_mask_composite": False,
    "initial_noise_multiplier": 1.0,
    "img2img_fix_steps": False,
    "upscaler_for_img2img": None,
    "face_restoration": False,
    "face_restoration_model": "CodeFormer",
    "sd_checkpoints_limit": 1,
    "eta_ancestral": 1.0,
    "api_enable_requests": True,
    "api_forbid_local_requests": True,
    "api_useragent": "",
}
RESTRICTED_OPTIONS = {"api_enable_requests", "api_forbid_local_requests", "api_useragent"}


# --- errors in the WebUI's shapes --------------------------------------------------------------


class HTTPError(Exception):
    """A FastAPI HTTPException: A1111 answers {error: "HTTPException", detail, body, errors}."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ValidationFailed(Exception):
    """Request validation failed: FastAPI's 422 {"detail": [{loc, msg, type}]}."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__(items)
        self.items = items


def _exception_body(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, HTTPError):
        return {"error": "HTTPException", "detail": exc.detail, "body": "", "errors": ""}
    return {"error": type(exc).__name__, "detail": "", "body": "", "errors": str(exc)}


# --- pydantic-v1-style validation --------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, msg: str, kind: str, ctx: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.msg, self.kind, self.ctx = msg, kind, ctx


_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _to_int(v: Any) -> int:
    if isinstance(v, bool | int):
        return int(v)
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return int(v)  # pydantic v1 truncates: 20.7 -> 20
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            return int(v)
    raise _Bad("value is not a valid integer", "type_error.integer")


def _to_float(v: Any) -> float:
    if isinstance(v, bool | int | float):
        return float(v)
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            return float(v)
    raise _Bad("value is not a valid float", "type_error.float")


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return str(v)
    raise _Bad("str type expected", "type_error.str")


def _to_bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    key = v.lower().strip() if isinstance(v, str) else v
    if isinstance(key, int | float | str):
        if key in _TRUE or (not isinstance(key, str) and key == 1):
            return True
        if key in _FALSE or (not isinstance(key, str) and key == 0):
            return False
    raise _Bad("value could not be parsed to a boolean", "type_error.bool")


def _constrain(value: float, spec: str) -> None:
    """Apply the range part of an extras json_type: '0..1', '>0', '>=1'."""
    if ".." in spec:
        low, high = (float(x) for x in spec.split(".."))
        if value < low:
            raise _Bad(
                f"ensure this value is greater than or equal to {low:g}",
                "value_error.number.not_ge",
            )
        if value > high:
            raise _Bad(
                f"ensure this value is less than or equal to {high:g}", "value_error.number.not_le"
            )
    elif spec.startswith(">="):
        if value < float(spec[2:]):
            raise _Bad(
                f"ensure this value is greater than or equal to {spec[2:]}",
                "value_error.number.not_ge",
            )
    elif spec.startswith(">") and value <= float(spec[1:]):
        raise _Bad(f"ensure this value is greater than {spec[1:]}", "value_error.number.not_gt")


def _coerce(value: Any, json_type: str, loc: list[Any], errors: list[dict[str, Any]]) -> Any:
    """One field, pydantic v1 lax rules; appends FastAPI error items instead of raising."""
    base, _, spec = json_type.partition(" ")
    try:
        if spec.startswith("("):  # Literal[0, 1]: no coercion, exact values only
            permitted = [int(x) for x in spec.strip("()").split("|")]
            if type(value) is not int or value not in permitted:
                given = json.dumps(value)
                raise _Bad(
                    "unexpected value; permitted: " + ", ".join(map(str, permitted)),
                    "value_error.const",
                    {"given": given, "permitted": permitted},
                )
            return value
        if base == "integer":
            result: Any = _to_int(value)
        elif base == "number":
            result = _to_float(value)
        elif base == "string":
            result = _to_str(value)
        elif base == "boolean":
            result = _to_bool(value)
        elif base == "object":
            if not isinstance(value, dict):
                raise _Bad("value is not a valid dict", "type_error.dict")
            result = value
        elif base.startswith("array"):
            if not isinstance(value, list):
                raise _Bad("value is not a valid list", "type_error.list")
            result = value
            if base == "array<string>":
                result = [_coerce(x, "string", [*loc, i], errors) for i, x in enumerate(value)]
        else:  # pragma: no cover - table typo
            raise AssertionError(json_type)
        if spec:
            _constrain(float(result), spec)
        return result
    except _Bad as bad:
        item: dict[str, Any] = {"loc": loc, "msg": bad.msg, "type": bad.kind}
        if bad.ctx:
            item["ctx"] = bad.ctx
        errors.append(item)
        return None


def validate(fields: list[Field], body: Any) -> dict[str, Any]:
    """Validate a JSON body like FastAPI + pydantic v1: unknown keys dropped, defaults filled."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
        )
    out: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, json_type, default, nullable in fields:
        if name not in body:
            if default is ...:
                errors.append(
                    {"loc": ["body", name], "msg": "field required", "type": "value_error.missing"}
                )
            out[name] = copy.deepcopy(default)
        elif body[name] is None:
            if not nullable:
                errors.append(
                    {
                        "loc": ["body", name],
                        "msg": "none is not an allowed value",
                        "type": "type_error.none.not_allowed",
                    }
                )
            out[name] = None
        else:
            out[name] = _coerce(body[name], json_type, ["body", name], errors)
    if errors:
        raise ValidationFailed(errors)
    return out


# --- images ------------------------------------------------------------------------------------


def decode_image(text: str | None) -> Image.Image:
    """The WebUI's decode_base64_to_image: base64 or data URL; URLs are not fetched here."""
    text = text or ""
    if text.startswith(("http://", "https://")):
        host = text.split("/")[2].split(":")[0]
        if host in ("localhost", "127.0.0.1", "::1") or host.startswith(("10.", "192.168.")):
            raise HTTPError(500, "Request to local resource not allowed")
        raise HTTPError(500, "Requests not allowed")
    if text.startswith("data:image/"):
        text = text.split(";")[1].split(",")[1]  # IndexError -> 500, as the real one
    try:
        img = Image.open(io.BytesIO(base64.b64decode(text)))
        img.load()
    except (binascii.Error, ValueError, OSError) as exc:
        raise HTTPError(500, "Invalid encoded image") from exc
    return img


def encode_png(img: Image.Image, infotext: str | None = None) -> str:
    """Plain base64 PNG (no data: prefix) with the infotext in a tEXt 'parameters' chunk."""
    meta = PngInfo()
    if infotext:
        meta.add_text("parameters", infotext)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=meta, compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


RGB = tuple[int, int, int]


def _rgb(hue: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return int(r * 255), int(g * 255), int(b * 255)


def seed_colours(seed: int) -> tuple[RGB, RGB]:
    """Top and bottom gradient colours for a seed (golden-ratio hues stay far apart)."""
    hue = (seed * 0.6180339887) % 1.0
    return _rgb(hue, 0.55, 0.92), _rgb(hue + 0.08, 0.75, 0.42)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def draw_placeholder(size: tuple[int, int], seed: int, prompt: str, note: str = "") -> Image.Image:
    """A seed-coloured gradient with 'PLACEHOLDER', the prompt and the seed written on it."""
    width, height = size
    top, bottom = seed_colours(seed)
    grad = Image.linear_gradient("L").resize(size)
    img = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), grad)
    if min(size) < 64:
        return img
    font_size = max(10, min(width, height) // 22)
    font = _font(font_size)
    chars = max(8, int(width / (font_size * 0.55)))
    lines = ["PLACEHOLDER (dev-webui)"]
    lines += textwrap.wrap(prompt, chars)[:6] if prompt else []
    lines.append(f"seed {seed}  {width}x{height}" + (f"  {note}" if note else ""))
    draw = ImageDraw.Draw(img)
    y = font_size
    for line in lines:
        draw.text(
            (font_size, y), line, fill="white", font=font,
            stroke_width=max(1, font_size // 12), stroke_fill="black",
        )  # fmt: skip
        y += int(font_size * 1.35)
    return img


def preview_png(seed: int, fraction: float) -> str:
    """A small live preview that brightens as sampling advances."""
    hue = (seed * 0.6180339887) % 1.0
    return encode_png(Image.new("RGB", (64, 64), _rgb(hue, 0.55, 0.3 + 0.6 * fraction)))


def round8(n: int) -> int:
    """Latents are 1/8 of the pixels, so decoded images are a multiple of 8 (rounded down)."""
    return max(8, n // 8 * 8)


def hires_size(req: dict[str, Any]) -> tuple[int, int]:
    """Output size of a hires-fix job (processing.py calc of hr_upscale_to_x/y)."""
    width, height = _int(req, "width"), _int(req, "height")
    rx, ry = req.get("hr_resize_x") or 0, req.get("hr_resize_y") or 0
    if rx == 0 and ry == 0:
        scale = req["hr_scale"] if req.get("hr_scale") is not None else 2.0
        return round8(int(width * scale)), round8(int(height * scale))
    if ry == 0:
        return round8(rx), round8(rx * height // width)
    if rx == 0:
        return round8(ry * width // height), round8(ry)
    return round8(rx), round8(ry)


_NUMERIC_DEFAULTS = {f[0]: f[2] for f in TXT2IMG_FIELDS if f[1] == "integer"}


def _int(req: dict[str, Any], key: str) -> int:
    """An integer request field, its model default when null (the real WebUI would crash)."""
    value = req.get(key)
    return int(_NUMERIC_DEFAULTS[key] if value is None else value)


# --- infotext ------------------------------------------------------------------------------------

_PARAM_RE = re.compile(r'\s*([\w ./-]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def infotext(prompt: str, negative: str, params: dict[str, Any]) -> str:
    """'<prompt>\\nNegative prompt: <neg>\\nSteps: 20, Sampler: …' with null values left out."""
    tail = ", ".join(f"{k}: {v}" for k, v in params.items() if v is not None)
    neg = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{neg}\n{tail}"


def parse_infotext(text: str) -> dict[str, Any]:
    """A small parse_generation_parameters: Prompt, Negative prompt, key: value pairs."""
    *lines, last = text.strip().split("\n") if text.strip() else [""]
    if len(_PARAM_RE.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    out: dict[str, Any] = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PARAM_RE.findall(last):
        key, value = key.strip(), value.strip()
        if key == "Size" and "x" in value:
            out["Size-1"], out["Size-2"] = value.split("x", 1)
        else:
            out[key] = value
    out.setdefault("Clip skip", "1")
    out.setdefault("Schedule type", "Automatic")
    return out


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
                return web.json_response(_exception_body(HTTPError(401, refused)), status=401)

        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await handler(request)
        except ValidationFailed as exc:
            return web.json_response({"detail": exc.items}, status=422)
        except HTTPError as exc:
            return web.json_response(_exception_body(exc), status=exc.status)
        except Exception as exc:
            log.warning("dev-webui: %s on %s: %s", type(exc).__name__, path, exc)
            return web.json_response(_exception_body(exc), status=500)
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
        n_iter, batch = max(1, _int(req, "n_iter")), max(1, _int(req, "batch_size"))
        if init is not None and len(init) > batch:
            raise RuntimeError(
                f"bad number of images passed: {len(init)}; expecting {batch} or less"
            )
        steps = max(1, _int(req, "steps"))
        width, height = _int(req, "width"), _int(req, "height")
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
                await self._sample(_int(req, "hr_second_pass_steps") or steps, seeds[n * batch])
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
            "Steps": _int(req, "steps"),
            "Sampler": sampler,
            "Schedule type": scheduler,
            "CFG scale": req.get("cfg_scale") if req.get("cfg_scale") is not None else 7.0,
            "Seed": seed,
            "Size": f"{_int(req, 'width')}x{_int(req, 'height')}",
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
            "width": _int(req, "width"),
            "height": _int(req, "height"),
            "sampler_name": sampler,
            "cfg_scale": req.get("cfg_scale") if req.get("cfg_scale") is not None else 7.0,
            "steps": _int(req, "steps"),
            "batch_size": _int(req, "batch_size"),
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
            skip = _to_bool(request.query.get("skip_current_image", "false"))
        except _Bad as bad:
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
    """python -m bot.devwebui [--port P] [--delay S] …"""
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

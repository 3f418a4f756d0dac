"""From a user's request to concrete values, their cost in credits, and the WebUI payload of
each flavour (every fork-specific field is justified in forks.md, beside the source line)."""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from bot.errors import OptionError
from bot.options import FILL_CHOICES, LORA_TAG, MAX_SEED, NONE_WORD, Limits, resolve_size
from bot.presets import PresetBook
from bot.types import GenerationRequest, Mode
from bot.webui.flavour import Flavour

UNIT = 512 * 512 * 20  # one credit: one 512×512 image at 20 steps

# img2img resize_mode: A1111/Forge 0 just resize, 1 crop and resize, 2 resize and fill, 3 just
# resize (latent upscale); SD.Next numbers None, Fixed, Crop, Fill, Outpaint, Context aware
# (shared.py:63) and does not resize at all at 0.
SDNEXT_RESIZE_MODE = {0: 1, 1: 2, 2: 3, 3: 1}
# SD.Next's hires upscales only when hr_resize_mode > 0 (processing_diffusers.py:176); 1 is
# "Fixed": to width × hr_scale, height × hr_scale, as A1111 does.
SDNEXT_HIRES_FIXED = 1
# Forge evaluates `'Use same choices' not in hr_additional_modules` on None (processing.py:1405)
FORGE_SAME_MODULES = ["Use same choices"]
# ADetailer (Bing-su/adetailer, scripts/!adetailer.py get_args/is_ad_enabled): args are
# [enable, skip_img2img, {ad_model, ...}, ...]; its face model and denoise are its defaults
ADETAILER = "ADetailer"
ADETAILER_MODEL = "face_yolov8n.pt"
ADETAILER_DENOISE = 0.4
ADETAILER_SIZE = 512  # ad_inpaint_width/height: only the masked face is redrawn, at 512×512
CONTROLNET = "controlnet"  # sd-webui-controlnet's always-on script title


@dataclass(slots=True)
class Resolved:
    """Every value a job runs with; small, because thousands may sit in the queue."""

    mode: Mode
    prompt: str
    negative: str
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str | None
    model: str | None
    vae: str | None
    seed: int
    count: int
    hires: bool
    hr_scale: float
    hr_steps: int
    hr_denoise: float
    hr_upscaler: str
    clip_skip: int
    ensd: int
    strength: float
    mask_blur: int
    fill: int
    full_res: bool
    padding: int
    invert: int
    resize_mode: int
    init_image: str | None
    mask: str | None
    preset: str
    # added by issue 15; defaults so that jobs stored before read back
    face: bool = False
    styles: tuple[str, ...] = ()  # a tuple: the empty one is shared by every job
    control: str | None = None  # the ControlNet preprocessor as the user named it
    control_weight: float = 1.0
    control_start: float = 0.0
    control_end: float = 1.0
    control_image: str | None = None

    @property
    def final_size(self) -> tuple[int, int]:
        """Size of the images the WebUI returns (after the hires pass or upscale)."""
        if (self.hires and self.mode is Mode.TXT2IMG) or self.mode is Mode.UPSCALE:
            return int(self.width * self.hr_scale), int(self.height * self.hr_scale)
        return self.width, self.height

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored with the job row."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resolved:
        """Inverse of to_dict; texts that jobs repeat (negative prompt, sampler, preset…) are
        shared between the jobs read back, not one copy per job."""
        data = {
            k: shared(v) if isinstance(v, str | float) and k != "prompt" else v
            for k, v in data.items()
        }
        data["mode"] = Mode(data["mode"])
        if "styles" in data:
            data["styles"] = tuple(shared(x) for x in data["styles"] or ())
        return cls(**data)


_SHARED: dict[Any, Any] = {}
_SHARED_FLOATS: dict[float, float] = {}
_SHARED_MAX = 4096  # distinct values kept for sharing; past that it starts afresh

T = TypeVar("T")


# the stored form's keys, once (fields() builds them anew on every call)
_FIELDS = tuple(f.name for f in fields(Resolved))


def shared(value: T) -> T:
    """One copy of a repeated immutable value (a text, a backends.Needs): a takeover of 100 000
    jobs read 100 000 copies of the same negative prompt from their rows (~0.5 KiB a job)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        # cfg 7.0, denoise 0.58…: 24 bytes each, a few per job. Floats apart from ints
        # (7.0 == 7) and without zero (0.0 == -0.0).
        if not value:
            return value
        found = _SHARED_FLOATS.get(value)
        if found is None:
            if len(_SHARED_FLOATS) >= _SHARED_MAX:
                _SHARED_FLOATS.clear()
            found = _SHARED_FLOATS[value] = value
        return found  # type: ignore[return-value]
    found = _SHARED.get(value)
    if found is not None:
        return found
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    _SHARED[value] = value
    return value


def resolve(
    request: GenerationRequest,
    presets: PresetBook,
    limits: Limits,
    *,
    user_defaults: dict[str, Any] | None = None,
    init_size: tuple[int, int] | None = None,
) -> Resolved:
    """Fill every value: explicit flag, else the user's /settings, else the preset."""
    user = {k: v for k, v in (user_defaults or {}).items() if v is not None}
    preset_name = request.preset or user.get("preset")
    try:
        preset = presets.get(preset_name)
    except KeyError:
        raise OptionError(
            "option.unknown_preset", value=preset_name, choices=", ".join(presets.names) or "-"
        ) from None
    if init_size is not None:
        base = init_size
    elif "width" in user and "height" in user:
        base = (user["width"], user["height"])
    else:
        base = (preset.width, preset.height)
    width, height = resolve_size(request, base, limits)
    steps = request.steps or user.get("steps") or preset.steps
    if steps > limits.max_steps:
        raise OptionError(
            "option.out_of_range", flag="--steps", low=1, high=limits.max_steps, value=steps
        )
    count = request.count or preset.count
    if count > limits.max_images:
        raise OptionError(
            "option.out_of_range", flag="--n", low=1, high=limits.max_images, value=count
        )
    seed = request.seed if request.seed is not None and request.seed >= 0 else None
    negative = request.negative if request.negative is not None else user.get("negative")
    fill = FILL_CHOICES.index(request.fill) if request.fill else preset.inpainting_fill
    prompt = request.prompt
    loras, styles = _own_or_favourite(request, user)
    if len(loras) > limits.max_loras:  # favourites saved before the operator lowered it
        raise OptionError(
            "option.out_of_range", flag="--lora", low=0, high=limits.max_loras, value=len(loras)
        )
    for name, weight in loras:  # the WebUI's own syntax, so the infotext shows them
        prompt += f" <lora:{name}:{weight:g}>"
    return Resolved(
        mode=request.mode,
        prompt=prompt.strip(),
        negative=preset.negative if negative is None else negative,
        width=width,
        height=height,
        steps=int(steps),
        cfg=request.cfg if request.cfg is not None else preset.cfg,
        sampler=request.sampler or preset.sampler,
        scheduler=preset.scheduler,
        model=request.model or preset.model,
        vae=preset.vae,
        seed=seed if seed is not None else secrets.randbelow(MAX_SEED),
        count=int(count),
        hires=preset.hires if request.hires is None else request.hires,
        hr_scale=preset.hr_scale if request.hr_scale is None else request.hr_scale,
        hr_steps=preset.hr_steps if request.hr_steps is None else request.hr_steps,
        hr_denoise=preset.hr_denoise if request.hr_denoise is None else request.hr_denoise,
        hr_upscaler=request.hr_upscaler or preset.hr_upscaler,
        clip_skip=preset.clip_skip,
        ensd=preset.ensd,
        strength=request.strength if request.strength is not None else preset.strength,
        mask_blur=preset.mask_blur,
        fill=fill,
        full_res=preset.inpaint_full_res if request.only_masked is None else request.only_masked,
        padding=preset.inpaint_padding,
        invert=int(request.invert) if request.invert is not None else preset.mask_invert,
        resize_mode=preset.resize_mode,
        init_image=request.init_image,
        mask=request.mask,
        preset=preset.name,
        face=bool(request.face),
        styles=tuple(styles),
        control=request.control,
        control_weight=1.0 if request.control_weight is None else request.control_weight,
        control_start=request.control_guidance[0] if request.control_guidance else 0.0,
        control_end=request.control_guidance[1] if request.control_guidance else 1.0,
        control_image=request.control_image,
    )


def _own_or_favourite(
    request: GenerationRequest, user: dict[str, Any]
) -> tuple[tuple[tuple[str, float], ...], list[str]]:
    """The LoRAs and styles a draw runs with: its own (--lora, `<lora:…>` in the prompt,
    --style), else the user's /settings favourites; `none` is neither."""
    loras = tuple(user.get("loras") or ())
    if _own_loras(request):
        loras = tuple(x for x in request.loras if x[0].lower() != NONE_WORD)
    styles = list(user.get("styles") or ())
    if request.style:
        styles = [] if request.style.lower() == NONE_WORD else [request.style]
    return loras, styles


def favourites_used(
    request: GenerationRequest, user: dict[str, Any] | None
) -> tuple[list[str], list[str]]:
    """The names of the /settings favourite LoRAs and styles a draw takes (none of a kind
    the draw names itself)."""
    user = user or {}
    loras = [] if _own_loras(request) else [name for name, _ in user.get("loras") or ()]
    styles = [] if request.style else list(user.get("styles") or ())
    return loras, styles


def _own_loras(request: GenerationRequest) -> bool:
    return bool(request.loras or LORA_TAG.search(request.prompt))


def drawn_steps(job: Resolved, flavour: Flavour = Flavour.A1111) -> int:
    """Sampling steps the backend really runs for the first pass: A1111/Forge run
    int(min(strength, 0.999) × steps) + 1 on img2img (sd_samplers_common.py:28-29); SD.Next
    stretches its img2img steps so that all of them run (processing_helpers.py:461-462)."""
    if job.mode in (Mode.IMG2IMG, Mode.INPAINT) and flavour is not Flavour.SDNEXT:
        return int(min(job.strength, 0.999) * job.steps) + 1
    return job.steps


def cost(job: Resolved, flavour: Flavour = Flavour.A1111) -> int:
    """Credits of what a backend of `flavour` draws: ceil(images × w × h × steps /
    (512×512×20)), the hires pass counted alike at its size and steps; at least 1."""
    if job.mode is Mode.UPSCALE:
        fw, fh = job.final_size  # no sampling: one credit per output megapixel
        return max(1, math.ceil(fw * fh / (1024 * 1024)))
    work = job.count * job.width * job.height * drawn_steps(job, flavour)
    if job.hires and job.mode is Mode.TXT2IMG:
        fw, fh = job.final_size
        work += job.count * fw * fh * (job.hr_steps or job.steps)
    if job.control:  # ControlNet runs beside every sampling step of the first pass
        work += job.count * job.width * job.height * drawn_steps(job, flavour)
    if job.face:  # ADetailer's inpaint pass per picture (restore_faces costs no sampling)
        face_steps = int(ADETAILER_DENOISE * job.steps) + 1
        work += job.count * ADETAILER_SIZE * ADETAILER_SIZE * face_steps
    return max(1, math.ceil(work / UNIT))


def cost_on(job: Resolved, flavours: Iterable[Flavour]) -> int:
    """What to charge before the backend is chosen: the dearest of the flavours that may draw
    it (all of them cost the same but for img2img steps), A1111's when none is known."""
    return max((cost(job, f) for f in set(flavours)), default=cost(job))


def variation_of(job: Resolved, image_ref: str, strength: float) -> Resolved:
    """img2img from one of a job's results, same prompt and first-pass size, a new seed."""
    return replace(
        job,
        mode=Mode.IMG2IMG,
        init_image=image_ref,
        mask=None,
        strength=strength,
        seed=secrets.randbelow(MAX_SEED),
        count=1,
        hires=False,
    )


OUTPAINT_FILL = FILL_CHOICES.index("noise")  # latent noise: the border is drawn anew
FACE_STRENGTH = 0.1  # the picture stays; only the face pass (ADetailer) redraws


def outpaint_of(job: Resolved, init_ref: str, mask_ref: str, size: tuple[int, int]) -> Resolved:
    """Inpaint the border of a padded canvas (zoom out, pan, make square): the original
    prompt, the whole canvas at once (not only masked), a new seed."""
    return replace(
        job,
        mode=Mode.INPAINT,
        init_image=init_ref,
        mask=mask_ref,
        width=size[0],
        height=size[1],
        strength=1.0,
        fill=OUTPAINT_FILL,
        full_res=False,
        invert=0,
        resize_mode=0,
        seed=secrets.randbelow(MAX_SEED),
        count=1,
        hires=False,
        face=False,
    )


def faces_of(job: Resolved, image_ref: str, size: tuple[int, int]) -> Resolved:
    """🙂 Fix faces: img2img of one result at its size, barely changed, with --face."""
    return replace(
        job,
        mode=Mode.IMG2IMG,
        init_image=image_ref,
        mask=None,
        width=size[0],
        height=size[1],
        strength=FACE_STRENGTH,
        count=1,
        hires=False,
        face=True,
    )


def reroll_of(job: Resolved) -> Resolved:
    """The same job with a new seed."""
    return replace(job, seed=secrets.randbelow(MAX_SEED))


def upscale_of(
    job: Resolved, image_ref: str, size: tuple[int, int], upscaler: str, factor: float
) -> Resolved:
    """Upscale one result through /sdapi/v1/extra-single-image."""
    return replace(
        job,
        mode=Mode.UPSCALE,
        init_image=image_ref,
        mask=None,
        width=size[0],
        height=size[1],
        hr_scale=factor,
        hr_upscaler=upscaler,
        count=1,
        hires=False,
        steps=0,
    )


@dataclass(frozen=True)
class Target:
    """The backend a payload is for: its flavour, its own names for what the job uses, the
    settings it will not let us change, and the task id that binds progress to the request."""

    flavour: Flavour = Flavour.A1111
    checkpoint: str | None = None  # this backend's title of the job's model (or of its loaded one)
    sampler: str | None = None  # this backend's spelling of the sampler
    upscaler: str | None = None  # this backend's name of the hires or extras upscaler
    scheduler: bool = True  # the backend knows the scheduler field
    frozen: frozenset[str] | None = frozenset()  # options never to override; None: all
    restore: bool = True  # override_settings_restore_afterwards
    task_id: str | None = None  # force_task_id (A1111 >= 1.6, Forge)
    adetailer: bool = False  # the backend lists the ADetailer script
    control_module: str | None = None  # this backend's ControlNet preprocessor of the job
    control_model: str | None = None  # and its ControlNet model ("None" for reference)


def _overrides(job: Resolved, target: Target) -> dict[str, Any]:
    """Per-job settings, minus those the server refuses to change (a changed frozen option is
    a 500 on A1111/Forge, also when it is restored; SD.Next silently keeps its own)."""
    if target.frozen is None:
        return {}
    override: dict[str, Any] = {}
    if target.flavour is not Flavour.SDNEXT:  # SD.Next reads the request's clip_skip instead
        override["CLIP_stop_at_last_layers"] = job.clip_skip
    override["eta_noise_seed_delta"] = job.ensd
    model = target.checkpoint or job.model
    if model:
        # always named, so a restoring A1111 never reloads its own model in between
        override["sd_model_checkpoint"] = model
    if job.vae and target.flavour is not Flavour.FORGE:  # Forge: "Managed by Forge"
        override["sd_vae"] = job.vae
    return {k: v for k, v in override.items() if k not in target.frozen}


def build_payload(
    job: Resolved,
    target: Target | None = None,
    *,
    init_b64: str | None = None,
    mask_b64: str | None = None,
    control_b64: str | None = None,
) -> dict[str, Any]:
    """The JSON body for /sdapi/v1/txt2img or /img2img of `target`'s flavour; only keys that
    flavour's request model has (A1111 by default)."""
    target = target or Target()
    flavour = target.flavour
    payload: dict[str, Any] = {
        "prompt": job.prompt,
        "negative_prompt": job.negative,
        "seed": job.seed,
        "sampler_name": target.sampler or job.sampler,
        "batch_size": job.count,
        "n_iter": 1,
        "steps": job.steps,
        "cfg_scale": job.cfg,
        "width": job.width,
        "height": job.height,
        "send_images": True,
        "save_images": False,
    }
    override = _overrides(job, target)
    if override:
        payload["override_settings"] = override
        # True: other users of a shared WebUI keep their clip skip, ENSD and model
        payload["override_settings_restore_afterwards"] = target.restore
    if flavour is Flavour.SDNEXT:
        payload["clip_skip"] = job.clip_skip  # processing_class.py:33, 252
    elif job.scheduler and target.scheduler:
        payload["scheduler"] = job.scheduler
    if target.task_id and flavour is not Flavour.SDNEXT:
        payload["force_task_id"] = target.task_id
    if job.styles:
        payload["styles"] = list(job.styles)
    scripts: dict[str, Any] = {}
    if job.face:
        if target.adetailer:
            scripts[ADETAILER] = {"args": [True, False, {"ad_model": ADETAILER_MODEL}]}
        else:
            payload["restore_faces"] = True
    if job.control:
        if control_b64 is None or target.control_module is None:
            raise ValueError("a ControlNet job needs its picture and a backend that has it")
        scripts[CONTROLNET] = {"args": [_control_unit(job, target, control_b64)]}
    if scripts:
        payload["alwayson_scripts"] = scripts
    if job.mode is Mode.TXT2IMG:
        payload["enable_hr"] = job.hires
        if job.hires:
            _hires(payload, job, target)
        return payload
    if init_b64 is None:
        raise ValueError("img2img needs the init image")
    padding = job.padding
    if flavour is Flavour.SDNEXT and not job.full_res:
        padding = 0  # SD.Next dilates the mask by it on every inpaint (masking.py:413-414)
    payload.update(
        {
            "init_images": [init_b64],
            "denoising_strength": job.strength,
            "resize_mode": (
                SDNEXT_RESIZE_MODE.get(job.resize_mode, 1)
                if flavour is Flavour.SDNEXT
                else job.resize_mode
            ),
            # the API's defaults differ from the UI's: always explicit
            "mask_blur": job.mask_blur,
            "inpainting_fill": job.fill,
            "inpaint_full_res": job.full_res,
            "inpaint_full_res_padding": padding,
            "inpainting_mask_invert": job.invert,
        }
    )
    if job.mode is Mode.INPAINT:
        if mask_b64 is None:
            raise ValueError("inpaint needs the mask")
        payload["mask"] = mask_b64
    return payload


def _control_unit(job: Resolved, target: Target, image_b64: str) -> dict[str, Any]:
    """One ControlNetUnit (sd-webui-controlnet internal_controlnet/args.py): its preprocessor
    and model, weight and guidance span; pixel_perfect sizes the preprocessor to the picture;
    no detected map among the results (🦴 asks /controlnet/detect for it)."""
    return {
        "enabled": True,
        "module": target.control_module,
        "model": target.control_model or "None",
        "weight": job.control_weight,
        "image": image_b64,
        "guidance_start": job.control_start,
        "guidance_end": job.control_end,
        "pixel_perfect": True,
        "save_detected_map": False,
    }


def _hires(payload: dict[str, Any], job: Resolved, target: Target) -> None:
    # the WebUI fails *after* the first pass without denoising_strength (500 TypeError)
    payload["denoising_strength"] = job.hr_denoise
    payload["hr_scale"] = job.hr_scale
    payload["hr_upscaler"] = target.upscaler or job.hr_upscaler
    payload["hr_second_pass_steps"] = job.hr_steps
    if target.flavour is Flavour.FORGE:
        payload["hr_additional_modules"] = FORGE_SAME_MODULES
        # Forge's hr_cfg (default 1.0) replaces cfg_scale in the second pass and drops the
        # negative prompt at 1.0 (sd_samplers_cfg_denoiser.py:187-188, processing.py:1586)
        payload["hr_cfg"] = job.cfg
    elif target.flavour is Flavour.SDNEXT:
        payload["hr_resize_mode"] = SDNEXT_HIRES_FIXED
        # SD.Next runs the second pass after a non-latent upscaler only when forced
        # (processing_diffusers.py:187-191); A1111 always runs it, and it is charged
        payload["hr_force"] = True
        payload["hr_denoising_strength"] = job.hr_denoise

"""From a user's request to concrete values, their cost in credits, and the WebUI payload."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, fields, replace
from typing import Any

from bot.errors import OptionError
from bot.options import FILL_CHOICES, MAX_SEED, Limits, resolve_size
from bot.presets import PresetBook
from bot.types import GenerationRequest, Mode

UNIT = 512 * 512 * 20  # one credit: one 512×512 image at 20 steps


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

    @property
    def final_size(self) -> tuple[int, int]:
        """Size of the images the WebUI returns (after the hires pass or upscale)."""
        if (self.hires and self.mode is Mode.TXT2IMG) or self.mode is Mode.UPSCALE:
            return int(self.width * self.hr_scale), int(self.height * self.hr_scale)
        return self.width, self.height

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored with the job row."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resolved:
        """Inverse of to_dict."""
        data = dict(data)
        data["mode"] = Mode(data["mode"])
        return cls(**data)


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
    return Resolved(
        mode=request.mode,
        prompt=request.prompt,
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
        hr_scale=preset.hr_scale,
        hr_steps=preset.hr_steps,
        hr_denoise=preset.hr_denoise,
        hr_upscaler=preset.hr_upscaler,
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
    )


def cost(job: Resolved) -> int:
    """Credits: ceil(images × w × h × steps / (512×512×20)), hires pass counted alike; ≥ 1."""
    if job.mode is Mode.UPSCALE:
        fw, fh = job.final_size  # no sampling: one credit per output megapixel
        return max(1, math.ceil(fw * fh / (1024 * 1024)))
    work = job.count * job.width * job.height * job.steps
    if job.hires and job.mode is Mode.TXT2IMG:
        fw, fh = job.final_size
        work += job.count * fw * fh * (job.hr_steps or job.steps)
    return max(1, math.ceil(work / UNIT))


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


def build_payload(
    job: Resolved, *, init_b64: str | None = None, mask_b64: str | None = None
) -> dict[str, Any]:
    """The JSON body for /sdapi/v1/txt2img or /img2img; only keys the contract has."""
    override: dict[str, Any] = {
        "CLIP_stop_at_last_layers": job.clip_skip,
        "eta_noise_seed_delta": job.ensd,
    }
    if job.model:
        override["sd_model_checkpoint"] = job.model
    if job.vae:
        override["sd_vae"] = job.vae
    payload: dict[str, Any] = {
        "prompt": job.prompt,
        "negative_prompt": job.negative,
        "seed": job.seed,
        "sampler_name": job.sampler,
        "batch_size": job.count,
        "n_iter": 1,
        "steps": job.steps,
        "cfg_scale": job.cfg,
        "width": job.width,
        "height": job.height,
        "override_settings": override,
        # False: restoring would reload the checkpoint after every job that names one
        "override_settings_restore_afterwards": False,
        "send_images": True,
        "save_images": False,
    }
    if job.scheduler:
        payload["scheduler"] = job.scheduler
    if job.mode is Mode.TXT2IMG:
        payload["enable_hr"] = job.hires
        if job.hires:
            # the WebUI fails *after* the first pass without it (500 TypeError)
            payload["denoising_strength"] = job.hr_denoise
            payload["hr_scale"] = job.hr_scale
            payload["hr_upscaler"] = job.hr_upscaler
            payload["hr_second_pass_steps"] = job.hr_steps
        return payload
    if init_b64 is None:
        raise ValueError("img2img needs the init image")
    payload.update(
        {
            "init_images": [init_b64],
            "denoising_strength": job.strength,
            "resize_mode": job.resize_mode,
            # the API's defaults differ from the UI's: always explicit
            "mask_blur": job.mask_blur,
            "inpainting_fill": job.fill,
            "inpaint_full_res": job.full_res,
            "inpaint_full_res_padding": job.padding,
            "inpainting_mask_invert": job.invert,
        }
    )
    if job.mode is Mode.INPAINT:
        if mask_b64 is None:
            raise ValueError("inpaint needs the mask")
        payload["mask"] = mask_b64
    return payload

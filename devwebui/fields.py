"""What the stand-in WebUI declares: request fields of txt2img/img2img/extras (the A1111
v1.10 contract) and the listings its GET routes return."""

from __future__ import annotations

from typing import Any

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

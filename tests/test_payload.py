"""Payloads: exactly the origin deployment's, each flavour's fields, and only keys the API of
that flavour knows (A1111's contract, and the forks' request models in tests/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.options import Limits
from bot.payload import Resolved, Target, build_payload, cost, cost_on, resolve
from bot.presets import ORIGIN_NEGATIVE, PresetBook
from bot.types import GenerationRequest, Mode
from bot.webui import Flavour
from bot.webui.client import _flat_and_small

DATA = Path(__file__).parent / "data"
FIELDS = json.loads((DATA / "webui_fields.json").read_text())
FORKS = json.loads((DATA / "fork_fields.json").read_text())
LIMITS = Limits()
FORGE = Target(Flavour.FORGE)
SDNEXT = Target(Flavour.SDNEXT)


def _names(endpoint: str, flavour: Flavour = Flavour.A1111) -> set[str]:
    """The request fields of `endpoint` on a backend of `flavour`."""
    table = FIELDS if flavour is Flavour.A1111 else FORKS[flavour.value]
    return set(table[endpoint])


def _spec(**kw) -> Resolved:
    return resolve(GenerationRequest("a red fox", **kw), PresetBook(), LIMITS)


def test_origin_txt2img_payload_exactly():
    payload = build_payload(_spec(seed=42))
    assert payload == {
        "prompt": "a red fox",
        "negative_prompt": ORIGIN_NEGATIVE,
        "seed": 42,
        "sampler_name": "Euler a",
        "batch_size": 1,
        "n_iter": 1,
        "steps": 28,
        "cfg_scale": 7.0,
        "width": 512,
        "height": 768,
        "enable_hr": True,
        "denoising_strength": 0.58,
        "hr_scale": 2.0,
        "hr_upscaler": "Latent",
        "hr_second_pass_steps": 20,
        "override_settings": {"CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 0},
        # other users of a shared WebUI keep their clip skip, ENSD and model
        "override_settings_restore_afterwards": True,
        "send_images": True,
        "save_images": False,
    }


def test_origin_img2img_and_inpaint_payload():
    spec = _spec(seed=1, mode=Mode.INPAINT, init_image="ab" * 32, mask="cd" * 32)
    payload = build_payload(spec, init_b64="SU5JVA==", mask_b64="TUFTSw==")
    assert payload["init_images"] == ["SU5JVA=="]
    assert payload["mask"] == "TUFTSw=="
    assert {
        k: payload[k]
        for k in (
            "denoising_strength",
            "mask_blur",
            "inpainting_fill",
            "inpaint_full_res",
            "inpaint_full_res_padding",
            "inpainting_mask_invert",
            "resize_mode",
        )
    } == {
        "denoising_strength": 0.58,
        "mask_blur": 4,
        "inpainting_fill": 1,
        "inpaint_full_res": False,
        "inpaint_full_res_padding": 32,
        "inpainting_mask_invert": 0,
        "resize_mode": 0,
    }
    assert "latent_mask" not in payload and "enable_hr" not in payload


def test_plain_img2img_still_sends_inpaint_fields_explicitly():
    payload = build_payload(_spec(mode=Mode.IMG2IMG, init_image="ab" * 32), init_b64="SU5JVA==")
    for key in ("mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding"):
        assert key in payload
    assert "mask" not in payload


JOBS = [
    ({}, "txt2img"),
    ({"hires": False, "model": "sd15", "count": 4}, "txt2img"),
    ({"mode": Mode.IMG2IMG, "init_image": "a" * 64}, "img2img"),
    ({"mode": Mode.INPAINT, "init_image": "a" * 64, "mask": "b" * 64, "fill": "noise"}, "img2img"),
]


@pytest.mark.parametrize("flavour", list(Flavour))
@pytest.mark.parametrize(("kw", "endpoint"), JOBS)
def test_every_key_sent_exists_in_the_contract_of_that_flavour(kw, endpoint, flavour):
    target = Target(flavour, checkpoint="sd15.safetensors [abc]", task_id="task(x)")
    payload = build_payload(_spec(**kw), target, init_b64="SU5JVA==", mask_b64="TUFTSw==")
    unknown = set(payload) - _names(endpoint, flavour)
    assert not unknown, f"{flavour.display_name} would silently drop {unknown}"
    assert "latent_mask" not in payload


def test_the_fork_tables_are_the_forks():
    # Forge: A1111's request model plus its four hires / distilled fields
    forge = _names("txt2img", Flavour.FORGE) - _names("txt2img")
    assert forge == {"hr_additional_modules", "hr_cfg", "hr_distilled_cfg", "distilled_cfg_scale"}
    assert FORKS["forge"]["txt2img"]["hr_cfg"]["default"] == 1.0
    # SD.Next: its own model; no scheduler, force_task_id or infotext; clip_skip is a field
    sdnext = _names("txt2img", Flavour.SDNEXT)
    assert {"clip_skip", "hr_resize_mode", "hr_force", "hr_denoising_strength"} <= sdnext
    assert not {"scheduler", "force_task_id", "infotext"} & sdnext
    assert FORKS["sdnext"]["txt2img"]["hr_resize_mode"]["default"] == 0


def test_forge_hires_names_the_modules_and_keeps_the_cfg():
    payload = build_payload(_spec(cfg=6.5), FORGE)
    assert payload["hr_additional_modules"] == ["Use same choices"]
    assert payload["hr_cfg"] == 6.5  # Forge's 1.0 would drop the negative prompt
    assert "hr_cfg" not in build_payload(_spec(hires=False), FORGE)


def test_sdnext_hires_upscales_and_clip_skip_is_a_field():
    payload = build_payload(_spec(), SDNEXT)
    assert (payload["hr_resize_mode"], payload["hr_force"]) == (1, True)
    assert payload["hr_denoising_strength"] == payload["denoising_strength"] == 0.58
    assert payload["clip_skip"] == 2
    assert "CLIP_stop_at_last_layers" not in payload["override_settings"]
    assert "scheduler" not in build_payload(_spec(), Target(Flavour.SDNEXT))


def test_sdnext_resize_mode_and_whole_picture_padding():
    spec = _spec(mode=Mode.INPAINT, init_image="a" * 64, mask="b" * 64)
    payload = build_payload(spec, SDNEXT, init_b64="SU5JVA==", mask_b64="TUFTSw==")
    assert payload["resize_mode"] == 1  # A1111's "just resize" is SD.Next's "Fixed"
    assert payload["inpaint_full_res_padding"] == 0  # SD.Next would dilate the mask by 32
    masked = _spec(mode=Mode.INPAINT, init_image="a" * 64, mask="b" * 64, only_masked=True)
    payload = build_payload(masked, SDNEXT, init_b64="SU5JVA==", mask_b64="TUFTSw==")
    assert payload["inpaint_full_res_padding"] == 32
    a1111 = build_payload(spec, init_b64="SU5JVA==", mask_b64="TUFTSw==")
    assert (a1111["resize_mode"], a1111["inpaint_full_res_padding"]) == (0, 32)


def test_the_backends_own_names_and_task_id():
    target = Target(
        checkpoint="sd15.safetensors [0123456789]",
        sampler="Euler a",
        upscaler="Latent Bilinear",
        task_id="task(drawbridge-j-1)",
    )
    payload = build_payload(_spec(sampler="euler a"), target)
    assert payload["override_settings"]["sd_model_checkpoint"] == "sd15.safetensors [0123456789]"
    assert (payload["sampler_name"], payload["hr_upscaler"]) == ("Euler a", "Latent Bilinear")
    assert payload["force_task_id"] == "task(drawbridge-j-1)"
    sdnext = build_payload(_spec(), Target(Flavour.SDNEXT, task_id="task(x)"))
    assert "force_task_id" not in sdnext  # its API has no such field


def test_frozen_settings_are_never_overridden():
    frozen = build_payload(_spec(model="sd15"), Target(frozen=None))
    assert "override_settings" not in frozen
    assert "override_settings_restore_afterwards" not in frozen
    some = build_payload(_spec(), Target(frozen=frozenset({"CLIP_stop_at_last_layers"})))
    assert some["override_settings"] == {"eta_noise_seed_delta": 0}


def test_operators_may_opt_out_of_restoring():
    payload = build_payload(_spec(), Target(restore=False))
    assert payload["override_settings_restore_afterwards"] is False


def test_forge_manages_its_vae_itself():
    spec = _spec()
    spec.vae = "vae-ft-mse.safetensors"
    assert build_payload(spec)["override_settings"]["sd_vae"] == "vae-ft-mse.safetensors"
    assert "sd_vae" not in build_payload(spec, FORGE)["override_settings"]


def test_hires_always_carries_denoising_strength():
    payload = build_payload(_spec(hires=True))
    assert payload["enable_hr"] is True and payload["denoising_strength"] == 0.58
    off = build_payload(_spec(hires=False))
    assert off["enable_hr"] is False and "denoising_strength" not in off


def test_model_goes_through_override_settings_restored_afterwards():
    payload = build_payload(_spec(model="anything-v3"))
    assert payload["override_settings"]["sd_model_checkpoint"] == "anything-v3"
    assert payload["override_settings_restore_afterwards"] is True
    # a job naming no model names the backend's loaded one, so a restoring A1111 never
    # reloads its own model in between (processing.py:828-830)
    loaded = build_payload(_spec(), Target(checkpoint="loaded.safetensors [0123456789]"))
    assert loaded["override_settings"]["sd_model_checkpoint"] == "loaded.safetensors [0123456789]"


def test_cost_formula():
    # 512x768x28 first pass + 1024x1536x20 hires pass, in units of 512x512x20
    assert cost(_spec()) == 9  # ceil(2.1 + 6.0)
    assert cost(_spec(hires=False, width=512, height=512, steps=20)) == 1
    assert cost(_spec(hires=False, width=512, height=512, steps=1)) == 1  # at least 1
    assert cost(_spec(hires=False, width=512, height=512, steps=20, count=4)) == 4


def test_img2img_is_charged_the_steps_the_backend_runs():
    spec = _spec(mode=Mode.IMG2IMG, init_image="a" * 64, width=512, height=512, steps=40)
    spec.strength = 0.5
    # A1111/Forge run int(min(strength, 0.999) × steps) + 1 = 21 steps; SD.Next all 40
    assert cost(spec, Flavour.A1111) == cost(spec, Flavour.FORGE) == 2  # ceil(21 / 20)
    assert cost(spec, Flavour.SDNEXT) == 2  # 40 / 20
    spec.steps = 50
    assert (cost(spec), cost(spec, Flavour.SDNEXT)) == (2, 3)  # 26 vs 50 steps
    # before the backend is chosen: the dearest of those that may draw it
    assert cost_on(spec, [Flavour.A1111, Flavour.SDNEXT]) == 3
    assert cost_on(spec, [Flavour.A1111]) == 2 and cost_on(spec, []) == 2


def test_random_seed_is_fixed_at_enqueue():
    spec = _spec()
    assert 0 <= spec.seed < 2**32
    assert build_payload(spec)["seed"] == spec.seed  # a retry on another backend draws the same


def test_resolved_round_trips_through_json():
    spec = _spec(mode=Mode.IMG2IMG, init_image="a" * 64)
    assert Resolved.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_example_presets_file_loads(tmp_path):
    from bot.presets import load_presets

    book = load_presets(Path(__file__).parent.parent / "presets.example.toml")
    assert book.names == ["fast", "portrait"]
    assert book.get("fast").steps == 16 and book.get("fast").hires is False


def test_presets_file_errors_say_what_is_wrong(tmp_path):
    from bot.presets import PresetFileError, load_presets

    bad = tmp_path / "p.toml"
    bad.write_text("stepz = 3\n")
    with pytest.raises(PresetFileError, match="unknown keys \\['stepz'\\]"):
        load_presets(bad)
    bad.write_text("steps = [\n")
    with pytest.raises(PresetFileError, match="is not valid TOML"):
        load_presets(bad)
    with pytest.raises(PresetFileError, match="does not exist"):
        load_presets(tmp_path / "missing.toml")


def test_only_small_flat_bodies_are_serialised_on_the_event_loop() -> None:
    """A plain txt2img body (override_settings, styles: one level of scalars) is cheap to
    serialise where it is; bodies with pictures or script arguments go to a thread."""
    plain = build_payload(_spec(seed=42))
    assert _flat_and_small(plain) and "override_settings" in plain
    assert not _flat_and_small({**plain, "init_images": ["A" * 5_000_000]})
    assert not _flat_and_small({**plain, "prompt": "a fox " * 1_000})  # a 6 000-char prompt
    assert not _flat_and_small({**plain, "alwayson_scripts": {"ADetailer": {"args": [True]}}})
    assert _flat_and_small({**plain, "styles": ["noir", "film"], "seed": -1, "x": None})

"""Payloads: exactly the origin deployment's, and only keys the WebUI's API knows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.options import Limits
from bot.payload import Resolved, build_payload, cost, resolve
from bot.presets import ORIGIN_NEGATIVE, PresetBook
from bot.types import GenerationRequest, Mode

FIELDS = json.loads((Path(__file__).parent / "data" / "webui_fields.json").read_text())
LIMITS = Limits()


def _names(endpoint: str) -> set[str]:
    value = FIELDS[endpoint]
    if isinstance(value, dict):
        return set(value)
    return {f["name"] if isinstance(f, dict) else f for f in value}


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
        "override_settings_restore_afterwards": False,
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


@pytest.mark.parametrize(
    ("kw", "endpoint"),
    [
        ({}, "txt2img"),
        ({"hires": False, "model": "sd15", "count": 4}, "txt2img"),
        ({"mode": Mode.IMG2IMG, "init_image": "a" * 64}, "img2img"),
        (
            {"mode": Mode.INPAINT, "init_image": "a" * 64, "mask": "b" * 64, "fill": "noise"},
            "img2img",
        ),
    ],
)
def test_every_key_sent_exists_in_the_contract(kw, endpoint):
    payload = build_payload(_spec(**kw), init_b64="SU5JVA==", mask_b64="TUFTSw==")
    unknown = set(payload) - _names(endpoint)
    assert not unknown, f"the WebUI would silently drop {unknown}"
    assert "latent_mask" not in payload


def test_hires_always_carries_denoising_strength():
    payload = build_payload(_spec(hires=True))
    assert payload["enable_hr"] is True and payload["denoising_strength"] == 0.58
    off = build_payload(_spec(hires=False))
    assert off["enable_hr"] is False and "denoising_strength" not in off


def test_model_goes_through_override_settings_without_restore():
    payload = build_payload(_spec(model="anything-v3"))
    assert payload["override_settings"]["sd_model_checkpoint"] == "anything-v3"
    assert payload["override_settings_restore_afterwards"] is False


def test_cost_formula():
    # 512x768x28 first pass + 1024x1536x20 hires pass, in units of 512x512x20
    assert cost(_spec()) == 9  # ceil(2.1 + 6.0)
    assert cost(_spec(hires=False, width=512, height=512, steps=20)) == 1
    assert cost(_spec(hires=False, width=512, height=512, steps=1)) == 1  # at least 1
    assert cost(_spec(hires=False, width=512, height=512, steps=20, count=4)) == 4


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

"""Issue 15's payload parts against the extensions' own request models (tests/data/
extensions_api.json), and their prices: ControlNet units, ADetailer args, styles, hires flags,
outpainting canvases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.backends import control_for
from bot.images.outpaint import plan
from bot.options import Limits
from bot.payload import Target, build_payload, cost, outpaint_of, resolve
from bot.presets import PresetBook
from bot.types import GenerationRequest

DATA = json.loads((Path(__file__).parent / "data" / "extensions_api.json").read_text())
PRESETS = PresetBook()
LIMITS = Limits()


def job(**kw):
    return resolve(GenerationRequest(prompt="a fox", seed=1, **kw), PRESETS, LIMITS)


def test_the_controlnet_unit_has_only_fields_of_the_extension() -> None:
    spec = job(control="canny", control_weight=0.6, control_guidance=(0.1, 0.9))
    target = Target(control_module="canny", control_model="control_v11p_sd15_canny [x]")
    payload = build_payload(spec, target, control_b64="AAAA")
    scripts = payload["alwayson_scripts"]
    assert list(scripts) == [DATA["controlnet"]["alwayson_title"]]
    (unit,) = scripts["controlnet"]["args"]
    assert set(unit) <= set(DATA["controlnet"]["unit_fields"])
    assert unit["weight"] == 0.6 and (unit["guidance_start"], unit["guidance_end"]) == (0.1, 0.9)
    assert unit["save_detected_map"] is False  # 🦴 asks /controlnet/detect instead


def test_adetailer_and_controlnet_share_alwayson_scripts() -> None:
    spec = job(control="canny", face=True)
    target = Target(adetailer=True, control_module="canny", control_model="m")
    scripts = build_payload(spec, target, control_b64="AAAA")["alwayson_scripts"]
    assert set(scripts) == {"controlnet", DATA["adetailer"]["alwayson_title"]}
    enable, skip, tab = scripts["ADetailer"]["args"]
    assert (enable, skip) == (True, False) and tab["ad_model"] in DATA["adetailer"]["models"]


def test_control_for_picks_the_module_and_a_model_of_its_family() -> None:
    modules = ["none", "canny", "depth_midas", "reference_only", "openpose"]
    models = ["control_v11p_sd15_canny [d14c016b]", "control_v11f1p_sd15_depth [cfd03158]"]
    assert control_for("canny", modules, models) == ("canny", models[0])
    assert control_for("depth", modules, models) == ("depth_midas", models[1])
    assert control_for("reference", modules, models) == ("reference_only", "None")
    assert control_for("openpose", modules, models) is None  # no openpose model
    assert control_for("tile", modules, models) is None  # no tile preprocessor


@pytest.mark.parametrize(
    ("kw", "credits"),
    [
        ({"hires": False}, 1),  # 512×512 at 20 steps
        ({"hires": False, "control": "canny"}, 2),  # one more pass
        ({"hr_scale": 1.5, "hr_steps": 20, "hires": True}, 4),  # + 768×768 at 20 steps
        ({"hr_scale": 2.0, "hr_steps": 10, "hires": True}, 3),  # + 1024×1024 at 10 steps
    ],
)
def test_prices_follow_the_flags(kw, credits) -> None:
    spec = job(width=512, height=512, steps=20, **kw)
    assert cost(spec) == credits


def test_an_outpaint_is_priced_at_its_new_size() -> None:
    spec = job(width=512, height=512, steps=20)
    layout = plan("zoom2", 512, 512, 1024 * 1024)
    assert layout.size == (1024, 1024)
    assert cost(outpaint_of(spec, "init", "mask", layout.size)) == 4


def test_styles_are_sent_by_name() -> None:
    assert build_payload(job(style="cinematic"))["styles"] == ["cinematic"]

"""The Discord adapter's pure helpers: fitting the upload limit, autocomplete, slash values,
texts, picking a batch picture, masking interaction tokens."""

from __future__ import annotations

import logging

import pytest

from adapters.discord.encode import fit, fit_all
from adapters.discord.replies import pick
from adapters.discord.service import InteractionTokenFilter, api_base
from adapters.discord.slash import matching, request_from
from adapters.discord.texts import human_size, status_text
from bot.errors import OptionError
from bot.service import Service
from bot.texts import model_label
from bot.types import JobState, JobUpdate
from tests.harness.pictures import decode, mean_difference, noisy, png_bytes, sample_photo
from tests.harness.settings import SMALL, make_settings


def test_fit_keeps_the_png_then_goes_lossless_then_lossy() -> None:
    flat = png_bytes(sample_photo(256, 256))
    assert fit(flat, len(flat)).extension == "png"
    lossless = fit(flat, len(flat) - 1)
    assert lossless.extension == "webp" and lossless.note_key == "discord.reencoded_lossless"
    assert mean_difference(decode(lossless.data), decode(flat)) == 0
    photo = noisy()
    lossy = fit(photo, len(photo) // 3)
    assert lossy.note_key == "discord.reencoded_lossy" and len(lossy.data) <= len(photo) // 3
    assert lossy.params["quality"] >= 50
    tiny = fit(photo, 2000)
    assert tiny.note_key == "discord.reencoded_smaller" and len(tiny.data) <= 2000
    note = tiny.note("en", 10 * 1024 * 1024)
    assert note is not None and "10 MB" in note and "Scaled down to" in note
    # several pictures: together they fit, or each gets an equal share
    assert [e.extension for e in fit_all([flat, flat], 2 * len(flat))] == ["png", "png"]
    shared = fit_all([photo, flat], len(photo))
    assert sum(len(e.data) for e in shared) <= len(photo)


def test_autocomplete_matches_prefix_first_and_caps_at_25() -> None:
    items = [(f"model-{i:02d}", f"model-{i:02d}.safetensors [abcdef0123]") for i in range(40)]
    assert len(matching(items, "")) == 25
    found = matching(items, "model-3")
    assert [c.name for c in found] == [f"model-{i}" for i in range(30, 40)]
    names = [c.name for c in matching([("Euler a", "Euler a"), ("DPM++ 2M", "DPM++ 2M")], "2m")]
    assert names == ["DPM++ 2M"]


async def test_slash_values_are_checked_like_text(tmp_path) -> None:
    settings = make_settings(tmp_path, ["http://127.0.0.1:9"], max_steps=50)
    async with Service(settings, presets=SMALL, run_jobs=False) as service:
        await _slash_values_are_checked_like_text(service)


async def _slash_values_are_checked_like_text(service: Service) -> None:
    request = request_from(
        {"prompt": "a fox", "seed": 42, "steps": 20, "size": "512x768", "hires": False}, service
    )
    assert (request.seed, request.steps, request.width, request.height) == (42, 20, 512, 768)
    assert request.hires is False
    with pytest.raises(OptionError) as info:
        request_from({"prompt": "a fox", "steps": 80}, service)
    assert info.value.render("en") == "`steps` must be between 1 and 50; you gave 80."
    with pytest.raises(OptionError) as info:
        request_from({"prompt": "a fox", "size": "512x768", "ar": "2:3"}, service)
    assert info.value.render("en") == "Use either `ar` or `size`, not both."
    with pytest.raises(OptionError):
        request_from({"prompt": "a fox", "fill": "nope"}, service)


def test_texts() -> None:
    queued = JobUpdate("j", JobState.QUEUED, position=3, eta_seconds=125)
    assert status_text("en", queued, 3) == "Queued: position 3, starting in about 2 min."
    assert status_text("zh-CN", queued, 3) == "已排队：第 3 位，大约 2 分钟 后开始。"
    running = JobUpdate("j", JobState.RUNNING, progress=0.42, notes=("Using the mask.",))
    assert status_text("en", running, 3) == "Using the mask.\nDrawing… 42%"
    assert model_label("sd/v1-5-pruned-emaonly.safetensors [6ce0161689]") == "v1-5-pruned-emaonly"
    assert (human_size(10 * 1024 * 1024), human_size(2048), human_size(10)) == (
        "10 MB",
        "2 KB",
        "10 bytes",
    )
    assert api_base("http://proxy:8080/") == "http://proxy:8080/api/v10"
    assert api_base("http://proxy:8080/api/v9") == "http://proxy:8080/api/v9"


def test_a_batch_picture_is_picked_by_number() -> None:
    assert pick("#2 a harbour at night", 4) == (1, "a harbour at night")
    assert pick("a harbour #4", 4) == (3, "a harbour")
    assert pick("#5 a harbour", 4) == (0, "#5 a harbour")
    assert pick("issue#2 a harbour", 4) == (0, "issue#2 a harbour")


def test_interaction_tokens_are_masked_in_logs() -> None:
    record = logging.LogRecord(
        "discord.http",
        logging.WARNING,
        __file__,
        1,
        "%s %s responded with 429",
        ("PATCH", "https://discord.com/api/v10/webhooks/123/aW50ZXJhY3Rpb246abcdefghijklmnop/x"),
        None,
    )
    InteractionTokenFilter().filter(record)
    assert record.getMessage() == (
        "PATCH https://discord.com/api/v10/webhooks/123/***/x responded with 429"
    )


def test_slash_declarations_are_checked_against_discords_rules_before_a_sync() -> None:
    from adapters.discord.slash import declaration_problems

    good = {"name": "draw", "description": "Draw a picture", "type": 1, "options": []}
    menu = {"name": "Use as init image", "description": "", "type": 3}
    assert declaration_problems([good, menu]) == []
    choices = [{"name": f"p{i}", "value": f"p{i}"} for i in range(26)]
    bad = {
        "name": "Draw",
        "description": "d" * 101,
        "type": 1,
        "options": [
            {"name": "preset", "description": "a preset", "type": 3, "choices": choices},
            {
                "name": "x" * 33,
                "description": "ok",
                "type": 3,
                "choices": [{"name": "n" * 101, "value": "v"}],
            },
        ],
    }
    problems = declaration_problems([bad])
    assert "/Draw: name 'Draw' must be 1-32 lowercase letters" in problems
    assert "/Draw: description is 101 characters (Discord allows 1-100)" in problems
    assert "/Draw/preset: 26 choices (Discord allows 25)" in problems
    assert any("is over 100 characters" in p for p in problems)
    assert any(p.startswith("/Draw/xxxx") and "1-32" in p for p in problems)

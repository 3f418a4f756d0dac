"""The Telegram adapter's pure helpers: commands, photo limits, captions, status lines."""

from __future__ import annotations

from adapters.telegram.texts import (
    fits_photo,
    prompt_from_caption,
    result_caption,
    split_command,
    status_text,
)
from bot.texts import cut, model_label
from bot.types import JobState, JobUpdate


def test_split_command_reads_our_commands_only() -> None:
    assert split_command("/draw a fox --seed 1", "drawbridge_bot") == ("draw", "a fox --seed 1")
    assert split_command("/draw@DrawBridge_Bot a dog", "drawbridge_bot") == ("draw", "a dog")
    assert split_command("/draw@other_bot a cat", "drawbridge_bot") == ("", "")
    assert split_command("a castle", "drawbridge_bot") == (None, "a castle")
    assert split_command('/draw "a b" --neg "c d"', "x") == ("draw", '"a b" --neg "c d"')
    assert split_command(None, "x") == (None, "")


def test_photo_limits_follow_telegram() -> None:
    assert fits_photo(1000, 512, 512)
    assert fits_photo(1000, 100, 2000)  # ratio exactly 20 is allowed
    assert not fits_photo(1000, 64, 2048)  # ratio 32
    assert not fits_photo(1000, 5001, 5000)  # sides sum over 10000
    assert not fits_photo(10 * 1024 * 1024 + 1, 512, 512)


def test_caption_cuts_the_prompt_to_fit_1024() -> None:
    caption = result_caption("en", "fox " * 400, "🌱 42 · 512×512 · sd15", ["Using the mask."])
    assert len(caption) <= 1024
    assert caption.endswith("🌱 42 · 512×512 · sd15\nUsing the mask.")
    assert caption.split("\n")[0].endswith("…")
    assert prompt_from_caption(caption) == caption.split("\n")[0][:-1].strip()
    assert prompt_from_caption("a red fox\n🌱 1 · 64×64") == "a red fox"
    assert model_label("models/sd/v1-5-pruned-emaonly.safetensors [6ce0161689]") == (
        "v1-5-pruned-emaonly"
    )
    assert cut("abc", 3) == "abc" and cut("abcd", 3) == "ab…"


def test_status_lines_in_both_languages() -> None:
    queued = JobUpdate("j", JobState.QUEUED, position=3, eta_seconds=125)
    assert status_text("en", queued, 3) == "Queued: position 3, starting in about 2 min."
    assert status_text("zh-CN", queued, 3) == "已排队：第 3 位，大约 2 分钟 后开始。"
    running = JobUpdate("j", JobState.RUNNING, progress=0.42, notes=("Using the painted area.",))
    assert status_text("en", running, 3) == "Using the painted area.\nDrawing… 42%"
    retry = JobUpdate("j", JobState.QUEUED, attempt=2, note="queue.retrying")
    assert "attempt 2 of 3" in status_text("en", retry, 3)


def test_captions_and_texts_fit_telegrams_utf16_count() -> None:
    from adapters.telegram.texts import CAPTION_MAX, TEXT_MAX, cut, result_caption, units

    emoji = "🦊" * 1500  # each is two UTF-16 units: 3000 units in 1500 code points
    caption = result_caption("en", emoji, "🌱 1 · 512×512")
    assert units(caption) <= CAPTION_MAX and caption.endswith("🌱 1 · 512×512")
    text = cut("🦊" * 5000, TEXT_MAX)
    assert units(text) <= TEXT_MAX and text.endswith("…")
    assert "\ud83e" not in text  # never half a surrogate pair
    assert cut("short", TEXT_MAX) == "short"

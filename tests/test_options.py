"""The /draw text parser: examples, every error message, and a property over any input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import OptionError
from bot.options import DrawParser, Limits, draw_options, help_lines, resolve_size
from bot.presets import PresetBook, load_presets
from bot.types import GenerationRequest

LIMITS = Limits(max_pixels=1024 * 1024, max_steps=50, max_images=4, max_prompt_length=200)


@pytest.fixture
def parser(tmp_path):
    path = tmp_path / "presets.toml"
    path.write_text("[presets.fast]\nsteps = 12\nhires = false\n")
    book = load_presets(path)
    return DrawParser(draw_options(LIMITS, book), LIMITS)


def test_issue_example(parser):
    req = parser.parse("a red fox --seed 42 --steps 20 --size 512x512")
    assert (req.prompt, req.seed, req.steps, req.width, req.height) == (
        "a red fox",
        42,
        20,
        512,
        512,
    )


def test_every_flag(parser):
    req = parser.parse(
        'castle --neg "blurry, ugly" --ar 16:9 --cfg 6.5 --sampler "DPM++ 2M" --model anything'
        " --n 3 --strength 0.4 --no-hires --preset FAST --invert --fill noise --only-masked"
    )
    assert req.prompt == "castle"
    assert req.negative == "blurry, ugly"
    assert req.aspect == (16, 9)
    assert req.cfg == 6.5
    assert req.sampler == "DPM++ 2M"
    assert req.model == "anything"
    assert req.count == 3
    assert req.strength == 0.4
    assert req.hires is False
    assert req.preset == "fast"
    assert (req.invert, req.fill, req.only_masked) == (True, "noise", True)


def test_text_flag_takes_words_until_next_flag(parser):
    req = parser.parse("a cat's hat --neg ugly blurry hands --seed 1 in the rain")
    assert req.negative == "ugly blurry hands"
    assert req.prompt == "a cat's hat in the rain"


def test_phone_dashes_curly_quotes_and_equals(parser):
    req = parser.parse("fox —steps 12 –seed=7 --sampler “Euler a”")
    assert (req.steps, req.seed, req.sampler) == (12, 7, "Euler a")


def test_negative_seed_is_a_value_not_a_flag(parser):
    assert parser.parse("fox --seed -1").seed == -1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "fox --stepz 3",
            "Unknown option --stepz. Options are: --neg, --ar, --size, --steps, --cfg, --seed, "
            "--sampler, --model, --n, --strength, --hires, --no-hires, --preset, --invert, --fill, "
            "--only-masked, --hr-scale, --hr-denoise, --hr-steps, --hr-upscaler, --face, --lora, "
            "--style, --control, --control-weight, --control-guidance, --relax (did you mean "
            "--steps?).",
        ),
        ("fox --steps", "--steps needs a value: a whole number 1–50."),
        ("fox --steps 0", "--steps must be between 1 and 50; you gave 0."),
        ("fox --steps 51", "--steps must be between 1 and 50; you gave 51."),
        ("fox --steps ten", "--steps got 'ten', but it accepts a whole number 1–50."),
        ("fox --cfg 31", "--cfg must be between 1 and 30; you gave 31."),
        ("fox --cfg nan", "--cfg got 'nan', but it accepts a number 1–30."),
        ("fox --n 5", "--n must be between 1 and 4; you gave 5."),
        ("fox --size 512", "--size got '512', but it accepts a size like 512x768."),
        ("fox --size 16x16", "--size must be between 64 and 2048; you gave 16x16."),
        ("fox --ar 1:9", "--ar must be between 1:4 and 4:1; you gave 1:9."),
        ("fox --ar 2:3 --size 512x512", "Use either --ar or --size, not both."),
        ("fox --hires --no-hires", "Use either --hires or --no-hires, not both."),
        ("fox --preset slow", "There is no preset called 'slow'. Presets: fast."),
        (
            "fox --fill paint",
            "--fill must be one of: fill, original, noise, nothing; you gave 'paint'.",
        ),
        (
            'fox --neg "ugly',
            'A double quote is not closed. Put values with spaces in "double quotes".',
        ),
        ("--seed 3", "Please describe what to draw, e.g. /draw a red fox in the snow"),
        ("x" * 201, "The prompt is 201 characters long; the limit here is 200. Please shorten it."),
    ],
)
def test_errors_name_the_flag_and_what_it_accepts(parser, text, message):
    with pytest.raises(OptionError) as info:
        parser.parse(text)
    assert info.value.render("en") == message


def test_errors_render_in_chinese(parser):
    with pytest.raises(OptionError) as info:
        parser.parse("fox --steps ten")
    assert info.value.render("zh-CN") == "--steps 的值 'ten' 无效，可接受：一个整数 1–50。"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=120))
def test_no_input_raises_anything_but_option_error(text):
    book = PresetBook()
    parser = DrawParser(draw_options(LIMITS, book), LIMITS)
    try:
        parser.parse(text)
    except OptionError as exc:
        assert exc.render("en")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "--steps",
                "--seed",
                "--ar",
                "--size",
                "--neg",
                '"',
                "x",
                "1:2",
                "512x512",
                "-1",
                "—n",
                "=",
                "--hires",
                "--no-hires",
                "3",
                "fox",
            ]
        ),
        max_size=12,
    )
)
def test_flag_soup_raises_only_option_error(words):
    parser = DrawParser(draw_options(LIMITS, PresetBook()), LIMITS)
    try:
        parser.parse(" ".join(words))
    except OptionError:
        pass


def test_sizes_snap_to_8_and_respect_max_pixels():
    assert resolve_size(GenerationRequest("x", width=500, height=770), (512, 768), LIMITS) == (
        496,
        768,
    )
    w, h = resolve_size(GenerationRequest("x", aspect=(16, 9)), (512, 768), LIMITS)
    assert w % 8 == 0 and h % 8 == 0 and abs(w / h - 16 / 9) < 0.03
    with pytest.raises(OptionError) as info:
        resolve_size(GenerationRequest("x", width=2048, height=2048), (512, 768), LIMITS)
    assert "2048×2048 is too large; the limit is 1048576 pixels (for example 1024x1024)" in str(
        info.value
    )


def test_help_is_generated_from_the_declaration(parser):
    book = PresetBook()
    lines = help_lines(draw_options(LIMITS, book), book, "en")
    assert lines[0].startswith("Usage: /draw PROMPT")
    assert "--steps N — sampling steps (1–50); default 28" in lines
    assert "--hires | --no-hires — hires fix on; default on" in lines
    zh = help_lines(draw_options(LIMITS, book), book, "zh")
    assert "--steps N — 采样步数 (1–50); 默认 28" in zh


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ("[presets." + "p" * 101 + "]\nsteps = 12\n", "must be 1-32 lowercase letters"),
        ('[presets."two words"]\nsteps = 12\n', "must be 1-32 lowercase letters"),
        ('[presets.fast]\ndescription = "' + "d" * 101 + '"\n', "Discord allows 100"),
    ],
)
def test_preset_names_discord_or_the_settings_column_would_refuse_stop_the_start(
    tmp_path, table, says
) -> None:
    from bot.presets import PresetFileError, load_presets

    path = tmp_path / "presets.toml"
    path.write_text(table)
    with pytest.raises(PresetFileError) as info:
        load_presets(path)
    assert says in info.value.render("en") and "PRESETS_FILE" in info.value.render("en")

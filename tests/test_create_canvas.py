"""Zoom out, pan, make square and fix faces under single results, end to end through both
adapters: each button is an img2img inpaint whose init canvas and mask have the expected size
and border (soft seam, latent noise, the original prompt), within MAX_PIXELS, charged at the
new size."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.harness.discord import discord_env
from tests.harness.pictures import decode, mean_difference
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(60)

# a 256×384 picture: (canvas size, where the picture sits on it) per button
EXPECTED = {
    "🔍 Zoom out ×1.5": ((384, 576), (64, 96, 320, 480)),
    "🔍 ×2": ((512, 768), (128, 192, 384, 576)),
    "⬅": ((384, 384), (128, 0, 384, 384)),
    "➡": ((384, 384), (0, 0, 256, 384)),
    "⬆": ((256, 576), (0, 192, 256, 576)),
    "⬇": ((256, 576), (0, 0, 256, 384)),
    "⬛ Square": ((384, 384), (64, 0, 320, 384)),
}


def tg_button(message: dict, label: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for b in row:
            if b["text"] == label:
                return b["callback_data"]
    raise AssertionError(f"no {label!r} button in {message.get('reply_markup')}")


def dc_button(message: dict, code: str) -> str:
    """custom_id of the button of one kind (pan buttons share their label, not their code)."""
    for row in message["components"]:
        for b in row["components"]:
            if str(b["custom_id"]).startswith(f"db:{code}:"):
                return str(b["custom_id"])
    raise AssertionError(f"no {code!r} button in {message['components']}")


def check_outpaint(body: dict, original: Image.Image, size, box) -> None:
    """The inpaint of a padded canvas: sizes, border, seam, the picture kept inside."""
    init, mask = decode(body["init_images"][0]), decode(body["mask"]).convert("L")
    assert init.size == mask.size == size
    assert (body["width"], body["height"]) == size
    assert (body["inpainting_fill"], body["denoising_strength"]) == (2, 1.0)  # latent noise
    assert body["inpaint_full_res"] is False  # the whole canvas, so the border sees the rest
    left, top, right, bottom = box
    inner = init.crop(box)
    if inner.size == original.size:
        assert mean_difference(inner, original) == 0
    # the middle of the old picture is kept, everything outside it repainted
    assert mask.getpixel(((left + right) // 2, (top + bottom) // 2)) == 0
    width, height = size
    outside = [(x, y) for x, y in ((left - 2, top + 5), (right + 1, top + 5)) if 0 <= x < width]
    outside += [(x, y) for x, y in ((left + 5, top - 2), (left + 5, bottom + 1)) if 0 <= y < height]
    assert outside and all(mask.getpixel(p) == 255 for p in outside)
    # a soft seam just inside each edge that gets new content
    mid_y, mid_x = (top + bottom) // 2, (left + right) // 2
    seams = []
    if left > 0:
        seams.append((left + 4, mid_y))
    if right < width:
        seams.append((right - 5, mid_y))
    if top > 0:
        seams.append((mid_x, top + 4))
    if bottom < height:
        seams.append((mid_x, bottom - 5))
    assert seams and all(0 < mask.getpixel(p) < 255 for p in seams)


async def test_telegram_zoom_pan_and_square_outpaint_the_right_canvas(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        fake.send_text(alice, alice, "/draw a castle --size 256x384 --seed 3")
        await env.wait_result(alice)
        first = env.fake.bot_messages(alice)[-1]
        original = decode(fake.photos_sent(alice)[0])
        for n, (label, (size, box)) in enumerate(EXPECTED.items(), start=2):
            fake.press_button(alice, alice, first, tg_button(first, label))
            await env.wait_result(alice, count=n)
            body = env.generations("img2img")[-1]
            assert body["prompt"] == "a castle"
            check_outpaint(body, original, size, box)
            assert decode(fake.photos_sent(alice)[-1]).size == size
        # a zoomed-out result is a single picture too: it can be zoomed out again
        zoomed = env.fake.bot_messages(alice)[-1]
        assert tg_button(zoomed, "🔍 ×2")


async def test_telegram_zoom_is_capped_by_max_pixels_and_charged_at_the_new_size(
    tmp_path,
) -> None:
    async with telegram_env(tmp_path, max_pixels=512 * 512) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        fake.send_text(alice, alice, "/draw a castle --size 512x512 --steps 20 --seed 3")
        await env.wait_result(alice)
        first = env.fake.bot_messages(alice)[-1]
        assert (await env.settled(alice)).available == 10_000 - 1
        # 1024×1024 is more than MAX_PIXELS: the picture is halved first, the canvas 512×512
        fake.press_button(alice, alice, first, tg_button(first, "🔍 ×2"))
        await env.wait_result(alice, count=2)
        body = env.generations("img2img")[-1]
        check_outpaint(body, decode(fake.photos_sent(alice)[0]), (512, 512), (128, 128, 384, 384))
        assert (await env.settled(alice)).available == 10_000 - 2
    async with telegram_env(tmp_path / "big") as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        fake.send_text(alice, alice, "/draw a castle --size 512x512 --steps 20 --seed 3")
        await env.wait_result(alice)
        first = env.fake.bot_messages(alice)[-1]
        fake.press_button(alice, alice, first, tg_button(first, "🔍 ×2"))
        await env.wait_result(alice, count=2)
        body = env.generations("img2img")[-1]
        assert (body["width"], body["height"]) == (1024, 1024)
        # 1024×1024 at 20 steps is four credits
        assert (await env.settled(alice)).available == 10_000 - 1 - 4


async def test_telegram_fix_faces_redraws_the_face_of_that_picture(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        fake.send_text(alice, alice, "/draw a portrait --seed 3")
        await env.wait_result(alice)
        first = env.fake.bot_messages(alice)[-1]
        fake.press_button(alice, alice, first, tg_button(first, "🙂 Fix faces"))
        await env.wait_result(alice, count=2)
        (body,) = env.generations("img2img")
        assert body["restore_faces"] is True and body["denoising_strength"] == 0.1
        assert (
            mean_difference(decode(body["init_images"][0]), decode(fake.photos_sent(alice)[0])) == 0
        )


async def test_discord_zoom_pan_square_and_faces_buttons(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        fake = env.fake
        first = await env.result(
            await fake.slash("draw", {"prompt": "a castle", "size": "512x768", "seed": 3})
        )
        original = decode(env.png_of(first))
        assert original.size == (512, 768)
        cases = {
            "l": ((768, 768), (256, 0, 768, 768)),  # pan left
            "q": ((768, 768), (128, 0, 640, 768)),  # make square
            # zoom out ×2 would be 1024×1536: downscaled first to fit MAX_PIXELS (1024²)
            "w": ((832, 1248), (208, 312, 624, 936)),
        }
        for code, (size, box) in cases.items():
            press = await fake.click(first, dc_button(first, code), user="alice")
            await env.result(press)
            body = env.generations("img2img")[-1]
            assert body["prompt"] == "a castle"
            check_outpaint(body, original, size, box)
        press = await fake.click(first, dc_button(first, "f"), user="alice")
        await env.result(press)
        assert env.generations("img2img")[-1]["restore_faces"] is True

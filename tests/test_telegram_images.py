"""Telegram end to end with pictures: img2img from photos and files, inpaint by replying."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from tests.harness.pictures import (
    decode,
    jpeg_bytes,
    mean_difference,
    png_bytes,
    sample_photo,
    white_fraction,
)
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(30)


async def test_photo_with_draw_caption_is_img2img_from_that_photo(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        sent = env.fake.send_photo(
            alice, alice, png_bytes(sample_photo()), caption="/draw a castle"
        )
        (call,) = await env.wait_result(alice)
        (body,) = env.generations("img2img")
        assert body["prompt"] == "a castle" and "mask" not in body
        init = decode(body["init_images"][0])
        largest = decode(env.fake.file_bytes(sent["photo"][-1]["file_id"]))  # Telegram's JPEG
        assert init.size == largest.size == (320, 240)
        assert mean_difference(init, largest) < 1.0
        assert call.params["caption"].startswith("a castle\n🌱 ")
        assert env.generations("txt2img") == []


async def test_draw_replying_to_a_photo_uses_that_photo(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        photo = env.fake.send_photo(alice, alice, jpeg_bytes(sample_photo(400, 320)))
        await env.wait_message(alice, "What should I draw from this picture?")
        env.fake.send_text(alice, alice, "/draw a castle --strength 0.4", reply_to=photo)
        await env.wait_result(alice)
        (body,) = env.generations("img2img")
        assert body["denoising_strength"] == 0.4 and "mask" not in body
        init = decode(body["init_images"][0])
        largest = decode(env.fake.file_bytes(photo["photo"][-1]["file_id"]))
        assert init.size == (400, 320) and mean_difference(init, largest) < 1.0


async def test_image_files_keep_png_and_transparency(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        picture = sample_photo(256, 256)
        env.fake.send_document(
            alice, alice, png_bytes(picture), "pic.png", "image/png", caption="/draw a boat"
        )
        await env.wait_result(alice)
        (body,) = env.generations("img2img")
        assert mean_difference(decode(body["init_images"][0]), picture) == 0  # byte-exact pixels
        # a transparent PNG file alone: the transparent part is what gets repainted
        clear = picture.convert("RGBA")
        clear.paste((0, 0, 0, 0), (128, 128, 256, 256))
        env.fake.send_document(
            alice, alice, png_bytes(clear), "clear.png", "image/png", caption="/draw a moon"
        )
        await env.wait_result(alice, count=2)
        body = env.generations("img2img")[-1]
        mask = decode(body["mask"])
        assert white_fraction(mask, (144, 144, 240, 240)) > 0.9
        assert white_fraction(mask, (0, 0, 100, 100)) < 0.05
        await env.wait_message(alice, "Using the transparent area, 25% of the picture")
        # /draw replying to an image file uses the file as it was sent
        wide = sample_photo(384, 256)
        document = env.fake.send_document(alice, alice, png_bytes(wide), "wide.png", "image/png")
        await env.wait_message(alice, "What should I draw from this picture?")
        env.fake.send_text(alice, alice, "/draw a wide boat", reply_to=document)
        await env.wait_result(alice, count=3)
        body = env.generations("img2img")[-1]
        assert body["prompt"] == "a wide boat" and "mask" not in body
        assert mean_difference(decode(body["init_images"][0]), wide) == 0
        # a file that is not a picture
        env.fake.send_document(alice, alice, b"%PDF-1.4", "doc.pdf", "application/pdf")
        await env.wait_message(alice, "That file is not a picture I can read.")


async def test_replying_to_a_result_with_a_mask_a_transparent_png_or_a_painted_copy(
    tmp_path,
) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw a garden --seed 1")
        await env.wait_result(alice)
        result = next(m for m in env.fake.bot_messages(alice) if "photo" in m)
        result_png = decode(env.fake.photos_sent(alice)[-1])

        # 1. a black-and-white mask (sent as a photo, so recompressed to JPEG): white = change
        mask_picture = Image.new("RGB", (256, 256), "black")
        mask_picture.paste((255, 255, 255), (0, 0, 128, 128))
        env.fake.send_photo(
            alice, alice, jpeg_bytes(mask_picture), caption="a pond", reply_to=result
        )
        await env.wait_result(alice, count=2)
        body = env.generations("img2img")[-1]
        assert body["prompt"] == "a pond"
        # the init image is the stored PNG of the result, not Telegram's JPEG of it
        assert mean_difference(decode(body["init_images"][0]), result_png) == 0
        mask = decode(body["mask"])
        assert white_fraction(mask, (10, 10, 110, 110)) > 0.9
        assert white_fraction(mask, (150, 150, 250, 250)) < 0.05
        await env.wait_message(alice, "Using the white area of your mask, 25% of the picture")

        # 2. the result with a transparent hole, as a PNG file; no caption keeps the prompt
        holed = result_png.convert("RGBA")
        holed.paste((0, 0, 0, 0), (128, 128, 256, 256))
        env.fake.send_document(
            alice, alice, png_bytes(holed), "hole.png", "image/png", reply_to=result
        )
        await env.wait_result(alice, count=3)
        body = env.generations("img2img")[-1]
        assert body["prompt"] == "a garden"
        mask = decode(body["mask"])
        assert white_fraction(mask, (144, 144, 240, 240)) > 0.9
        assert white_fraction(mask, (10, 10, 110, 110)) < 0.05
        await env.wait_message(alice, "Using the transparent area, 25% of the picture")

        # 3. a painted-over copy of what Telegram showed (its JPEG), painted in the middle
        shown = decode(env.fake.file_bytes(result["photo"][-1]["file_id"])).convert("RGB")
        ImageDraw.Draw(shown).rectangle((96, 96, 160, 160), fill=(255, 0, 255))
        env.fake.send_photo(
            alice, alice, jpeg_bytes(shown, 80), caption="/draw a fountain", reply_to=result
        )
        await env.wait_result(alice, count=4)
        body = env.generations("img2img")[-1]
        assert body["prompt"] == "a fountain"
        mask = decode(body["mask"])
        assert white_fraction(mask, (104, 104, 152, 152)) > 0.9
        assert white_fraction(mask, (0, 0, 64, 64)) < 0.05
        assert white_fraction(mask, (200, 200, 256, 256)) < 0.05
        await env.wait_message(alice, "Using the painted area")
        assert len(env.generations("img2img")) == 3 and len(env.generations("txt2img")) == 1

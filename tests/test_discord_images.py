"""Discord end to end: replying to a result (a painted-over copy → inpaint, words → img2img)
and the "Use as init image" message command."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from tests.harness.discord import discord_env
from tests.harness.pictures import decode, mean_difference, png_bytes, sample_photo, white_fraction

pytestmark = pytest.mark.timeout(30)


def painted(png: bytes) -> bytes:
    """The picture with its top-left quarter painted over in bright green, as a JPEG."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    ImageDraw.Draw(image).rectangle((0, 0, width // 2, height // 2), fill=(0, 255, 0))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def replies_to(env, message_id: str) -> list[dict]:
    """Bot messages in the channel replying to `message_id`."""
    return [
        m
        for m in env.fake.channel_messages()
        if m["author"]["id"] == env.fake.app_id
        and (m.get("message_reference") or {}).get("message_id") == message_id
    ]


async def test_a_painted_reply_to_a_result_is_inpaint(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        fake = env.fake
        ix = await fake.slash("draw", {"prompt": "a quiet harbour", "seed": 3})
        result = await env.result(ix)
        original = env.png_of(result)
        asked = await fake.user_message(
            content="",
            attachments=[("paint.jpg", painted(original), "image/jpeg")],
            reply_to=result,
        )

        def done() -> dict | None:
            for message in replies_to(env, asked["id"]):
                if message["embeds"] and message["attachments"]:
                    return message
            return None

        answer = await env.until(done)
        (body,) = env.generations("img2img")
        assert body["prompt"] == "a quiet harbour"  # no words: the result's own prompt
        assert mean_difference(decode(body["init_images"][0]), decode(original)) == 0
        mask = decode(body["mask"])
        width, height = mask.size
        assert white_fraction(mask, (0, 0, width // 2 - 8, height // 2 - 8)) > 0.95
        assert white_fraction(mask, (width // 2 + 8, height // 2 + 8, width, height)) < 0.05
        footer = answer["embeds"][0]["footer"]["text"]
        assert footer.startswith("Using the painted area, 2") and "% of the picture" in footer
        assert answer["content"] == ""  # the "Got it" status became the result


async def test_words_replying_to_a_result_are_img2img_with_options(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        fake = env.fake
        ix = await fake.slash("draw", {"prompt": "a harbour", "seed": 3, "count": 2})
        result = await env.result(ix)
        asked = await fake.user_message(
            content=f"<@{fake.app_id}> #2 a harbour at night --strength 0.4", reply_to=result
        )
        await env.until(
            lambda: any(m["embeds"] and m["attachments"] for m in replies_to(env, asked["id"]))
        )
        (body,) = env.generations("img2img")
        assert body["prompt"] == "a harbour at night" and body["denoising_strength"] == 0.4
        second = decode(env.png_of(result, 1))  # "#2": the second picture of the batch
        assert mean_difference(decode(body["init_images"][0]), second) == 0
        # bad options get a sentence as a reply, and nothing is drawn
        asked = await fake.user_message(content="a harbour --stepz 9", reply_to=result)
        await env.until(
            lambda: any(
                "Unknown option --stepz" in m["content"] for m in replies_to(env, asked["id"])
            )
        )
        # chatting in the channel (or replying to something else) is not for us
        await fake.user_message(content="nice picture!")
        await fake.user_message(content="agreed", reply_to=asked)
        assert len(env.generations("img2img")) == 1


async def test_use_as_init_image_asks_for_a_prompt_then_draws_from_the_picture(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        fake = env.fake
        photo = png_bytes(sample_photo())
        posted = await fake.user_message(
            content="my sketch", attachments=[("sketch.png", photo, "image/png")]
        )
        opener = await fake.context_menu("Use as init image", posted, user="bob")
        await fake.wait_for("callback", interaction=opener)
        assert opener.response_type == 9 and opener.modal["title"] == "Draw from this picture"
        field = opener.modal["components"][0]["components"][0]
        submit = await fake.submit_modal(
            opener, {field["custom_id"]: "a castle at dusk --strength 0.6 --seed 5"}, user="bob"
        )
        await env.result(submit)
        (body,) = env.generations("img2img")
        assert (body["prompt"], body["seed"], body["denoising_strength"]) == (
            "a castle at dusk",
            5,
            0.6,
        )
        assert mean_difference(decode(body["init_images"][0]).resize((320, 240)), decode(photo)) < 3

        # on one of our results the box starts with its prompt
        result = fake.original_message(submit)
        opener = await fake.context_menu("Use as init image", result)
        await fake.wait_for("callback", interaction=opener)
        assert opener.modal["components"][0]["components"][0]["value"] == "a castle at dusk"

        text_only = await fake.user_message(content="no picture here")
        ix = await fake.context_menu("Use as init image", text_only)
        assert (await env.ephemeral(ix)).startswith("That message has no picture.")

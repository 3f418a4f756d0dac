"""Discord end to end: results under the upload limit (PNG, lossless WebP, lossy WebP — and
saying so) and delivery after the 15-minute interaction token has expired."""

from __future__ import annotations

import pytest

from tests.fakes.discord_api import FakeDiscord
from tests.harness.discord import discord_env
from tests.harness.pictures import decode, mean_difference

pytestmark = pytest.mark.timeout(30)


async def test_results_over_the_upload_limit_are_re_encoded_and_say_so(tmp_path) -> None:
    async with FakeDiscord() as fake, discord_env(tmp_path, fake=fake) as env:
        request = {"prompt": "a detailed fox", "seed": 11, "size": "512x512"}
        result = await env.result(await fake.slash("draw", request))
        png = env.png_of(result)
        assert result["attachments"][0]["filename"].endswith(".png")
        assert "Re-encoded" not in result["embeds"][0]["footer"]["text"]

        fake.upload_limit = len(png) - 1  # the PNG no longer fits: lossless WebP, same pixels
        result = await env.result(await fake.slash("draw", request))
        (attachment,) = result["attachments"]
        assert attachment["filename"].endswith(".webp")
        lossless = env.png_of(result)
        assert len(lossless) <= fake.upload_limit
        picture = decode(lossless)
        assert picture.format == "WEBP" and mean_difference(picture, decode(png)) == 0
        footer = result["embeds"][0]["footer"]["text"]
        assert "Re-encoded as lossless WebP (the same pixels)" in footer

        fake.upload_limit = len(lossless) - 1  # not even that: high-quality lossy WebP
        result = await env.result(await fake.slash("draw", request))
        lossy = env.png_of(result)
        assert len(lossy) <= fake.upload_limit
        picture = decode(lossy)
        assert picture.format == "WEBP" and picture.size == (512, 512)
        assert mean_difference(picture, decode(png)) < 8
        footer = result["embeds"][0]["footer"]["text"]
        assert "Re-encoded as WebP at quality" in footer and "fine detail may differ" in footer

        # two pictures share the limit
        fake.upload_limit = len(png) + len(png) // 2
        result = await env.result(await fake.slash("draw", {**request, "count": 2}))
        sizes = [a["size"] for a in result["attachments"]]
        assert len(sizes) == 2 and sum(sizes) <= fake.upload_limit
        assert (await env.settled("alice")).reserved == 0


async def test_after_the_token_expired_the_result_is_a_reply_that_pings_the_user(
    tmp_path,
) -> None:
    async with discord_env(tmp_path, webui_delay=0.6) as env:
        fake = env.fake
        ix = await fake.slash("draw", {"prompt": "a patient fox", "seed": 5})

        def running() -> bool:
            message = fake.original_message(ix)
            return bool(message and "Drawing…" in message["content"])

        await env.until(running)
        fake.expire_token(ix)  # as if the job had taken more than 15 minutes

        def posted() -> dict | None:
            for message in fake.channel_messages():
                ref = message.get("message_reference") or {}
                if ref.get("message_id") == ix.original_message_id and message["attachments"]:
                    return message
            return None

        reply = await env.until(posted)
        alice = fake.user("alice")
        assert reply["content"] == f"<@{alice['id']}>, your picture is ready."
        assert alice["id"] in [m["id"] for m in reply["mentions"]]
        assert reply["embeds"][0]["description"] == "a patient fox"
        assert env.generations()[0]["seed"] == 5
        # the old status says where the result went, without its Cancel button
        status = await env.until(
            lambda: (m := fake.original_message(ix)) and m["content"].startswith("Done") and m
        )
        assert status["content"] == "Done — the result is in the reply below."
        assert status["components"] == [] and status["attachments"] == []
        assert fake.calls_of("edit_webhook_message")[-1].status == 401
        # its buttons work like any others
        custom_id = reply["components"][0]["components"][0]["custom_id"]
        press = await fake.click(reply, custom_id)
        await env.result(press)
        assert (await env.settled("alice")).available == 10_000 - 2

"""/describe end to end through both adapters: the WebUI's interrogator (clip or deepbooru)
and the PNG's own parameters, and ▶ Draw this starting /draw from that prompt."""

from __future__ import annotations

import pytest

from tests.harness.discord import discord_env
from tests.harness.pictures import png_bytes, sample_photo
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(40)


async def test_telegram_describe_a_result_and_draw_it_again(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        fake.send_text(alice, alice, "/draw a red fox --neg blurry --seed 4")
        await env.wait_result(alice)
        result = fake.bot_messages(alice)[-1]
        fake.send_text(alice, alice, "/describe", reply_to=result)
        answer = await env.wait_message(alice, "🔎 clip:")
        text = answer["text"]
        assert "🔎 clip: a placeholder picture with a" in text
        assert "📝 Its own prompt: a red fox" in text and "Negative prompt: blurry" in text
        assert "Steps: 4" in text and "Seed: 4" in text
        assert text.endswith('▶ /draw a red fox --neg "blurry"')
        requests = [path for path, _ in env.webui.requests]
        assert "/sdapi/v1/interrogate" in requests and "/sdapi/v1/png-info" in requests
        # ▶ draws that prompt, for whoever pressed, replying to the answer
        (button,) = [b for row in answer["reply_markup"]["inline_keyboard"] for b in row]
        assert button["text"] == "▶ Draw this"
        fake.press_button(alice, alice, answer, button["callback_data"])
        await env.wait_result(alice, count=2)
        drawn = env.generations()[-1]
        assert (drawn["prompt"], drawn["negative_prompt"]) == ("a red fox", "blurry")
        assert (
            fake.bot_messages(alice)[-1]["reply_to_message"]["message_id"] == (answer["message_id"])
        )
        # describing is free; the two draws were charged
        assert (await env.settled(alice)).available == 10_000 - 2


async def test_telegram_describe_a_photo_with_deepbooru_and_without_a_picture(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        fake.send_photo(alice, alice, png_bytes(sample_photo()), caption="/describe deepbooru")
        answer = await env.wait_message(alice, "🔎 deepbooru:")
        assert "no_humans, simple_background" in answer["text"]
        assert "📝" not in answer["text"]  # a photo carries no parameters
        assert answer["text"].rsplit("\n", 1)[-1].startswith("▶ /draw no_humans, simple_background")
        fake.send_text(alice, alice, "/describe")
        await env.wait_message(alice, "Send /describe as the caption of a picture")
        fake.send_photo(alice, alice, png_bytes(sample_photo()), caption="/describe blip")
        await env.wait_message(alice, "model must be one of: clip, deepbooru; you gave 'blip'.")
        assert env.generations() == []


async def test_telegram_describe_when_the_webui_is_down_says_so(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        await env.webui.stop()
        fake.send_photo(alice, alice, png_bytes(sample_photo()), caption="/describe")
        await env.wait_message(alice, "No drawing server is answering right now")
        env.allowed_errors.append("marked down")


async def answer_of(env, ix) -> dict:
    """The public answer of a deferred interaction (its response, or a follow-up)."""

    def find() -> dict | None:
        messages = [env.fake.original_message(ix), *env.fake.followups(ix)]
        found = [m for m in messages if m and "🔎" in (m.get("content") or "")]
        return found[0] if found else None

    return await env.until(find)


async def test_discord_describe_slash_menu_and_draw_this(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        fake = env.fake
        ix = await fake.slash(
            "describe",
            {"interrogator": "clip"},
            attachments={"picture": ("photo.png", png_bytes(sample_photo()), "image/png")},
        )
        answer = await answer_of(env, ix)
        assert "🔎 clip:" in answer["content"]
        assert answer["content"].rsplit("\n", 1)[-1].startswith("▶ /draw a placeholder picture")
        # the message menu on one of our results: its own prompt
        result = await env.result(await fake.slash("draw", {"prompt": "a blue owl", "seed": 2}))
        menu = await fake.context_menu("Describe", result)
        described = await answer_of(env, menu)
        assert "📝 Its own prompt: a blue owl" in described["content"]
        (button,) = [b for row in described["components"] for b in row["components"]]
        assert button["label"] == "Draw this"
        press = await fake.click(described, button["custom_id"], user="bob")
        await env.result(press)
        assert env.generations()[-1]["prompt"] == "a blue owl"
        assert (await env.settled("bob")).available == 10_000 - 1

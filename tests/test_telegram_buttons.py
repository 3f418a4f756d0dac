"""Telegram end to end: 🔁 🎨 ⬆️ 📄 under results, who pays, and buttons after a restart."""

from __future__ import annotations

import contextlib

import pytest

from devwebui import DevWebUI
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.pictures import decode, mean_difference
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(40)


def button(message: dict, label: str) -> str:
    """callback_data of the button whose label starts with `label`."""
    for row in message["reply_markup"]["inline_keyboard"]:
        for b in row:
            if b["text"].startswith(label):
                return b["callback_data"]
    raise AssertionError(f"no {label!r} button in {message.get('reply_markup')}")


def results(env, chat) -> list[dict]:
    return [m for m in env.fake.bot_messages(chat) if "🌱" in (m.get("caption") or "")]


async def test_reroll_variations_upscale_and_original(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        fake.send_text(alice, alice, "/draw a red fox --seed 42")
        await env.wait_result(alice)
        (first,) = results(env, alice)
        first_png = fake.photos_sent(alice)[0]

        # 🔁 the same request with a new seed, answered once it is queued, replying to the result
        query = fake.press_button(alice, alice, first, button(first, "🔁"))
        (_, second) = await env.wait_result(alice, count=2)
        answer = fake.calls_of("answerCallbackQuery")[0]
        assert answer.params["callback_query_id"] == query["id"]
        assert "show_alert" not in answer.params  # nothing to say: the job is on its way
        assert answer.timestamp <= second.timestamp
        reroll = env.generations()[-1]
        assert reroll["prompt"] == "a red fox" and reroll["seed"] != 42
        assert results(env, alice)[-1]["reply_to_message"]["message_id"] == first["message_id"]

        # 🎨 img2img from exactly this result
        fake.press_button(alice, alice, first, button(first, "🎨"))
        await env.wait_result(alice, count=3)
        (variation,) = env.generations("img2img")
        assert mean_difference(decode(variation["init_images"][0]), decode(first_png)) == 0
        assert variation["denoising_strength"] == 0.6 and variation["seed"] != 42

        # ⬆️ through extra-single-image: twice the size, only 📄 under it
        fake.press_button(alice, alice, first, button(first, "⬆️"))
        (upscaled_call,) = await fake.wait_for(
            "sendPhoto", lambda c: "512×512" in (c.params.get("caption") or "")
        )
        (extra,) = env.generations("extra-single-image")
        assert mean_difference(decode(extra["image"]), decode(first_png)) == 0
        upscaled = results(env, alice)[-1]
        assert [b["text"] for row in upscaled["reply_markup"]["inline_keyboard"] for b in row] == [
            "📄 Original"
        ]

        # 📄 the PNG as it was made, as a document (no recompression)
        fake.press_button(alice, alice, first, button(first, "📄"))
        await fake.wait_for("sendDocument")
        ((name, data),) = fake.documents_sent(alice)
        assert data == first_png and name.endswith("-1.png")
        assert len(fake.calls_of("answerCallbackQuery")) == 4
        view = await env.settled(alice)
        assert view.available == 10_000 - 4  # draw, reroll, variations, upscale: 1 credit each


async def test_anyone_may_reroll_and_pays_for_it(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        bob = env.fake.user(1002, "Bob")
        group = env.fake.group_chat("Artists", supergroup=True)
        env.fake.send_text(group, alice, "/draw@drawbridge_bot a harbour --n 2")
        buttons = await env.wait_message(group, "Buttons for the 2 pictures above")
        env.fake.press_button(group, bob, buttons, button(buttons, "🎨 #2"))
        await env.fake.wait_for("sendPhoto", lambda c: "🌱" in (c.params.get("caption") or ""))
        # the batch cost Alice 1 credit; the variation Bob pressed cost Bob, not Alice
        assert (await env.settled(alice)).available == 10_000 - 1
        assert (await env.settled(bob)).available == 10_000 - 1
        (variation,) = env.generations("img2img")
        second = env.fake.photos_sent(group)[1]
        assert mean_difference(decode(variation["init_images"][0]), decode(second)) == 0


async def test_buttons_and_queued_jobs_survive_a_restart(tmp_path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeTelegram())
        webui = DevWebUI(delay=0.05)
        await webui.start()
        port = webui.port
        alice = fake.user(1001, "Alice")
        async with telegram_env(tmp_path, fake=fake, webui=webui) as env:
            fake.send_text(alice, alice, "/draw a lasting fox --seed 9")
            await env.wait_result(alice)
            await env.settled(alice)
            # the WebUI dies; the next job waits in the queue when we shut down
            await webui.kill()
            fake.send_text(alice, alice, "/draw a patient owl")
            # the job is stored first; its first status ("Queued…") is the acknowledgement
            acks = await fake.wait_for(
                "sendMessage", lambda c: "✖ Cancel" in str(c.params.get("reply_markup")), count=2
            )
            waiting = acks[-1].result  # the owl's status message
            backend = env.engine.dispatcher.backends[0]
            await env.until(lambda: not backend.up and len(env.engine.queue) == 1)
        first = results(env, alice)[0]
        first_png = fake.photos_sent(alice)[0]

        revived = await stack.enter_async_context(DevWebUI(delay=0.05, port=port))
        async with telegram_env(tmp_path, fake=fake, webui=revived) as env2:
            # the job queued before the restart runs and is delivered; its status goes away
            owl = (await env2.wait_result(alice, count=2))[-1]
            assert owl.params["caption"].startswith("a patient owl")
            await env2.until(lambda: fake.message(alice, waiting["message_id"]) is None)
            # a button of the first run still works
            fake.press_button(alice, alice, first, button(first, "🔁"))
            await env2.wait_result(alice, count=3)
            assert env2.generations()[-1]["prompt"] == "a lasting fox"
            fake.press_button(alice, alice, first, button(first, "📄"))
            await fake.wait_for("sendDocument")
            assert fake.documents_sent(alice)[0][1] == first_png

"""Telegram end to end: groups and privacy mode, the chat allow-list, webhook mode, and the
commands around a job (/queue /quota /cancel /models /settings), with the WebUI up or down."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from tests.fakes.telegram_api import FakeTelegram
from tests.harness.pictures import jpeg_bytes, sample_photo
from tests.harness.telegram import telegram_env
from tests.harness.webui import dead_webui

pytestmark = pytest.mark.timeout(30)


def _buttons(message: dict) -> list[dict]:
    markup = message.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


async def test_group_with_privacy_mode_answers_its_own_commands(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        group = env.fake.group_chat("Artists", supergroup=True)
        env.fake.send_text(group, alice, "/draw@other_bot a cat")  # not for us
        env.fake.send_text(group, alice, "nice pictures today")  # not a command
        asked = env.fake.send_text(group, alice, "/draw@DrawBridge_Bot a dog --seed 4")
        (call,) = await env.wait_result(group)
        assert call.params["caption"].startswith("a dog\n🌱 4")
        result = env.fake.bot_messages(group)[-1]
        assert result["reply_to_message"]["message_id"] == asked["message_id"]
        env.fake.send_photo(group, alice, jpeg_bytes(sample_photo()), caption="/draw a bird")
        await env.wait_result(group, count=2)
        assert [b["prompt"] for b in env.generations()] == ["a dog"]
        assert [b["prompt"] for b in env.generations("img2img")] == ["a bird"]
        assert len(env.fake.dropped_updates) == 2  # Telegram never delivered the other two


async def test_group_without_privacy_mode_still_ignores_what_is_not_for_it(tmp_path) -> None:
    async with FakeTelegram(privacy_mode=False) as fake:
        async with telegram_env(tmp_path, fake=fake) as env:
            alice = fake.user(1001, "Alice")
            group = fake.group_chat("Chatty")
            fake.send_text(group, alice, "/draw@other_bot a cat")
            fake.send_text(group, alice, "hello everyone")
            fake.send_photo(group, alice, jpeg_bytes(sample_photo()))
            fake.send_text(group, alice, "/start@other_bot")
            fake.send_text(group, alice, "/quota")
            await env.wait_message(group, "Alice: 10000 credits left today")
            await asyncio.sleep(0.2)
            assert len(fake.bot_messages(group)) == 1
            assert env.webui.requests == [] or all(
                not p.endswith(("/txt2img", "/img2img")) for p, _ in env.webui.requests
            )


async def test_chat_allow_list(tmp_path) -> None:
    async with FakeTelegram() as fake:
        allowed = fake.group_chat("Allowed")
        other = fake.group_chat("Other")
        settings = {
            "telegram_allowed_chats": f"{allowed.id}",
            "admin_ids": "telegram:1001",
        }
        async with telegram_env(tmp_path, fake=fake, **settings) as env:
            admin = fake.user(1001, "Ada")
            bob = fake.user(1002, "Bob")
            fake.send_text(other, bob, "/draw a fox")
            await env.wait_message(other, "This bot is not enabled in this chat.")
            fake.send_text(bob, bob, "/draw a fox")
            await env.wait_message(bob, "This bot is not enabled in this chat.")
            fake.send_text(allowed, bob, "/draw a fox in the allowed group")
            await env.wait_result(allowed)
            fake.send_text(admin, admin, "/draw an admin's fox")  # admins: their private chat
            await env.wait_result(admin)
            prompts = [b["prompt"] for b in env.generations()]
            assert prompts == ["a fox in the allowed group", "an admin's fox"]


async def test_webhook_mode_receives_updates_with_the_secret(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = "https://bot.example.test/telegram/hook"  # public URL; a proxy forwards to listen
    local = f"http://127.0.0.1:{port}/telegram/hook"
    async with telegram_env(
        tmp_path,
        telegram_webhook_url=url,
        telegram_webhook_listen=f"127.0.0.1:{port}",
        telegram_webhook_secret="s3cret-token",
    ) as env:
        (call,) = env.fake.calls_of("setWebhook")
        assert call.params["url"] == url and call.params["secret_token"] == "s3cret-token"
        assert call.params["allowed_updates"] == ["message", "callback_query"]
        assert env.fake.calls_of("getUpdates") == []
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw a hooked fish --seed 8")
        (update,) = env.fake.pending_updates  # Telegram would now POST it to the webhook
        async with aiohttp.ClientSession() as http:
            wrong = await http.post(
                local, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"}
            )
            assert wrong.status == 403
            right = await http.post(
                local, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
            )
            assert right.status == 200
        (photo,) = await env.wait_result(alice)
        assert photo.params["caption"].startswith("a hooked fish\n🌱 8")


async def test_queue_quota_cancel_and_the_per_user_cap_while_the_webui_is_down(tmp_path) -> None:
    webui = await dead_webui()
    async with telegram_env(tmp_path, webui=webui, max_queued_per_user=2) as env:
        alice = env.fake.user(1001, "Alice")
        bob = env.fake.user(1002, "Bob")
        env.fake.send_text(alice, alice, "/draw first")
        # no backend is up: the user is told so at submit, with no pretended start time
        first = await env.wait_message(alice, "no drawing server is up right now")
        env.fake.send_text(alice, alice, "/draw second")
        # her two waiting jobs share one status message (the first's, edited)
        await env.until(
            lambda: (
                (env.fake.message(alice, first["message_id"]) or {})
                .get("text", "")
                .startswith(
                    "⏳ Your 2 jobs are queued: #1, #2, but no drawing server is up right now"
                )
            )
        )
        env.fake.send_text(alice, alice, "/draw third")
        await env.wait_message(
            alice,
            "You already have 2 jobs waiting (the limit is 2). Wait for one to finish or /cancel one.",
        )
        env.fake.send_text(alice, alice, "/queue")
        queue = await env.wait_message(alice, "Your jobs:")
        assert "2 waiting, 0 drawing, on 0 servers." in queue["text"]
        assert "— position 1, waiting for a drawing server" in queue["text"]
        assert "starting in about" not in queue["text"]
        assert "No drawing server is available right now" in queue["text"]
        env.fake.send_text(alice, alice, "/quota")
        await env.wait_message(alice, "9998 credits left today (daily 10000, extra 0); 2 reserved")

        jobs = [job.id for job in env.engine.user_jobs("telegram:1001")]
        env.fake.send_text(bob, bob, f"/cancel {jobs[0]}")
        await env.wait_message(
            bob, "Only the person who started this job (or an admin) can do that."
        )
        env.fake.send_text(bob, bob, "/cancel")
        await env.wait_message(bob, "You have no queued or running jobs.")

        env.fake.send_text(alice, alice, "/cancel")
        await env.wait_message(alice, f"Cancelled job {jobs[1]}. Your 1 credit was returned.")
        # their status message lists the one left
        await env.until(
            lambda: env.fake.message(alice, first["message_id"])["text"].startswith(
                "⏳ Your 1 job is queued: #1, but no drawing server"
            )
        )
        env.fake.send_text(alice, alice, f"/cancel {jobs[0]}")
        await env.until(
            lambda: env.fake.message(alice, first["message_id"])["text"].startswith("Cancelled.")
        )
        view = await env.settled(alice)
        assert view.available == 10_000 and view.reserved == 0
        assert env.generations() == []


async def test_webui_failure_is_reported_and_refunded(tmp_path) -> None:
    async with telegram_env(tmp_path, max_attempts=1) as env:
        alice = env.fake.user(1001, "Alice")
        await env.webui.kill()
        env.fake.send_text(alice, alice, "/draw a doomed fox")
        message = await env.wait_message(alice, "This job failed:")
        assert "The drawing server failed on this job. Please try again" in message["text"]
        assert "127.0.0.1" not in message["text"] and "WEBUI_URLS" not in message["text"]
        assert message["text"].endswith("Your 1 credit was returned.")
        assert message["reply_to_message"]["text"] == "/draw a doomed fox"
        view = await env.settled(alice)
        assert view.available == 10_000 and view.reserved == 0
        assert env.fake.calls_of("sendPhoto") == []


async def test_models_are_listed_in_pages(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/models")
        first = await env.wait_message(alice, "Checkpoints (--model):")
        assert "• v1-5-pruned-emaonly\n• sd_xl_base_1.0" in first["text"]
        assert "• Euler a" in first["text"] and "Page 1 of 2" in first["text"]
        (forward,) = _buttons(first)
        env.fake.press_button(alice, alice, first, forward["callback_data"])
        await env.until(
            lambda: "Page 2 of 2" in env.fake.message(alice, first["message_id"])["text"]
        )
        second = env.fake.message(alice, first["message_id"])
        assert (
            "LoRAs (write <lora:NAME:0.8> in the prompt):\n• add_detail\n• film_grain"
            in (second["text"])
        )
        assert [b["text"] for b in _buttons(second)] == ["◀"]


async def test_settings_menu_sets_the_defaults_draw_uses(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        bob = env.fake.user(1002, "Bob")
        group = env.fake.group_chat("Artists")
        env.fake.send_text(group, alice, "/settings")
        menu = await env.wait_message(group, "Your defaults for /draw:")
        assert "Size: preset's (256×256)" in menu["text"]
        size = next(b for b in _buttons(menu) if b["text"] == "512×768")
        query = env.fake.press_button(group, bob, menu, size["callback_data"])
        await env.fake.wait_for("answerCallbackQuery")
        assert env.fake.callback_answers[query["id"]]["show_alert"] is True  # not Bob's menu
        env.fake.press_button(group, alice, menu, size["callback_data"])
        await env.until(
            lambda: "Size: 512×768" in env.fake.message(group, menu["message_id"])["text"]
        )
        edited = env.fake.message(group, menu["message_id"])
        assert any(b["text"] == "✓ 512×768" for b in _buttons(edited))
        env.fake.send_text(group, alice, "/settings steps 12")
        await env.wait_message(group, "Saved.\nYour defaults for /draw:")
        env.fake.send_text(group, alice, "/settings size 4000x4000")
        await env.wait_message(group, "--size must be between 64 and 2048; you gave 4000x4000.")
        env.fake.send_text(group, alice, "/draw a fox with my defaults")
        await env.wait_result(group)
        (body,) = env.generations()
        assert (body["width"], body["height"], body["steps"]) == (512, 768, 12)
        assert (await env.engine.db.users.get_settings("telegram:1002")) is None

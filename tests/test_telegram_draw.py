"""Telegram end to end: /draw and what comes back (real python-telegram-bot ↔ fake Bot API,
real engine ↔ DevWebUI, real SQLite)."""

from __future__ import annotations

import time

import pytest

from tests.fakes.telegram_api import FakeTelegram
from tests.harness.pictures import decode
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(30)


async def test_draw_sends_exact_values_and_a_photo_comes_back(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        sent = env.fake.send_text(
            alice, alice, "/draw a red fox --seed 42 --steps 20 --size 512x512"
        )
        (call,) = await env.wait_result(alice)
        (body,) = env.generations()
        assert (body["prompt"], body["seed"], body["steps"]) == ("a red fox", 42, 20)
        assert (body["width"], body["height"]) == (512, 512)
        caption = call.params["caption"]
        assert caption.startswith("a red fox\n🌱 42 · 512×512 · ")
        photo = decode(env.fake.photos_sent(alice)[-1])
        assert photo.format == "PNG" and photo.size == (512, 512)
        result = env.fake.bot_messages(alice)[-1]
        assert result["reply_to_message"]["message_id"] == sent["message_id"]
        labels = [b["text"] for row in result["reply_markup"]["inline_keyboard"] for b in row]
        assert labels == [
            "🔁 Reroll",
            "🎨 Variations",
            "⬆️ Upscale",
            "📄 Original",
            # under a single picture (512×512: already square, so no Make square)
            "🔍 Zoom out ×1.5",
            "🔍 ×2",
            "⬅",
            "➡",
            "⬆",
            "⬇",
            "🙂 Fix faces",
        ]
        data = [
            b["callback_data"] for row in result["reply_markup"]["inline_keyboard"] for b in row
        ]
        assert all(len(d.encode()) <= 64 for d in data)
        # one status message (the acknowledgement, sent after the job was queued, showing its
        # newest state), removed when the result came
        (status,) = [c for c in env.fake.calls_of("sendMessage") if c.chat_id == alice.id]
        assert status.params["reply_parameters"]["message_id"] == sent["message_id"]
        assert status.timestamp < call.timestamp
        await env.until(lambda: env.texts(alice) == [caption])
        view = await env.settled(alice)
        assert view.available == 10_000 - 1


async def test_plain_text_in_a_private_chat_is_draw(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "a lighthouse at night --seed 7")
        await env.wait_result(alice)
        assert [(b["prompt"], b["seed"]) for b in env.generations()] == [
            ("a lighthouse at night", 7)
        ]


async def test_bad_flags_get_a_sentence_and_no_webui_call(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw a fox --stepz 20")
        message = await env.wait_message(alice, "Unknown option --stepz")
        assert "did you mean --steps?" in message["text"]
        env.fake.send_text(alice, alice, "/draw")
        await env.wait_message(alice, "Please describe what to draw")
        env.fake.send_text(alice, alice, "/draw a fox --steps 500")
        await env.wait_message(alice, "--steps must be between 1 and 50; you gave 500.")
        assert env.generations() == []
        assert (await env.service.quota("telegram:1001")).available == 10_000


async def test_simplified_chinese_from_language_code(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        li = env.fake.user(1002, "Li", language_code="zh-hans")
        env.fake.send_text(li, li, "/draw 狐狸 --stepz 20")
        await env.wait_message(li, "未知选项 --stepz")
        env.fake.send_text(li, li, "/help")
        help_text = await env.wait_message(li, "用法：/draw 提示词 [选项]")
        assert "--seed N — 种子；-1 表示随机" in help_text["text"]
        env.fake.send_text(li, li, "/start")
        await env.wait_message(li, "你好，Li！")
        # the command menu is registered in English and Chinese
        assert [c["command"] for c in env.fake.commands()][:3] == ["start", "help", "draw"]
        zh = {c["command"]: c["description"] for c in env.fake.commands(language_code="zh")}
        assert zh["quota"] == "你的额度"


async def test_help_and_start_in_english(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/start")
        await env.wait_message(alice, "Hi Alice! I draw pictures with Stable Diffusion.")
        env.fake.send_text(alice, alice, "/help")
        message = await env.wait_message(alice, "Usage: /draw PROMPT [options]")
        assert "--steps N — sampling steps (1–50); default 4" in message["text"]
        assert "Commands: /draw" in message["text"]


async def test_quota_exhausted_says_so_and_charges_nothing(tmp_path) -> None:
    async with telegram_env(tmp_path, daily_credits=1) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw fox --n 2 --size 512x512 --steps 20")
        message = await env.wait_message(alice, "This needs 2 credits and you have 1 left.")
        assert "Credits refill at 00:00 UTC" in message["text"]
        assert env.generations() == []
        env.fake.send_text(alice, alice, "/quota")
        await env.wait_message(alice, "Alice: 1 credit left today (daily 1, extra 0)")


async def test_oversized_result_goes_as_a_document(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw a tall tower --size 64x2048 --seed 3")
        (call,) = await env.fake.wait_for("sendDocument")
        assert call.params["caption"].startswith("a tall tower\n🌱 3 · 64×2048")
        ((name, data),) = env.fake.documents_sent(alice)
        assert name.endswith(".png") and decode(data).size == (64, 2048)
        assert env.fake.calls_of("sendPhoto", ok=False) == []  # no refused photo first
        assert env.fake.photos_sent(alice) == []


async def test_a_batch_comes_as_an_album_with_buttons_after_it(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw two cats --n 2 --seed 10")
        (album,) = await env.fake.wait_for("sendMediaGroup")
        captions = [item.get("caption", "") for item in album.params["media"]]
        assert captions[0].startswith("two cats\n#1 · 🌱 10 · 256×256")
        assert captions[1] == "#2 · 🌱 11 · 256×256 · v1-5-pruned-emaonly"
        buttons = await env.wait_message(alice, "Buttons for the 2 pictures above")
        first_album_id = album.result[0]["message_id"]
        assert buttons["reply_to_message"]["message_id"] == first_album_id
        rows = buttons["reply_markup"]["inline_keyboard"]
        assert [b["text"] for b in rows[0]] == ["🔁 Reroll"]
        assert [b["text"] for b in rows[2]] == ["🎨 #2", "⬆️ #2", "📄 #2"]
        assert len(env.fake.photos_sent(alice)) == 2


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_flood_control_on_send_photo_delays_but_loses_nothing(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.fail_next("sendPhoto", error_code=429, retry_after=1)
        started = time.monotonic()
        env.fake.send_text(alice, alice, "/draw a patient fox --seed 5")
        await env.wait_result(alice, timeout=10)
        first, second = env.fake.calls_of("sendPhoto")
        assert (first.ok, first.error_code) == (False, 429)
        assert second.ok and second.timestamp - first.timestamp >= 1.0
        assert time.monotonic() - started >= 1.0
        assert len(env.fake.photos_sent(alice)) == 1
        assert (await env.settled(alice)).available == 10_000 - 1  # charged once, delivered


async def test_a_picture_that_cannot_be_downloaded_gets_a_sentence(tmp_path) -> None:
    from tests.harness.pictures import jpeg_bytes, sample_photo

    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.allowed_errors.append("downloading")
        env.fake.fail_next("getFile", error_code=400, description="Bad Request: wrong file_id")
        env.fake.send_photo(alice, alice, jpeg_bytes(sample_photo()), caption="/draw a castle")
        message = await env.wait_message(alice, "could not download that picture")
        assert env.fake.token not in message["text"]
        assert env.generations("img2img") == []


async def test_bot_answers_only_with_the_right_token(tmp_path) -> None:
    from adapters.telegram import TelegramAdapter, TelegramStartError
    from bot.service import Service
    from tests.harness.settings import make_settings

    async with FakeTelegram() as fake:
        settings = make_settings(
            tmp_path,
            ["http://127.0.0.1:9"],
            telegram_token="123:WRONGWRONGWRONGWRONG",
            telegram_api_base_url=fake.root,
        )
        async with Service(settings, run_jobs=False) as service:
            with pytest.raises(TelegramStartError) as info:
                async with TelegramAdapter(service, settings):
                    pass
        text = f"{info.value} {info.value!r} {info.value.__cause__} {info.value.__context__}"
        assert "WRONGWRONG" not in text
        assert "Telegram refused TELEGRAM_TOKEN" in str(info.value)

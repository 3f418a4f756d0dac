"""Telegram end to end: the status message (queue, progress with previews, throttled) and ✖."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from devwebui import DevWebUI
from tests.fakes.telegram_api import FakeTelegram, Limits
from tests.harness.pictures import decode
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(30)

STATUS_METHODS = ("editMessageText", "editMessageCaption", "editMessageMedia")


def _buttons(message: dict) -> list[dict]:
    markup = message.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


async def test_progress_edits_one_status_message_with_previews_throttled(tmp_path) -> None:
    interval = 0.4
    fake = FakeTelegram(limits=Limits(chat=(10, 1.0)))  # the chat limit is not what is tested
    async with (
        fake,
        DevWebUI(delay=1.6, preview_every=2) as webui,
        telegram_env(
            tmp_path,
            fake=fake,
            webui=webui,
            telegram_edit_interval=interval,
            telegram_preview_after=0,
            telegram_chat_limit=(10, 1.0),
        ) as env,
    ):
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw a slow river --steps 20")
        # while running: the status is a photo (the WebUI's preview) with a ✖ button
        status = await env.wait_message(
            alice, lambda m: "photo" in m and "Drawing" in m.get("caption", "")
        )
        assert [b["text"] for b in _buttons(status)] == ["✖ Cancel"]
        await env.wait_result(alice)
        await env.until(lambda: len(env.fake.bot_messages(alice)) == 1)  # status removed

        calls = [c for c in env.fake.calls if c.method != "getUpdates"]
        status_calls = [
            c
            for c in calls
            if c.method in STATUS_METHODS
            or (c.method == "sendPhoto" and "Drawing" in (c.params.get("caption") or ""))
        ]
        media_edits = [c for c in status_calls if c.method == "editMessageMedia"]
        assert media_edits, status_calls
        preview = decode(media_edits[-1].files[media_edits[-1].params["media"]["media"][9:]][1])
        assert preview.size == (64, 64)  # the WebUI's live preview, not the result
        # throttled: never two status changes closer than the interval …
        stamps = [c.timestamp for c in status_calls]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert gaps and min(gaps) >= interval - 0.05, gaps
        # … although the WebUI reported progress far more often
        polls = [p for p, _ in webui.requests if p.endswith("/progress")]
        assert len(status_calls) <= 1.6 / interval + 3 < len(polls)
        # and only when something changed: Telegram never answered "message is not modified"
        assert [c for c in calls if not c.ok] == []
        texts = [c.params.get("text") or c.params.get("caption") or "" for c in status_calls]
        # the acknowledgement is the first status, in its newest state when it went out
        (ack,) = [c for c in calls if c.method == "sendMessage"]
        assert ack.params["text"] in ("Queued: you are next.", "Drawing… 0%")
        assert ack.timestamp < status_calls[0].timestamp
        assert any(text.startswith("Drawing… ") and text.endswith("%") for text in texts)


async def test_queue_position_and_estimate_then_running(tmp_path) -> None:
    # a chat that takes ten messages a second, so each acknowledgement goes out at once
    fake = FakeTelegram(limits=Limits(chat=(10, 1.0)))
    async with (
        fake,
        telegram_env(
            tmp_path,
            fake=fake,
            webui_delay=0.5,
            telegram_edit_interval=0.2,
            telegram_chat_limit=(10, 1.0),
        ) as env,
    ):
        # four people, one job each (one person's jobs share one status: test_telegram_burst)
        users = [env.fake.user(1001 + i, f"User {i}") for i in range(4)]
        for i, user in enumerate(users):  # one runs, one waits on the WebUI, two in our queue
            env.fake.send_text(user, user, f"/draw picture {i}")
            await env.until(lambda user=user: len(env.fake.bot_messages(user)) == 1)
        status = await env.wait_message(users[3], "Queued: position 2, starting in about ")
        for user in users:
            await env.wait_result(user, timeout=15)
        edits = [
            c.params["text"]
            for c in env.fake.calls_of("editMessageText")
            if c.params["message_id"] == status["message_id"]
        ]
        assert edits and edits[-1] != status["text"]  # moved up or started, in place


async def test_cancel_own_job_from_its_status_message(tmp_path) -> None:
    async with telegram_env(tmp_path, webui_delay=2.0) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw a long job")
        status = await env.wait_message(alice, lambda m: bool(_buttons(m)))
        await env.until(lambda: env.webui.state.job_count > 0)  # it is running
        query = env.fake.press_button(alice, alice, status, _buttons(status)[0]["callback_data"])
        await env.fake.wait_for("answerCallbackQuery")
        assert env.fake.callback_answers[query["id"]].get("show_alert") is not True
        done = await env.wait_message(alice, "Cancelled. Your 1 credit was returned.")
        assert _buttons(done) == []  # the ✖ is gone
        assert (await env.service.quota("telegram:1001")).available == 10_000
        await env.until(lambda: "/sdapi/v1/interrupt" in [p for p, _ in env.webui.requests])
        await asyncio.sleep(0.3)
        assert env.fake.calls_of("sendPhoto") == [] or all(
            "🌱" not in (c.params.get("caption") or "") for c in env.fake.calls_of("sendPhoto")
        )


async def test_another_users_cancel_is_refused_politely(tmp_path) -> None:
    async with telegram_env(tmp_path, webui_delay=0.8) as env:
        alice = env.fake.user(1001, "Alice")
        bob = env.fake.user(1002, "Bob")
        group = env.fake.group_chat("Artists")
        env.fake.send_text(group, alice, "/draw@drawbridge_bot a shared picture")
        status = await env.wait_message(group, lambda m: bool(_buttons(m)))
        query = env.fake.press_button(group, bob, status, _buttons(status)[0]["callback_data"])
        await env.fake.wait_for("answerCallbackQuery")
        answer = env.fake.callback_answers[query["id"]]
        assert answer == {
            "text": "Only the person who started this job (or an admin) can do that.",
            "show_alert": True,
        }
        (call,) = await env.wait_result(group)  # the job went on
        assert call.params["caption"].startswith("a shared picture")
        assert not any("Cancelled" in text for text in env.texts(group))

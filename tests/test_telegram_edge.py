"""Telegram end to end at the edge: outages, flood control, floods of commands and presses, and
how many calls a delivered job costs, with the real python-telegram-bot against a fake Bot API
that enforces Telegram's published limits (scaled where a test would otherwise take minutes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from adapters.telegram import TelegramAdapter
from bot.service import Service
from devwebui import DevWebUI
from tests.fakes.telegram_api import Call, FakeTelegram, Limits
from tests.harness.pictures import decode
from tests.harness.process import books_closed, jobs, photos, renders, until
from tests.harness.settings import SMALL
from tests.harness.telegram import Env, telegram_env, telegram_settings

pytestmark = pytest.mark.timeout(90)

NOT_CALLS = ("getUpdates", "getMe", "deleteWebhook", "setMyCommands", "getFile")


def chat_calls(env: Env, chat_id: int) -> list[Call]:
    """Every call the bot made for this chat (sends, edits, deletions)."""
    return [c for c in env.fake.calls if c.method not in NOT_CALLS and c.chat_id == chat_id]


def results_in(env: Env, chat_id: int) -> list[Call]:
    return [
        c
        for c in env.fake.calls_of("sendPhoto", ok=True)
        if c.chat_id == chat_id and "🌱" in (c.params.get("caption") or "")
    ]


def forged_press(fake: FakeTelegram, chat: Any, user: Any, message: dict, data: str) -> dict:
    """A button press with callback_data the bot never sent (a forged or stale button)."""
    query = {
        "id": str(next(fake._query_ids)),
        "from": user.to_dict(),
        "message": message,
        "chat_instance": "4242",
        "data": data,
    }
    fake._callbacks[query["id"]] = {"query": query, "answered": False}
    fake.push_update("callback_query", query)
    return query


@pytest.mark.parametrize("mode", ["502", "unreachable"])
async def test_results_arrive_after_telegram_was_down_for_a_while(tmp_path, mode) -> None:
    # DELIVERY_MEMORY_MB=0: the waiting results are held only by reference and read back from
    # the image store when Telegram is back
    async with (
        DevWebUI(delay=0.3) as webui,
        telegram_env(
            tmp_path, webui=webui, delivery_retry_seconds=30.0, delivery_memory_mb=0
        ) as env,
    ):
        env.allowed_errors += ["Exception happened while polling", "Network", "Bad Gateway"]
        fake = env.fake
        users = [fake.user(1001 + i, f"User {i}") for i in range(3)]
        for user in users:
            fake.send_text(user, user, f"/draw a picture for {user.first_name}")
        await env.until(lambda: len(fake.calls_of("sendMessage", ok=True)) == 3)  # the acks
        await fake.go_down(mode)
        await env.until(lambda: env.engine.queue_view("telegram:1003").running == 0, 10)
        await asyncio.sleep(2.0)  # the results are drawn, and Telegram stays away
        assert all(not results_in(env, user.id) for user in users)
        await fake.come_back()
        for user in users:
            (result,) = await env.wait_result(user, timeout=20)
            assert result.params["caption"].startswith(f"a picture for {user.first_name}")
            assert decode(result.files["photo"][1]).size == (256, 256)  # the whole picture
            view = await env.settled(user)
            assert (view.available, view.reserved) == (10_000 - 1, 0)  # charged, delivered
            await env.until(lambda user=user: len(fake.bot_messages(user)) == 1)  # status gone


async def test_a_result_that_cannot_be_delivered_is_refunded_and_told_when_back(tmp_path) -> None:
    async with (
        DevWebUI(delay=0.3) as webui,
        telegram_env(tmp_path, webui=webui, delivery_retry_seconds=1.5) as env,
    ):
        env.allowed_errors += ["Exception happened while polling", "delivering job"]
        fake = env.fake
        alice = fake.user(1001, "Alice")
        sent = fake.send_text(alice, alice, "/draw a lost picture")
        (ack,) = await fake.wait_for("sendMessage")
        await fake.go_down("502")
        # the result is drawn, retried for 1.5 s, then given up: the job is refunded
        view = await env.settled(alice, timeout=15)
        assert (view.available, view.reserved) == (10_000, 0)
        await fake.come_back()
        told = await env.wait_message(alice, "I could not deliver the picture of job ")
        assert "Your 1 credit was returned" in told["text"]
        assert told["reply_to_message"]["message_id"] == sent["message_id"]  # a new message
        await env.until(lambda: fake.message(alice, ack.result["message_id"]) is None)
        assert results_in(env, alice.id) == []
        assert len(fake.bot_messages(alice)) == 1  # nothing else is left, no "Queued…"


async def test_ten_jobs_in_one_group_stay_under_the_limits(tmp_path) -> None:
    # Telegram's limits with a tenth of the time: 1 message per 0.1 s per chat, 20 per 6 s per
    # group; the bot is told the same (as an operator sets it)
    limits = Limits(chat=(1, 0.1), group=(20, 6.0), overall=(30, 1.0))
    async with (
        FakeTelegram(limits=limits) as fake,
        DevWebUI(delay=0.2) as webui,
        telegram_env(
            tmp_path,
            fake=fake,
            webui=webui,
            telegram_chat_limit=(1, 0.1),
            telegram_group_limit=(20, 6.0),
            telegram_edit_interval=0.2,
        ) as env,
    ):
        group = fake.group_chat("Artists")
        users = [fake.user(2001 + i, f"Artist {i}") for i in range(4)]
        for i in range(10):
            fake.send_text(group, users[i % 4], f"/draw@drawbridge_bot group picture {i}")
        await env.wait_result(group, count=10, timeout=40)
        await env.until(lambda: len(fake.bot_messages(group)) == 10)  # only the results left
        assert fake.floods == []
        calls = chat_calls(env, group.id)
        assert len(calls) / 10 <= 3, [c.method for c in calls]
        # 20 messages in 6 s at most, in every window
        counted = [c.timestamp for c in calls if not c.method.startswith("delete")]
        for i, start in enumerate(counted):
            assert sum(1 for t in counted[i:] if t < start + 6.0) <= 20


async def test_flood_control_in_one_chat_does_not_delay_another(tmp_path) -> None:
    async with DevWebUI(delay=0.3) as webui, telegram_env(tmp_path, webui=webui) as env:
        fake = env.fake
        alice, bob = fake.user(1001, "Alice"), fake.user(1002, "Bob")
        fake.send_text(alice, alice, "/draw alice's picture")
        await fake.wait_for("sendMessage", lambda c: c.chat_id == alice.id)
        fake.fail_next("sendPhoto", error_code=429, retry_after=4)  # Alice's result meets it
        await fake.wait_for("sendPhoto", lambda c: c.chat_id == alice.id, ok=False)
        asked = time.monotonic()
        fake.send_text(bob, bob, "/draw bob's picture")
        (bob_result,) = await env.wait_result(bob, timeout=10)
        (alice_result,) = await env.wait_result(alice, timeout=10)
        assert bob_result.timestamp < alice_result.timestamp  # Bob did not wait for Alice
        assert bob_result.timestamp - asked < 3.0  # a 0.3 s job, not a 4 s pause
        (refused,) = fake.floods
        assert alice_result.timestamp - refused.timestamp >= 4.0  # Alice's chat waited it out


async def test_one_user_flooding_does_not_slow_anyone_else(tmp_path) -> None:
    async with (
        DevWebUI(delay=1.0) as webui,
        telegram_env(
            tmp_path, webui=webui, max_queued_per_user=5, user_rate_limit=10, user_rate_period=10
        ) as env,
    ):
        fake = env.fake
        mallory, alice = fake.user(6666, "Mallory"), fake.user(1001, "Alice")
        began = time.monotonic()
        for i in range(500):  # 500 /draw in 10 s
            fake.send_text(mallory, mallory, f"/draw flood {i}")
            if i == 100:
                asked = time.monotonic()
                fake.send_text(alice, alice, "/draw a quiet picture")
            await asyncio.sleep(0.02)
        (result,) = await env.wait_result(alice, timeout=20)
        # Alice's 1 s job ran after at most the one of Mallory's already drawing and the one
        # prefetched: delivered within a few seconds of her fair turn
        assert result.timestamp - asked < 6.0, result.timestamp - asked
        assert time.monotonic() - began < 30
        # what the flood cost the platform so far: about one message per command taken
        # (her acknowledgements and results go first; her refusals and the one "slow down"
        # wait for room in her chat), nothing for the hundreds dropped
        mallory_calls = [c for c in chat_calls(env, mallory.id) if c.method == "sendMessage"]
        texts = [c.params["text"] for c in mallory_calls]
        assert len(mallory_calls) <= 25, texts
        assert sum("faster than I take them" in text for text in texts) <= 1
        assert fake.floods == []


async def test_junk_and_repeated_button_presses_are_answered_privately(tmp_path) -> None:
    async with telegram_env(tmp_path, user_rate_limit=25, user_rate_period=600) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        group = fake.group_chat("Artists")
        fake.send_text(group, alice, "/draw@drawbridge_bot a finished picture")
        (result,) = await env.wait_result(group)
        job = result.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"][2:]
        message = fake.bot_messages(group)[-1]
        await env.until(lambda: len(fake.bot_messages(group)) == 1)
        before = len(fake.calls_of("sendMessage"))
        queries = [forged_press(fake, group, alice, message, f"x:{job}:1001") for _ in range(20)]
        queries += [forged_press(fake, group, alice, message, "r:nosuchkey") for _ in range(10)]
        await fake.wait_for("answerCallbackQuery", count=30, timeout=15)
        answers = [fake.callback_answers[q["id"]] for q in queries]
        alerts = [a for a in answers if a.get("show_alert")]
        # the /draw and 24 presses fit the limit of 25: each refused (nothing to cancel, an
        # expired button) in an alert; then one "slow down"; past that only the spinner stops
        assert len(alerts) == 25, answers
        assert "faster than I take them" in alerts[-1]["text"]
        assert all("text" not in a for a in answers[25:])
        assert len(fake.calls_of("sendMessage")) == before  # no public message at all


async def test_calls_per_delivered_job(tmp_path) -> None:
    # job time : edit interval as 5 s : 4 s (TELEGRAM_EDIT_INTERVAL's default)
    fast = Limits(chat=(1, 0.2), group=(20, 12.0))
    async with (
        FakeTelegram(limits=fast) as fake,
        DevWebUI(delay=1.0) as webui,
        telegram_env(
            tmp_path,
            fake=fake,
            webui=webui,
            telegram_edit_interval=0.8,
            telegram_preview_after=2.0,
            telegram_chat_limit=(1, 0.2),
            telegram_group_limit=(20, 12.0),
        ) as env,
    ):
        alice = fake.user(1001, "Alice")
        group = fake.group_chat("Artists")
        for i in range(3):  # one job at a time, as people draw on a bot that is not busy
            fake.send_text(alice, alice, f"/draw private {i}")
            await env.wait_result(alice, count=i + 1, timeout=30)
            fake.send_text(group, alice, f"/draw@drawbridge_bot group {i}")
            await env.wait_result(group, count=i + 1, timeout=30)
        await env.until(lambda: len(fake.bot_messages(alice)) == 3)
        await env.until(lambda: len(fake.bot_messages(group)) == 3)
        private = len(chat_calls(env, alice.id)) / 3
        in_group = len(chat_calls(env, group.id)) / 3
        assert private <= 4, [c.method for c in chat_calls(env, alice.id)]
        assert in_group <= 3, [c.method for c in chat_calls(env, group.id)]
        assert fake.floods == []


async def state_is(url: str, state: str) -> bool:
    """Whether the one job in the database is in `state`."""
    return [j.state for j in await jobs(url)] == [state]


async def test_a_result_drawn_after_the_adapter_stopped_is_kept_and_sent_after_a_restart(
    tmp_path,
) -> None:
    """The Telegram adapter stops (its outbox closed) while a job draws; the picture comes
    back after that. Its delivery must not wait for an outbox that no longer runs (shutdown
    then waited its whole grace for that step): it ends at once, the job stays rendered, and
    the next start delivers it and settles its credits."""
    async with FakeTelegram() as fake, DevWebUI(delay=0.6) as webui:
        settings = telegram_settings(tmp_path, fake, webui, shutdown_grace=30.0)
        url = settings.database_url
        alice = fake.user(1001, "Alice")
        service = Service(settings, presets=SMALL)
        adapter = TelegramAdapter(service, settings)  # registers its replier before the start
        async with service:
            async with adapter:
                await fake.wait_for("deleteWebhook", ok=None, timeout=10)
                fake.send_text(alice, alice, "/draw a fox at dusk")
                await until(lambda: webui.state.job, 10, "the job drawing")
            # the adapter is gone; the picture comes back now
            await until(lambda: state_is(url, "rendered"), 20, "the render")
            steps = service._engine.steps
            await asyncio.wait_for(until(lambda: len(steps) == 0, 20, "the render step"), 3)
        assert photos(fake)["a fox at dusk"] == 0
        assert {j.prompt: j.state for j in await jobs(url)} == {"a fox at dusk": "rendered"}
        service = Service(settings, presets=SMALL)
        adapter = TelegramAdapter(service, settings)
        async with service, adapter:
            await until(lambda: photos(fake)["a fox at dusk"], 20, "the picture")
            await until(lambda: state_is(url, "delivered"), 10, "the settle")
        assert photos(fake)["a fox at dusk"] == 1 and renders(webui)["a fox at dusk"] == 1
        await books_closed(url)

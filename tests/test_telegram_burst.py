"""A burst of /draw from one user in one chat: one status message lists the waiting jobs, is
edited as they start, and makes way for one result per job; ✖ Cancel all cancels what it
lists. Real python-telegram-bot against the fake Bot API (which checks keyboards and limits)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from devwebui import DevWebUI
from tests.fakes.telegram_api import Call, FakeTelegram, Limits
from tests.harness.telegram import Env, telegram_env

pytestmark = pytest.mark.timeout(90)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    markup = message.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def sent_to(env: Env, chat_id: int, method: str) -> list[Call]:
    return [c for c in env.fake.calls_of(method, ok=True) if c.chat_id == chat_id]


ROOT = 9000  # an admin, who drains the only backend so that jobs wait in the queue


@contextlib.asynccontextmanager
async def held(
    env: Env,
    waiting: int,
    shown: tuple[Any, str] | None = None,
    *,
    ready: Callable[[], bool] | None = None,
) -> AsyncIterator[None]:
    """The backend takes no job until `waiting` jobs are queued (and, with `shown`, a
    message in that chat says that text; with `ready`, until it holds)."""
    root = env.fake.user(ROOT, "Root")
    env.fake.send_text(root, root, "/admin drain 1")
    await env.wait_message(root, "takes no more")
    yield
    await env.until(lambda: len(env.engine.queue) == waiting, 15)
    if shown is not None:
        await env.wait_message(*shown, timeout=15)
    if ready is not None:
        await env.until(ready, 20)
    env.fake.send_text(root, root, "/admin undrain 1")
    await env.wait_message(root, "takes jobs again")


@contextlib.asynccontextmanager
async def private_env(tmp_path: Any, **overrides: Any) -> AsyncIterator[Env]:
    """A bot whose private chats take ten messages a second (the limit is not what is
    tested), with ROOT as its admin."""
    values: dict[str, Any] = {"webui_delay": 0.3, **overrides}
    async with (
        FakeTelegram(limits=Limits(chat=(10, 1.0))) as fake,
        telegram_env(
            tmp_path,
            fake=fake,
            telegram_chat_limit=(10, 1.0),
            admin_ids=f"telegram:{ROOT}",
            **values,
        ) as env,
    ):
        yield env


async def test_five_quick_draws_share_one_status_message(tmp_path) -> None:
    async with private_env(tmp_path) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        async with held(env, 5, (alice, "Your 5 jobs are queued: ")):
            commands = [fake.send_text(alice, alice, f"/draw burst picture {i}") for i in range(5)]
        results = await env.wait_result(alice, count=5, timeout=40)
        # one status message for the five (the first acknowledgement, or edited into it)
        (sent,) = sent_to(env, alice.id, "sendMessage")
        status_id = sent.result["message_id"]
        assert sent.params["reply_parameters"]["message_id"] == commands[0]["message_id"]
        shown = [sent.params] + [
            c.params
            for c in sent_to(env, alice.id, "editMessageText")
            if c.params["message_id"] == status_id
        ]
        texts = [p["text"] for p in shown]
        # the 5 listed by their places in the queue, the next one's start estimated
        five = [p for p in shown if "Your 5 jobs are queued: #1, #2, #3, #4, #5 — " in p["text"]]
        assert five, texts
        assert [b["text"] for b in buttons(five[0])] == ["✖ Cancel all 5"]
        # edited as they start and leave the list
        assert any("Your 4 jobs are queued" in t or "Your 3 jobs are queued" in t for t in texts)
        assert texts.index(five[0]["text"]) < len(texts) - 1, texts
        # one result per job, replying to its own command
        captions = sorted(r.params["caption"].split("\n", 1)[0] for r in results)
        assert captions == [f"burst picture {i}" for i in range(5)]
        replied = sorted(r.params["reply_parameters"]["message_id"] for r in results)
        assert replied == sorted(c["message_id"] for c in commands)
        # the status message makes way: only the five results stay in the chat
        await env.until(lambda: len(fake.bot_messages(alice)) == 5, 10)
        assert fake.message(alice, status_id) is None
        view = await env.settled(alice)
        assert (view.available, view.reserved) == (10_000 - 5, 0)
        assert fake.floods == []


async def test_cancel_all_cancels_every_job_the_message_lists(tmp_path) -> None:
    async with private_env(tmp_path) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        root = fake.user(ROOT, "Root")
        fake.send_text(root, root, "/admin drain 1")  # nothing runs: all three wait
        await env.wait_message(root, "takes no more")
        for i in range(3):
            fake.send_text(alice, alice, f"/draw never drawn {i}")
        status = await env.wait_message(alice, "Your 3 jobs are queued: ", timeout=15)
        (button,) = buttons(status)
        # someone else's press is refused privately
        mallory = fake.user(3003, "Mallory")
        refused = fake.press_button(alice, mallory, status, button["callback_data"])
        await env.until(lambda: fake.callback_answers.get(refused["id"]) is not None, 10)
        assert fake.callback_answers[refused["id"]]["show_alert"] is True
        assert len(env.engine.user_jobs("telegram:1001")) == 3
        pressed = fake.press_button(alice, alice, status, button["callback_data"])
        done = await env.wait_message(alice, "Cancelled. Your 3 credits were returned.", 15)
        assert done["message_id"] == status["message_id"] and buttons(done) == []
        assert fake.callback_answers[pressed["id"]].get("show_alert") is not True
        assert env.engine.user_jobs("telegram:1001") == []
        view = await env.settled(alice)
        assert (view.available, view.reserved) == (10_000, 0)
        await asyncio.sleep(0.5)
        assert sent_to(env, alice.id, "sendPhoto") == []  # nothing drawn, nothing sent
        assert len(sent_to(env, alice.id, "sendMessage")) == 1  # and no message per job
        drawn = [body.get("prompt", "") for _, body in env.webui.requests if body]
        assert not any("never drawn" in prompt for prompt in drawn)


async def test_two_users_in_one_group_each_get_their_own_status(tmp_path) -> None:
    async with telegram_env(tmp_path, webui_delay=0.3, admin_ids=f"telegram:{ROOT}") as env:
        fake = env.fake
        group = fake.group_chat("Artists")
        alice, carol = fake.user(1001, "Alice"), fake.user(1003, "Carol")

        def both_shown() -> bool:
            calls = [
                *sent_to(env, group.id, "sendMessage"),
                *sent_to(env, group.id, "editMessageText"),
            ]
            owners = {b["callback_data"] for c in calls for b in buttons(c.params)}
            return {"X:1001", "X:1003"} <= owners

        async with held(env, 6, ready=both_shown):
            for i in range(3):
                fake.send_text(group, alice, f"/draw@drawbridge_bot alice {i}")
                fake.send_text(group, carol, f"/draw@drawbridge_bot carol {i}")
        results = await env.wait_result(group, count=6, timeout=80)
        sent = sent_to(env, group.id, "sendMessage")
        assert len(sent) == 2, [c.params["text"] for c in sent]  # one each, not one per job
        # each user's jobs in one message (a first acknowledgement sent before the second job
        # came is edited into it), with a button cancelling only that user's jobs
        shown: dict[str, set[int]] = {}
        for call in [*sent, *sent_to(env, group.id, "editMessageText")]:
            for button in buttons(call.params):
                if not button["callback_data"].startswith("X:"):
                    continue  # a single job's own ✖ Cancel, before the second job came
                message_id = call.params.get("message_id") or call.result["message_id"]
                shown.setdefault(button["callback_data"], set()).add(message_id)
        assert sorted(shown) == ["X:1001", "X:1003"]
        assert all(len(ids) == 1 for ids in shown.values()), shown
        assert shown["X:1001"] != shown["X:1003"]
        assert sorted(r.params["caption"].split("\n", 1)[0] for r in results) == sorted(
            [f"alice {i}" for i in range(3)] + [f"carol {i}" for i in range(3)]
        )
        await env.until(lambda: len(fake.bot_messages(group)) == 6, 30)  # both made way


async def test_a_long_job_of_a_burst_shows_its_progress_in_its_own_status(tmp_path) -> None:
    async with private_env(tmp_path, webui_delay=2.0, telegram_preview_after=0.3) as env:
        fake = env.fake
        alice = fake.user(1001, "Alice")
        async with held(env, 2):
            for i in range(2):
                fake.send_text(alice, alice, f"/draw long burst {i}")
        await env.wait_result(alice, count=2, timeout=40)
        calls = [
            c
            for method in ("sendMessage", "editMessageText", "sendPhoto", "editMessageCaption")
            for c in sent_to(env, alice.id, method)
        ]
        texts = [c.params.get("text") or c.params.get("caption") or "" for c in calls]
        assert any("Your 2 jobs are queued" in text for text in texts), texts  # the burst's
        # each job's own status once it ran past the preview time: with its percentage
        own = {
            c.result["message_id"] if c.method.startswith("send") else c.params["message_id"]
            for c in calls
            if "Drawing… " in (c.params.get("text") or c.params.get("caption") or "")
            and "%" in (c.params.get("text") or c.params.get("caption") or "")
        }
        assert len(own) == 2, texts
        await env.until(lambda: len(fake.bot_messages(alice)) == 2, 10)  # statuses made way


async def test_a_burst_resumed_after_a_restart_keeps_its_one_message(tmp_path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeTelegram(limits=Limits(chat=(10, 1.0))))
        webui = DevWebUI(delay=0.05)
        await webui.start()
        port = webui.port
        alice = fake.user(1001, "Alice")
        limits = {"telegram_chat_limit": (10, 1.0)}
        async with telegram_env(tmp_path, fake=fake, webui=webui, **limits) as env:
            await webui.kill()  # no backend: the three wait when we shut down
            backend = env.engine.dispatcher.backends[0]
            for i in range(3):
                fake.send_text(alice, alice, f"/draw resumed {i}")
            await env.until(lambda: not backend.up and len(env.engine.queue) == 3, 20)
            await env.until(
                lambda: any(
                    "X:1001" in str(c.params.get("reply_markup"))
                    for c in [*fake.calls_of("sendMessage"), *fake.calls_of("editMessageText")]
                ),
                15,
            )
            await asyncio.sleep(0.5)  # where the burst's message is gets stored
        before = fake.bot_messages(alice)  # the burst's (and a retried job's own status)
        sends = len(sent_to_chat(fake, alice.id, "sendMessage"))
        revived = await stack.enter_async_context(DevWebUI(delay=0.05, port=port))
        async with telegram_env(tmp_path, fake=fake, webui=revived, **limits) as env2:
            results = await env2.wait_result(alice, count=3, timeout=30)
            assert sorted(r.params["caption"].split("\n", 1)[0] for r in results) == [
                f"resumed {i}" for i in range(3)
            ]
            # the messages seen before the restart were edited, not left behind or sent anew
            for seen in before:
                await env2.until(lambda s=seen: fake.message(alice, s["message_id"]) is None, 15)
            assert len(sent_to_chat(fake, alice.id, "sendMessage")) == sends
            await env2.until(lambda: len(fake.bot_messages(alice)) == 3, 10)


def sent_to_chat(fake: FakeTelegram, chat_id: int, method: str) -> list[Call]:
    return [c for c in fake.calls_of(method, ok=True) if c.chat_id == chat_id]

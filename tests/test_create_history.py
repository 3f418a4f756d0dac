"""/history end to end through both adapters: pages newest first, /history JOB with its full
parameters and its buttons, which still work after a restart; Telegram answers in the private
chat, Discord ephemerally."""

from __future__ import annotations

import pytest

from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.discord import EPHEMERAL, discord_env
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(60)


def tg_buttons(message: dict) -> dict[str, str]:
    return {
        b["text"]: b["callback_data"]
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for b in row
    }


async def test_telegram_history_pages_and_its_buttons_work_after_a_restart(tmp_path) -> None:
    async with FakeTelegram() as fake:
        alice = fake.user(1001, "Alice")
        group = fake.group_chat("Artists")
        async with telegram_env(tmp_path, fake=fake) as env:
            for n in range(6):
                fake.send_text(alice, alice, f"/draw fox number {n} --seed {n}")
                await env.wait_result(alice, count=n + 1)
            fake.send_text(alice, alice, "/history")
            page = await env.wait_message(alice, "page 1 of 2")
            lines = page["text"].splitlines()
            assert lines[1].endswith("fox number 5")  # newest first
            assert sum("/history " in line for line in lines) == 5
            fake.press_button(alice, alice, page, tg_buttons(page)["▶"])
            await env.until(
                lambda: (
                    "page 2 of 2" in (fake.message(alice, page["message_id"]) or {}).get("text", "")
                )
            )
            edited = fake.message(alice, page["message_id"])
            assert "fox number 0" in edited["text"] and "◀" in tg_buttons(edited)
            oldest = edited["text"].splitlines()[-1].split("/history ")[1]
        async with telegram_env(tmp_path, fake=fake) as env:  # a restart
            # asked in a group: the answer goes to the private chat
            fake.send_text(group, alice, f"/history {oldest}")
            await env.wait_message(group, "I sent your history to our private chat.")
            shown = await env.wait_message(
                alice, lambda m: (m.get("caption") or "").startswith(oldest)
            )
            assert "fox number 0" in shown["caption"] and "Steps: 4" in shown["caption"]
            assert "Seed: 0" in shown["caption"]
            fake.press_button(alice, alice, shown, tg_buttons(shown)["🔁 Reroll"])
            await env.wait_result(alice, count=7)
            assert env.generations()[-1]["prompt"] == "fox number 0"
            fake.send_text(alice, alice, "/history nosuchjob")
            await env.wait_message(alice, "You have no finished job nosuchjob.")


async def test_discord_history_is_ephemeral_and_its_buttons_work_after_a_restart(tmp_path) -> None:
    async with FakeDiscord() as fake:
        async with discord_env(tmp_path, fake=fake) as env:
            for prompt in ("an old owl", "a new owl"):
                await env.result(await fake.slash("draw", {"prompt": prompt}))
            page = await env.ephemeral(await fake.slash("history"))
            assert page.splitlines()[0] == "Your pictures, newest first (page 1 of 1):"
            assert page.splitlines()[1].endswith("a new owl")
            job = page.splitlines()[-1].split("/history ")[1]
        async with discord_env(tmp_path, fake=fake) as env:  # a restart
            ix = await fake.slash("history", {"job": job})

            def shown() -> dict | None:
                messages = [fake.original_message(ix), *fake.followups(ix)]
                found = [m for m in messages if m and m.get("attachments")]
                return found[0] if found else None

            message = await env.until(shown)
            assert message["flags"] & EPHEMERAL
            assert "an old owl" in message["content"] and "Steps: 4" in message["content"]
            reroll = next(
                b["custom_id"]
                for row in message["components"]
                for b in row["components"]
                if b.get("label") == "Reroll"
            )
            press = await fake.click(message, reroll)
            await env.result(press)
            assert env.generations()[-1]["prompt"] == "an old owl"
            other = await env.ephemeral(await fake.slash("history", {"job": job}, user="bob"))
            assert other == f"You have no finished job {job}. /history lists yours."

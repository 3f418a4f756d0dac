"""Telegram end to end, issue 14: moderation, bans, tiers and their priority, /admin, admin
notices, the audit export and policy reloads."""

from __future__ import annotations

import asyncio
import csv
import signal
from pathlib import Path

import pytest

from bot.governor import BAN_REFRESH
from devwebui import DevWebUI
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.cli import drawbridge
from tests.harness.process import BotProcess, bot_env, photos, until
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(60)

ROOT, ALICE, BOB = 1001, 1002, 1003

MODERATION = """
[moderation]
banned_words = ["gore", "禁止"]
banned_regex = ['\\bbad[0-9]+\\b']
strip_words = ["masterpiece"]
negative_prefix = "lowres"
banned_models = ["forbidden"]
"""


def policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def admin_texts(env, chat) -> list[str]:
    return [m for m in env.texts(chat)]


async def test_moderation_refuses_privately_strips_and_prefixes(tmp_path) -> None:
    path = policy(tmp_path, MODERATION)
    async with telegram_env(tmp_path, policy_file=path) as env:
        fake = env.tg
        alice = fake.user(ALICE, "Alice")
        group = fake.group_chat()
        refused = [
            ("/draw a GORÉ scene", "word that is not allowed"),  # case and accents folded
            ("/draw <lora:cute_gore_style:0.8> a cat", "word that is not allowed"),  # in a LoRA
            ("/draw a cat --neg gore", "word that is not allowed"),  # in the negative prompt
            ("/draw 一个禁止的东西", "word that is not allowed"),  # no spaces: a substring
            ("/draw bad42 robot", "pattern that is not allowed"),
            ("/draw a fox --model forbidden", "model is not allowed"),
        ]
        for i, (text, answer) in enumerate(refused, start=1):
            fake.send_text(group, alice, text)
            # privately: in Alice's own chat with the bot, not in the group
            await env.until(lambda i=i: len(env.texts(alice)) >= i)
            assert answer in env.texts(alice)[-1]
        assert env.texts(group) == []
        assert not any("gore" in t or "forbidden" in t for t in env.texts(alice))  # no list
        assert env.generations() == []  # no WebUI call
        view = await env.service.quota(f"telegram:{ALICE}")
        assert (view.available, view.reserved) == (10_000, 0)  # nothing charged

        # a longer word that contains a banned one is fine; stripped words go silently
        fake.send_text(alice, alice, "/draw gorengan, masterpiece, a red fox --neg blurry")
        await env.wait_result(alice)
        (body,) = env.generations()
        assert body["prompt"] == "gorengan, a red fox"
        assert body["negative_prompt"] == "lowres, blurry"


@pytest.mark.timeout(180)  # one bot through every /admin subcommand and five CLI runs
async def test_bans_admin_commands_notices_and_the_audit(tmp_path) -> None:
    path = policy(tmp_path, MODERATION)
    async with (
        FakeTelegram() as fake,
        DevWebUI(delay=0.05) as webui,
        telegram_env(
            tmp_path,
            fake=fake,
            webui=webui,
            policy_file=path,
            admin_ids=f"telegram:{ROOT}",
            admin_notice_debounce=0.0,
        ) as env,
    ):
        root = fake.user(ROOT, "Root")
        alice = fake.user(ALICE, "Alice")
        bob = fake.user(BOB, "Bob")
        group = fake.group_chat()

        async def admin(text: str, expect: str) -> str:
            before = len(env.texts(root))
            fake.send_text(root, root, f"/admin {text}")
            await env.until(lambda: any(expect in t for t in env.texts(root)[before:]))
            return next(t for t in env.texts(root)[before:] if expect in t)

        # /admin is listed only in the admins' private chats
        everyone = [c["command"] for c in fake.commands()]
        scoped = [c["command"] for c in fake.commands({"type": "chat", "chat_id": ROOT})]
        assert "admin" not in everyone and "admin" in scoped

        # refused privately to non-admins: from a group, the answer is a DM
        fake.send_text(group, bob, "/admin pause")
        await env.wait_message(bob, "Only the bot's admins")
        assert env.texts(group) == []

        fake.send_text(alice, alice, "/draw a red fox")
        (result,) = await env.wait_result(alice)
        first = fake.bot_messages(alice)[-1]

        # ban: a command and a button press get one private line with the end date, then nothing
        assert "banned until 20" in await admin(f"ban {ALICE} 2 spamming", "banned until")
        key = first["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        fake.press_button(alice, alice, first, key)
        answer = await fake.wait_for("answerCallbackQuery")
        assert "banned from this bot until 20" in answer[0].params["text"]
        for text in ("/draw again", "/queue", "/quota"):
            fake.send_text(group, alice, text)
        fake.press_button(alice, alice, first, key)
        await fake.wait_for("answerCallbackQuery", count=2)
        await asyncio.sleep(0.5)  # what the bot would have said by now
        assert env.texts(group) == []
        assert not any("banned" in t for t in env.texts(alice))  # silent in between
        assert len(env.generations()) == 1
        assert "no longer banned" in await admin(f"unban {ALICE}", "no longer banned")
        assert "was not banned" in await admin(f"unban {ALICE}", "was not banned")

        # the CLI bans too (the same database)
        cli_env = {"DATABASE_URL": env.settings.database_url, "DATA_DIR": str(tmp_path / "data")}
        code, out, err = await drawbridge(
            tmp_path, "ban", f"telegram:{BOB}", "--days", "1", "--reason", "x", **cli_env
        )
        assert code == 0 and f"telegram:{BOB} is banned until" in out, err
        # the bot reads the bans again every BAN_REFRESH seconds (another process wrote it)
        governor = env.engine.governor
        await until(lambda: governor.ban_of(f"telegram:{BOB}"), 3 * BAN_REFRESH, "ban read")
        fake.send_text(bob, bob, "/draw a cat")
        await env.wait_message(bob, "banned from this bot until")
        code, out, err = await drawbridge(tmp_path, "unban", f"telegram:{BOB}", **cli_env)
        assert code == 0 and "no longer banned" in out, err

        # grant
        granted = await admin(f"grant {ALICE} 50", "Gave")
        assert f"telegram:{ALICE} 50 credits" in granted

        # pause: new jobs refused with the reason, queued ones wait; the admins are told
        await admin("drain backend 1", "takes no more")
        fake.send_text(alice, alice, "/draw a queued cat")
        await env.until(lambda: len(env.engine.queue) == 1)
        await admin("pause maintenance", "Paused (maintenance)")
        await env.wait_message(root, "Drawing was paused (maintenance)")  # the notice
        fake.send_text(alice, alice, "/draw refused now")
        await env.wait_message(alice, "paused for now (maintenance)")
        await admin("undrain backend 1", "takes jobs again")
        await asyncio.sleep(0.5)
        assert len(env.generations()) == 1  # still waiting
        listing = await admin("queue", "1 job:")
        assert f"telegram:{ALICE}: a queued cat" in listing
        await admin("resume", "Resumed")
        await env.wait_result(alice, count=2)

        # cancel anyone's job, refunded
        await admin("drain 1", "takes no more")
        fake.send_text(alice, alice, "/draw to be cancelled")
        await env.until(lambda: len(env.engine.queue) == 1)
        job = next(iter(env.engine.jobs))
        assert "1 credit was returned" in await admin(f"cancel {job}", "Cancelled job")
        await admin("undrain 1", "takes jobs again")
        assert "No backend has that name" in await admin("drain nowhere", "No backend")

        # stats from the audit
        stats = await admin("stats", "Stats")
        assert "Last 1 d — images: 2, credits: 2, jobs: 3" in stats
        assert f"telegram:{ALICE} — images: 2, credits: 2" in stats
        assert "backend 1: busy" in stats and "Median wait" in stats
        assert "Usage: /admin" in await admin("frobnicate", "Usage")

        # reload: a bad file keeps the old policy and tells the admins
        path.write_text(MODERATION + "\n[tiers.x]\nmax_steps = -1\n", encoding="utf-8")
        reply = await admin("reload", "cannot be used")
        assert f"{path}: tiers.x.max_steps must be a whole number" in reply
        await env.wait_message(root, "policy was not reloaded, the old one stays")
        fake.send_text(alice, alice, "/draw gore")
        await env.wait_message(alice, "word that is not allowed")
        path.write_text("[moderation]\nbanned_words = ['fox']\n", encoding="utf-8")
        await admin("reload", "Policy reloaded")
        fake.send_text(alice, alice, "/draw fox")
        await env.until(lambda: sum("word that is not allowed" in t for t in env.texts(alice)) == 2)

        # backend down and back: the admins hear of both
        # (the health check is the scheduler's job in `drawbridge run`: run here as it runs it)
        await webui.stop()
        await env.engine.dispatcher.check_all()
        await env.wait_message(root, "backend 1 is down")
        await webui.start()
        await env.engine.dispatcher.check_all()
        await env.wait_message(root, "backend 1 is back")

        # the audit export: every job as it ended
        out_file = tmp_path / "audit.csv"
        code, out, err = await drawbridge(
            tmp_path, "audit", "export", str(out_file), "--user", f"telegram:{ALICE}", **cli_env
        )
        assert code == 0 and "wrote 3 audit rows" in out, err
        rows = list(csv.DictReader(out_file.open(encoding="utf-8")))
        assert [r["outcome"] for r in rows] == ["delivered", "delivered", "cancelled"]
        assert [r["prompt"] for r in rows] == ["a red fox", "a queued cat", "to be cancelled"]
        first_row = rows[0]
        assert first_row["user key"] == f"telegram:{ALICE}" and first_row["platform"] == "telegram"
        assert first_row["chat"] == str(ALICE) and first_row["negative"].startswith("lowres")
        assert first_row["size"] == "256x256" and first_row["cost"] == "1"
        assert len(first_row["result hash"]) == 64 and first_row["seed"].isdigit()
        assert rows[2]["cost"] == "0" and rows[2]["result hash"] == ""
        code, out, err = await drawbridge(tmp_path, "stats", **cli_env)
        assert code == 0 and "Last 30 d — images: 2, credits: 2, jobs: 3" in out, err


async def test_tiers_by_id_and_chat_and_a_priority_that_moves_jobs_ahead(tmp_path) -> None:
    async with FakeTelegram() as fake:
        group = fake.group_chat()
        path = policy(
            tmp_path,
            f"""
[tiers.gold]
telegram_users = [{ALICE}]
daily_credits = 3
priority = 4

[tiers.club]
telegram_chats = [{group.id}]
daily_credits = 2
""",
        )
        async with telegram_env(
            tmp_path, fake=fake, policy_file=path, admin_ids=f"telegram:{ROOT}"
        ) as env:
            root = fake.user(ROOT, "Root")
            alice = fake.user(ALICE, "Alice")
            bob = fake.user(BOB, "Bob")
            carol = fake.user(1004, "Carol")
            fake.send_text(alice, alice, "/quota")
            await env.wait_message(alice, "Tier: gold")
            assert "daily 3" in env.texts(alice)[-1]
            fake.send_text(group, carol, "/quota")
            await env.wait_message(group, "Tier: club")
            assert "daily 2" in env.texts(group)[-1]
            fake.send_text(bob, bob, "/quota")
            await env.wait_message(bob, "daily 10000")
            assert "Tier" not in env.texts(bob)[-1]

            # everything queues while backend 1 is drained, then runs in fair order
            fake.send_text(root, root, "/admin drain 1")
            await env.wait_message(root, "takes no more")
            for n in range(1, 4):
                fake.send_text(bob, bob, f"/draw bob {n}")
                await env.until(lambda n=n: len(env.engine.queue) == n)
            for n in range(1, 4):
                fake.send_text(alice, alice, f"/draw alice {n}")
                await env.until(lambda n=n: len(env.engine.queue) == 3 + n)
            fake.send_text(root, root, "/admin undrain 1")
            await env.wait_result(bob, count=3)
            await env.wait_result(alice, count=3)
            order = [body["prompt"] for body in env.generations()]
            # equal weights would interleave them (bob 1, alice 1, bob 2, …); priority 4 makes
            # Alice's jobs advance a quarter as far in virtual time, so all three go first
            assert order == ["alice 1", "alice 2", "alice 3", "bob 1", "bob 2", "bob 3"]

            # Alice's 3 daily credits are spent: the next one is refused, nothing charged
            fake.send_text(alice, alice, "/draw alice 4")
            await env.wait_message(alice, "credits")
            assert len(env.generations()) == 6


async def test_relax_jobs_are_free_and_run_only_when_no_credited_job_waits(tmp_path) -> None:
    path = policy(tmp_path, f"[tiers.small]\ntelegram_users = [{ALICE}]\ndaily_credits = 1\n")
    async with telegram_env(
        tmp_path, policy_file=path, admin_ids=f"telegram:{ROOT}", relax_mode="auto"
    ) as env:
        fake = env.tg
        root = fake.user(ROOT, "Root")
        alice = fake.user(ALICE, "Alice")
        bob = fake.user(BOB, "Bob")
        fake.send_text(root, root, "/admin drain 1")
        await env.wait_message(root, "takes no more")
        queued = 0
        for user, text in (
            (alice, "/draw alice paid"),  # her one credit
            (alice, "/draw alice spent"),  # credits spent: relaxed automatically
            (alice, "/draw alice asked --relax"),  # relaxed because she asked
            (bob, "/draw bob 1"),
            (bob, "/draw bob 2"),
        ):
            fake.send_text(user, user, text)
            queued += 1
            await env.until(lambda queued=queued: len(env.engine.queue) == queued)
        await env.wait_message(alice, "Your credits are spent, so this runs relaxed")
        await env.wait_message(alice, "🐢 Relaxed: free, and it starts only when no job")
        view = await env.service.quota(f"telegram:{ALICE}")
        assert (view.available, view.reserved) == (0, 1)  # relax jobs reserve nothing
        fake.send_text(root, root, "/admin undrain 1")
        await env.wait_result(alice, count=3)
        await env.wait_result(bob, count=2)
        order = [body["prompt"] for body in env.generations()]
        assert order == ["alice paid", "bob 1", "bob 2", "alice spent", "alice asked"]
        view = await env.settled(alice)
        assert (view.available, view.reserved) == (0, 0)  # only the paid one was charged


async def test_relax_mode_off_refuses_the_flag(tmp_path) -> None:
    async with telegram_env(tmp_path, daily_credits=1) as env:
        alice = env.tg.user(ALICE, "Alice")
        env.tg.send_text(alice, alice, "/draw a fox --relax")
        await env.wait_message(alice, "Relax mode is off on this bot")
        env.tg.send_text(alice, alice, "/draw a fox")
        await env.wait_result(alice)
        env.tg.send_text(alice, alice, "/draw another fox")  # no credits, and no relax mode
        await env.wait_message(alice, "you have 0 left")
        assert len(env.generations()) == 1


# Abstract blobs the real classifier scores 0.81 (a false positive: exactly what lets a test
# drive the flagged path without an explicit picture); drawn at --strength 0.01 the result
# keeps that score (measured: 0.80-0.82). The placeholders of txt2img score 0.0.
FLAGGED = (Path(__file__).parent / "data" / "nsfw_false_positive.png").read_bytes()
THRESHOLD = 0.5


def sent_photos(env, chat) -> list:
    return [c for c in env.tg.calls_of("sendPhoto") if c.chat_id == chat.id]


async def test_nsfw_check_spoilers_flagged_results_outside_nsfw_chats(tmp_path) -> None:
    async with FakeTelegram() as fake:
        nsfw_group = fake.group_chat("after dark")
        path = policy(tmp_path, f"[nsfw]\ntelegram_chats = [{nsfw_group.id}]\n")
        async with telegram_env(
            tmp_path,
            fake=fake,
            policy_file=path,
            nsfw_check="spoiler",
            nsfw_threshold=THRESHOLD,
        ) as env:
            alice = fake.user(ALICE, "Alice")
            caption = "/draw blobs --strength 0.01"
            fake.send_document(alice, alice, FLAGGED, "blobs.png", "image/png", caption)
            (flagged,) = await env.wait_result(alice)
            assert flagged.params.get("has_spoiler") is True
            png = fake.photos_sent(alice)[-1]
            assert await env.engine.nsfw.score(png) >= THRESHOLD  # the real classifier

            fake.send_text(alice, alice, "/draw a fox")
            await env.wait_result(alice, count=2)
            plain = sent_photos(env, alice)[-1]
            assert not plain.params.get("has_spoiler")
            assert await env.engine.nsfw.score(fake.photos_sent(alice)[-1]) == 0.0

            # in a chat the policy marks NSFW, nothing is checked
            fake.send_document(nsfw_group, alice, FLAGGED, "blobs.png", "image/png", caption)
            await env.wait_result(nsfw_group)
            assert not sent_photos(env, nsfw_group)[-1].params.get("has_spoiler")


async def test_nsfw_check_block_withholds_and_refunds(tmp_path) -> None:
    async with telegram_env(tmp_path, nsfw_check="block", nsfw_threshold=THRESHOLD) as env:
        fake = env.tg
        alice = fake.user(ALICE, "Alice")
        fake.send_document(alice, alice, FLAGGED, "b.png", "image/png", "/draw b --strength 0.01")
        await env.wait_message(alice, "The picture was held back")
        assert len(env.generations("img2img")) == 1 and sent_photos(env, alice) == []
        view = await env.settled(alice)
        assert (view.available, view.reserved) == (10_000, 0)  # refunded
        fake.send_text(alice, alice, "/draw a fox")
        await env.wait_result(alice)  # a picture that passes is sent as usual


async def test_sighup_reloads_the_policy_of_a_running_bot(tmp_path) -> None:
    """`kill -HUP` on `drawbridge run` reads POLICY_FILE again, as the README says; a bad file
    then keeps the policy in force."""
    path = policy(tmp_path, "[moderation]\nbanned_words = ['fox']\n")

    def said(fake: FakeTelegram, chat: object) -> list[str]:
        return [m.get("text") or "" for m in fake.bot_messages(chat)]

    async with FakeTelegram() as fake, DevWebUI() as webui:
        env = bot_env(tmp_path, fake, webui, POLICY_FILE=str(path))
        async with await BotProcess(tmp_path, env).start() as bot:
            alice = fake.user(ALICE, "Alice")
            fake.send_text(alice, alice, "/draw a fox")
            await until(lambda: any("not allowed" in t for t in said(fake, alice)), 30, "refusal")
            path.write_text("[moderation]\nbanned_words = ['cat']\n", encoding="utf-8")
            assert bot.proc is not None
            bot.proc.send_signal(signal.SIGHUP)
            await bot.wait_log("policy reloaded")
            fake.send_text(alice, alice, "/draw a fox")
            await until(lambda: photos(fake)["a fox"], 30, "the fox drawn")
            path.write_text("[tiers.x]\nmax_steps = 'many'\n", encoding="utf-8")
            bot.proc.send_signal(signal.SIGHUP)
            await bot.wait_log("policy not reloaded, the old one stays")
            fake.send_text(alice, alice, "/draw a cat")
            await until(
                lambda: sum("not allowed" in t for t in said(fake, alice)) == 2, 30, "cat refused"
            )
            assert photos(fake)["a cat"] == 0

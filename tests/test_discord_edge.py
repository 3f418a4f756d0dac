"""Discord end to end at the edge: Discord unreachable during deliveries, its per-route rate
limits (discord.py's buckets against a fake that enforces them), and a result given up."""

from __future__ import annotations

import asyncio

import pytest

from devwebui import DevWebUI
from tests.fakes.discord_api import FakeDiscord
from tests.harness.discord import discord_env

pytestmark = pytest.mark.timeout(60)


async def test_results_arrive_after_discord_was_unreachable(tmp_path) -> None:
    async with (
        DevWebUI(delay=0.3) as webui,
        discord_env(tmp_path, webui=webui, delivery_retry_seconds=30.0) as env,
    ):
        env.allowed_errors += ["failed"]
        fake = env.fake
        first = await fake.slash("draw", {"prompt": "a first picture"}, user="alice")
        second = await fake.slash("draw", {"prompt": "a second picture"}, user="bob")
        for ix in (first, second):
            await fake.wait_for("callback", interaction=ix)
        fake.down = True
        await env.until(lambda: not env.engine.jobs, 10)  # both drawn, Discord away
        await asyncio.sleep(1.5)
        fake.down = False
        for ix, user, prompt in ((first, "alice", "a first"), (second, "bob", "a second")):
            result = await env.result(ix, timeout=20)
            assert result["embeds"][0]["description"].startswith(prompt)
            view = await env.settled(user)
            assert (view.available, view.reserved) == (10_000 - 1, 0)


async def test_a_result_given_up_is_refunded_and_told_when_discord_is_back(tmp_path) -> None:
    async with (
        DevWebUI(delay=0.3) as webui,
        discord_env(tmp_path, webui=webui, delivery_retry_seconds=1.0) as env,
    ):
        env.allowed_errors += ["failed"]
        fake = env.fake
        ix = await fake.slash("draw", {"prompt": "a lost picture"})
        await fake.wait_for("callback", interaction=ix)
        fake.down = True
        view = await env.settled("alice", timeout=15)
        assert (view.available, view.reserved) == (10_000, 0)  # refunded
        fake.down = False
        told = await env.until(
            lambda: [
                m
                for m in fake.channel_messages(ix.channel_id)
                if "I could not deliver the picture of job" in (m.get("content") or "")
            ],
            15,
        )
        assert f"<@{fake.user('alice')['id']}>" in told[0]["content"]  # a new message, a ping
        status = await env.until(
            lambda: "ended" in (fake.original_message(ix) or {}).get("content", ""), 15
        )
        assert status  # the status no longer says "Queued" or "Drawing"


async def test_status_edits_keep_to_discords_buckets(tmp_path) -> None:
    fake = FakeDiscord(rate_limit=(3, 1.0))  # three edits a second per interaction
    async with (
        fake,
        DevWebUI(delay=2.0, preview_every=1) as webui,
        discord_env(tmp_path, fake=fake, webui=webui, discord_edit_interval=0.05) as env,
    ):
        ix = await fake.slash("draw", {"prompt": "a busy status", "steps": 20})
        result = await env.result(ix, timeout=20)
        assert result["embeds"][0]["description"] == "a busy status"
        edits = [c for c in fake.calls if c.kind == "edit_webhook_message" and c.status == 200]
        assert len(edits) >= 3  # the status was edited, as often as the bucket let it
        assert fake.rate_limited == []  # discord.py waited for the bucket: no 429
        stamps = sorted(c.time for c in edits)
        for i, start in enumerate(stamps):
            assert sum(1 for t in stamps[i:] if t < start + 1.0) <= 3

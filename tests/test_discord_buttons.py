"""Discord end to end: Reroll, Variations, Upscale, Delete and Cancel buttons, who may press
them and who pays, and buttons and queued jobs after a restart."""

from __future__ import annotations

import pytest

from devwebui import DevWebUI
from tests.fakes.discord_api import FakeDiscord
from tests.harness.discord import discord_env
from tests.harness.pictures import decode, mean_difference

pytestmark = pytest.mark.timeout(40)


def button(message: dict, label: str) -> str:
    """custom_id of the button whose label is `label`."""
    for row in message["components"]:
        for b in row["components"]:
            if b.get("label") == label:
                return str(b["custom_id"])
    raise AssertionError(f"no {label!r} button in {message['components']}")


def labels(message: dict) -> list[str]:
    return [b.get("label") or "" for row in message["components"] for b in row["components"]]


async def test_reroll_variations_and_upscale_are_new_jobs_charged_to_whoever_pressed(
    tmp_path,
) -> None:
    async with discord_env(tmp_path) as env:
        fake = env.fake
        ix = await fake.slash("draw", {"prompt": "a red fox", "seed": 42})
        first = await env.result(ix)
        first_png = env.png_of(first)

        # 🔁 by Bob: the same request with a new seed, in a new message, on Bob's credits
        press = await fake.click(first, button(first, "Reroll"), user="bob")
        callback = await fake.wait_for("callback", interaction=press)
        # queued first: the press is answered with the new job's status (a new message)
        assert callback.json["type"] == 4 and callback.time - press.created_at < 3.0
        await env.result(press)
        reroll = env.generations()[-1]
        assert reroll["prompt"] == "a red fox" and reroll["seed"] != 42

        # 🎨 img2img from exactly this result
        press = await fake.click(first, button(first, "Variations"), user="bob")
        await env.result(press)
        (variation,) = env.generations("img2img")
        assert mean_difference(decode(variation["init_images"][0]), decode(first_png)) == 0
        assert variation["denoising_strength"] == 0.6 and variation["seed"] != 42

        # ⬆️ through extra-single-image: twice the size, and only Delete under it
        press = await fake.click(first, button(first, "Upscale"), user="alice")
        upscaled = await env.result(press)
        (extra,) = env.generations("extra-single-image")
        assert mean_difference(decode(extra["image"]), decode(first_png)) == 0
        assert decode(env.png_of(upscaled)).size == (512, 512)
        assert labels(upscaled) == ["Delete"]

        assert (await env.settled("alice")).available == 10_000 - 2  # draw + upscale
        assert (await env.settled("bob")).available == 10_000 - 2  # reroll + variations


async def test_only_the_owner_or_an_admin_may_delete(tmp_path) -> None:
    async with FakeDiscord() as fake:
        admin = fake.add_user("root")
        async with discord_env(tmp_path, fake=fake, admin_ids=f"discord:{admin['id']}") as env:
            ix = await fake.slash("draw", {"prompt": "a fox"}, user="alice")
            result = await env.result(ix)
            press = await fake.click(result, button(result, "Delete"), user="bob")
            text = await env.ephemeral(press)
            assert text == "Only the person who started this job (or an admin) can do that."
            assert result["id"] in fake.messages  # still there
            await fake.click(result, button(result, "Delete"), user="alice")
            await env.until(lambda: result["id"] not in fake.messages)

            ix = await fake.slash("draw", {"prompt": "a fox"}, user="bob", locale="zh-CN")
            result = await env.result(ix)
            press = await fake.click(result, button(result, "删除"), user="alice", locale="zh-CN")
            assert await env.ephemeral(press) == "只有发起该任务的人（或管理员）可以这样做。"
            await fake.click(result, button(result, "删除"), user="root")
            await env.until(lambda: result["id"] not in fake.messages)


async def test_cancel_while_running_is_for_the_owner(tmp_path) -> None:
    async with discord_env(tmp_path, webui_delay=3.0) as env:
        fake = env.fake
        ix = await fake.slash("draw", {"prompt": "a slow fox"})

        def running() -> dict | None:
            message = fake.original_message(ix)
            return message if message and "Drawing…" in message["content"] else None

        status = await env.until(running)
        assert labels(status) == ["Cancel"]
        press = await fake.click(status, button(status, "Cancel"), user="bob")
        assert await env.ephemeral(press) == (
            "Only the person who started this job (or an admin) can do that."
        )
        await fake.click(status, button(status, "Cancel"), user="alice")

        def cancelled() -> dict | None:
            message = fake.original_message(ix)
            return message if message and message["content"].startswith("Cancelled.") else None

        message = await env.until(cancelled)
        assert message["content"] == "Cancelled. Your 1 credit was returned."
        assert message["components"] == [] and message["attachments"] == []
        view = await env.settled("alice")
        assert view.available == 10_000 and view.reserved == 0


async def test_buttons_and_queued_jobs_survive_a_restart(tmp_path) -> None:
    async with FakeDiscord() as fake:
        webui = DevWebUI(delay=0.05)
        await webui.start()
        port = webui.port
        async with discord_env(tmp_path, fake=fake, webui=webui) as env:
            ix = await fake.slash("draw", {"prompt": "a lasting fox", "seed": 9})
            first = await env.result(ix)
            await env.settled("alice")
            # the WebUI dies; the next job waits in the queue when we shut down
            await webui.kill()
            waiting = await fake.slash("draw", {"prompt": "a patient owl"})
            backend = env.engine.dispatcher.backends[0]
            await env.until(lambda: not backend.up and len(env.engine.queue) == 1)
            # the user saw it queued (its status is the interaction's response) before the stop
            await env.until(lambda: fake.original_message(waiting))
        assert fake.command_put_count == 1

        async with (
            DevWebUI(delay=0.05, port=port) as revived,
            discord_env(tmp_path, fake=fake, webui=revived) as env2,
        ):
            assert fake.command_put_count == 1  # same declaration: not synced again
            # the job queued before the restart is delivered into its own message
            owl = await env2.result(waiting)
            assert owl["embeds"][0]["description"] == "a patient owl"
            # a button of the first run still works
            press = await fake.click(first, button(first, "Reroll"))
            await env2.result(press)
            assert env2.generations()[-1]["prompt"] == "a lasting fox"
            press = await fake.click(first, button(first, "Delete"), user="bob")
            assert (await env2.ephemeral(press)).startswith("Only the person who started")

"""Discord end to end: the registered commands (derived from the declaration, localised, synced
only when changed), autocomplete, and /queue /quota /cancel /models /settings /help."""

from __future__ import annotations

import json

import pytest

from bot.options import Limits, draw_options
from devwebui import DevWebUI
from tests.fakes.discord_api import FakeDiscord
from tests.harness.discord import discord_env
from tests.harness.settings import SMALL

pytestmark = pytest.mark.timeout(30)


def registered(fake: FakeDiscord, name: str) -> dict:
    return next(c for c in fake.commands[None] if c["name"] == name)


async def test_commands_come_from_the_declaration_and_sync_only_when_changed(tmp_path) -> None:
    async with FakeDiscord() as fake:
        async with discord_env(tmp_path, fake=fake):
            pass
        assert fake.command_put_count == 1
        names = [(c["name"], c["type"]) for c in fake.commands[None]]
        assert names == [
            ("draw", 1),
            ("inpaint", 1),
            ("cancel", 1),
            ("queue", 1),
            ("quota", 1),
            ("models", 1),
            ("settings", 1),
            ("help", 1),
            ("admin", 1),
            ("describe", 1),
            ("history", 1),
            ("Use as init image", 3),
            ("Describe", 3),
        ]
        draw = registered(fake, "draw")
        # each option with its own slash option (the rest go in `more`, as text)
        declared = [o.name for o in draw_options(Limits(), SMALL) if o.slash]
        options = {o["name"]: o for o in draw["options"]}
        pictures = ("prompt", "init_image", "mask", "control_image", "more")
        assert [n for n in options if n not in pictures] == declared
        assert len(options) <= 25  # Discord's limit
        assert options["prompt"]["required"] and options["prompt"]["max_length"] == 1000
        assert (options["steps"]["min_value"], options["steps"]["max_value"]) == (1, 50)
        assert (options["count"]["min_value"], options["count"]["max_value"]) == (1, 4)
        assert (options["strength"]["min_value"], options["strength"]["max_value"]) == (0.01, 1)
        assert options["seed"]["max_value"] == 2**32 - 1
        assert options["sampler"]["autocomplete"] and options["model"]["autocomplete"]
        assert (options["init_image"]["type"], options["mask"]["type"]) == (11, 11)
        assert options["hires"]["type"] == 5
        sizes = [c["value"] for c in options["size"]["choices"]]
        assert sizes[0] == "256x256" and "1024x1024" in sizes and "1536x1536" not in sizes
        # names and descriptions in Simplified Chinese
        assert draw["name_localizations"] == {"zh-CN": "画图"}
        assert options["steps"]["name_localizations"] == {"zh-CN": "步数"}
        assert options["steps"]["description_localizations"] == {"zh-CN": "采样步数"}
        menu = registered(fake, "Use as init image")
        assert menu["name_localizations"] == {"zh-CN": "用作初始图片"}
        inpaint = registered(fake, "inpaint")
        assert [(o["name"], o["required"]) for o in inpaint["options"]] == [
            ("image", True),
            ("mask", True),
            ("prompt", True),
        ]
        stored = json.loads((tmp_path / "data" / "discord-commands.json").read_text())
        assert stored["application"] == int(fake.app_id) and len(stored["sha256"]) == 64

        async with discord_env(tmp_path, fake=fake):
            pass
        assert fake.command_put_count == 1  # unchanged: no sync after a restart

        async with discord_env(tmp_path, fake=fake, max_steps=40):
            pass
        assert fake.command_put_count == 2  # the declaration changed
        assert registered(fake, "draw")["options"][4]["max_value"] == 40

    async with FakeDiscord() as other, discord_env(tmp_path, fake=other, max_steps=40):
        pass
    assert other.command_put_count == 1  # another application gets its own commands


async def test_autocomplete_offers_the_backends_models_and_samplers(tmp_path) -> None:
    models = [f"model-{i:02d}.safetensors" for i in range(30)]
    async with (
        DevWebUI(delay=0.05, models=models) as webui,
        discord_env(tmp_path, webui=webui) as env,
    ):
        fake = env.fake
        ix = await fake.autocomplete("draw", {"prompt": "a fox"}, focused="model")
        await fake.wait_for("callback", interaction=ix)
        assert ix.response_type == 8 and len(ix.choices or []) == 25
        ix = await fake.autocomplete(
            "draw", {"prompt": "a fox", "model": "model-2"}, focused="model"
        )
        await fake.wait_for("callback", interaction=ix)
        choices = ix.choices or []
        assert [c["name"] for c in choices] == [f"model-{i}" for i in range(20, 30)]
        assert choices[-1]["value"].startswith("model-29.safetensors [")  # past the first 25
        ix = await fake.autocomplete(
            "draw", {"prompt": "a fox", "sampler": "eul"}, focused="sampler"
        )
        await fake.wait_for("callback", interaction=ix)
        values = [c["value"] for c in ix.choices or []]
        assert "Euler a" in values and all("euler" in v.lower() for v in values)
        # the chosen title reaches the WebUI as a per-request override
        pick = choices[-1]["value"]
        result = await env.result(await fake.slash("draw", {"prompt": "a fox", "model": pick}))
        assert env.generations()[0]["override_settings"]["sd_model_checkpoint"] == pick
        assert result["embeds"][0]["fields"][2]["value"] == "model-29"


async def test_queue_quota_and_cancel_while_the_webui_is_down(tmp_path) -> None:
    webui = DevWebUI()
    await webui.start()
    await webui.kill()
    async with discord_env(tmp_path, webui=webui) as env:
        fake = env.fake
        await fake.slash("draw", {"prompt": "first"})
        await fake.slash("draw", {"prompt": "second"})
        await env.until(lambda: len(env.engine.queue) == 2)
        text = await env.ephemeral(await fake.slash("queue"))
        assert text.startswith("2 waiting, 0 drawing, on 0 servers.\nYour jobs:")
        assert "— position 1, waiting for a drawing server" in text
        assert "No drawing server is available right now" in text
        text = await env.ephemeral(await fake.slash("quota"))
        assert text.startswith("Alice: 9998 credits left today (daily 10000, extra 0); 2 reserved")

        jobs = [job.id for job in env.engine.user_jobs(f"discord:{fake.user('alice')['id']}")]
        text = await env.ephemeral(await fake.slash("cancel", {"job": jobs[0]}, user="bob"))
        assert text == "Only the person who started this job (or an admin) can do that."
        text = await env.ephemeral(await fake.slash("cancel"))
        assert text == f"Cancelled job {jobs[1]}. Your 1 credit was returned."
        text = await env.ephemeral(await fake.slash("cancel", {"job": "nope"}))
        assert text == "There is no job nope to cancel; it may have finished already."
        view = await env.service.quota(f"discord:{fake.user('alice')['id']}")
        assert (view.available, view.reserved) == (9999, 1) and env.generations() == []


async def test_models_settings_and_help(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        fake = env.fake
        ix = await fake.slash("models")
        await env.until(lambda: (m := fake.original_message(ix)) and m["embeds"])
        embed = fake.original_message(ix)["embeds"][0]["description"]
        assert embed.startswith("Checkpoints (model):\n• v1-5-pruned-emaonly")
        assert "Samplers (sampler):" in embed and "• Euler a" in embed

        text = await env.ephemeral(await fake.slash("settings"))
        assert text.startswith(
            "Your defaults for /draw:\nPreset: default\nSize: preset's (256×256)"
        )
        text = await env.ephemeral(
            await fake.slash("settings", {"size": "512x768", "steps": 30, "negative": "blurry"})
        )
        assert text.startswith("Saved.\n") and "Size: 512×768" in text and "Steps: 30" in text
        text = await env.ephemeral(await fake.slash("settings", {"steps": 99}))
        assert text == "`steps` must be between 1 and 50; you gave 99."
        await env.result(await fake.slash("draw", {"prompt": "a fox"}))
        body = env.generations()[-1]
        assert (body["width"], body["height"], body["steps"]) == (512, 768, 30)
        assert body["negative_prompt"] == "blurry"
        text = await env.ephemeral(await fake.slash("settings", {"reset": True}))
        assert "Size: preset's (256×256)" in text

        ix = await fake.slash("help")
        await fake.wait_for("callback", interaction=ix)
        help_text = fake.original_message(ix)["embeds"][0]["description"]
        assert help_text.startswith("Commands: /draw, /inpaint, /cancel")
        assert "--steps N — sampling steps (1–50)" in help_text
        ix = await fake.slash("help", locale="zh-CN")
        await fake.wait_for("callback", interaction=ix)
        assert fake.original_message(ix)["embeds"][0]["description"].startswith("命令：/draw")
        assert fake.original_message(ix)["flags"] & (1 << 6)

"""Discord end to end: /draw and what comes back (real discord.py ↔ fake Discord, real engine ↔
DevWebUI, real SQLite)."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from devwebui import DevWebUI
from tests.fakes.discord_api import FakeDiscord
from tests.harness.discord import EPHEMERAL, discord_env
from tests.harness.pictures import decode, mean_difference, png_bytes, sample_photo, white_fraction

pytestmark = pytest.mark.timeout(30)


def mask_png(width: int, height: int) -> bytes:
    """Black and white: the left half is to be changed."""
    image = Image.new("L", (width, height), 0)
    image.paste(255, (0, 0, width // 2, height))
    return png_bytes(image)


def buttons(message: dict) -> list[dict]:
    return [b for row in message["components"] for b in row["components"]]


def public(env, ix) -> list[dict]:
    """What the interaction left that everyone sees (its response, its follow-ups)."""
    messages = [env.fake.original_message(ix), *env.fake.followups(ix)]
    return [m for m in messages if m is not None and not m["flags"] & EPHEMERAL]


def labels(message: dict) -> list[str]:
    return [b.get("label") or "" for b in buttons(message)]


async def test_draw_is_queued_then_answered_with_its_status_and_the_picture_comes_back(
    tmp_path,
) -> None:
    async with discord_env(tmp_path, webui_delay=0.4) as env:
        fake = env.fake
        ix = await fake.slash(
            "draw", {"prompt": "a red fox", "seed": 42, "steps": 20, "size": "512x512"}
        )
        # submit first, talk later: the answer is the queued job's first status, with ✖
        callback = await fake.wait_for("callback", interaction=ix)
        assert callback.json["type"] == 4
        assert callback.json["data"]["content"].startswith(("Queued", "Drawing…"))
        components = callback.json["data"]["components"]
        assert components[0]["components"][0]["label"] == "Cancel"
        assert callback.time - ix.created_at < 3.0
        assert (
            len(env.engine.queue) + sum(len(b.inflight) for b in env.engine.dispatcher.backends)
            <= 1
        )  # the job was queued (and maybe started) before the answer
        # then the response is edited with progress
        progress = await fake.wait_for(
            lambda c: c.kind == "edit_webhook_message" and "Drawing…" in str(c.json),
            interaction=ix,
        )
        assert progress.status == 200
        result = await env.result(ix)
        (body,) = env.generations()
        assert (body["prompt"], body["seed"], body["steps"]) == ("a red fox", 42, 20)
        assert (body["width"], body["height"]) == (512, 512)
        # the same message now holds the picture, an embed and the buttons
        (attachment,) = result["attachments"]
        assert attachment["filename"].endswith("-1.png")
        picture = decode(env.png_of(result))
        assert picture.format == "PNG" and picture.size == (512, 512)
        (embed,) = result["embeds"]
        assert embed["description"] == "a red fox"
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        assert fields["Seed"] == "42" and fields["Size"] == "512×512"
        assert fields["Model"] == "v1-5-pruned-emaonly" and fields["Time"].endswith(" s")
        assert labels(result) == [
            "Reroll",
            "Variations",
            "Upscale",
            "Delete",
            # under a single picture (512×512: already square, so no Make square)
            "Zoom out ×1.5",
            "Zoom out ×2",
            "Fix faces",
            "Pan",
            "Pan",
            "Pan",
            "Pan",
        ]
        assert all(b["custom_id"].startswith("db:") for b in buttons(result))
        assert result["content"] == "" and not fake.followups(ix)
        view = await env.settled("alice")
        assert view.available == 10_000 - 1


async def test_previews_are_edited_in_at_most_every_interval(tmp_path) -> None:
    async with (
        DevWebUI(delay=1.2, preview_every=1) as webui,
        discord_env(tmp_path, webui=webui, discord_edit_interval=0.4) as env,
    ):
        ix = await env.fake.slash("draw", {"prompt": "a slow owl", "steps": 12})
        await env.result(ix, timeout=15)
        edits = [c for c in env.fake.calls_of("edit_webhook_message") if c.interaction is ix][
            :-1
        ]  # the last edit is the result
        with_preview = [c for c in edits if c.files]
        assert with_preview and with_preview[0].files[0].filename == "preview.png"
        times = [c.time for c in edits]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps and min(gaps) >= 0.35


async def test_out_of_range_values_are_refused_ephemerally_with_no_webui_call(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        ix = await env.fake.slash("draw", {"prompt": "a fox", "steps": 500})
        text = await env.ephemeral(ix)
        assert text == "`steps` must be between 1 and 50; you gave 500."
        assert ix.response_type == 4  # answered directly, never deferred
        ix = await env.fake.slash("draw", {"prompt": "a fox", "cfg": 99.0}, locale="zh-CN")
        assert await env.ephemeral(ix) == "`cfg` 必须在 1 到 30 之间；你给的是 99。"
        ix = await env.fake.slash("draw", {"prompt": "a fox", "sampler": "No Such Sampler"})
        text = await env.ephemeral(ix)  # only the backends know: refused by the service
        assert text.startswith("`sampler` must be one of: ")
        assert public(env, ix) == []  # the answer itself is the refusal: nothing public
        assert env.generations() == []
        view = await env.settled("alice")
        assert view.available == 10_000 and view.reserved == 0


async def test_quota_exhausted_is_refused_ephemerally_and_charges_nothing(tmp_path) -> None:
    async with discord_env(tmp_path, daily_credits=3) as env:
        options = {"prompt": "a fox", "count": 4, "size": "512x512", "steps": 20}
        ix = await env.fake.slash("draw", options)
        text = await env.ephemeral(ix)
        assert text.startswith("This needs 4 credits and you have 3 left.")
        assert public(env, ix) == []
        assert env.generations() == []
        assert (await env.settled("alice")).available == 3


async def test_webui_down_says_so_and_refunds(tmp_path) -> None:
    async with discord_env(tmp_path, max_attempts=1) as env:
        await env.webui.kill()
        ix = await env.fake.slash("draw", {"prompt": "a doomed fox"})

        def failed() -> str | None:
            message = env.fake.original_message(ix)
            content = message["content"] if message else ""
            return content if "failed" in content else None

        text = await env.until(failed)
        assert "The drawing server failed on this job" in text and "127.0.0.1" not in text
        assert "Your 1 credit was returned." in text
        assert env.fake.original_message(ix)["components"] == []  # no Cancel any more
        view = await env.settled("alice")
        assert view.available == 10_000 and view.reserved == 0


async def test_init_image_is_img2img_and_with_a_mask_inpaint(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        photo = png_bytes(sample_photo())
        ix = await env.fake.slash(
            "draw",
            {"prompt": "a castle", "strength": 0.5},
            attachments={"init_image": ("castle.png", photo, "image/png")},
        )
        await env.result(ix)
        (body,) = env.generations("img2img")
        assert body["prompt"] == "a castle" and body["denoising_strength"] == 0.5
        assert mean_difference(decode(body["init_images"][0]).resize((320, 240)), decode(photo)) < 3
        assert "mask" not in body or body["mask"] is None

        mask = mask_png(320, 240)
        ix = await env.fake.slash(
            "draw",
            {"prompt": "a dragon"},
            attachments={
                "init_image": ("castle.png", photo, "image/png"),
                "mask": ("mask.png", mask, "image/png"),
            },
        )
        result = await env.result(ix)
        body = env.generations("img2img")[-1]
        derived = decode(body["mask"])
        width, height = derived.size
        assert white_fraction(derived, (0, 0, width // 2, height)) > 0.95
        assert white_fraction(derived, (width // 2, 0, width, height)) < 0.05
        footer = result["embeds"][0]["footer"]["text"]
        assert footer.startswith("Using the white area of your mask, 50% of the picture")

        ix = await env.fake.slash(
            "inpaint",
            {"prompt": "a moat"},
            attachments={
                "image": ("castle.png", photo, "image/png"),
                "mask": ("mask.png", mask, "image/png"),
            },
        )
        await env.result(ix)
        assert env.generations("img2img")[-1]["prompt"] == "a moat"
        assert env.generations("img2img")[-1]["mask"]


async def test_a_broken_picture_is_refused_and_charges_nothing(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        ix = await env.fake.slash(
            "draw",
            {"prompt": "a castle"},
            attachments={"init_image": ("notes.txt", b"not a picture", "text/plain")},
        )
        text = await env.ephemeral(ix)
        assert text.startswith("That file is not a picture I can read.")
        assert env.fake.original_message(ix) is None
        assert env.generations("img2img") == []


async def test_dms_channel_allow_list_nsfw_only_and_spoilers(tmp_path) -> None:
    async with FakeDiscord() as fake:
        nsfw = fake.add_channel("after-dark")
        nsfw["nsfw"] = True
        art = next(c for c in fake.guild.channels if c["name"] == "art")
        async with discord_env(
            tmp_path,
            fake=fake,
            discord_allow_dms=False,
            discord_allowed_channels=f"{nsfw['id']},{fake.channel_id}",
            discord_spoiler_outside_nsfw=True,
        ) as env:
            ix = await fake.slash("draw", {"prompt": "a fox"}, guild=False)
            assert (await env.ephemeral(ix)).startswith("I don't take requests in direct messages")
            ix = await fake.slash("draw", {"prompt": "a fox"}, channel_id=art["id"])
            assert (await env.ephemeral(ix)).startswith("I'm not enabled in this channel.")
            ix = await fake.slash("draw", {"prompt": "a fox"}, channel_id=fake.channel_id)
            shown = await env.result(ix)
            assert shown["attachments"][0]["filename"].startswith("SPOILER_")
            ix = await fake.slash("draw", {"prompt": "a fox"}, channel_id=nsfw["id"])
            shown = await env.result(ix)
            assert not shown["attachments"][0]["filename"].startswith("SPOILER_")
            assert len(env.generations()) == 2
            # commands are not offered in DMs either
            assert all(c["contexts"] == [0] for c in fake.commands[None])

    async with FakeDiscord() as fake:
        fake.add_channel("after-dark")["nsfw"] = True
        async with discord_env(tmp_path / "2", fake=fake, discord_nsfw_only=True) as env:
            ix = await fake.slash("draw", {"prompt": "a fox"})
            assert (await env.ephemeral(ix)).startswith("I only draw in age-restricted")
            ix = await fake.slash("draw", {"prompt": "a fox in a DM"}, guild=False)
            result = await env.result(ix)  # DMs are on by default
            assert result["channel_id"] == fake.dm_channel("alice")["id"]
            assert not result["flags"] & EPHEMERAL


async def test_replies_in_the_users_language(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        ix = await env.fake.slash("draw", {"prompt": "一只狐狸", "seed": 7}, locale="zh-CN")
        result = await env.result(ix)
        assert labels(result)[:4] == ["重新生成", "变体", "放大", "删除"]
        assert "缩小 ×1.5" in labels(result)
        names = [f["name"] for f in result["embeds"][0]["fields"]]
        assert names == ["种子", "尺寸", "模型", "用时"]
        assert result["embeds"][0]["footer"]["text"].startswith("任务 ")

"""Issue 15's per-request options end to end through both adapters (real python-telegram-bot and
discord.py against their fakes, the real engine against DevWebUI, real SQLite): hires flags
reach the payload and the price, --face is ADetailer where the backend lists it and
restore_faces elsewhere, misspelt LoRAs and styles are refused with a suggestion."""

from __future__ import annotations

import pytest

from devwebui import DevWebUI
from tests.harness.discord import discord_env
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(30)

# 512×512 at 20 steps is one credit; the hires pass at 1.5× (768×768) and 20 steps is 2.25
HIRES_DRAW = (
    "/draw a fox --size 512x512 --steps 20 --seed 5 --hr-scale 1.5 --hr-denoise 0.3 --hr-steps 20 "
    '--hr-upscaler "R-ESRGAN 4x+"'
)


async def test_telegram_hires_flags_reach_the_payload_and_the_price(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, HIRES_DRAW)
        (call,) = await env.wait_result(alice)
        (body,) = env.generations()
        assert body["enable_hr"] is True
        assert (body["hr_scale"], body["denoising_strength"]) == (1.5, 0.3)
        assert (body["hr_second_pass_steps"], body["hr_upscaler"]) == (20, "R-ESRGAN 4x+")
        assert "768×768" in call.params["caption"]
        assert (await env.settled(alice)).available == 10_000 - 4  # ceil(1 + 2.25)
        # hires flags turn hires on; with --no-hires they contradict each other
        env.fake.send_text(alice, alice, "/draw a fox --no-hires --hr-scale 1.5")
        await env.wait_message(alice, "Use either --no-hires or --hr-scale, not both.")
        env.fake.send_text(alice, alice, "/draw a fox --hr-scale 3")
        await env.wait_message(alice, "--hr-scale must be between 1 and 2; you gave 3.")
        env.fake.send_text(alice, alice, "/draw a fox --hr-upscaler Lanczoz")
        refusal = await env.wait_message(alice, "the upscaler 'Lanczoz'")
        assert "R-ESRGAN 4x+" in refusal["text"]  # what the backend does offer
        assert len(env.generations()) == 1
        assert (await env.service.quota("telegram:1001")).available == 10_000 - 4


async def test_discord_hires_options_reach_the_payload_and_the_price(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        ix = await env.fake.slash(
            "draw",
            {
                "prompt": "a fox",
                "size": "512x512",
                "steps": 20,
                "hr_scale": 1.5,
                # past Discord's 25 options: the rarer ones in `more`, written as text
                "more": '--hr-denoise 0.3 --hr-steps 20 --hr-upscaler "R-ESRGAN 4x+"',
            },
        )
        result = await env.result(ix)
        (body,) = env.generations()
        assert (body["enable_hr"], body["hr_scale"], body["denoising_strength"]) == (True, 1.5, 0.3)
        assert body["hr_upscaler"] == "R-ESRGAN 4x+"
        fields = {f["name"]: f["value"] for f in result["embeds"][0]["fields"]}
        assert fields["Size"] == "768×768"
        assert (await env.settled("alice")).available == 10_000 - 4
        refused = await env.fake.slash("draw", {"prompt": "a fox", "hires": False, "hr_scale": 1.5})
        assert await env.ephemeral(refused) == "Use either `hires` or `hr_scale`, not both."


async def test_telegram_face_uses_adetailer_where_listed_and_restore_faces_elsewhere(
    tmp_path,
) -> None:
    async with DevWebUI(delay=0.05, extensions=("adetailer",)) as webui:
        async with telegram_env(tmp_path / "a", webui=webui) as env:
            alice = env.fake.user(1001, "Alice")
            env.fake.send_text(alice, alice, "/draw a portrait --face --seed 1")
            await env.wait_result(alice)
            (body,) = env.generations()
            assert body["alwayson_scripts"] == {
                "ADetailer": {"args": [True, False, {"ad_model": "face_yolov8n.pt"}]}
            }
            assert "restore_faces" not in body
            assert [p.kind for p in webui.passes] == ["first", "adetailer"]
    async with telegram_env(tmp_path / "b") as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw a portrait --face --seed 1")
        await env.wait_result(alice)
        (body,) = env.generations()
        assert body["restore_faces"] is True and "alwayson_scripts" not in body


async def test_discord_face_uses_adetailer_where_listed_and_restore_faces_elsewhere(
    tmp_path,
) -> None:
    async with DevWebUI(delay=0.05, extensions=("adetailer",)) as webui:
        async with discord_env(tmp_path / "a", webui=webui) as env:
            await env.result(await env.fake.slash("draw", {"prompt": "a portrait", "face": True}))
            (body,) = env.generations()
            assert "ADetailer" in body["alwayson_scripts"] and "restore_faces" not in body
    async with discord_env(tmp_path / "b") as env:
        await env.result(await env.fake.slash("draw", {"prompt": "a portrait", "face": True}))
        (body,) = env.generations()
        assert body["restore_faces"] is True


async def test_telegram_loras_and_styles_are_checked_and_sent(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/draw a fox --lora add_detial:0.8")
        await env.wait_message(
            alice, "There is no LoRA called 'add_detial'. Did you mean add_detail?"
        )
        env.fake.send_text(alice, alice, "/draw a fox <lora:film_grian:1>")
        await env.wait_message(
            alice, "There is no LoRA called 'film_grian'. Did you mean film_grain?"
        )
        env.fake.send_text(alice, alice, "/draw a fox --style cinematc")
        await env.wait_message(
            alice, "There is no style called 'cinematc'. Did you mean cinematic?"
        )
        env.fake.send_text(alice, alice, "/draw a fox --lora add_detail:3")
        await env.wait_message(alice, "--lora must be between -2 and 2; you gave 3.")
        assert env.generations() == []
        assert (await env.service.quota("telegram:1001")).available == 10_000
        env.fake.send_text(
            alice, alice, "/draw a fox --lora add_detail:0.8 --style cinematic --lora film_grain"
        )
        await env.wait_result(alice)
        (body,) = env.generations()
        assert body["prompt"] == "a fox <lora:add_detail:0.8> <lora:film_grain:1>"
        assert body["styles"] == ["cinematic"]


async def test_discord_loras_autocomplete_and_are_checked(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        refused = await env.fake.slash("draw", {"prompt": "a fox", "lora": "add_detial:0.8"})
        assert await env.ephemeral(refused) == (
            "There is no LoRA called 'add_detial'. Did you mean add_detail?"
        )
        asked = await env.fake.autocomplete(
            "draw", {"prompt": "a fox", "lora": "add_detail:0.5, fi"}, focused="lora"
        )
        await env.fake.wait_for("callback", interaction=asked)
        assert [c["value"] for c in asked.choices or []] == ["add_detail:0.5, film_grain"]
        asked = await env.fake.autocomplete(
            "draw", {"prompt": "a fox", "style": "wat"}, focused="style"
        )
        await env.fake.wait_for("callback", interaction=asked)
        assert [c["value"] for c in asked.choices or []] == ["watercolor"]
        ix = await env.fake.slash(
            "draw", {"prompt": "a fox", "lora": "add_detail:0.5, film_grain", "style": "watercolor"}
        )
        await env.result(ix)
        (body,) = env.generations()
        assert body["prompt"] == "a fox <lora:add_detail:0.5> <lora:film_grain:1>"
        assert body["styles"] == ["watercolor"]


async def test_models_lists_embeddings_and_styles_on_both_platforms(tmp_path) -> None:
    async with telegram_env(tmp_path / "tg") as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/models")
        first = await env.wait_message(alice, "Page 1 of 2")
        env.fake.press_button(alice, alice, first, "m:1")

        def page_two() -> dict | None:
            message = env.fake.message(alice, first["message_id"]) or {}
            return message if "Page 2 of 2" in message.get("text", "") else None

        listed = await env.until(page_two)
        assert "Embeddings (write the name in the prompt):\n• bad-hands-5" in listed["text"]
        assert "Styles (--style NAME):\n• cinematic\n• watercolor" in listed["text"]
    async with discord_env(tmp_path / "dc") as env:
        ix = await env.fake.slash("models")

        def embed() -> str | None:
            messages = [env.fake.original_message(ix), *env.fake.followups(ix)]
            found = [m["embeds"][0]["description"] for m in messages if m and m.get("embeds")]
            return found[0] if found else None

        text = await env.until(embed)
        assert "• bad-hands-5" in text and "• watercolor" in text

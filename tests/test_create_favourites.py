"""Issue 15's favourite LoRAs and styles in /settings, end to end through both adapters (real
python-telegram-bot and discord.py against their fakes, the real engine against DevWebUI, real
SQLite): saved and shown, checked against the backends' catalogues at save, used by every /draw
that names none of its own (asserted in the payload the WebUI received), replaced by a draw's
own --lora/--style, skipped with `none`, and refused with nothing charged once a backend lost
one; the migration that holds them goes up and down on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text

from devwebui import DevWebUI
from storage.db import Database, make_engine, upgrade
from tests.fakes.discord_api import FakeDiscord
from tests.harness.discord import discord_env
from tests.harness.env import ServiceEnv
from tests.harness.telegram import telegram_env
from tests.harness.webui import dead_webui

pytestmark = pytest.mark.timeout(60)

SAVED_VIEW = "Favourite LoRAs: add_detail (0.6), film_grain\nStyles: cinematic"
NOTHING_SAVED = "Favourite LoRAs: none\nStyles: none"
FAVOURITE_HINT = (
    "(That is one of your /settings favourites: give this draw its own LoRA or style, "
    "or “none”, or change them in /settings.)"
)


async def listed(env: ServiceEnv) -> None:
    """Wait for the backend's catalogue: on a loaded machine its first probe may time out, and
    the health check brings it back a moment later."""
    await env.until(lambda: env.service.offered("lora"))


# --- Telegram ---------------------------------------------------------------------------------


async def test_telegram_favourites_are_saved_shown_and_drawn_with(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        await listed(env)
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/settings")
        await env.wait_message(alice, NOTHING_SAVED)
        env.fake.send_text(
            alice, alice, "/settings --lora add_detail:0.6 --lora film_grain --style cinematic"
        )
        saved = await env.wait_message(alice, "Saved.")
        assert SAVED_VIEW in saved["text"]
        env.fake.send_text(alice, alice, "/settings")
        await env.until(lambda: sum(SAVED_VIEW in x for x in env.texts(alice)) == 2)

        env.fake.send_text(alice, alice, "/draw a fox --seed 1")
        await env.wait_result(alice)
        body = env.generations()[-1]
        assert body["prompt"] == "a fox <lora:add_detail:0.6> <lora:film_grain:1>"
        assert body["styles"] == ["cinematic"]
        # a draw's own --lora and --style replace the favourites for that draw
        env.fake.send_text(alice, alice, "/draw a cat --lora film_grain:0.3 --style watercolor")
        await env.wait_result(alice, count=2)
        body = env.generations()[-1]
        assert body["prompt"] == "a cat <lora:film_grain:0.3>"
        assert body["styles"] == ["watercolor"]
        # so does a LoRA written in the prompt (the styles stay the favourites)
        env.fake.send_text(alice, alice, "/draw an owl <lora:film_grain:0.5>")
        await env.wait_result(alice, count=3)
        body = env.generations()[-1]
        assert body["prompt"] == "an owl <lora:film_grain:0.5>"
        assert body["styles"] == ["cinematic"]
        # `none` skips them for that draw
        env.fake.send_text(alice, alice, "/draw a hen --lora none --style none")
        await env.wait_result(alice, count=4)
        body = env.generations()[-1]
        assert body["prompt"] == "a hen" and "styles" not in body
        # priced as if typed: four one-credit drawings
        assert (await env.settled(alice)).available == 10_000 - 4

        # the words form works too, and `--lora none` clears only the LoRAs
        env.fake.send_text(alice, alice, "/settings lora film_grain:-0.5, add_detail")
        await env.wait_message(alice, "Favourite LoRAs: film_grain (-0.5), add_detail\n")
        env.fake.send_text(alice, alice, "/settings --lora none")
        await env.wait_message(alice, "Favourite LoRAs: none\nStyles: cinematic")
        env.fake.send_text(alice, alice, "/draw a bee")
        await env.wait_result(alice, count=5)
        body = env.generations()[-1]
        assert body["prompt"] == "a bee" and body["styles"] == ["cinematic"]
        env.fake.send_text(alice, alice, "/settings reset")
        await env.until(lambda: NOTHING_SAVED in env.texts(alice)[-1])
        # somebody else's draws never carry Alice's favourites
        bob = env.fake.user(1002, "Bob")
        env.fake.send_text(bob, bob, "/settings --style watercolor")
        await env.wait_message(bob, "Styles: watercolor")
        env.fake.send_text(alice, alice, "/draw a yak")
        await env.wait_result(alice, count=6)
        assert "styles" not in env.generations()[-1]


async def test_telegram_wrong_favourites_are_refused_and_nothing_is_saved(tmp_path) -> None:
    async with telegram_env(tmp_path) as env:
        await listed(env)
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/settings --lora add_detail:0.6 --style cinematic")
        await env.wait_message(alice, "Saved.")
        refusals = [
            (
                "/settings --lora add_detial --style watercolor",
                "There is no LoRA called 'add_detial'. Did you mean add_detail?",
            ),
            (
                "/settings --style cinematc",
                "There is no style called 'cinematc'. Did you mean cinematic?",
            ),
            ("/settings --lora qqqzzz", "None of the drawing servers has the LoRA 'qqqzzz'."),
            ("/settings --lora add_detail:3", "--lora must be between -2 and 2; you gave 3."),
            (
                "/settings " + " ".join(f"--lora l{i}" for i in range(6)),
                "You can keep up to 5 favourite LoRAs; you gave 6. Please pick fewer.",
            ),
            (
                "/settings style " + ", ".join(f"s{i}" for i in range(6)),
                "You can keep up to 5 favourite styles; you gave 6. Please pick fewer.",
            ),
            ("/settings --lora film_grain please", "I did not understand 'please'"),
            ("/settings --colour red", "Unknown option --colour. Options are: --preset"),
            ("/settings --lora", "--lora needs a value"),
        ]
        for command, refusal in refusals:
            env.fake.send_text(alice, alice, command)
            found = await env.wait_message(alice, refusal)
            assert "Saved." not in found["text"], command
        env.fake.send_text(alice, alice, "/settings")
        await env.wait_message(
            alice, lambda m: "Saved." not in m["text"] and "Favourite LoRAs" in m["text"]
        )
        shown = [x for x in env.texts(alice) if x.startswith("Your defaults")][-1]
        assert "Favourite LoRAs: add_detail (0.6)\nStyles: cinematic" in shown
        assert env.generations() == []


async def test_telegram_favourites_need_a_backend_to_check_them(tmp_path) -> None:
    webui = await dead_webui()
    async with telegram_env(tmp_path, webui=webui) as env:
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/settings --lora add_detail")
        await env.wait_message(alice, "No drawing server is reachable to check those names")
        env.fake.send_text(alice, alice, "/settings steps 12")  # the rest needs none
        saved = await env.wait_message(alice, "Saved.")
        assert "Steps: 12" in saved["text"] and NOTHING_SAVED in saved["text"]


async def test_a_favourite_no_backend_has_any_more_is_refused_with_nothing_charged(
    tmp_path,
) -> None:
    async with telegram_env(tmp_path) as env:
        await listed(env)
        alice = env.fake.user(1001, "Alice")
        env.fake.send_text(alice, alice, "/settings --lora add_detail:0.6 --style watercolor")
        await env.wait_message(alice, "Saved.")
    # the operator took add_detail and the style off the WebUI; the settings are in the database
    async with DevWebUI(delay=0.05, loras=["film_grain"], styles=[]) as webui:
        async with telegram_env(tmp_path, webui=webui) as env:
            await listed(env)
            alice = env.fake.user(1001, "Alice")
            env.fake.send_text(alice, alice, "/draw a fox")
            refusal = await env.wait_message(alice, "None of the drawing servers has")
            assert "the LoRA 'add_detail'" in refusal["text"]
            assert "film_grain" in refusal["text"]  # what the backend does offer
            assert refusal["text"].endswith(FAVOURITE_HINT)  # not typed: where it came from
            env.fake.send_text(alice, alice, "/draw a fox --lora none")
            style_only = "None of the drawing servers has the style 'watercolor'."
            assert (await env.wait_message(alice, style_only))["text"].endswith(FAVOURITE_HINT)
            # a refusal the favourites have no part in says nothing of them
            env.fake.send_text(alice, alice, "/draw a fox --style none --lora film_grian")
            typo = await env.wait_message(alice, "There is no LoRA called 'film_grian'.")
            assert "favourites" not in typo["text"]
            assert env.generations() == []
            assert (await env.service.quota("telegram:1001")).available == 10_000
            # without them (or with its own) the draw goes ahead
            env.fake.send_text(alice, alice, "/draw a fox --lora film_grain --style none")
            await env.wait_result(alice)
            assert env.generations()[-1]["prompt"] == "a fox <lora:film_grain:1>"


# --- Discord ----------------------------------------------------------------------------------


async def test_discord_favourites_are_saved_shown_completed_and_drawn_with(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        await listed(env)
        fake = env.fake
        registered = next(c for c in fake.commands[None] if c["name"] == "settings")
        options = {o["name"]: o for o in registered["options"]}
        assert options["loras"]["autocomplete"] and options["styles"]["autocomplete"]
        asked = await fake.autocomplete(
            "settings", {"loras": "film_grain:0.4, ad"}, focused="loras"
        )
        await fake.wait_for("callback", interaction=asked)
        assert [c["value"] for c in asked.choices or []] == ["film_grain:0.4, add_detail"]

        text = await env.ephemeral(
            await fake.slash(
                "settings", {"loras": "film_grain, add_detail:0.6", "styles": "watercolor"}
            )
        )
        assert text.startswith("Saved.\n")
        assert "Favourite LoRAs: film_grain, add_detail (0.6)\nStyles: watercolor" in text
        text = await env.ephemeral(await fake.slash("settings"))
        assert "Favourite LoRAs: film_grain, add_detail (0.6)\nStyles: watercolor" in text

        # /draw's completion lists the user's favourites first
        asked = await fake.autocomplete("draw", {"prompt": "a fox", "lora": ""}, focused="lora")
        await fake.wait_for("callback", interaction=asked)
        assert [c["value"] for c in asked.choices or []] == ["film_grain", "add_detail"]
        asked = await fake.autocomplete("draw", {"prompt": "a fox", "style": ""}, focused="style")
        await fake.wait_for("callback", interaction=asked)
        assert [c["value"] for c in asked.choices or []] == ["watercolor", "cinematic"]

        await env.result(await fake.slash("draw", {"prompt": "a fox"}))
        body = env.generations()[-1]
        assert body["prompt"] == "a fox <lora:film_grain:1> <lora:add_detail:0.6>"
        assert body["styles"] == ["watercolor"]
        await env.result(
            await fake.slash(
                "draw", {"prompt": "a cat", "lora": "add_detail:0.2", "style": "cinematic"}
            )
        )
        body = env.generations()[-1]
        assert body["prompt"] == "a cat <lora:add_detail:0.2>" and body["styles"] == ["cinematic"]
        await env.result(
            await fake.slash("draw", {"prompt": "a hen", "lora": "none", "style": "none"})
        )
        body = env.generations()[-1]
        assert body["prompt"] == "a hen" and "styles" not in body

        text = await env.ephemeral(await fake.slash("settings", {"styles": "none"}))
        assert "Favourite LoRAs: film_grain, add_detail (0.6)\nStyles: none" in text
        text = await env.ephemeral(await fake.slash("settings", {"reset": True}))
        assert NOTHING_SAVED in text


async def test_discord_wrong_favourites_are_refused_and_nothing_is_saved(tmp_path) -> None:
    async with discord_env(tmp_path) as env:
        await listed(env)
        fake = env.fake
        refusals = [
            (
                {"loras": "add_detial"},
                "There is no LoRA called 'add_detial'. Did you mean add_detail?",
            ),
            (
                {"styles": "watercolour"},
                "There is no style called 'watercolour'. Did you mean watercolor?",
            ),
            ({"styles": "brutalism"}, "None of the drawing servers has the style 'brutalism'."),
            ({"loras": "add_detail:-2.5"}, "`loras` must be between -2 and 2; you gave -2.5."),
            (
                {"loras": ", ".join(f"l{i}" for i in range(6))},
                "You can keep up to 5 favourite LoRAs; you gave 6. Please pick fewer.",
            ),
        ]
        for values, refusal in refusals:
            text = await env.ephemeral(await fake.slash("settings", {"steps": 12, **values}))
            assert text.startswith(refusal), (values, text)
        text = await env.ephemeral(await fake.slash("settings"))
        assert "Steps: preset's" in text and NOTHING_SAVED in text
        assert env.generations() == []


async def test_discord_favourites_need_a_backend_to_check_them(tmp_path) -> None:
    webui = await dead_webui()
    async with discord_env(tmp_path, webui=webui) as env:
        text = await env.ephemeral(await env.fake.slash("settings", {"styles": "cinematic"}))
        assert text.startswith("No drawing server is reachable to check those names")
        text = await env.ephemeral(await env.fake.slash("settings"))
        assert NOTHING_SAVED in text


# --- storage -----------------------------------------------------------------------------------


async def test_migration_0006_adds_and_drops_the_favourites(db_url: str) -> None:
    await upgrade(db_url, "0005")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO user_settings (user_key, steps, negative, updated_at) "
                    "VALUES ('telegram:42', 30, 'blurry', :t)"
                ),
                {"t": datetime(2025, 3, 1, 12, 0, tzinfo=UTC)},
            )
    finally:
        await engine.dispose()
    async with Database(db_url) as db:  # migrates to head on start
        row = await db.users.get_settings("telegram:42")
        assert row is not None and (row.steps, row.loras, row.styles) == (30, None, None)
        await db.users.save_settings("telegram:42", loras='[["add_detail", 0.6]]')
        row = await db.users.get_settings("telegram:42")  # the cache holds the saved row
        assert row is not None and (row.loras, row.negative) == ('[["add_detail", 0.6]]', "blurry")
    async with Database(db_url) as db:  # and the database does
        row = await db.users.get_settings("telegram:42")
        assert row is not None and row.loras == '[["add_detail", 0.6]]' and row.styles is None

    await upgrade(db_url, "0005", down=True)
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:

            def columns(sync: object) -> set[str]:
                return {c["name"] for c in inspect(sync).get_columns("user_settings")}

            names = await conn.run_sync(columns)
            kept = (await conn.execute(text("SELECT steps, negative FROM user_settings"))).all()
    finally:
        await engine.dispose()
    assert "loras" not in names and "styles" not in names
    assert [tuple(r) for r in kept] == [(30, "blurry")]
    await upgrade(db_url)  # and up again


async def test_discord_refuses_a_favourite_no_backend_has_any_more(tmp_path) -> None:
    async with FakeDiscord() as fake:
        async with discord_env(tmp_path, fake=fake) as env:
            await listed(env)
            text = await env.ephemeral(await fake.slash("settings", {"loras": "add_detail:0.6"}))
            assert text.startswith("Saved.")
        async with DevWebUI(delay=0.05, loras=["film_grain"]) as webui:
            async with discord_env(tmp_path, fake=fake, webui=webui) as env:
                await listed(env)
                text = await env.ephemeral(await fake.slash("draw", {"prompt": "a fox"}))
                assert text.startswith("None of the drawing servers has the LoRA 'add_detail'.")
                assert text.endswith(FAVOURITE_HINT)
                assert env.generations() == []
                assert (await env.settled("alice")).available == 10_000
                ix = await fake.slash("draw", {"prompt": "a fox", "lora": "none"})
                await env.result(ix)
                assert env.generations()[-1]["prompt"] == "a fox"

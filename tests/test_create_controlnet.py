"""ControlNet end to end through both adapters: the payload carries the right module, model,
weight, guidance and picture, goes only to the backend that has the model, is refused with a
clear message when none has, is priced as one more pass, and 🦴 shows the detected map."""

from __future__ import annotations

import pytest

from devwebui import DevWebUI
from tests.harness.discord import EPHEMERAL, discord_env
from tests.harness.pictures import decode, png_bytes, sample_photo
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(60)

CANNY = "control_v11p_sd15_canny [d14c016b]"


def tg_buttons(message: dict) -> dict[str, str]:
    return {
        b["text"]: b["callback_data"]
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for b in row
    }


async def test_telegram_controlnet_goes_where_the_model_is(tmp_path) -> None:
    async with (
        DevWebUI(delay=0.05) as plain,
        DevWebUI(delay=0.05, extensions=("controlnet",), control_models=(CANNY,)) as cn,
        telegram_env(tmp_path, webui=cn, webui_urls=[plain.url, cn.url]) as env,
    ):
        fake = env.fake
        alice = fake.user(1001, "Alice")
        photo = png_bytes(sample_photo(512, 512))
        fake.send_photo(
            alice,
            alice,
            photo,
            caption="/draw a house --size 512x512 --steps 20 --control canny "
            "--control-weight 0.7 --control-guidance 0:0.8",
        )
        await env.wait_result(alice)
        (body,) = env.generations()
        (unit,) = body["alwayson_scripts"]["controlnet"]["args"]
        assert (unit["module"], unit["model"], unit["weight"]) == ("canny", CANNY, 0.7)
        assert (unit["guidance_start"], unit["guidance_end"]) == (0.0, 0.8)
        assert decode(unit["image"]).size == (512, 512)
        assert "init_images" not in body  # the picture guides; it is not the init image
        assert [p for p, _ in plain.requests if p.endswith("txt2img")] == []
        assert (await env.settled(alice)).available == 10_000 - 2  # one more pass
        # 🦴 the canny map of the control picture, as a document
        result = fake.bot_messages(alice)[-1]
        fake.press_button(alice, alice, result, tg_buttons(result)["🦴 Show control map"])
        await fake.wait_for("sendDocument")
        ((name, data),) = fake.documents_sent(alice)
        assert name.endswith("-control.png") and decode(data).size == (512, 512)
        assert [p for p, _ in cn.requests].count("/controlnet/detect") == 1
        # none has an openpose model: refused, naming what each backend offers
        fake.send_photo(alice, alice, photo, caption="/draw a house --control openpose")
        refusal = await env.wait_message(alice, "ControlNet 'openpose'")
        assert "canny" in refusal["text"]
        fake.send_text(alice, alice, "/draw a house --control canny")
        await env.wait_message(alice, "--control needs a control picture")
        fake.send_text(alice, alice, "/draw a house --control-weight 0.5")
        await env.wait_message(alice, "--control-weight only works together with --control.")
        assert len(env.generations()) == 1
        assert (await env.settled(alice)).available == 10_000 - 2


async def test_discord_controlnet_with_a_control_image_and_the_map(tmp_path) -> None:
    async with (
        DevWebUI(delay=0.05) as plain,
        DevWebUI(delay=0.05, extensions=("controlnet",), control_models=(CANNY,)) as cn,
        discord_env(tmp_path, webui=cn, webui_urls=[plain.url, cn.url]) as env,
    ):
        fake = env.fake
        ix = await fake.slash(
            "draw",
            {"prompt": "a house", "control": "canny", "more": "--control-weight 0.5"},
            attachments={
                "control_image": ("edges.png", png_bytes(sample_photo(320, 256)), "image/png")
            },
        )
        result = await env.result(ix)
        (body,) = env.generations()
        (unit,) = body["alwayson_scripts"]["controlnet"]["args"]
        assert (unit["module"], unit["model"], unit["weight"]) == ("canny", CANNY, 0.5)
        assert decode(unit["image"]).size == (320, 256)
        assert [p for p, _ in plain.requests if p.endswith("txt2img")] == []
        custom = next(
            b["custom_id"]
            for row in result["components"]
            for b in row["components"]
            if b.get("label") == "Show control map"
        )
        press = await fake.click(result, custom)

        def shown() -> dict | None:
            messages = [fake.original_message(press), *fake.followups(press)]
            found = [m for m in messages if m and m.get("attachments")]
            return found[0] if found else None

        message = await env.until(shown)
        assert message["flags"] & EPHEMERAL
        refused = await fake.slash(
            "draw",
            {"prompt": "a house", "control": "depth"},
            attachments={"control_image": ("e.png", png_bytes(sample_photo()), "image/png")},
        )
        assert "ControlNet 'depth'" in await env.ephemeral(refused)


async def test_cli_control_image(tmp_path) -> None:
    from PIL import Image

    from tests.harness.cli import drawbridge

    picture = tmp_path / "edges.png"
    Image.new("RGB", (320, 256), (10, 200, 30)).save(picture)
    async with DevWebUI(delay=0.05, extensions=("controlnet",), control_models=(CANNY,)) as cn:
        code, out, err = await drawbridge(
            tmp_path,
            "draw",
            "a house",
            "--control",
            "canny",
            "--no-hires",
            "--control-image",
            str(picture),
            "--out",
            str(tmp_path / "out"),
            WEBUI_URLS=cn.url,
        )
    assert code == 0, err
    body = [b for p, b in cn.requests if p.endswith("/txt2img")][0]
    (unit,) = body["alwayson_scripts"]["controlnet"]["args"]
    assert unit["model"] == CANNY and decode(unit["image"]).size == (320, 256)

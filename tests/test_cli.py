"""The `drawbridge` command as an operator runs it: a real subprocess, real dev-webui, real SQLite."""

from __future__ import annotations

import pytest
from PIL import Image

from devwebui import DevWebUI
from tests.harness.cli import drawbridge, free_port


async def test_draw_writes_a_png_of_the_expected_size(tmp_path):
    async with DevWebUI(delay=0.05) as webui:
        code, out, err = await drawbridge(
            tmp_path,
            "draw",
            "a red fox",
            "--seed",
            "42",
            "--steps",
            "20",
            "--size",
            "512x512",
            "--out",
            str(tmp_path / "out"),
            WEBUI_URLS=webui.url,
        )
    assert code == 0, err
    files = list((tmp_path / "out").glob("*.png"))
    assert len(files) == 1
    with Image.open(files[0]) as img:
        assert img.size == (1024, 1024)  # hires fix ×2 is on by default
    assert "seed 42" in out and "1024x1024" in out and "time" in out
    body = [b for p, b in webui.requests if p.endswith("/txt2img")][0]
    assert (body["prompt"], body["seed"], body["steps"]) == ("a red fox", 42, 20)


async def test_draw_img2img_with_init_image(tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (320, 240), (200, 30, 30)).save(init)
    async with DevWebUI(delay=0.05) as webui:
        code, out, err = await drawbridge(
            tmp_path,
            "draw",
            "make it blue",
            "--init-image",
            str(init),
            "--out",
            str(tmp_path / "out"),
            WEBUI_URLS=webui.url,
        )
    assert code == 0, err
    body = [b for p, b in webui.requests if p.endswith("/img2img")][0]
    assert (body["width"], body["height"]) == (320, 240)
    assert body["init_images"] and "mask" not in body


async def test_draw_against_a_closed_port_names_the_url(tmp_path):
    port = free_port()
    code, out, err = await drawbridge(
        tmp_path, "draw", "a red fox", WEBUI_URLS=f"http://127.0.0.1:{port}"
    )
    assert code == 1
    assert f"Could not connect to the WebUI at 127.0.0.1:{port}" in err
    assert "Traceback" not in err


async def test_bad_flag_exits_2_with_the_message(tmp_path):
    code, out, err = await drawbridge(tmp_path, "draw", "a fox", "--steps", "900")
    assert code == 2
    assert "--steps must be between 1 and 50; you gave 900." in err
    assert "Traceback" not in err


async def test_run_without_tokens_says_what_to_set(tmp_path):
    code, out, err = await drawbridge(tmp_path, "run")
    assert code == 2
    assert "Set DISCORD_TOKEN and/or TELEGRAM_TOKEN" in err
    assert "Traceback" not in err


async def test_invalid_setting_is_explained(tmp_path):
    code, out, err = await drawbridge(tmp_path, "backends", WEBUI_URLS="127.0.0.1:7860")
    assert code == 2
    assert "WEBUI_URLS" in err and "must start with http://" in err
    assert "Traceback" not in err


async def test_quota_grant_and_show(tmp_path):
    code, out, err = await drawbridge(tmp_path, "quota", "grant", "telegram:7", "25")
    assert code == 0, err
    assert "Granted 25 extra credits to telegram:7; they now have 225." in out
    code, out, err = await drawbridge(tmp_path, "quota", "show", "telegram:7")
    assert code == 0, err
    assert "telegram:7: 225 credits left today (daily 200, extra 25)" in out


async def test_backends_lists_up_and_down(tmp_path):
    port = free_port()
    async with DevWebUI(delay=0.05) as webui:
        code, out, err = await drawbridge(
            tmp_path, "backends", WEBUI_URLS=f"{webui.url},http://127.0.0.1:{port}"
        )
    assert code == 0, err
    lines = out.strip().splitlines()
    up = f"backend 1 ({webui.url.removeprefix('http://')})  UP  AUTOMATIC1111  model "
    assert lines[0].startswith(up) and "idle" in lines[0]
    assert "drawbridge jobs on it: 0" in lines[0]
    assert lines[1] == "  offers 2 checkpoints, 20 samplers, 18 upscalers, 2 LoRAs"
    assert lines[2] == "  checkpoints: v1-5-pruned-emaonly, sd_xl_base_1.0"
    assert "bound to each job by its task id" in lines[3]
    assert lines[4].startswith(f"backend 2 (127.0.0.1:{port})  DOWN  Could not connect")
    assert lines[5] == "queue: 0 jobs waiting from 0 users"


async def test_backends_tells_each_flavour_and_a_frozen_server(tmp_path):
    async with (
        DevWebUI(delay=0.05, flavor="sdnext") as sdnext,
        DevWebUI(delay=0.05, flavor="forge", freeze_settings=True) as forge,
    ):
        code, out, err = await drawbridge(
            tmp_path,
            "backends",
            WEBUI_URLS=f"{sdnext.url},{forge.url}",
            WEBUI_NAMES="big gpu,small gpu",
        )
    assert code == 0, err
    assert "big gpu (" in out and "  UP  SD.Next  " in out and "small gpu (" in out
    assert "  UP  Forge  " in out
    assert "by its job_timestamp" in out  # SD.Next takes no force_task_id
    assert "refuses to change its settings (--freeze-settings)" in out
    assert "its jobs draw with its loaded checkpoint v1-5-pruned-emaonly" in out
    assert "Traceback" not in err


async def test_backends_refresh_lets_the_webuis_rescan(tmp_path):
    async with DevWebUI(delay=0.05) as webui:
        webui.add_checkpoint("new-model.safetensors")  # dropped into the folder, not scanned
        code, out, err = await drawbridge(tmp_path, "backends", "--refresh", WEBUI_URLS=webui.url)
    assert code == 0, err
    assert "  rescanned its checkpoint and LoRA folders" in out
    assert "  checkpoints: v1-5-pruned-emaonly, sd_xl_base_1.0, new-model" in out
    assert "/sdapi/v1/refresh-checkpoints" in [path for path, _ in webui.requests]


async def test_db_upgrade(tmp_path):
    code, out, err = await drawbridge(tmp_path, "db", "upgrade")
    assert code == 0, err
    assert (tmp_path / "cli.db").exists()


@pytest.mark.parametrize("args", [["--help"], ["dev-webui", "--help"]])
async def test_help_mentions_placeholders(tmp_path, args):
    code, out, err = await drawbridge(tmp_path, *args)
    assert code == 0
    assert "placeholder" in out.lower() or "PLACEHOLDER" in out

"""Images through the whole core: bad input charges nothing; masks reach the WebUI as masks."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image, ImageDraw

from bot.errors import ImageError
from bot.images.inputs import Prepared, prepare_images
from bot.types import GenerationRequest, Mode, Pictures, Requester
from devwebui import DevWebUI
from tests.harness.cli import drawbridge
from tests.harness.engine import running_engine
from tests.harness.memory import MemoryReplier

ALICE = Requester("test", "alice")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _scene(size=(256, 192)) -> Image.Image:
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for x in range(0, size[0], 8):
        draw.line([(x, 0), (x, size[1])], fill=(x % 255, 120, 255 - x % 255))
    return img


def _bomb() -> bytes:
    """A tiny PNG whose header claims 50000×50000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _bmp() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "BMP")
    return buf.getvalue()


async def prepare(engine, request, init, mask) -> Prepared:
    """The core's picture step, with the engine's store and the operator's limits."""
    settings = engine.settings
    return await prepare_images(
        engine.store,
        request,
        Pictures(init, mask),
        max_pixels=settings.max_pixels,
        max_bytes=settings.max_upload_bytes,
    )


BAD = {
    "bomb": _bomb(),
    "truncated": _png(_scene())[:300],
    "wrong format": _bmp(),
    "text": b"hello, this is not a picture",
    "zero size": b"",
    "strip": _png(Image.new("RGB", (1, 10000), "white")),
}


@pytest.mark.parametrize("name", list(BAD))
async def test_bad_images_get_a_message_and_charge_nothing(tmp_path, name):
    async with DevWebUI(delay=0.05) as webui, running_engine(tmp_path, [webui]) as engine:
        request = GenerationRequest("a hat")
        with pytest.raises(ImageError) as info:
            await prepare(engine, request, BAD[name], None)
        message = info.value.render("en")
        assert message and "Traceback" not in message
        assert len(engine.queue) == 0
        view = await engine.quotas.view(ALICE.key)
        assert view.reserved == 0 and view.available == engine.settings.daily_credits
        assert not [p for p, _ in webui.requests if p.endswith(("txt2img", "img2img"))]


async def test_painted_copy_becomes_an_inpaint_with_that_mask(tmp_path):
    init = _scene()
    painted = init.copy()
    ImageDraw.Draw(painted).ellipse([100, 60, 180, 140], fill=(255, 0, 0))
    jpeg = io.BytesIO()
    painted.save(jpeg, "JPEG", quality=60)
    async with DevWebUI(delay=0.05) as webui, running_engine(tmp_path, [webui]) as engine:
        request = engine.parser.parse("a red balloon --seed 3")
        prepared = await prepare(engine, request, _png(init), jpeg.getvalue())
        assert request.mode is Mode.INPAINT and prepared.mask_kind == "painted"
        assert prepared.notes[0].startswith("Using the painted area,")
        replier = MemoryReplier()
        await engine.submit(ALICE, request, replier, init_size=prepared.init_size)
        await replier.wait(lambda r: r.finished)
        assert replier.results, replier.failures
        body = next(b for p, b in webui.requests if p.endswith("/img2img"))
        assert (body["width"], body["height"]) == (256, 192)  # output size follows the init image
        mask = Image.open(io.BytesIO(base64.b64decode(body["mask"]))).convert("L")
        assert mask.size == (256, 192)
        assert mask.getpixel((140, 100)) == 255 and mask.getpixel((20, 20)) == 0


async def test_transparent_png_alone_is_an_inpaint_of_the_transparent_area(tmp_path):
    img = _scene().convert("RGBA")
    ImageDraw.Draw(img).rectangle([0, 0, 127, 191], fill=(0, 0, 0, 0))
    async with DevWebUI(delay=0.05) as webui, running_engine(tmp_path, [webui]) as engine:
        request = GenerationRequest("a window")
        prepared = await prepare(engine, request, _png(img), None)
        assert request.mode is Mode.INPAINT and prepared.mask_kind == "alpha"
        assert 0.45 < prepared.coverage < 0.55


async def test_mask_without_picture_is_refused(tmp_path):
    async with DevWebUI(delay=0.05) as webui, running_engine(tmp_path, [webui]) as engine:
        with pytest.raises(ImageError) as info:
            await prepare(engine, GenerationRequest("x"), None, _png(_scene()))
        assert "A mask needs a picture" in info.value.render("en")


async def test_cli_inpaint_with_explicit_mask(tmp_path):
    init, mask = tmp_path / "a.png", tmp_path / "m.png"
    _scene().save(init)
    m = Image.new("L", (256, 192), 0)
    ImageDraw.Draw(m).rectangle([64, 64, 160, 128], fill=255)
    m.save(mask)
    async with DevWebUI(delay=0.05) as webui:
        code, out, err = await drawbridge(
            tmp_path,
            "draw",
            "a hat",
            "--init-image",
            str(init),
            "--mask",
            str(mask),
            "--out",
            str(tmp_path / "out"),
            WEBUI_URLS=webui.url,
        )
    assert code == 0, err
    assert "Using the white area of your mask" in out
    body = next(b for p, b in webui.requests if p.endswith("/img2img"))
    assert "mask" in body and body["inpainting_fill"] == 1 and body["inpaint_full_res"] is False


async def test_cli_bad_init_image_exits_2_and_charges_nothing(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    code, out, err = await drawbridge(tmp_path, "draw", "a hat", "--init-image", str(bad))
    assert code == 2
    assert "Traceback" not in err and "PNG" in err
    code, out, err = await drawbridge(tmp_path, "quota", "show", "local")
    assert "200 credits left today" in out

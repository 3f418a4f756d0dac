"""bot.images.masks: the three things a chat user can send as a mask, and the refusals."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from bot.errors import ImageError
from bot.i18n import MESSAGES, t
from bot.images.ingest import ingest
from bot.images.masks import MaskResult, derive_mask, mask_from_alpha

PINK = (255, 40, 200)


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def textured(size: tuple[int, int], seed: int = 1) -> Image.Image:
    """A photo stand-in: two gradients, hundreds of coloured discs and fine noise."""
    rnd = random.Random(seed)
    w, h = size
    ramp = Image.linear_gradient("L").resize(size)
    other = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(size)
    img = Image.merge("RGB", (ramp, other, Image.new("L", size, 120)))
    draw = ImageDraw.Draw(img)
    for _ in range(300):
        x, y, r = rnd.randrange(w), rnd.randrange(h), rnd.randrange(3, 60)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rnd.randrange(256) for _ in "rgb"))
    return Image.blend(img, Image.effect_noise(size, 40).convert("RGB"), 0.2)


def init_png(size: tuple[int, int] = (768, 576), seed: int = 1) -> bytes:
    """What the core holds: the user's JPEG photo after ingest."""
    photo = encode(textured(size, seed), "JPEG", quality=85)
    return ingest(photo, max_pixels=1024 * 1024, max_bytes=1 << 24).png


def load(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def blob_and_strokes(size: tuple[int, int]) -> list[tuple[str, tuple[float, ...], int]]:
    """A region a user might paint: a blob plus a bent brush stroke."""
    w, h = size
    return [
        ("ellipse", (w * 0.3, h * 0.25, w * 0.6, h * 0.65), 0),
        ("line", (w * 0.1, h * 0.8, w * 0.4, h * 0.85, w * 0.7, h * 0.75), max(8, w // 25)),
    ]


def paint(img: Image.Image, colour: object) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    for shape, xy, width in blob_and_strokes(img.size):
        if shape == "ellipse":
            draw.ellipse(xy, fill=colour)  # type: ignore[arg-type]
        else:
            draw.line(xy, fill=colour, width=width)  # type: ignore[arg-type]
    return out


def truth(size: tuple[int, int]) -> Image.Image:
    return paint(Image.new("L", size, 0), 255)


def iou(result: MaskResult, expected: Image.Image) -> float:
    mask = load(result.mask_png)
    assert mask.mode == "L" and mask.size == expected.size
    assert {value for _count, value in mask.getcolors() or []} <= {0, 255}
    inter = ImageChops.multiply(mask, expected).histogram()[255]
    union = ImageChops.lighter(mask, expected).histogram()[255]
    return inter / union


def refused(key: str, init: bytes, candidate: bytes | Image.Image) -> str:
    with pytest.raises(ImageError) as caught:
        derive_mask(init, candidate)
    assert caught.value.key == key
    return caught.value.render("en")


# --- the three kinds ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_black_and_white_mask_is_explicit(fmt: str) -> None:
    init = init_png()
    size = load(init).size
    result = derive_mask(init, encode(truth(size).convert("RGB"), fmt))
    assert result.kind == "explicit"
    assert iou(result, truth(size)) >= 0.9
    assert result.coverage == pytest.approx(truth(size).histogram()[255] / (size[0] * size[1]), 0.1)


def test_explicit_mask_of_another_size_is_resized() -> None:
    init = init_png()
    size = load(init).size
    small = truth(size).resize((size[0] // 2, size[1] // 2), Image.Resampling.BILINEAR)
    result = derive_mask(init, encode(small))
    assert result.kind == "explicit"
    assert load(result.mask_png).size == size
    assert iou(result, truth(size)) >= 0.9


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_erased_area_of_transparent_picture_is_the_mask(fmt: str) -> None:
    init = init_png()
    rgba = load(init).convert("RGBA")
    erased = paint(rgba, (0, 0, 0, 0))
    options = {"lossless": True} if fmt == "WEBP" else {}
    result = derive_mask(init, encode(erased, fmt, **options))
    assert result.kind == "alpha"
    assert iou(result, truth(rgba.size)) >= 0.9


@pytest.mark.parametrize("colour", [PINK, (0, 255, 0), (255, 255, 255), (20, 20, 20)])
@pytest.mark.parametrize("size", [(1024, 1024), (768, 576)])
def test_painted_over_jpeg_q60_copy(colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    init = init_png(size)
    painted = paint(load(init), colour)
    result = derive_mask(init, encode(painted, "JPEG", quality=60))
    assert result.kind == "painted"
    assert iou(result, truth(size)) >= 0.85


@pytest.mark.parametrize("side", [512, 640])
def test_painted_copy_shrunk_by_the_chat_app(side: int) -> None:
    init = init_png((1024, 1024))
    painted = paint(load(init), PINK).resize((side, side), Image.Resampling.BICUBIC)
    result = derive_mask(init, encode(painted, "JPEG", quality=60))
    assert result.kind == "painted"
    assert iou(result, truth((1024, 1024))) >= 0.85
    # No specks far from the paint: resampled sharp edges must not leak into the mask.
    near = truth((1024, 1024)).filter(ImageFilter.MaxFilter(25))
    assert ImageChops.subtract(load(result.mask_png), near).getbbox() is None


def test_painted_copy_larger_than_the_init() -> None:
    # The user painted on the full-size photo, the init was downscaled by ingest.
    init = init_png((768, 576))
    painted = paint(load(init).convert("RGB"), PINK).resize((1536, 1152), Image.Resampling.BICUBIC)
    result = derive_mask(init, encode(painted, "JPEG", quality=60))
    assert result.kind == "painted"
    assert iou(result, truth((768, 576))) >= 0.85


def test_no_paint_is_left_outside_the_mask() -> None:
    # Any painted pixel outside the mask would survive inpainting as a coloured fringe.
    init = init_png()
    result = derive_mask(init, encode(paint(load(init), PINK), "JPEG", quality=60))
    assert ImageChops.subtract(truth((768, 576)), load(result.mask_png)).getbbox() is None


def test_hatched_scribble_becomes_one_solid_area() -> None:
    init = init_png()
    painted = load(init).convert("RGB")
    draw = ImageDraw.Draw(painted)
    for x in range(200, 560, 16):  # quick strokes with 10 px gaps between them
        draw.line((x, 150, x, 420), fill=PINK, width=6)
    expected = Image.new("L", painted.size, 0)
    ImageDraw.Draw(expected).rectangle((197, 150, 555, 420), fill=255)
    result = derive_mask(init, encode(painted, "JPEG", quality=60))
    assert result.kind == "painted"
    assert iou(result, expected) >= 0.9


def test_painted_copy_can_be_a_pillow_image_and_most_of_the_picture() -> None:
    init = init_png()
    picture = load(init).convert("RGB")
    w, h = picture.size
    painted = picture.copy()
    painted.paste(PINK, (0, 0, w * 3 // 4, h))
    result = derive_mask(init, Image.open(io.BytesIO(encode(painted, "JPEG", quality=60))))
    assert result.kind == "painted"
    assert result.coverage == pytest.approx(0.75, abs=0.02)


def test_paint_matching_the_colour_underneath_leaves_no_hole() -> None:
    # The picture has a red square; the user paints a red blob right over it. Inside the square
    # nothing changed, but it is enclosed by paint, so it belongs to the mask.
    base = textured((768, 576))
    ImageDraw.Draw(base).rectangle((330, 220, 430, 320), fill=(230, 20, 20))
    init = ingest(encode(base), max_pixels=1 << 20, max_bytes=1 << 24).png
    painted = load(init).convert("RGB")
    ImageDraw.Draw(painted).ellipse((250, 140, 510, 400), fill=(230, 20, 20))
    expected = Image.new("L", (768, 576), 0)
    ImageDraw.Draw(expected).ellipse((250, 140, 510, 400), fill=255)
    result = derive_mask(init, encode(painted, "JPEG", quality=60))
    assert result.kind == "painted"
    assert load(result.mask_png).getpixel((380, 270)) == 255
    assert iou(result, expected) >= 0.9


def test_painted_black_and_white_document_is_not_taken_for_a_mask() -> None:
    doc = Image.new("RGB", (768, 576), "white")
    draw = ImageDraw.Draw(doc)
    for y in range(20, 560, 24):
        draw.rectangle((30, y, 740, y + 10), fill="black")  # lines of "text"
    init = ingest(encode(doc), max_pixels=1 << 20, max_bytes=1 << 24).png
    painted = doc.copy()
    ImageDraw.Draw(painted).ellipse((300, 200, 400, 300), fill=PINK)
    result = derive_mask(init, encode(painted, "JPEG", quality=60))
    assert result.kind == "painted"
    assert result.coverage < 0.05


def test_transparency_wins_over_black_and_white() -> None:
    init = init_png()
    size = load(init).size
    mask = Image.new("RGBA", size, (255, 255, 255, 255))  # white everywhere: "repaint all" …
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 4, size[1]))  # … but a quarter is transparent
    result = derive_mask(init, encode(mask))
    assert result.kind == "alpha"
    assert result.coverage == pytest.approx(0.25, abs=0.01)


def test_init_picture_with_its_own_transparency() -> None:
    rgba = load(init_png()).convert("RGBA")
    erased = paint(rgba, (0, 0, 0, 0))
    png = ingest(encode(erased), max_pixels=1 << 20, max_bytes=1 << 24).png
    result = mask_from_alpha(png)
    assert result is not None and result.kind == "alpha"
    assert iou(result, truth(rgba.size)) >= 0.9


def test_opaque_init_has_no_alpha_mask() -> None:
    assert mask_from_alpha(init_png()) is None
    opaque = Image.new("RGBA", (256, 256), (9, 9, 9, 255))
    assert mask_from_alpha(encode(opaque)) is None
    corners = opaque.copy()
    corners.paste((0, 0, 0, 0), (0, 0, 8, 8))  # rounded-corner screenshots: not a mask
    assert mask_from_alpha(encode(corners)) is None


# --- refusals -------------------------------------------------------------------------------


def test_empty_mask_is_refused_saying_what_to_send() -> None:
    init = init_png()
    black = Image.new("RGB", load(init).size, "black")
    text = refused("mask.empty", init, encode(black))
    assert "Paint over the part to change" in text and "reply" in text


def test_unchanged_copy_is_an_empty_mask() -> None:
    init = init_png()
    copy = encode(load(init).convert("RGB"), "JPEG", quality=60)
    assert "bright colour" in refused("mask.empty", init, copy)


def test_full_mask_is_refused() -> None:
    init = init_png()
    white = Image.new("L", load(init).size, 255)
    assert "nothing to keep" in refused("mask.full", init, encode(white))
    with pytest.raises(ImageError) as caught:
        mask_from_alpha(encode(Image.new("RGBA", (256, 256), (0, 0, 0, 0))))
    assert caught.value.key == "mask.full"


def other_picture(init: bytes, other: str) -> Image.Image:
    picture = load(init).convert("RGB")
    if other == "unrelated":
        return textured(picture.size, seed=7)
    if other == "other_aspect":
        return textured((picture.height, picture.width), seed=7)
    if other == "cropped":
        return paint(picture, PINK).crop((96, 0, picture.width - 96, picture.height))
    if other == "mirrored":  # the same colours everywhere, in the wrong places
        return picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert other == "gradient"
    return Image.linear_gradient("L").resize(picture.size).convert("RGB")


@pytest.mark.parametrize("other", ["unrelated", "other_aspect", "cropped", "mirrored", "gradient"])
def test_unrelated_picture_is_refused_explaining_the_three_kinds(other: str) -> None:
    init = init_png((768, 576), seed=1)
    candidate = encode(other_picture(init, other), "JPEG", quality=60)
    text = refused("mask.unrelated", init, candidate)
    assert "painted in a bright colour" in text
    assert "black-and-white mask" in text
    assert "transparent" in text


def test_painting_over_almost_everything_points_to_img2img() -> None:
    init = init_png()
    painted = load(init).convert("RGB")
    painted.paste(PINK, (0, 0, painted.width, painted.height * 95 // 100))
    text = refused("mask.unrelated", init, encode(painted, "JPEG", quality=60))
    assert "use img2img" in text


# --- catalogue --------------------------------------------------------------------


def test_every_key_raised_by_ingest_masks_and_store_is_in_the_catalogue() -> None:
    folder = Path(__file__).parent.parent / "bot" / "images"
    source = "".join((folder / f"{name}.py").read_text() for name in ("ingest", "masks", "store"))
    keys = set(re.findall(r'ImageError\(\s*"([a-z_.]+)"', source))
    assert {"image.bad_format", "mask.unrelated", "image.expired"} <= keys
    for key in keys | {"image.unreadable", "mask.used_explicit", "mask.used_alpha"}:
        assert set(MESSAGES[key]) == {"en", "zh"}, key


@pytest.mark.parametrize("kind", ["explicit", "alpha", "painted"])
def test_used_messages_show_the_percentage(kind: str) -> None:
    assert "23%" in t("en", f"mask.used_{kind}", percent=23)
    assert "23%" in t("zh", f"mask.used_{kind}", percent=23)

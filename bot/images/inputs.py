"""From the bytes a user sent to a request the WebUI can run: init image, mask, mode, notes."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from bot.errors import ImageError
from bot.i18n import t
from bot.images.ingest import ingest
from bot.images.masks import MaskResult, derive_mask, mask_from_alpha
from bot.images.store import ImageStore
from bot.types import GenerationRequest, Mode, Pictures


@dataclass
class Prepared:
    """What the images turned into: the init picture's size, the mask (which kind, how much
    of the picture it covers) and notes for the user."""

    init_size: tuple[int, int] | None = None
    mask_kind: str | None = None
    coverage: float | None = None
    notes: list[str] = field(default_factory=list)


async def prepare_images(
    store: ImageStore,
    request: GenerationRequest,
    pictures: Pictures,
    *,
    max_pixels: int,
    max_bytes: int,
    locale: str | None = "en",
    decodes: asyncio.Semaphore | None = None,
) -> Prepared:
    """Ingest, store by reference and decide the mask; sets the request's mode and refs.
    `decodes` bounds how many pictures are decoded at once (MAX_CONCURRENT_DECODES): each
    decode holds up to MAX_PIXELS of pixels, so the bound is the memory bound."""
    init, mask = pictures.init, pictures.mask
    if init is None:
        if mask is not None:
            raise ImageError("mask.needs_init")
        return Prepared()
    async with decodes or contextlib.nullcontext():
        return await _prepare(store, request, init, mask, max_pixels, max_bytes, locale)


async def _prepare(
    store: ImageStore,
    request: GenerationRequest,
    init: bytes,
    mask: bytes | None,
    max_pixels: int,
    max_bytes: int,
    locale: str | None,
) -> Prepared:
    limits = {"max_pixels": max_pixels, "max_bytes": max_bytes}
    image = await asyncio.to_thread(ingest, init, **limits)
    request.init_image = await asyncio.to_thread(store.put, image.png)
    request.mode = Mode.IMG2IMG
    prepared = Prepared(init_size=(image.width, image.height))
    result: MaskResult | None
    if mask is not None:
        candidate = await asyncio.to_thread(ingest, mask, **limits)
        result = await asyncio.to_thread(derive_mask, image.png, candidate.png)
    elif image.has_alpha:
        result = await asyncio.to_thread(mask_from_alpha, image.png)
    else:
        result = None
    if result is not None:
        request.mask = await asyncio.to_thread(store.put, result.mask_png)
        request.mode = Mode.INPAINT
        prepared.mask_kind = result.kind
        prepared.coverage = result.coverage
        prepared.notes.append(
            t(locale, f"mask.used_{result.kind}", percent=round(result.coverage * 100))
        )
    return prepared

"""/describe: the WebUI's interrogator on a picture, and the picture's own parameters.

The interrogator (CLIP or DeepDanbooru, POST /sdapi/v1/interrogate) waits for the WebUI's
generation lock like a render; the parameters come from POST /sdapi/v1/png-info, which reads the
infotext a WebUI writes into its PNGs (nothing, for a photo). Neither is charged: no sampling.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from bot.backends import Backend
from bot.errors import DrawbridgeError, WebUIError, WebUITimeout, WebUIUnreachable
from bot.types import Description

log = logging.getLogger(__name__)


async def describe(
    backends: Sequence[Backend], png: bytes, original: bytes, model: str, label: str
) -> Description:
    """Ask the first backend that answers; `png` is the checked picture, `original` the bytes
    as sent (their PNG text chunks hold the parameters)."""
    usable = [b for b in backends if b.available()] or [b for b in backends if b.up]
    if not usable:
        raise DrawbridgeError("describe.unavailable")
    client = usable[0].client
    try:
        caption = await client.interrogate(png, model)
    except (WebUIUnreachable, WebUITimeout):
        log.warning("interrogate: %s does not answer", client.display)
        raise DrawbridgeError("describe.unavailable") from None
    except WebUIError as exc:
        log.warning("interrogate on %s failed: %s", client.display, exc.render("en"))
        raise DrawbridgeError("describe.failed") from None
    info: dict[str, object] = {}
    with contextlib.suppress(WebUIError):  # a picture without parameters is fine
        info = await client.png_info(original)
    text = str(info.get("info") or "")
    found = info.get("parameters")
    params = found if isinstance(found, dict) else {}
    prompt = str(params.get("Prompt") or "").strip() if text else ""
    negative = str(params.get("Negative prompt") or "").strip() if prompt else ""
    last = text.strip().rsplit("\n", 1)[-1] if prompt else ""
    settings = last if last.startswith("Steps:") else ""
    return Description(caption.strip(), label, prompt, negative, settings)

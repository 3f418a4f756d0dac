"""Upload decode memory (issue 11): twenty 2 KB PNGs declaring 4096×4096, sent at once.

Each figure is the rise of peak RSS (VmHWM, reset first) in a fresh interpreter while twenty
`prepare_images` calls run concurrently, as twenty users' /draw with a picture would:

* ``decode_peak_mib_default``: drawbridge as configured by default (MAX_PIXELS 1 MP): every
  header claims 16.8 MP > MAX_PIXELS, so each is refused before a pixel is decoded;
* ``decode_peak_mib_allowed``: MAX_PIXELS raised to 4096×4096 so they are all decoded, with
  the MAX_CONCURRENT_DECODES (2) semaphore: at most two 64 MB pixel buffers at a time;
* baseline: the same twenty decodes with no semaphore (what the code did before: a header limit
  of 16 × MAX_PIXELS and every decode at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

UPLOADS = 20
SIDE = 4096


def _bomb() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Reset VmHWM to the current RSS; the RSS now, in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _rss_kib("VmRSS")


async def _twenty(max_pixels: int, bounded: bool, store_dir: Path) -> None:
    from bot.errors import ImageError
    from bot.images.inputs import prepare_images
    from bot.images.store import ImageStore
    from bot.types import GenerationRequest, Pictures

    data = _bomb()
    store = ImageStore(store_dir)
    decodes = asyncio.Semaphore(2) if bounded else None

    async def one() -> None:
        with contextlib.suppress(ImageError):
            await prepare_images(
                store,
                GenerationRequest("x"),
                Pictures(init=data),
                max_pixels=max_pixels,
                max_bytes=20 * 1024 * 1024,
                decodes=decodes,
            )

    gc.collect()
    before = _reset_peak()
    await asyncio.gather(*(one() for _ in range(UPLOADS)))
    print(json.dumps({"rss_mib": (_rss_kib("VmHWM") - before) / 1024, "png_bytes": len(data)}))


def _child(which: str) -> None:
    max_pixels = 1024 * 1024 if which == "default" else SIDE * SIDE
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-decodes-") as tmp:
        asyncio.run(_twenty(max_pixels, which != "unbounded", Path(tmp)))


def _measure(which: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.decodes", which], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run() -> tuple[dict[str, float], dict[str, float], list[str]]:
    """(drawbridge figures, baseline figures, notes)."""
    default, allowed, unbounded = (_measure(w) for w in ("default", "allowed", "unbounded"))
    notes = [
        f"decodes: {UPLOADS} PNGs of {int(default['png_bytes'])} bytes declaring {SIDE}²: "
        f"peak RSS rise {default['rss_mib']:.0f} MiB refused by header (MAX_PIXELS 1 MP), "
        f"{allowed['rss_mib']:.0f} MiB decoded two at a time, {unbounded['rss_mib']:.0f} MiB "
        "decoded all at once (baseline)"
    ]
    return (
        {
            "decode_peak_mib_default": default["rss_mib"],
            "decode_peak_mib_allowed": allowed["rss_mib"],
        },
        {
            "decode_peak_mib_default": unbounded["rss_mib"],
            "decode_peak_mib_allowed": unbounded["rss_mib"],
        },
        notes,
    )


if __name__ == "__main__":
    _child(sys.argv[1])

"""nsfw_ms_per_image_*: what NSFW_CHECK adds per delivered picture — nudenet's detector on the
bot's CPU (bot.nsfw.NsfwCheck, the code the engine runs), on placeholder pictures of 512×512
and 1024×1024, after one warm-up; and nsfw_load_s, loading the model (once per process)."""

from __future__ import annotations

import io
import statistics
import time

from bot.nsfw import NsfwCheck
from devwebui.pictures import draw_placeholder

ROUNDS = 20


def _png(size: tuple[int, int], seed: int) -> bytes:
    buffer = io.BytesIO()
    draw_placeholder(size, seed, "a red fox").save(buffer, "PNG")
    return buffer.getvalue()


def run() -> dict[str, float]:
    """The figures, measured in this thread (the engine runs them in a worker thread)."""
    check = NsfwCheck(threshold=0.6)
    began = time.perf_counter()
    check.score_now(_png((64, 64), 0))
    found = {"nsfw_load_s": time.perf_counter() - began}
    for side in (512, 1024):
        pictures = [_png((side, side), seed) for seed in range(ROUNDS)]
        times = []
        for png in pictures:
            began = time.perf_counter()
            check.score_now(png)
            times.append((time.perf_counter() - began) * 1000)
        found[f"nsfw_ms_per_image_{side}"] = statistics.median(times)
    return found

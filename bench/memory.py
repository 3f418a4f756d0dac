"""Memory figures.

bytes_per_queued_job: tracemalloc over 20 000 jobs queued the way `Engine.submit_spec` queues
them (its own `_enqueue`): the Resolved values with their own prompt, a Requester, the Job in
`engine.jobs`, the FairQueue Entry and its place in the queue's dict and deque. The replier is
the adapter's and one is shared here. Baseline: the FIFO bot's list of jobs, each carrying its
built payload dict.

peak_mib_2048_result: one 2048×2048 result as the WebUI sends it (JSON with a base64 PNG, ~6 MB
of PNG made noisy like a real picture), parsed by our client (`_parse_generation`: JSON → bytes),
stored by the engine's path (size from the header), then decoded by Pillow and re-encoded to PNG
as an adapter would. Measured in a fresh interpreter as the rise of peak RSS (VmHWM, reset
before the step) over the RSS just before, so Pillow's pixel buffers count too; tracemalloc's
peak, which does not see them, is logged beside it. Baseline: the usual bot code,
`response.json()` (decode to str, then parse), `b64decode`, Pillow, `save`.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import Recorder, bench_settings
from bench.fifo import FifoJob
from bot.engine import Engine, Job
from bot.payload import build_payload, resolve
from bot.presets import PresetBook
from bot.types import GenerationRequest, Requester
from bot.webui.client import WebUIClient
from storage.db import Database

QUEUED = 20_000
PROMPT = (
    "a watercolour lighthouse on a cliff at dusk, dramatic clouds, seagulls, soft light, job {}"
)


def _request(i: int) -> GenerationRequest:
    return GenerationRequest(PROMPT.format(i), width=512, height=768, steps=28)


async def bytes_per_queued_job() -> tuple[float, float]:
    """(drawbridge, baseline) bytes per queued job."""
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-mem-") as tmp:
        settings = bench_settings(Path(tmp), ["http://127.0.0.1:9"])
        clients = [WebUIClient(u) for u in settings.webui_urls]
        db = Database(settings.database_url)  # never started: nothing here touches it
        engine = Engine(settings, db, clients=clients, presets=PresetBook())
        replier = Recorder()
        try:
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for i in range(QUEUED):
                requester = Requester("discord", str(10**17 + i % 500), f"user{i % 500}")
                spec = resolve(_request(i), engine.presets, engine.limits)
                job = Job(f"{i:010x}", requester, spec, 1, replier)
                engine._enqueue(job)
            gc.collect()
            ours = (tracemalloc.get_traced_memory()[0] - before) / QUEUED
            tracemalloc.stop()
            assert len(engine.queue) == QUEUED

            presets = PresetBook()
            fifo: list[FifoJob] = []
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for i in range(QUEUED):
                spec = resolve(_request(i), presets, engine.limits)
                fifo.append(
                    FifoJob(f"{i:010x}", f"user{i % 500}", build_payload(spec), replier, 0.0)
                )
            gc.collect()
            base = (tracemalloc.get_traced_memory()[0] - before) / QUEUED
            tracemalloc.stop()
        finally:
            for client in clients:
                await client.aclose()
    return ours, base


# --- one 2048×2048 result, in a fresh interpreter -----------------------------------------


def _webui_body() -> bytes:
    """What /sdapi/v1/txt2img answers for one 2048×2048 picture."""
    from PIL import Image, ImageFilter

    from devwebui import encode_png

    size = (2048, 2048)
    noise = Image.effect_noise(size, 48).filter(ImageFilter.GaussianBlur(0.7))
    ramp = Image.linear_gradient("L").resize(size)
    mixed = Image.blend(noise, ramp.transpose(Image.Transpose.ROTATE_90), 0.5)
    picture = Image.merge("RGB", (noise, ramp, mixed))
    info = {"seed": 1, "all_seeds": [1], "infotexts": ["a picture"], "sd_model_name": "m"}
    body = {
        "images": [encode_png(picture, "a picture")],
        "parameters": {},
        "info": json.dumps(info),
    }
    return json.dumps(body).encode()


def _ours(content: bytes, store_dir: Path) -> int:
    from PIL import Image

    from bot.engine import _png_size
    from bot.images.store import ImageStore
    from bot.webui.client import _parse_generation

    result = _parse_generation(content)  # the client, in its worker thread
    data = result.images[0]
    ImageStore(store_dir).put(data)  # the engine stores the bytes as they came
    assert _png_size(data) == (2048, 2048)
    with Image.open(io.BytesIO(data)) as img:  # an adapter re-encoding it
        buf = io.BytesIO()
        img.save(buf, "PNG")
    return len(buf.getvalue())


def _naive(content: bytes, store_dir: Path) -> int:
    from PIL import Image

    body = json.loads(content.decode("utf-8"))  # httpx's response.json()
    data = base64.b64decode(body["images"][0])
    (store_dir / "result.png").write_bytes(data)
    img = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return len(buf.getvalue())


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(which: str) -> None:
    content = _webui_body()
    step = _ours if which == "ours" else _naive
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-peak-") as tmp:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _rss_kib("VmRSS")
        tracemalloc.start()
        step(content, Path(tmp))
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak = _rss_kib("VmHWM")
    print(json.dumps({"rss_mib": (peak - before) / 1024, "traced_mib": traced / 2**20}))


def peak_2048() -> tuple[dict[str, Any], dict[str, Any]]:
    """(drawbridge, baseline): {'rss_mib', 'traced_mib'} from a fresh interpreter each."""
    out = []
    for which in ("ours", "naive"):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.memory", which],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out[0], out[1]


def run() -> tuple[dict[str, float], dict[str, float], list[str]]:
    """(drawbridge figures, baseline figures, notes)."""
    ours_bytes, base_bytes = asyncio.run(bytes_per_queued_job())
    ours_peak, base_peak = peak_2048()
    notes = [
        f"peak 2048²: RSS rise {ours_peak['rss_mib']:.1f} MiB, tracemalloc peak "
        f"{ours_peak['traced_mib']:.1f} MiB (baseline {base_peak['rss_mib']:.1f} / "
        f"{base_peak['traced_mib']:.1f} MiB)"
    ]
    return (
        {"bytes_per_queued_job": ours_bytes, "peak_mib_2048_result": ours_peak["rss_mib"]},
        {"bytes_per_queued_job": base_bytes, "peak_mib_2048_result": base_peak["rss_mib"]},
        notes,
    )


if __name__ == "__main__":
    _child(sys.argv[1])

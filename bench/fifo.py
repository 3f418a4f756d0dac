"""The baseline: how the popular SD bots queue work.

One global list of jobs. Each backend has a worker that takes the oldest job, sends it, waits for
the images, delivers them, and only then takes the next one. Queued jobs carry their full WebUI
payload (built when the command arrives). No quotas, no per-user fairness, no prefetch, no model
awareness. It runs against the same dev-webui servers as the engine, in the same process, with
the same request values and the same delivery step (store the PNG, hand it to the replier).

Like those bots it names a checkpoint through `override_settings` and leaves
`override_settings_restore_afterwards` at the API's default (true), so the WebUI loads the
job's checkpoint and afterwards reloads the one it had; `keep_model=True` sends drawbridge's
payload unchanged (false: the checkpoint stays loaded).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.images.store import ImageStore
from bot.options import Limits
from bot.payload import build_payload, resolve
from bot.presets import PresetBook
from bot.types import GenerationRequest, ImageResult, JobResult, Replier
from bot.webui.client import WebUIClient


@dataclass(slots=True)
class FifoJob:
    """A queued job as such bots keep it: its whole payload, ready to send."""

    id: str
    user: str
    payload: dict[str, Any]
    replier: Replier
    submitted: float


class FifoBot:
    """One global list; deliver a result, then start the next job."""

    def __init__(
        self,
        clients: Sequence[WebUIClient],
        data_dir: Path,
        limits: Limits,
        *,
        keep_model: bool = False,
    ) -> None:
        self.clients = list(clients)
        self.keep_model = keep_model
        self.store = ImageStore(data_dir / "images")
        self.presets = PresetBook()
        self.limits = limits
        self.jobs: list[FifoJob] = []
        self._changed = asyncio.Condition()
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(c)) for c in self.clients]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def submit(self, user: str, request: GenerationRequest, replier: Replier) -> str:
        spec = resolve(request, self.presets, self.limits)
        payload = build_payload(spec)
        if not self.keep_model:
            del payload["override_settings_restore_afterwards"]  # the API default: true
        job = FifoJob(secrets.token_hex(5), user, payload, replier, time.monotonic())
        self.jobs.append(job)
        async with self._changed:
            self._changed.notify_all()
        return job.id

    async def _work(self, client: WebUIClient) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self.jobs))
                job = self.jobs.pop(0)
            started = time.monotonic()
            result = await client.txt2img(job.payload)
            images = []
            for i, data in enumerate(result.images):
                await asyncio.to_thread(self.store.put, data)
                images.append(ImageResult(data, result.seeds[i], result.width, result.height))
            await job.replier.deliver(
                JobResult(
                    job.id,
                    images,
                    job.payload["prompt"],
                    result.model,
                    time.monotonic() - started,
                    1,
                )
            )

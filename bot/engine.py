"""The engine behind the one door (`bot.service`): submit, cancel, buttons, status; it owns the
queue, the dispatcher and the quotas. Nothing outside the core holds it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot import catalogue
from bot.dispatcher import Dispatcher, Events, Running, WebUICall
from bot.errors import (
    DrawbridgeError,
    NotAllowed,
    NotFound,
    QueueFull,
    QuotaExceeded,
    WebUIError,
)
from bot.fairqueue import Entry, FairQueue
from bot.images.store import ImageStore
from bot.options import DrawParser, Limits, draw_options, validate_request
from bot.payload import (
    Resolved,
    build_payload,
    cost,
    reroll_of,
    resolve,
    upscale_of,
    variation_of,
)
from bot.presets import PresetBook, load_presets
from bot.quota import Quotas
from bot.settings import Settings
from bot.types import (
    IMAGE_ACTIONS,
    JOB_ACTIONS,
    Cancelled,
    Catalogue,
    Checkpoint,
    GenerationRequest,
    ImageResult,
    JobHandle,
    JobResult,
    JobState,
    JobUpdate,
    Mode,
    Original,
    Pressed,
    QueueEntry,
    QueueView,
    Replier,
    ReplierFactory,
    Requester,
)
from bot.webui.client import GenerationResult, WebUIClient
from storage.db import Database
from storage.jobs import new_job_id
from storage.lifecycle import RenderedImage
from storage.vocab import InsufficientCredits

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Job:
    """A job the engine tracks from enqueue to its final state."""

    id: str
    requester: Requester
    spec: Resolved
    cost: int
    replier: Replier
    state: JobState = JobState.QUEUED
    created: float = 0.0
    started: float | None = None
    shown_position: int = 0
    notes: tuple[str, ...] = field(default=())

    def update(self, state: JobState, **fields: Any) -> JobUpdate:
        """A JobUpdate of this job, carrying its notes."""
        return JobUpdate(self.id, state, notes=self.notes, **fields)


class Engine(Events):
    """Parse → reserve → fair queue → dispatcher → store and deliver."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        clients: list[WebUIClient] | None = None,
        presets: PresetBook | None = None,
        store: ImageStore | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.presets = presets or load_presets(settings.presets_file)
        self.limits = Limits.from_settings(settings)
        self.options = draw_options(self.limits, self.presets)
        self.parser = DrawParser(self.options, self.limits)
        self.store = store or ImageStore(settings.data_dir / "images")
        self.quotas = Quotas(db, settings)
        self.queue = FairQueue()
        self.jobs: dict[str, Job] = {}
        self._pending: dict[str, int] = {}
        self.repliers: dict[str, ReplierFactory] = {}
        auth = settings.webui_credentials()
        self._own_clients = clients is None
        self.clients = clients or [
            WebUIClient(
                url,
                auth=auth,
                timeout=settings.webui_timeout,
                connect_timeout=settings.webui_connect_timeout,
            )
            for url in settings.webui_urls
        ]
        self.dispatcher = Dispatcher(
            self.clients,
            self.queue,
            self,
            call_for=self._call_for,
            progress_interval=settings.progress_interval,
            stall_timeout=settings.stall_timeout,
            max_attempts=settings.max_attempts,
        )

    # --- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Resume jobs left queued by a previous run, then start dispatching."""
        await self._resume()
        await self.dispatcher.start()

    async def stop(self) -> None:
        """Stop dispatching; queued jobs stay in storage for the next start."""
        await self.dispatcher.stop()
        if self._own_clients:
            for client in self.clients:
                await client.aclose()

    def register_replier(self, platform: str, factory: ReplierFactory) -> None:
        """Let jobs of `platform` be resumed after a restart (reply_ref → Replier)."""
        self.repliers[platform] = factory

    async def _resume(self) -> None:
        await self.db.jobs.requeue_running()
        for row in await self.db.jobs.list_by_state(["queued"]):
            params = _json(row.params)
            requester = Requester(**params["requester"])
            factory = self.repliers.get(requester.platform)
            if factory is None:
                refunded = await self.quotas.release(row.id)
                await self.db.jobs.set_state(
                    row.id, "failed", error="not resumable after restart", finished_at=_now()
                )
                log.info("job %s not resumable (%s); refunded %s", row.id, row.platform, refunded)
                continue
            replier = factory(requester, _json(row.reply_ref) or {})
            spec = Resolved.from_dict(params["spec"])
            notes = tuple(params.get("notes") or ())
            job = Job(
                row.id, requester, spec, row.cost, replier, created=time.monotonic(), notes=notes
            )
            self._enqueue(job)
        if self.jobs:
            log.info("resumed %d queued jobs", len(self.jobs))

    # --- submitting ----------------------------------------------------------------------
    async def submit(
        self,
        requester: Requester,
        request: GenerationRequest,
        replier: Replier,
        *,
        reply_ref: dict[str, Any] | None = None,
        init_size: tuple[int, int] | None = None,
        notes: Sequence[str] = (),
    ) -> JobHandle:
        """Validate, charge and queue a request; raises a DrawbridgeError with nothing charged."""
        validate_request(request, self.limits)
        user = requester.key
        settings_row = await self.db.users.get_settings(user)
        defaults = _row_dict(settings_row)
        spec = resolve(
            request, self.presets, self.limits, user_defaults=defaults, init_size=init_size
        )
        return await self.submit_spec(requester, spec, replier, reply_ref=reply_ref, notes=notes)

    async def submit_spec(
        self,
        requester: Requester,
        spec: Resolved,
        replier: Replier,
        *,
        reply_ref: dict[str, Any] | None = None,
        notes: Sequence[str] = (),
    ) -> JobHandle:
        """Charge and queue fully resolved values (reroll, variations, upscale reuse this)."""
        user = requester.key
        catalogue.check(spec, self.dispatcher.backends)
        job_cost = cost(spec)
        # count first, synchronously, so concurrent submits cannot both pass the cap
        queued = self.queue.count(user) + self._pending.get(user, 0)
        if queued >= self.settings.max_queued_per_user:
            raise QueueFull(count=queued, limit=self.settings.max_queued_per_user)
        self._pending[user] = self._pending.get(user, 0) + 1
        job_id = new_job_id()
        params: dict[str, Any] = {"requester": _requester_dict(requester), "spec": spec.to_dict()}
        if notes:
            params["notes"] = list(notes)
        try:
            # One transaction: user upsert, reservation and job row; nothing when refused.
            await self.db.submit_job(
                id=job_id,
                user_key=user,
                platform=requester.platform,
                display_name=requester.display_name,
                locale=requester.locale,
                chat_id=requester.chat_id,
                mode=spec.mode.value,
                prompt=spec.prompt,
                params=_dumps(params),
                cost=job_cost,
                reply_ref=_dumps(reply_ref or {}),
                allowance=self.settings.allowance_for(user),
                today=self.quotas.today(),
                reset=self.quotas.reset_label(),
            )
        except InsufficientCredits as exc:
            raise QuotaExceeded(cost=exc.cost, balance=exc.balance, reset=exc.reset) from None
        finally:
            self._pending[user] -= 1
        job = Job(
            job_id, requester, spec, job_cost, replier, created=time.monotonic(), notes=tuple(notes)
        )
        self._enqueue(job)
        await self.dispatcher.notify()
        position, eta = self.position(job_id)
        job.shown_position = position
        with contextlib.suppress(Exception):
            await replier.update(job.update(JobState.QUEUED, position=position, eta_seconds=eta))
        return JobHandle(job_id, job_cost, position, eta, job.notes)

    def _enqueue(self, job: Job) -> None:
        self.jobs[job.id] = job
        self.queue.push(Entry(job.id, job.requester.key, float(job.cost), job.spec.model, job))

    # --- status ------------------------------------------------------------------------
    def position(self, job_id: str) -> tuple[int, float]:
        """(1-based queue position, estimated seconds until start); (0, 0) once running."""
        if job_id not in self.queue:
            return 0, 0.0
        ahead, ahead_cost = self.queue.ahead(job_id)
        backends = max(1, len(self.dispatcher.up_backends()))
        rate = self.dispatcher.sec_per_credit()
        eta = (self.dispatcher.remaining_work() + ahead_cost * rate) / backends
        return ahead + 1, eta

    def user_jobs(self, user_key: str) -> list[Job]:
        """This user's queued and running jobs, oldest first."""
        return sorted(
            (j for j in self.jobs.values() if j.requester.key == user_key),
            key=lambda j: j.created,
        )

    def queue_view(self, user_key: str) -> QueueView:
        """/queue: queued and running jobs, backends up, and this user's jobs in order."""
        mine = []
        for job in self.user_jobs(user_key):
            position, eta = self.position(job.id)
            running = job.state is JobState.RUNNING or position == 0
            mine.append(QueueEntry(job.id, running, position, eta))
        return QueueView(
            queued=len(self.queue),
            running=sum(len(b.inflight) for b in self.dispatcher.backends),
            backends_up=len(self.dispatcher.up_backends()),
            mine=tuple(mine),
        )

    def backend_problems(self) -> list[str] | None:
        """Why no backend can run a job (one reason per backend), or None when one is up."""
        if self.dispatcher.up_backends():
            return None
        return [b.last_error for b in self.dispatcher.backends]

    def samplers(self) -> list[str]:
        """Sampler names of every backend, without repeats (for autocomplete)."""
        return catalogue.samplers(self.dispatcher.backends)

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints of every backend, without repeats (for autocomplete)."""
        return catalogue.checkpoints(self.dispatcher.backends)

    async def catalogue(self) -> Catalogue:
        """Checkpoints, samplers and LoRAs the backends offer (for /models)."""
        return await catalogue.gather(self.dispatcher.backends)

    # --- cancelling ---------------------------------------------------------------------
    async def cancel(self, requester: Requester, job_id: str | None = None) -> Cancelled:
        """Cancel a job (the user's newest when no id is given) and refund it."""
        if job_id is None:
            mine = self.user_jobs(requester.key)
            if not mine:
                raise NotFound("queue.nothing_to_cancel")
            job = mine[-1]
        else:
            found = self.jobs.get(job_id) or await self._job_of_cancel_button(job_id)
            if found is None:
                raise NotFound("queue.job_not_found", job=job_id)
            job = found
        if job.requester.key != requester.key and not requester.is_admin:
            raise NotAllowed()
        if self.queue.remove(job.id) is None:
            run = self.dispatcher.find(job.id)
            if run is None:
                raise NotFound("queue.job_not_found", job=job.id)
            await self.dispatcher.cancel_running(run)
        refunded = await self.quotas.release(job.id)
        await self._finish(job, JobState.CANCELLED)
        await self._refresh_positions()
        with contextlib.suppress(Exception):
            await job.replier.fail(
                job.id, DrawbridgeError("queue.cancelled", credits=refunded), refunded
            )
        await self.dispatcher.notify()
        return Cancelled(job.id, refunded)

    async def _job_of_cancel_button(self, key: str) -> Job | None:
        # Cancel buttons carry the job id; those drawn before that carried an action key.
        action = await self.db.actions.get(key)
        if action is None or action.kind != "cancel":
            return None
        return self.jobs.get(action.job_id)

    # --- actions on results (buttons) ------------------------------------------------------
    async def press(
        self,
        requester: Requester,
        key: str,
        replier: Replier | None = None,
        *,
        reply_ref: dict[str, Any] | None = None,
    ) -> Pressed:
        """Run a result button: reroll/variations/upscale are new jobs charged to whoever
        pressed (they need the replier); delete is for the owner or an admin (the adapter
        removes the message)."""
        action, params = await self._action(key)
        owner = params["requester"]
        is_owner = f"{owner['platform']}:{owner['user_id']}" == requester.key
        kind = action.kind
        outcome = Pressed(kind, action.job_id, action.image_index)
        if kind == "cancel":  # a button drawn before cancel buttons carried the job id
            await self.cancel(requester, action.job_id)
            return outcome
        if kind == "delete":
            if not (is_owner or requester.is_admin):
                raise NotAllowed()
            return outcome
        if replier is None:  # the button said it starts no job, the stored action disagrees
            raise NotFound("action.expired")
        spec = Resolved.from_dict(params["spec"])
        if kind == "reroll":
            outcome.handle = await self.submit_spec(
                requester, reroll_of(spec), replier, reply_ref=reply_ref
            )
            return outcome
        result = await self._result(action.job_id, action.image_index)
        preset = self.presets.default
        if kind == "variations":
            new = variation_of(spec, result.image_ref, preset.variation_strength)
        elif kind == "upscale":
            new = upscale_of(
                spec,
                result.image_ref,
                (result.width, result.height),
                preset.upscaler,
                preset.upscale_factor,
            )
        else:
            raise NotFound("action.expired")
        if not await asyncio.to_thread(self.store.exists, result.image_ref):
            raise NotFound("action.expired")
        outcome.handle = await self.submit_spec(requester, new, replier, reply_ref=reply_ref)
        return outcome

    async def original(self, key: str) -> Original:
        """The stored PNG behind an 📄 Original key (anyone who sees the button may have it)."""
        action, _ = await self._action(key)
        result = await self._result(action.job_id, action.image_index)
        png = await asyncio.to_thread(self.store.get, result.image_ref)
        return Original(action.job_id, action.image_index, png)

    async def _action(self, key: str) -> tuple[Any, dict[str, Any]]:
        action = await self.db.actions.get(key)
        if action is None:
            raise NotFound("action.expired")
        row = await self.db.jobs.get(action.job_id)
        if row is None:
            raise NotFound("action.expired")
        return action, _json(row.params)

    async def _result(self, job_id: str, index: int) -> Any:
        for result in await self.db.results.for_job(job_id):
            if result.image_index == index:
                return result
        raise NotFound("action.expired")

    async def _finish(self, job: Job, state: JobState, **fields: Any) -> None:
        job.state = state
        self.jobs.pop(job.id, None)
        await self.db.jobs.set_state(job.id, state.value, finished_at=_now(), **fields)

    # --- dispatcher events ---------------------------------------------------------------
    async def _call_for(self, entry: Entry) -> WebUICall:
        job: Job = entry.item
        spec = job.spec
        if spec.mode is Mode.UPSCALE:
            assert spec.init_image is not None
            source = await asyncio.to_thread(self.store.get, spec.init_image)

            async def upscale(client: WebUIClient) -> GenerationResult:
                png = await client.extra_single_image(
                    source, upscaler=spec.hr_upscaler, scale=spec.hr_scale
                )
                width, height = _png_size(png) or spec.final_size
                return GenerationResult([png], {}, [spec.seed], [""], width, height, "")

            return upscale
        if spec.init_image is None:
            payload = build_payload(spec)
            return lambda client: client.txt2img(payload)
        init_b64, mask_b64 = await asyncio.to_thread(self._encode_inputs, spec)
        payload = build_payload(spec, init_b64=init_b64, mask_b64=mask_b64)
        return lambda client: client.img2img(payload)

    def _encode_inputs(self, spec: Resolved) -> tuple[str, str | None]:
        assert spec.init_image is not None
        init = base64.b64encode(self.store.get(spec.init_image)).decode()
        mask = base64.b64encode(self.store.get(spec.mask)).decode() if spec.mask else None
        return init, mask

    async def _refresh_positions(self, limit: int = 10) -> None:
        """Tell the first queued jobs their new place when the queue moved."""
        backends = max(1, len(self.dispatcher.up_backends()))
        rate = self.dispatcher.sec_per_credit()
        ahead = self.dispatcher.remaining_work()
        for i, entry in enumerate(self.queue.in_order(limit), start=1):
            job: Job = entry.item
            eta = ahead / backends
            ahead += entry.cost * rate
            if job.shown_position != i:
                job.shown_position = i
                with contextlib.suppress(Exception):
                    await job.replier.update(
                        job.update(JobState.QUEUED, position=i, eta_seconds=eta)
                    )

    async def started(self, run: Running) -> None:
        job: Job = run.entry.item
        job.state = JobState.RUNNING
        job.started = time.monotonic()
        await self._refresh_positions()
        await self.db.jobs.set_state(
            job.id,
            "running",
            only_from=["queued"],
            backend=run.backend.url,
            started_at=_now(),
            attempts=self.dispatcher.attempts.get(job.id, 1),
        )
        with contextlib.suppress(Exception):
            await job.replier.update(job.update(JobState.RUNNING, progress=0.0))

    async def progress(self, run: Running, fraction: float, preview: bytes | None) -> None:
        job: Job = run.entry.item
        with contextlib.suppress(Exception):
            await job.replier.update(
                job.update(JobState.RUNNING, progress=fraction, preview=preview)
            )

    async def finished(self, run: Running, result: GenerationResult, elapsed: float) -> None:
        job: Job = run.entry.item
        if job.id not in self.jobs:
            return  # cancelled meanwhile
        images = []
        stored: list[RenderedImage] = []
        for i, data in enumerate(result.images):
            ref = await asyncio.to_thread(self.store.put, data)
            seed = result.seeds[i] if i < len(result.seeds) else job.spec.seed + i
            info = result.infotexts[i] if i < len(result.infotexts) else ""
            width, height = _png_size(data) or (result.width, result.height)
            images.append(ImageResult(data, seed, width, height, info, ref=ref))
            stored.append(RenderedImage(ref, seed, width, height, info))
        # From here on the pictures are held by reference (the store has them): only the
        # ImageResults keep their bytes, and a replier may let go of those while it waits.
        result.images.clear()
        data = b""
        model = result.model or job.spec.model or run.backend.model or ""
        # Stored (results, button keys, state rendered) in one transaction before the upload;
        # settled only once the platform confirmed it.
        wanted, own = _result_actions(len(images), job.spec.mode)
        keys = await self.db.jobs.render(job.id, owner=None, images=stored, actions=wanted)
        if keys is None:
            return  # cancelled meanwhile
        job.state = JobState.RENDERED
        self.jobs.pop(job.id, None)
        delivered = JobResult(
            job.id,
            images,
            job.spec.prompt,
            model,
            elapsed,
            job.cost,
            mode=job.spec.mode,
            notes=list(job.notes),
            keys=_assign_keys(keys, wanted, own, images),
        )
        try:
            await job.replier.deliver(delivered)
        except Exception:
            log.exception("delivering job %s failed; refunding", job.id)
            today = self.quotas.today()
            await self.db.jobs.fail(job.id, owner=None, error="delivery failed", today=today)
            return
        await self.db.jobs.deliver(job.id, owner=None)

    async def failed(self, run: Running, error: DrawbridgeError) -> None:
        job: Job = run.entry.item
        if job.id not in self.jobs:
            return
        refunded = await self.quotas.release(job.id)
        await self._finish(job, JobState.FAILED, error=error.render("en")[:500])
        with contextlib.suppress(Exception):
            await job.replier.fail(job.id, error, refunded)

    async def retrying(self, run: Running, error: WebUIError) -> None:
        job: Job = run.entry.item
        job.state = JobState.QUEUED
        await self.db.jobs.set_state(job.id, "queued", error=error.render("en")[:500])
        attempt = self.dispatcher.attempts.get(job.id, 1) + 1
        with contextlib.suppress(Exception):
            await job.replier.update(
                job.update(JobState.QUEUED, attempt=attempt, note="queue.retrying")
            )

    async def discarded(self, run: Running) -> None:
        log.info("dropped the result of cancelled job %s", run.entry.job_id)


def _result_actions(count: int, mode: Mode) -> tuple[list[tuple[int, str]], list[str]]:
    """The button kinds of a result: (image index, kind) pairs, and the job's own kinds."""
    upscaled = mode is Mode.UPSCALE  # an upscale is not drawn again, only kept or deleted
    own = [k for k in JOB_ACTIONS if not (upscaled and k == "reroll")]
    per_image = [k for k in IMAGE_ACTIONS if not upscaled or k == "original"]
    wanted = [(0, kind) for kind in own]
    wanted += [(i, kind) for i in range(count) for kind in per_image]
    return wanted, own


def _assign_keys(
    keys: list[str], wanted: list[tuple[int, str]], own: list[str], images: list[ImageResult]
) -> dict[str, str]:
    """Hand the stored keys out: the job's own in the returned dict, each picture's in `keys`."""
    found = iter(zip(wanted, keys, strict=True))
    result = {kind: key for (_, kind), key in itertools.islice(found, len(own))}
    for (index, kind), key in found:
        images[index].keys[kind] = key
    return result


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _requester_dict(r: Requester) -> dict[str, Any]:
    return {
        "platform": r.platform,
        "user_id": r.user_id,
        "display_name": r.display_name,
        "chat_id": r.chat_id,
        "locale": r.locale,
        "is_admin": r.is_admin,
    }


def _row_dict(row: Any) -> dict[str, Any]:
    if row is None:
        return {}
    fields = ("preset", "width", "height", "steps", "negative")
    return {f: getattr(row, f, None) for f in fields}

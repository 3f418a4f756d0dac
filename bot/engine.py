"""The engine behind the one door (`bot.service`): submit, cancel, buttons, status; it owns the
queue, the dispatcher, the quotas and this process's instance. Nothing outside the core holds it.

Every job moves through the state machine of storage/lifecycle.py, owned by this instance:

    submit (stored, then acknowledged) → start → [bind] → render (stored) → deliver (settled)
                                      ↘ requeue (backend lost, handed back) / fail / cancel

The dispatcher's callbacks only record what happened and hand the job's next steps to
`bot.steps.Steps` (in order per job, each write retried until the database takes it), so no
database fault can fail a job whose picture was drawn or leave one running with its credits
reserved. Jobs of instances that died are taken over by `bot.lease.Lease` and recovered here:
queued ones queued again, lost renders interrupted (when provably still drawing) and drawn
again, rendered results sent again. `drain` is the graceful half of a shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gc
import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot import catalogue
from bot import describe as describing
from bot.backend_report import state_path
from bot.backends import Needs, needs_of
from bot.defaults import defaults_of
from bot.dispatcher import Dispatcher, Events, Running, WebUICall
from bot.errors import (
    DeliveryFailed,
    DrawbridgeError,
    NoBackendCanDraw,
    NotAllowed,
    NotFound,
    NsfwWithheld,
    OptionError,
    QueueFull,
    QuotaExceeded,
    RefusedError,
    ShuttingDown,
    StorageError,
    WebUIEmptyResult,
    WebUIError,
    for_users,
)
from bot.fairqueue import Entry
from bot.governor import Governor
from bot.i18n import Phrase, t
from bot.images import outpaint
from bot.images.ingest import fit, image_size
from bot.images.store import ImageStore
from bot.jobtable import JobTable
from bot.lease import Lease
from bot.metrics import BackendState, Metrics, Snapshot
from bot.notices import Notices
from bot.nsfw import NsfwCheck, NsfwUnavailable
from bot.nsfw import available as nsfw_available
from bot.options import DrawParser, Limits, draw_options, validate_request
from bot.payload import (
    Resolved,
    Target,
    build_payload,
    cost_on,
    faces_of,
    favourites_used,
    outpaint_of,
    reroll_of,
    resolve,
    shared,
    upscale_of,
    variation_of,
)
from bot.presets import PresetBook, load_presets
from bot.quota import Quotas
from bot.relaxqueue import LaneQueue
from bot.settings import Settings
from bot.steps import Steps, until_written
from bot.types import (
    CANVAS_ACTIONS,
    IMAGE_ACTIONS,
    JOB_ACTIONS,
    SINGLE_ACTIONS,
    Cancelled,
    Catalogue,
    Checkpoint,
    Description,
    GenerationRequest,
    HistoryEntry,
    HistoryJob,
    HistoryPage,
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
from storage.instances import Orphans, new_instance_id
from storage.jobs import JobSnapshot as JobRow
from storage.jobs import new_job_id
from storage.lifecycle import RenderedImage
from storage.vocab import DuplicateJob, InsufficientCredits, StorageFault, StorageFull

log = logging.getLogger(__name__)
# Jobs taken over that are adopted between two yields to the event loop (each parses its row).
ADOPT_SLICE = 25  # ~0.3 ms each: the loop waits at most ~10 ms for a slice
# A takeover this large moves what exists to the collector's permanent generation (below).
FREEZE_AFTER = 100
_SHARED_FIELDS = ("platform", "chat_id", "locale")  # of a Requester: the same for many jobs


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
    shown_down: bool = False  # its status says no backend is up
    notes: tuple[str, ...] = field(default=())
    chain: asyncio.Task[Any] | None = None  # its latest bookkeeping step (bot.steps)
    backend: str = ""  # the backend that drew it last (metrics label, audit, stats)
    ran: float | None = None  # seconds its backend drew it
    relax: bool = False  # RELAX_MODE: free, queued behind every job with credits
    share: float = 0.0  # what it weighs in the fair queue (its cost; a relax job's real cost)

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
        instance: str | None = None,
        serves: Sequence[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics or Metrics(process=False)
        self.presets = presets or load_presets(settings.presets_file)
        self.limits = Limits.from_settings(settings)
        self.options = draw_options(self.limits, self.presets)
        self.parser = DrawParser(self.options, self.limits)
        self.store = store or ImageStore(settings.data_dir / "images")
        self.quotas = Quotas(db, settings)
        self.governor = Governor(settings, db)
        self.nsfw = None if settings.nsfw_check == "off" else NsfwCheck(settings.nsfw_threshold)
        self.quotas.allowance_of = self.governor.allowance_by_key
        self.queue = LaneQueue()  # credited jobs, then relax jobs
        self.jobs: JobTable[Job] = JobTable(lambda job: job.requester.key)
        self._pending: dict[str, int] = {}
        self._adopting = 0  # jobs of a takeover batch not yet queued here
        # platform → the bot this process answers it with ("telegram:123"), and by that bot,
        # how a job taken over finds its conversation again
        self.routes: dict[str, str] = {}
        self.repliers: dict[str, ReplierFactory] = {}
        self.instance = instance or new_instance_id()
        self._serves = list(serves)
        self.accepting = True
        self.steps = Steps()
        self.notices = Notices(db)  # "could not deliver, refunded", until the platform took it
        self.lease = Lease(
            db,
            self.instance,
            lease_seconds=settings.lease_seconds,
            today=self.quotas.today,
            claimed=self._recover,
            lost=self._reconcile,
        )
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
            labels=settings.webui_names,
            progress_interval=settings.progress_interval,
            stall_timeout=settings.stall_timeout,
            max_attempts=settings.max_attempts,
            cooloff=settings.backend_cooloff,
            cooloff_max=settings.backend_cooloff_max,
            restore=settings.webui_restore_settings,
            refresh_interval=settings.catalogue_refresh_interval,
            state_file=state_path(settings),
            metrics=self.metrics,
            on_health=lambda b, up: self.governor.backend_changed(
                b.index, b.label or f"backend {b.index}", up
            ),
        )
        self.metrics.watch(self.snapshot)

    # --- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Register this instance, take over the jobs of stopped ones, start dispatching."""
        if self.nsfw is not None and not nsfw_available():
            raise NsfwUnavailable()
        await self.governor.start()
        platforms = {*self.routes.values(), *self._serves}
        # rows written before jobs named their bot carry the bare platform
        platforms |= {p for p, route in self.routes.items() if route != p}
        await self.lease.start(sorted(platforms))
        await self.dispatcher.start()

    async def drain(self, grace: float) -> None:
        """The graceful half of a shutdown: refuse new work, hand back running jobs (each
        interrupted once it is proven ours, unless it finishes within the grace) and let
        deliveries in flight finish, all within `grace` seconds."""
        self.accepting = False
        self.lease.hold()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.dispatcher.drain(grace)
        await self.steps.wait(max(0.0, deadline - loop.time()))

    async def stop(self) -> None:
        """Stop dispatching, hand back what still runs, write what is pending (briefly),
        deregister. Queued jobs stay queued for the next owner."""
        self.accepting = False
        await self.governor.stop()
        await self.dispatcher.stop()
        for job in list(self.jobs.values()):
            if job.state is JobState.RUNNING:
                self._hand_back(job, "stopped while drawing")
        await self.steps.wait(min(5.0, self.settings.shutdown_grace + 1.0))
        await self.steps.cancel()
        await self.notices.stop(1.0)  # those not sent by then stay due for the next owner
        await self.lease.stop()
        if self._own_clients:
            for client in self.clients:
                await client.aclose()

    def register_replier(
        self, platform: str, factory: ReplierFactory, *, route: str | None = None
    ) -> None:
        """Answer jobs of `platform` with the bot `route` (default: the platform itself), and
        let such jobs be taken over after a restart (reply_ref → Replier)."""
        route = route or platform
        self.routes[platform] = route
        self.repliers[route] = factory

    # --- taking over ---------------------------------------------------------------------
    async def _recover(self, orphans: Orphans) -> None:
        """Go on with jobs taken over from stopped instances (bot.lease calls this)."""
        for row, refunded in orphans.failed:
            log.info("job %s of a stopped `drawbridge draw` failed; refunded %s", row.id, refunded)
        # Renders of the dead may still be going on: stop them before their jobs are queued
        # again, or they are drawn twice (all asked at once, a dead backend bounded).
        if orphans.renders:
            stops = [self.dispatcher.interrupt_orphan(*r) for r in orphans.renders.values()]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.webui_connect_timeout + 1.0):
                    await asyncio.gather(*stops, return_exceptions=True)
        self._adopting = len(orphans.queued)
        try:
            for n, row in enumerate(orphans.queued, start=1):
                job = await self._adopt(row)
                self._adopting -= 1
                if job is not None:
                    self._enqueue(job)
                if n % ADOPT_SLICE == 0:
                    await asyncio.sleep(0)  # a large batch: let commands and backends in
        finally:
            self._adopting = 0
        if len(orphans.queued) >= FREEZE_AFTER:
            # A large takeover leaves ~8 tracked objects per queued job: the collector's full
            # passes over all of them stalled the loop 0.8 s at 100 000 jobs. They live until
            # their job ends (freed by reference counting then), so the collector need not
            # walk them: what exists now moves to its permanent generation.
            gc.freeze()
        for row in orphans.rendered:
            job = await self._adopt(row)
            if job is not None:
                job.state = JobState.RENDERED
                self.steps.then(job, "deliver again", functools.partial(self._resend, job, row))
        for row, refunded in orphans.notices:  # "could not deliver": its last owner stopped
            job = await self._adopt(row)
            if job is not None:
                self.notices.tell(job.id, job.replier, DeliveryFailed(job=job.id), refunded)
        if orphans.queued:
            await self.dispatcher.notify()
            await self._refresh_positions()

    async def _adopt(self, row: JobRow) -> Job | None:
        """A Job from its row, answered through its bot's replier; None if it cannot be."""
        if row.id in self.jobs:
            return None
        params = _json(row.params) or {}
        route = row.platform
        factory = self.repliers.get(route) or self.repliers.get(self.routes.get(route, ""))
        try:
            asked = params["requester"]
            requester = Requester(
                **{k: shared(v) if k in _SHARED_FIELDS else v for k, v in asked.items()}
            )
            requester = requester.shared()
            if factory is None:
                raise LookupError(f"no replier for {route}")
            replier = factory(requester, _json(row.reply_ref) or {})
            spec = Resolved.from_dict(params["spec"])
        except Exception as exc:
            log.warning("job %s cannot be resumed (%s); refunding it", row.id, exc)
            refunded = await until_written(
                lambda: self.db.jobs.fail(
                    row.id,
                    owner=self.instance,
                    error="not resumable after restart",
                    today=self.quotas.today(),
                ),
                f"job {row.id}: fail",
            )
            log.info("job %s refunded %s", row.id, refunded)
            return None
        notes = tuple(params.get("notes") or ())
        job = Job(row.id, requester, spec, row.cost, replier, created=time.monotonic(), notes=notes)
        job.relax = bool(params.get("relax"))
        return job

    async def _resend(self, job: Job, row: JobRow) -> None:
        """Send a result stored before the last owner stopped (it was not confirmed sent)."""
        results = await until_written(
            lambda: self.db.results.for_job(job.id), f"job {job.id}: read results"
        )
        actions = await until_written(
            lambda: self.db.actions.for_job(job.id), f"job {job.id}: read buttons"
        )
        try:
            pngs = [await asyncio.to_thread(self.store.get, r.image_ref) for r in results]
        except DrawbridgeError as exc:  # the stored picture is gone
            await self._fail(job, exc)
            return
        images = [
            ImageResult(png, r.seed, r.width, r.height, r.infotext)
            for png, r in zip(pngs, results, strict=True)
        ]
        if not await self._screen(job, images):
            return
        own: dict[str, str] = {}
        for action in actions:
            if action.kind in JOB_ACTIONS:
                own[action.kind] = action.key
            elif action.kind in (*IMAGE_ACTIONS, *SINGLE_ACTIONS) and action.image_index < len(
                images
            ):
                images[action.image_index].keys[action.kind] = action.key
        elapsed = 0.0
        if row.started_at is not None and row.rendered_at is not None:
            elapsed = max(0.0, (row.rendered_at - row.started_at).total_seconds())
        infotext = results[0].infotext if results else ""
        result = JobResult(
            job.id,
            images,
            job.spec.prompt,
            job.spec.model or _model_of(infotext),
            elapsed,
            job.cost,
            mode=job.spec.mode,
            notes=list(job.notes),
            keys=own,
        )
        await self._deliver(job, result)

    async def _reconcile(self) -> None:
        """The lease ran out and others may have taken jobs: drop what is not ours now."""
        owned = {row.id for row in await self.db.instances.owned(self.instance)}
        for job in list(self.jobs.values()):
            if job.id not in owned:
                self._lose(job)

    def _lose(self, job: Job) -> None:
        """Another instance owns the job now: forget it here (its result would be dropped)."""
        log.warning("job %s belongs to another instance now; dropping it here", job.id)
        self.jobs.pop(job.id, None)
        self.queue.remove(job.id)
        run = self.dispatcher.find(job.id)
        if run is not None:
            self.steps.spawn(f"interrupt {job.id}", lambda: self.dispatcher.cancel_running(run))

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
        source: str | None = None,
    ) -> JobHandle:
        """Validate, charge and queue a request; raises a DrawbridgeError with nothing charged.
        `source` names the platform command: the same one again is the same job."""
        if not self.accepting:
            raise ShuttingDown()
        validate_request(request, self.limits)
        user = requester.key
        try:
            settings_row = await self.db.users.get_settings(user)
        except StorageFault as exc:
            raise StorageError.from_fault(exc) from None
        defaults = defaults_of(settings_row).as_dict()
        spec = resolve(
            request, self.presets, self.limits, user_defaults=defaults, init_size=init_size
        )
        try:
            return await self.submit_spec(
                requester,
                spec,
                replier,
                reply_ref=reply_ref,
                notes=notes,
                source=source,
                relax=bool(request.relax),
            )
        except (OptionError, NoBackendCanDraw) as exc:
            if not self._favourite_missing(*favourites_used(request, defaults)):
                raise
            # the user did not type it: say where it came from and how to draw without it
            raise type(exc)("settings.favourite_gone", reason=Phrase(exc.render)) from None

    def _favourite_missing(self, loras: Sequence[str], styles: Sequence[str]) -> bool:
        """Whether a favourite LoRA or style a draw took is one no up backend has."""
        try:
            catalogue.check_favourites(loras, styles, self.dispatcher.backends)
        except DrawbridgeError:
            return True
        return False

    async def submit_spec(
        self,
        requester: Requester,
        spec: Resolved,
        replier: Replier,
        *,
        reply_ref: dict[str, Any] | None = None,
        notes: Sequence[str] = (),
        source: str | None = None,
        relax: bool = False,
    ) -> JobHandle:
        """Charge and queue fully resolved values (reroll, variations, upscale reuse this).
        `relax` (RELAX_MODE flag or auto): free, behind every job with credits; in auto mode
        a job the user's credits do not cover goes relaxed too.

        The job is stored (or refused) before the replier hears of it: its first status
        update is the acknowledgement the platform shows."""
        if not self.accepting:
            raise ShuttingDown()
        user = requester.key
        relax_mode = self.settings.relax_mode
        if relax and relax_mode == "off":
            raise RefusedError("relax.off")
        governor = self.governor
        await governor.check_ban(requester)
        # moderation, pause and the tier, before anything is charged or sent to a WebUI
        spec = governor.admit(requester, spec)
        dispatcher = self.dispatcher
        needs = await catalogue.check_fresh(
            spec, dispatcher.backends, dispatcher.refresh_for_unknown
        )
        # charged what the backends that may draw it really draw (img2img steps differ)
        job_cost = cost_on(spec, (b.flavour for b in dispatcher.can_draw(needs)))
        # count first, synchronously, so concurrent submits cannot both pass the cap
        queued = self.queue.count(user) + self._pending.get(user, 0)
        max_queued = governor.max_queued(requester)
        if queued >= max_queued:
            raise QueueFull(count=queued, limit=max_queued)
        self._pending[user] = self._pending.get(user, 0) + 1
        job_id = new_job_id()
        notes = list(notes)
        try:
            try:
                await self._store(
                    job_id, requester, spec, job_cost, relax, notes, reply_ref, source
                )
            except InsufficientCredits:
                if relax_mode != "auto":
                    raise
                relax = True  # credits spent: it may still run, relaxed
                notes.append(t(requester.locale, "relax.auto"))
                await self._store(
                    job_id, requester, spec, job_cost, relax, notes, reply_ref, source
                )
        except InsufficientCredits as exc:
            raise QuotaExceeded(cost=exc.cost, balance=exc.balance, reset=exc.reset) from None
        except DuplicateJob as exc:
            # handed over twice (replayed after a crash, or seen by a second process): the
            # stored job goes on as it is; this copy says nothing and charges nothing
            log.info("command %s was already taken in as job %s", source, exc.job_id)
            return JobHandle(exc.job_id, 0, 0, 0.0)
        except StorageFault as exc:
            raise StorageError.from_fault(exc) from None
        finally:
            self._pending[user] -= 1
        cost = 0 if relax else job_cost
        job = Job(
            job_id, requester, spec, cost, replier, created=time.monotonic(), notes=tuple(notes)
        )
        job.relax, job.share = relax, float(job_cost)
        self._enqueue(job, needs)
        position, eta = self.position(job_id)
        job.shown_position = position
        self.dispatcher.kick()  # an idle backend takes it now …
        await asyncio.sleep(0)  # … and its request leaves before the replies are made
        with contextlib.suppress(Exception):
            await replier.update(self._queued_update(job, position, eta))
        return JobHandle(job_id, cost, position, eta, job.notes)

    async def _store(
        self,
        job_id: str,
        requester: Requester,
        spec: Resolved,
        job_cost: int,
        relax: bool,
        notes: list[str],
        reply_ref: dict[str, Any] | None,
        source: str | None,
    ) -> None:
        """One transaction: user upsert, reservation (none for a relax job) and job row;
        nothing when refused."""
        if relax and not any(n == t(requester.locale, "relax.auto") for n in notes):
            notes.append(t(requester.locale, "relax.queued"))
        params: dict[str, Any] = {"requester": _requester_dict(requester), "spec": spec.to_dict()}
        if notes:
            params["notes"] = list(notes)
        if relax:
            params["relax"] = True
        user = requester.key
        await self.db.submit_job(
            id=job_id,
            user_key=user,
            platform=requester.platform,
            route=self.routes.get(requester.platform),
            owner=self.instance,
            source=source,
            display_name=requester.display_name,
            locale=requester.locale,
            chat_id=requester.chat_id,
            mode=spec.mode.value,
            prompt=spec.prompt,
            params=_dumps(params),
            cost=0 if relax else job_cost,
            reply_ref=_dumps(reply_ref or {}),
            allowance=self.governor.allowance(requester),
            today=self.quotas.today(),
            reset=self.quotas.reset_label(),
        )

    def _queued_update(self, job: Job, position: int, eta: float) -> JobUpdate:
        """Queued at `position`; with no backend up it says so instead of an ETA it cannot
        know, and that the credits are only held (returned if the job never runs)."""
        job.shown_down = not self.dispatcher.up_backends()
        if job.shown_down:
            return job.update(JobState.QUEUED, position=position, note="queue.waiting_no_backend")
        return job.update(JobState.QUEUED, position=position, eta_seconds=eta)

    async def remember_reply(self, job_id: str, reply_ref: dict[str, Any]) -> None:
        """The job's conversation moved (its status message was sent or replaced): store where,
        so whoever delivers it after a restart edits that message. Best effort."""
        try:
            await self.db.jobs.set_reply_ref(job_id, _dumps(reply_ref), owner=self.instance)
        except StorageFault as exc:
            log.info("job %s: where its status is could not be stored (%s)", job_id, exc)

    def _enqueue(self, job: Job, needs: Needs | None = None) -> None:
        """Into the fair queue; `needs` when the caller has them (a submit: checked just now)."""
        self.jobs[job.id] = job
        share = job.share or float(job.cost) or 1.0
        # the cost is the same for many queued jobs: one copy (the key is the Requester's, and
        # a user's jobs share one Requester)
        entry = Entry(job.id, job.requester.key, shared(share), job.spec.model, job)
        entry.weight = self.governor.tier(job.requester).priority
        entry.relax = job.relax
        entry.needs = shared(needs or needs_of(job.spec))  # most jobs need the same
        self.queue.push(entry)

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
        return sorted(self.jobs.of(user_key), key=lambda j: j.created)

    def queue_view(self, user_key: str) -> QueueView:
        """/queue: queued and running jobs, backends up, and this user's jobs in order."""
        mine = []
        for job in self.user_jobs(user_key):
            position, eta = self.position(job.id)
            running = job.state is JobState.RUNNING or position == 0
            mine.append(QueueEntry(job.id, running, position, eta))
        return QueueView(
            # jobs of a takeover still being loaded are queued too, only not here yet
            queued=len(self.queue) + self._adopting + self.lease.pending,
            running=sum(len(b.inflight) for b in self.dispatcher.backends),
            backends_up=len(self.dispatcher.up_backends()),
            mine=tuple(mine),
        )

    def backend_problems(self) -> list[str] | None:
        """Why no backend can run a job (one reason per backend), or None when one is up."""
        if self.dispatcher.up_backends():
            return None
        return [b.last_error for b in self.dispatcher.backends]

    def snapshot(self) -> Snapshot:
        """The queue and the backends now, for /metrics and /healthz."""
        per_user: dict[str, int] = {}
        for job in self.jobs.values():
            if job.state is JobState.QUEUED:
                per_user[job.requester.key] = per_user.get(job.requester.key, 0) + 1
        now = time.monotonic()
        backends = [
            BackendState(
                label=backend_label(b.label, b.index),
                up=b.up,
                running=len(b.inflight),
                cooling=b.cooling(now) > 0,
                error="" if b.up else b.last_error,
            )
            for b in self.dispatcher.backends
        ]
        return Snapshot(
            queued=len(self.queue),
            running=sum(len(b.inflight) for b in self.dispatcher.backends),
            per_user=sorted(per_user.values()),
            backends=backends,
        )

    def samplers(self) -> list[str]:
        """Sampler names of every backend, without repeats (for autocomplete)."""
        return catalogue.samplers(self.dispatcher.backends)

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints of every backend, without repeats (for autocomplete)."""
        return catalogue.checkpoints(self.dispatcher.backends)

    # --- /history --------------------------------------------------------------------------
    async def history(self, user_key: str, page: int, per_page: int) -> HistoryPage:
        """One page of a user's delivered jobs, newest first (a page past the end: the last)."""
        try:
            total = await self.db.jobs.count_delivered(user_key)
            pages = max(1, -(-total // per_page))
            page = min(max(0, page), pages - 1)
            rows = await self.db.jobs.delivered_of(user_key, limit=per_page, offset=page * per_page)
        except StorageFault as exc:
            raise StorageError.from_fault(exc) from None
        entries = []
        for row in rows:
            spec = (_json(row.params) or {}).get("spec") or {}
            refs = _json(row.result_refs) or []
            width, height = spec.get("width", 0), spec.get("height", 0)
            if spec.get("hires") and spec.get("mode") == Mode.TXT2IMG.value:
                width, height = int(width * spec["hr_scale"]), int(height * spec["hr_scale"])
            entries.append(
                HistoryEntry(
                    row.id,
                    row.prompt,
                    row.created_at.strftime("%Y-%m-%d %H:%M"),
                    max(1, len(refs)),
                    f"{width}×{height}",
                )
            )
        return HistoryPage(tuple(entries), page, pages)

    async def history_job(self, requester: Requester, job_id: str) -> HistoryJob:
        """A user's delivered job with its pictures and stored button keys (an admin may see
        anyone's); NotFound for what is not theirs, unknown, or whose pictures are gone."""
        try:
            row = await self.db.jobs.get(job_id.strip())
            ok = row is not None and row.state == JobState.DELIVERED.value
            if row is None or not ok or not (row.user_key == requester.key or requester.is_admin):
                raise NotFound("history.unknown_job", job=job_id)
            results = await self.db.results.for_job(row.id)
            actions = await self.db.actions.for_job(row.id)
        except StorageFault as exc:
            raise StorageError.from_fault(exc) from None
        try:
            pngs = [await asyncio.to_thread(self.store.get, r.image_ref) for r in results]
        except DrawbridgeError:
            raise NotFound("history.gone", job=row.id) from None
        images = [
            ImageResult(png, r.seed, r.width, r.height, r.infotext, ref=r.image_ref)
            for png, r in zip(pngs, results, strict=True)
        ]
        own: dict[str, str] = {}
        for action in actions:
            if action.kind in JOB_ACTIONS:
                own[action.kind] = action.key
            elif action.kind in (*IMAGE_ACTIONS, *SINGLE_ACTIONS) and action.image_index < len(
                images
            ):
                images[action.image_index].keys[action.kind] = action.key
            elif action.kind == "control_map":
                own[action.kind] = action.key
        spec = Resolved.from_dict((_json(row.params) or {})["spec"])
        infotext = results[0].infotext if results else ""
        result = JobResult(
            row.id,
            images,
            row.prompt,
            spec.model or _model_of(infotext),
            0.0,
            row.cost,
            mode=spec.mode,
            keys=own,
        )
        return HistoryJob(result, infotext)

    async def describe(self, png: bytes, original: bytes, model: str, label: str) -> Description:
        """/describe on the first backend that answers (never charged: nothing is drawn)."""
        return await describing.describe(self.dispatcher.backends, png, original, model, label)

    async def check_favourites(self, loras: Sequence[str], styles: Sequence[str]) -> None:
        """/settings favourites checked against the up backends' catalogues, once more after
        fetching them again when refused (a LoRA added to a WebUI is found without a restart)."""
        backends = self.dispatcher.backends
        try:
            catalogue.check_favourites(loras, styles, backends)
        except (OptionError, NoBackendCanDraw):
            if not await self.dispatcher.refresh_for_unknown():
                raise
            catalogue.check_favourites(loras, styles, backends)

    def offered(self, kind: str) -> list[str]:
        """Upscaler, LoRA or style names of every backend, without repeats (autocomplete)."""
        return catalogue.names_of(self.dispatcher.backends, kind)

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
        job.state = JobState.CANCELLED
        self.jobs.pop(job.id, None)
        written = self.steps.then(job, "cancel", lambda: self._cancel_write(job))
        refunded = job.cost
        # After the job's earlier steps; if the database is away, the refund lands later.
        with contextlib.suppress(TimeoutError):
            landed = await asyncio.wait_for(
                asyncio.shield(written), self.settings.db_retry_seconds + 1.0
            )
            refunded = job.cost if landed is None else landed
        with contextlib.suppress(Exception):
            await self._refresh_positions()
        with contextlib.suppress(Exception):
            await job.replier.fail(
                job.id, DrawbridgeError("queue.cancelled", credits=refunded), refunded
            )
        await self.dispatcher.notify()
        return Cancelled(job.id, refunded)

    async def _cancel_write(self, job: Job) -> int | None:
        refunded = await until_written(
            lambda: self.db.jobs.cancel(job.id, owner=self.instance, today=self.quotas.today()),
            f"job {job.id}: cancel",
        )
        if refunded is None:
            log.info("job %s was not ours to cancel any more", job.id)
        else:
            self._ended(job, "cancelled")
            self._audit(job, "cancelled")
        return refunded

    def _ended(self, job: Job, outcome: str) -> None:
        """A job reached its final state here: its one INFO line (never the prompt) and its
        metrics."""
        spec, who = job.spec, job.requester
        took = time.monotonic() - job.created
        fields = {
            "job_id": job.id,
            "user": who.key,
            "platform": who.platform,
            "chat": who.chat_id,
            "mode": spec.mode.value,
            "size": f"{spec.width}x{spec.height}",
            "steps": spec.steps,
            "cost": job.cost,
            "backend": job.backend or "-",
            "seconds": round(took, 2),
            "drawn_seconds": None if job.ran is None else round(job.ran, 2),
            "outcome": outcome,
        }
        log.info(
            "job finished: %s",
            " ".join(f"{key}={'-' if value is None else value}" for key, value in fields.items()),
            extra={"job": fields},
        )
        self.metrics.job_ended(outcome, cost=job.cost, ran=job.ran)

    def _audit(
        self,
        job: Job,
        outcome: str,
        model: str = "",
        hashes: str = "",
        images: Sequence[ImageResult] = (),
    ) -> None:
        """One audit row for the job as it ended (best effort: the audit never fails a job)."""
        spec, requester = job.spec, job.requester
        now = time.monotonic()
        started = job.started if job.started is not None else now
        values: dict[str, Any] = {
            "job_id": job.id,
            "user_key": requester.key,
            "platform": requester.platform,
            "chat": requester.chat_id,
            "prompt": spec.prompt,
            "negative": spec.negative,
            "mode": spec.mode.value,
            "width": images[0].width if images else spec.final_size[0],
            "height": images[0].height if images else spec.final_size[1],
            "model": model or spec.model or "",
            "seed": images[0].seed if images else spec.seed,
            "cost": job.cost if outcome == "delivered" else 0,
            "outcome": outcome,
            "result_hash": hashes[:512],
            "backend": job.backend,
            "wait_seconds": max(0.0, started - job.created) if job.created else 0.0,
            "run_seconds": max(0.0, now - job.started) if job.started is not None else 0.0,
        }

        async def write() -> None:
            try:
                await self.db.audit.record(**values)
            except StorageFault as exc:
                log.warning("job %s: its audit row was not written (%s)", job.id, exc)

        self.steps.spawn(f"audit {job.id}", write)

    async def _job_of_cancel_button(self, key: str) -> Job | None:
        # Cancel buttons carry the job id; those drawn before that carried an action key.
        try:
            action = await self.db.actions.get(key)
        except StorageFault as exc:
            raise StorageError.from_fault(exc) from None
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
        source: str | None = None,
        kind: str | None = None,
    ) -> Pressed:
        """Run a result button: reroll/variations/upscale are new jobs charged to whoever
        pressed (they need the replier); delete is for the owner or an admin (the adapter
        removes the message). `kind` is what the button said it is: a key stored for another
        kind (a forged press) is refused as an expired button."""
        action, params = await self._action(key)
        if kind is not None and action.kind != kind:
            raise NotFound("action.expired")
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
                requester, reroll_of(spec), replier, reply_ref=reply_ref, source=source
            )
            return outcome
        result = await self._result(action.job_id, action.image_index)
        if not await asyncio.to_thread(self.store.exists, result.image_ref):
            raise NotFound("action.expired")
        preset = self.presets.default
        if kind in CANVAS_ACTIONS:
            new = await self._outpaint(spec, result.image_ref, kind)
        elif kind == "faces":
            new = faces_of(
                spec, result.image_ref, fit(result.width, result.height, self.limits.max_pixels)
            )
        elif kind == "variations":
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
        outcome.handle = await self.submit_spec(
            requester, new, replier, reply_ref=reply_ref, source=source
        )
        return outcome

    async def _outpaint(self, spec: Resolved, image_ref: str, kind: str) -> Resolved:
        """The inpaint job of a zoom out, pan or make square: canvas and mask built here,
        stored like a user's pictures (the job row holds only their keys)."""

        def build() -> tuple[str, str, tuple[int, int]]:
            png = self.store.get(image_ref)
            made = outpaint.canvas(png, kind, self.limits.max_pixels)
            return self.store.put(made.init_png), self.store.put(made.mask_png), made.size

        init_ref, mask_ref, size = await asyncio.to_thread(build)
        return outpaint_of(spec, init_ref, mask_ref, size)

    async def control_map(self, key: str) -> Original:
        """🦴 under a ControlNet result: its preprocessor's detected map of the control picture,
        from /controlnet/detect on a backend that has that preprocessor (nothing is charged)."""
        action, params = await self._action(key)
        spec = Resolved.from_dict(params["spec"])
        if action.kind != "control_map" or not spec.control or not spec.control_image:
            raise NotFound("action.expired")
        if not await asyncio.to_thread(self.store.exists, spec.control_image):
            raise NotFound("action.expired")
        png = await asyncio.to_thread(self.store.get, spec.control_image)
        for backend in self.dispatcher.backends:
            found = backend.control_for(spec.control) if backend.up else None
            if found is None:
                continue
            try:
                detected = await backend.client.controlnet_detect(png, found[0])
            except WebUIError as exc:
                log.warning("controlnet detect on %s failed: %s", backend.name, exc.render("en"))
                continue
            return Original(action.job_id, 0, detected)
        raise DrawbridgeError("control.no_map")

    async def original(self, key: str) -> Original:
        """The stored PNG behind an 📄 Original key (anyone who sees the button may have it)."""
        action, _ = await self._action(key)
        if action.kind != "original":  # another button's key under 📄: a forged press
            raise NotFound("action.expired")
        result = await self._result(action.job_id, action.image_index)
        png = await asyncio.to_thread(self.store.get, result.image_ref)
        return Original(action.job_id, action.image_index, png)

    async def _action(self, key: str) -> tuple[Any, dict[str, Any]]:
        try:
            action = await self.db.actions.get(key)
            row = None if action is None else await self.db.jobs.get(action.job_id)
        except StorageFault as exc:
            raise StorageError.from_fault(exc) from None
        if action is None:
            raise NotFound("action.expired")
        if row is None:
            raise NotFound("action.expired")
        return action, _json(row.params)

    async def _result(self, job_id: str, index: int) -> Any:
        for result in await self.db.results.for_job(job_id):
            if result.image_index == index:
                return result
        raise NotFound("action.expired")

    # --- dispatcher events ---------------------------------------------------------------
    async def _call_for(self, entry: Entry, target: Target) -> WebUICall:
        """The request for one job on the backend `target` describes (its flavour, names)."""
        job: Job = entry.item
        spec = job.spec
        if spec.mode is Mode.UPSCALE:
            assert spec.init_image is not None
            source = await asyncio.to_thread(self.store.get, spec.init_image)
            upscaler = target.upscaler or spec.hr_upscaler

            async def upscale(client: WebUIClient) -> GenerationResult:
                png = await client.extra_single_image(
                    source, upscaler=upscaler, scale=spec.hr_scale
                )
                width, height = await asyncio.to_thread(image_size, png)
                if spec.hr_scale > 1 and (width, height) == (spec.width, spec.height):
                    # SD.Next answers 200 with the picture unchanged for an upscaler it lacks
                    raise WebUIEmptyResult(
                        "webui.not_upscaled",
                        url=client.display,
                        path="/sdapi/v1/extra-single-image",
                    )
                return GenerationResult([png], {}, [spec.seed], [""], width, height, "")

            return upscale
        control_b64 = None
        if spec.control and spec.control_image:
            control_b64 = await asyncio.to_thread(self._encode_ref, spec.control_image)
        if spec.init_image is None:
            payload = build_payload(spec, target, control_b64=control_b64)
            return lambda client: client.txt2img(payload)
        init_b64, mask_b64 = await asyncio.to_thread(self._encode_inputs, spec)
        payload = build_payload(
            spec, target, init_b64=init_b64, mask_b64=mask_b64, control_b64=control_b64
        )
        return lambda client: client.img2img(payload)

    def _encode_ref(self, ref: str) -> str:
        return base64.b64encode(self.store.get(ref)).decode()

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
            down = not self.dispatcher.up_backends()
            if job.shown_position != i or job.shown_down != down:
                job.shown_position = i
                with contextlib.suppress(Exception):
                    await job.replier.update(self._queued_update(job, i, eta))

    async def started(self, run: Running) -> None:
        job: Job = run.entry.item
        job.state = JobState.RUNNING
        if job.started is None:  # a retry's wait is not counted twice
            self.metrics.job_started(time.monotonic() - job.created)
        job.started = time.monotonic()
        job.backend = backend_label(run.backend.label, run.backend.index)
        backend = run.backend.url
        attempts = self.dispatcher.attempts.get(job.id, 1)
        self.steps.then(job, "start", lambda: self._start_write(job, backend, attempts))
        with contextlib.suppress(Exception):
            await self._refresh_positions()
        with contextlib.suppress(Exception):
            await job.replier.update(job.update(JobState.RUNNING, progress=0.0))

    async def _start_write(self, job: Job, backend: str, attempts: int) -> None:
        moved = await until_written(
            lambda: self.db.jobs.start(
                job.id, owner=self.instance, backend=backend, attempts=attempts
            ),
            f"job {job.id}: start",
        )
        if not moved and job.id in self.jobs:
            self._lose(job)

    async def bound(self, run: Running, task: str) -> None:
        job: Job = run.entry.item

        async def bind() -> None:
            # once: it only helps a later owner tell an orphan render apart
            with contextlib.suppress(StorageFault):
                await self.db.jobs.bind(job.id, owner=self.instance, task=task)

        self.steps.then(job, "bind", bind)

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
        # The picture exists: from here on the job is delivered or refunded, never cancelled.
        job.state = JobState.RENDERED
        job.ran = elapsed
        self.jobs.pop(job.id, None)
        backend_model = run.backend.model
        self.steps.then(
            job, "render", lambda: self._keep_and_deliver(job, result, elapsed, backend_model)
        )

    async def _keep_and_deliver(
        self, job: Job, result: GenerationResult, elapsed: float, backend_model: str | None
    ) -> None:
        """Store the pictures (files, then the render transaction), then deliver."""
        images = []
        stored: list[RenderedImage] = []
        try:
            for i, data in enumerate(result.images):
                ref = await asyncio.to_thread(self.store.put, data)
                seed = result.seeds[i] if i < len(result.seeds) else job.spec.seed + i
                info = result.infotexts[i] if i < len(result.infotexts) else ""
                width, height = _png_size(data) or (result.width, result.height)
                images.append(ImageResult(data, seed, width, height, info, ref=ref))
                stored.append(RenderedImage(ref, seed, width, height, info))
        except OSError as exc:
            log.error("job %s: its pictures could not be stored (%s); refunding", job.id, exc)
            await self._fail(job, StorageError.from_fault(StorageFull()))
            return
        if not await self._screen(job, images):
            return
        # From here on the pictures are held by reference (the store has them): only the
        # ImageResults keep their bytes, and a replier may let go of those while it waits.
        result.images.clear()
        model = result.model or job.spec.model or backend_model or ""
        # Stored (results, button keys, state rendered) in one transaction before the upload;
        # settled only once the platform confirmed it.
        wanted, own = _result_actions(len(images), job.spec.mode)
        if job.spec.control and job.spec.mode is not Mode.UPSCALE:
            wanted.append((0, "control_map"))
        if len(images) == 1 and job.spec.mode is not Mode.UPSCALE:
            wanted += [
                (0, kind)
                for kind in SINGLE_ACTIONS
                if not (kind == "square" and outpaint.is_square(images[0].width, images[0].height))
            ]
        keys = await until_written(
            lambda: self.db.jobs.render(job.id, owner=self.instance, images=stored, actions=wanted),
            f"job {job.id}: render",
        )
        if keys is None:
            log.info("job %s is not ours any more; its picture is dropped", job.id)
            return
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
        await self._deliver(job, delivered)

    async def _screen(self, job: Job, images: list[ImageResult]) -> bool:
        """NSFW_CHECK on the pictures of a job asked outside an NSFW place: flagged ones go
        behind a spoiler, or (block) the job fails and is refunded; False then."""
        requester = job.requester
        nsfw_place = requester.nsfw or (
            requester.platform == "telegram"
            and requester.chat_id in self.governor.policy.nsfw_telegram_chats
        )
        if self.nsfw is None or nsfw_place:
            return True
        flags = [await self.nsfw.flagged(image.png) for image in images]
        if any(flags) and self.settings.nsfw_check == "block":
            log.info("job %s: the NSFW check flagged its picture; withheld, refunding", job.id)
            await self._fail(job, NsfwWithheld(), error_text="withheld by the NSFW check")
            return False
        for image, flagged in zip(images, flags, strict=True):
            image.spoiler = flagged
        return True

    async def _deliver(self, job: Job, result: JobResult) -> None:
        """Hand the result to the platform; settle once it confirmed, else refund and say so.

        Cancelled here (a shutdown past its grace), the job stays rendered: the next owner
        sends it again."""
        try:
            await job.replier.deliver(result)
        except DeliveryFailed as exc:
            log.warning("job %s could not be delivered; refunding it", job.id)
            await self._fail(job, exc, error_text="delivery failed", outcome="undelivered")
            return
        except Exception as exc:
            log.warning("delivering job %s failed (%s); refunding it", job.id, _brief(exc))
            await self._fail(
                job, DeliveryFailed(), error_text="delivery failed", outcome="undelivered"
            )
            return
        await until_written(
            lambda: self.db.jobs.deliver(job.id, owner=self.instance), f"job {job.id}: deliver"
        )
        self._ended(job, "delivered")
        hashes = ",".join(image.ref for image in result.images)
        self._audit(job, "delivered", result.model, hashes, result.images)

    async def failed(self, run: Running, error: DrawbridgeError) -> None:
        job: Job = run.entry.item
        if job.id not in self.jobs:
            return
        job.state = JobState.FAILED
        self.jobs.pop(job.id, None)
        self.steps.then(job, "fail", lambda: self._fail(job, error))
        with contextlib.suppress(Exception):
            await self._refresh_positions()

    async def _fail(
        self,
        job: Job,
        error: DrawbridgeError,
        *,
        error_text: str = "",
        outcome: str = "failed",
    ) -> None:
        """fail (refunded in the same transaction), then tell the user; an undelivered
        result's notice is owed in the database until the platform took it (bot.notices)."""
        job.state = JobState.FAILED
        self.jobs.pop(job.id, None)
        text = (error_text or error.render("en"))[:500]
        owed = outcome == "undelivered"
        refunded = await until_written(
            lambda: self.db.jobs.fail(
                job.id, owner=self.instance, error=text, today=self.quotas.today(), notice=owed
            ),
            f"job {job.id}: fail",
        )
        if refunded is None:
            log.info("job %s had ended or is not ours any more; nothing refunded", job.id)
            return
        self._ended(job, outcome)
        if isinstance(error, WebUIError):  # the detail is the operator's; the user gets a sentence
            log.warning("job %s failed: %s", job.id, text)
        self._audit(job, "failed")
        if owed:
            self.notices.tell(job.id, job.replier, error, refunded)
            return
        with contextlib.suppress(Exception):
            await job.replier.fail(job.id, for_users(error), refunded)

    async def retrying(self, run: Running, error: WebUIError) -> None:
        job: Job = run.entry.item
        job.state = JobState.QUEUED
        self.metrics.failover()
        text = error.render("en")[:500]
        self.steps.then(job, "requeue", lambda: self._requeue_write(job, text))
        attempt = self.dispatcher.attempts.get(job.id, 1) + 1
        with contextlib.suppress(Exception):
            await job.replier.update(
                job.update(JobState.QUEUED, attempt=attempt, note="queue.retrying")
            )

    async def _requeue_write(self, job: Job, error: str) -> bool:
        moved = await until_written(
            lambda: self.db.jobs.requeue(job.id, owner=self.instance, error=error),
            f"job {job.id}: requeue",
        )
        if not moved and job.id in self.jobs:
            self._lose(job)
        return moved

    async def handed_back(self, run: Running) -> None:
        job: Job = run.entry.item
        if job.id in self.jobs:
            self._hand_back(job, "handed back at shutdown")

    def _hand_back(self, job: Job, why: str) -> None:
        """Queued again in storage (and nowhere here): the next owner draws it."""
        job.state = JobState.QUEUED
        self.jobs.pop(job.id, None)
        self.queue.remove(job.id)
        self.steps.then(job, "hand back", lambda: self._requeue_write(job, why))

    async def discarded(self, run: Running) -> None:
        log.info("dropped the result of cancelled job %s", run.entry.job_id)


def backend_label(label: str, index: int) -> str:
    """A backend's name in metrics and job lines: WEBUI_NAMES' label, else its index."""
    return label or str(index)


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
        if kind == "control_map":  # one per job: the control picture's detected map
            result[kind] = key
        else:
            images[index].keys[kind] = key
    return result


def _model_of(infotext: str) -> str:
    """The model an infotext names ("…, Model: name, …"), or ""."""
    for part in infotext.rsplit("\n", 1)[-1].split(", "):
        name, sep, value = part.partition(": ")
        if sep and name == "Model":
            return value
    return ""


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


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
        "nsfw": r.nsfw,
    }

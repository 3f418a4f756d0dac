"""The one door: everything adapters and the CLI may ask of drawbridge, over neutral types.

    adapters (Discord, Telegram) ─┐
    the CLI ──────────────────────┴─► Service ─► engine, queue, dispatcher, quotas, storage

A `Service` is the only object a platform holds. Its methods are thin: each hands over to the
private core module that owns the topic (engine: jobs and buttons; bot.defaults: /settings;
bot.images.inputs: pictures; bot.quota: credits). Adding a command means adding one method
here, next to its topic, and one declaration in `bot.commands`.

Lifecycle: build it, let each adapter `register_replier` (so jobs taken over at start find
their conversation, and this process claims its bots' jobs), then `async with service:` opens
the database, registers this process as an instance, takes over the jobs of stopped ones and
starts dispatching (and, with `schedule=True`, the periodic jobs of `drawbridge run`). To stop
gracefully, `await service.drain()` while the adapters still run (deliveries finish, new work
is refused politely), then leave the adapters and the service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text

from bot import database, defaults
from bot.backend_report import backend_lines
from bot.engine import Engine
from bot.errors import DrawbridgeError, ImageError, OptionError
from bot.governor import BanNotice, until_text
from bot.i18n import t, tn
from bot.images.ingest import FORMATS_TEXT, image_size, ingest
from bot.images.inputs import prepare_images
from bot.images.store import ImageStore
from bot.metrics import Metrics, Snapshot
from bot.options import Limits, Option, help_lines, images_only_given
from bot.presets import PresetBook
from bot.scheduler import build_scheduler
from bot.settings import Settings
from bot.stats import Stats, stats_lines
from bot.stats import gather as gather_stats
from bot.texts import cut
from bot.types import (
    INTERROGATORS,
    Cancelled,
    Catalogue,
    Checkpoint,
    Description,
    GenerationRequest,
    HistoryJob,
    HistoryPage,
    JobHandle,
    JobState,
    Original,
    Pictures,
    Pressed,
    QueueView,
    QuotaView,
    Replier,
    ReplierFactory,
    Requester,
    UserDefaults,
)
from bot.webui.client import WebUIClient
from storage.db import Database, upgrade

log = logging.getLogger(__name__)

HISTORY_PAGE = 5  # jobs per /history page

__all__ = [
    "AdminJob",
    "Service",
    "backup_database",
    "check_database",
    "database_problem",
    "not_a_picture",
    "picture_size",
    "upgrade_database",
    "wait_for_database",
]


@dataclass(frozen=True)
class AdminJob:
    """One job as /admin queue lists it."""

    job_id: str
    user_key: str
    prompt: str
    running: bool
    position: int


class Service:
    """drawbridge behind one facade: declarations, jobs, buttons, views, defaults."""

    def __init__(
        self,
        settings: Settings,
        *,
        presets: PresetBook | None = None,
        clients: list[WebUIClient] | None = None,
        store: ImageStore | None = None,
        run_jobs: bool = True,
        schedule: bool = False,
        serves: Sequence[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        # this service's own registry: /metrics shows it, nothing lands in a global one
        self.metrics = metrics or Metrics()
        self._db = Database(settings.database_url, **settings.database_options())
        self._engine = Engine(
            settings,
            self._db,
            clients=clients,
            presets=presets,
            store=store,
            serves=serves,
            metrics=self.metrics,
        )
        # each decode may hold MAX_PIXELS of pixels: this bounds the memory uploads can take
        self._decodes = asyncio.Semaphore(settings.max_concurrent_decodes)
        self._run_jobs = run_jobs
        self._schedule = schedule
        self._scheduler: AsyncIOScheduler | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def register_replier(
        self, platform: str, factory: ReplierFactory, *, route: str | None = None
    ) -> None:
        """Answer jobs of `platform` as the bot `route` (e.g. "telegram:123"; default the
        platform) and let them be taken over after a restart; call before the service starts."""
        self._engine.register_replier(platform, factory, route=route)

    async def drain(self, grace: float | None = None) -> None:
        """Stop taking work (new jobs are refused with ShuttingDown, nothing charged), hand
        back running jobs and let deliveries finish, within `grace` (SHUTDOWN_GRACE) seconds."""
        await self._engine.drain(self.settings.shutdown_grace if grace is None else grace)

    @property
    def instance(self) -> str:
        """This process's instance id (who owns its jobs)."""
        return self._engine.instance

    async def __aenter__(self) -> Self:
        await self._db.start()
        try:
            if self._run_jobs:
                await self._engine.start()
            if self._schedule:
                self._scheduler = build_scheduler(self._engine)
                self._scheduler.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop everything `async with` started (also fine if it never started)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        try:
            await self._engine.stop()
        finally:
            await self._db.close()

    def snapshot(self) -> Snapshot:
        """The queue and each backend's state now (no network), for /healthz and /readyz."""
        return self._engine.snapshot()

    async def database_fault(self, within: float = 5.0) -> str | None:
        """None when the database answers a query within `within` seconds, else why not
        (one line, no credentials: the driver's exception type)."""
        try:
            async with asyncio.timeout(within), self._db.read() as conn:
                await conn.execute(text("SELECT 1"))
        except TimeoutError:
            return f"no answer within {within:g} s"
        except Exception as exc:
            return type(exc).__name__
        return None

    def backends(self) -> list[str]:
        """The configured WebUIs as they may be shown to an operator (no credentials)."""
        return [client.display for client in self._engine.clients]

    # --- what /draw accepts (adapters build their menus and forms from it) ------------------
    @property
    def options(self) -> list[Option]:
        """The one declaration of /draw's options."""
        return self._engine.options

    @property
    def limits(self) -> Limits:
        """The operator's limits that bound the options."""
        return self._engine.limits

    @property
    def presets(self) -> PresetBook:
        """The defaults and the operator's named presets."""
        return self._engine.presets

    def help_lines(self, locale: str | None) -> list[str]:
        """/help for the text syntax, generated from the declaration."""
        return help_lines(self.options, self.presets, locale)

    def parse(self, text: str, *, require_prompt: bool = True) -> GenerationRequest:
        """A request from `/draw` text; raises OptionError naming the flag."""
        return self._engine.parser.parse(text, require_prompt=require_prompt)

    def request(self, values: dict[str, Any]) -> GenerationRequest:
        """A request from typed values keyed by option name; checked like text."""
        return self._engine.parser.from_values(values)

    # --- jobs ------------------------------------------------------------------------------
    async def draw(
        self,
        requester: Requester,
        request: GenerationRequest,
        replier: Replier,
        *,
        pictures: Pictures = Pictures(),
        reply_ref: dict[str, Any] | None = None,
        refuse_when_down: bool = False,
        source: str | None = None,
    ) -> JobHandle:
        """Ingest the pictures, work out the mask, charge and queue; never waits for the job.
        Raises a DrawbridgeError with nothing charged (with `refuse_when_down`, also when no
        backend is up: the terminal has nobody to wait for it).

        The job is stored before `replier` hears of it: its first status update is the
        acknowledgement. `source` names the platform command (e.g. "<chat>:<message id>"):
        the same command handed over again is the same job, and says nothing."""
        requester = self.governed(requester)
        settings = self.settings
        if pictures.init is None and (flags := images_only_given(request, self.options)):
            raise OptionError("option.needs_picture", flags=", ".join(flags))
        prepared = await prepare_images(
            self._engine.store,
            request,
            pictures,
            max_pixels=settings.max_pixels,
            max_bytes=settings.max_upload_bytes,
            locale=requester.locale,
            decodes=self._decodes,
        )
        await self._control_picture(request, pictures)
        problems = self._engine.backend_problems()
        if refuse_when_down and problems is not None:
            raise DrawbridgeError("error.input", detail="; ".join(problems))
        return await self._engine.submit(
            requester,
            request,
            replier,
            reply_ref=reply_ref,
            init_size=prepared.init_size,
            notes=prepared.notes,
            source=source,
        )

    async def _control_picture(self, request: GenerationRequest, pictures: Pictures) -> None:
        """--control needs its picture: checked, stored by reference on the request."""
        if request.control is None:
            if pictures.control is not None:
                raise OptionError("option.control_image_without_control")
            return
        if pictures.control is None:
            raise OptionError("option.control_needs_image")
        settings = self.settings
        checked = await asyncio.to_thread(
            ingest,
            pictures.control,
            max_pixels=settings.max_pixels,
            max_bytes=settings.max_upload_bytes,
        )
        request.control_image = await asyncio.to_thread(self._engine.store.put, checked.png)

    async def press(
        self,
        requester: Requester,
        key: str,
        replier: Replier | None = None,
        *,
        kind: str,
        reply_ref: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> Pressed:
        """A result button by the kind the adapter decoded and the key it carries: reroll,
        variations and upscale start a job (answered through `replier`; `source` as for
        `draw`); delete only checks who may. A key stored for another kind is refused as an
        expired button (NotFound), nothing started or charged."""
        requester = self.governed(requester)
        return await self._engine.press(
            requester, key, replier, reply_ref=reply_ref, source=source, kind=kind
        )

    async def remember_reply(self, job_id: str, reply_ref: dict[str, Any]) -> None:
        """A replier's conversation moved (its first status message was sent, or replaced):
        store the new `reply_ref`, so a restart edits that message. Best effort, never raises."""
        await self._engine.remember_reply(job_id, reply_ref)

    async def control_map(self, key: str) -> Original:
        """🦴: the ControlNet preprocessor's detected map behind a result's key (free)."""
        return await self._engine.control_map(key)

    async def original(self, key: str) -> Original:
        """The PNG as the WebUI made it, behind an 📄 Original key."""
        return await self._engine.original(key)

    async def stored_picture(self, ref: str) -> bytes:
        """A result picture by its store key (`ImageResult.ref`), read off the event loop."""
        return await asyncio.to_thread(self._engine.store.get, ref)

    async def cancel(self, requester: Requester, job_id: str | None = None) -> Cancelled:
        """Cancel the named job (a cancel button carries its id), or the user's newest."""
        requester = self.governed(requester)
        return await self._engine.cancel(requester, job_id)

    async def history(self, requester: Requester, page: int = 0) -> HistoryPage:
        """/history: one page of the user's delivered results, newest first."""
        return await self._engine.history(requester.key, page, HISTORY_PAGE)

    async def history_job(self, requester: Requester, job_id: str) -> HistoryJob:
        """/history JOB: that job's pictures, their working buttons, its full parameters."""
        return await self._engine.history_job(requester, job_id)

    async def describe(self, image: bytes, interrogator: str = "clip") -> Description:
        """/describe: what the WebUI's interrogator ("clip" or "deepbooru") sees in a picture,
        and the parameters it carries; raises ImageError for what is not a usable picture."""
        model = INTERROGATORS.get(interrogator.strip().lower())
        if model is None:
            raise OptionError(
                "option.bad_choice",
                flag="model",
                value=interrogator,
                choices=", ".join(INTERROGATORS),
            )
        settings = self.settings
        checked = await asyncio.to_thread(
            ingest, image, max_pixels=settings.max_pixels, max_bytes=settings.max_upload_bytes
        )
        return await self._engine.describe(checked.png, image, model, interrogator.lower())

    def backend_problems(self) -> list[str] | None:
        """Why no backend can draw now (one reason each), or None when one is up."""
        return self._engine.backend_problems()

    # --- views -----------------------------------------------------------------------------
    def queue(self, requester: Requester) -> QueueView:
        """/queue for this user."""
        return self._engine.queue_view(requester.key)

    async def quota(self, user_key: str, requester: Requester | None = None) -> QuotaView:
        """/quota: credits of "platform:user_id" (with the requester: their tier, by roles)."""
        tier = ""
        if requester is not None:
            self._engine.governor.tier(requester)  # remembers their roles for the allowance
            tier = self.tier_label(requester)
        return await self._engine.quotas.view(user_key, tier)

    async def grant(self, user_key: str, amount: int) -> int:
        """Give extra credits that survive the daily reset; returns the new balance."""
        return await self._engine.quotas.grant(user_key, amount)

    async def catalogue(self) -> Catalogue:
        """/models: checkpoints, samplers and LoRAs the backends offer."""
        return await self._engine.catalogue()

    def samplers(self) -> list[str]:
        """Sampler names the backends reported (autocomplete; no network)."""
        return self._engine.samplers()

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints the backends reported (autocomplete; no network)."""
        return self._engine.checkpoints()

    def offered(self, kind: str) -> list[str]:
        """Upscaler ("upscaler"), LoRA ("lora") or style ("style") names the backends
        reported (autocomplete; no network)."""
        return self._engine.offered(kind)

    async def backend_report(self, *, refresh: bool = False) -> tuple[list[str], bool]:
        """`drawbridge backends`: lines per backend (probed now: flavour, model, catalogue,
        binding, frozen settings; cool-off as the running service saw it) and the queue; False
        when every backend is down. `refresh` lets each WebUI rescan its model folders first."""
        return await backend_lines(self.settings, self._db, refresh=refresh)

    # --- governance (bot.governor, bot.policy; the admin commands) ---------------------------
    def governed(self, requester: Requester) -> Requester:
        """The requester with `is_admin` also true for a tier marked admin = true."""
        if requester.is_admin or not self._engine.governor.is_admin(requester):
            return requester
        return dataclasses.replace(requester, is_admin=True)

    def is_admin(self, requester: Requester) -> bool:
        """ADMIN_IDS or an admin tier: who may use /admin."""
        return self._engine.governor.is_admin(requester)

    async def ban_notice(self, requester: Requester) -> BanNotice:
        """Before any command or press: whether the user is banned and the one line to say
        (None within the quiet period: then say nothing)."""
        return await self._engine.governor.ban_notice(requester)

    def listen_notices(self, notify: Callable[[str, dict[str, object]], None]) -> None:
        """Hear admin notices (backend down/up, pause, a failed policy reload) as catalogue
        keys with parameters; each adapter sends them to its admins through its outbox."""
        self._engine.governor.listen(notify)

    async def ban(
        self, user_key: str, *, days: float | None = None, reason: str = "", by: str = ""
    ) -> str:
        """Ban a user (for `days`, or until unbanned); returns the end as users read it."""
        until = None if days is None else datetime.now(UTC) + timedelta(days=days)
        ban = await self._db.bans.ban(user_key, until=until, reason=reason, by=by)
        self._engine.governor.banned(ban)
        return until_text(ban.until)

    async def unban(self, user_key: str) -> bool:
        """Lift a ban; False if the user was not banned."""
        lifted = await self._db.bans.unban(user_key)
        self._engine.governor.unbanned(user_key)
        return lifted

    def pause(self, reason: str = "") -> None:
        """New jobs are refused with `reason`; queued ones wait (running ones finish)."""
        self._engine.dispatcher.held = True
        self._engine.governor.pause(reason)

    async def resume(self) -> bool:
        """Take new jobs and start queued ones again; False if not paused."""
        self._engine.dispatcher.held = False
        await self._engine.dispatcher.notify()
        return self._engine.governor.resume()

    def drain_backend(self, name: str, drained: bool = True) -> str | None:
        """Let a backend finish its current job and take no more (or take jobs again); its
        name as shown, or None if no backend has that name (WEBUI_NAMES, "backend N" or N)."""
        dispatcher = self._engine.dispatcher
        for backend in dispatcher.backends:
            shown = backend.label or f"backend {backend.index}"
            if name.strip().casefold() in {shown.casefold(), str(backend.index)}:
                if drained:
                    dispatcher.drained.add(backend.index)
                else:
                    dispatcher.drained.discard(backend.index)
                return shown
        return None

    def all_jobs(self) -> list[AdminJob]:
        """Everyone's queued and running jobs, running first, then in queue order."""
        engine = self._engine
        jobs = [
            AdminJob(j.id, j.requester.key, j.spec.prompt, True, 0)
            for j in engine.jobs.values()
            if j.state is JobState.RUNNING
        ]
        for position, entry in enumerate(engine.queue.in_order(), start=1):
            job = entry.item
            jobs.append(AdminJob(job.id, job.requester.key, job.spec.prompt, False, position))
        return jobs

    async def reload_policy(self) -> None:
        """Read POLICY_FILE again (SIGHUP, /admin reload); PolicyFileError keeps the old one
        (the admins are told)."""
        self._engine.governor.reload()

    def tier_label(self, requester: Requester) -> str:
        """The user's tier as /quota shows it ("" when in none)."""
        tier = self._engine.governor.tier(requester)
        return tier.label if tier.name else ""

    async def stats(self) -> Stats:
        """`drawbridge stats`, `/admin stats`."""
        return await gather_stats(self._db)

    async def stats_lines(self, locale: str | None) -> list[str]:
        """The stats as lines of text."""
        return stats_lines(await self.stats(), locale)

    async def audit(self, *, since: datetime | None = None, user: str | None = None) -> list[Any]:
        """Audit rows (oldest first) for `drawbridge audit export`."""
        return await self._db.audit.entries(since=since, user=user)

    async def forget_audit(self) -> int:
        """Delete audit rows older than AUDIT_RETENTION_DAYS; how many."""
        days = self.settings.audit_retention_days
        return await self._db.audit.forget(datetime.now(UTC) - timedelta(days=days))

    async def admin(self, requester: Requester, words: Sequence[str]) -> str:
        """One `/admin SUBCOMMAND …` from chat, as words; the answer to send privately.
        Refused (politely) to anyone who is not an admin; never raises DrawbridgeError."""
        locale = requester.locale
        if not self.is_admin(requester):
            return t(locale, "admin.refused")
        sub, args = (words[0].lower(), list(words[1:])) if words else ("", [])
        try:
            return await self._admin(self.governed(requester), sub, args)
        except DrawbridgeError as exc:
            return exc.render(locale)

    async def _admin(self, requester: Requester, sub: str, args: list[str]) -> str:
        locale = requester.locale
        usage = t(locale, "admin.usage")
        if sub == "grant" and len(args) == 2 and _is_int(args[1]):
            key = user_key_of(args[0], requester.platform)
            balance = await self.grant(key, int(args[1]))
            return t(locale, "admin.granted", user=key, amount=int(args[1]), balance=balance)
        if sub == "ban" and args:
            key = user_key_of(args[0], requester.platform)
            rest = args[1:]
            days = float(rest.pop(0)) if rest and _is_number(rest[0]) else None
            until = await self.ban(key, days=days, reason=" ".join(rest), by=requester.key)
            return t(locale, "admin.banned", user=key, until=until)
        if sub == "unban" and len(args) == 1:
            key = user_key_of(args[0], requester.platform)
            done = await self.unban(key)
            return t(locale, "admin.unbanned" if done else "admin.not_banned", user=key)
        if sub == "pause":
            self.pause(" ".join(args))
            return t(locale, "admin.paused_now", reason=" ".join(args) or "-")
        if sub == "resume" and not args:
            return t(locale, "admin.resumed" if await self.resume() else "admin.not_paused")
        if sub in ("drain", "undrain") and args:
            shown = self.drain_backend(" ".join(args), drained=sub == "drain")
            await self._engine.dispatcher.notify()
            if shown is None:
                names = ", ".join(b.label or f"backend {b.index}" for b in self._backends())
                return t(locale, "admin.no_backend", names=names)
            return t(locale, f"admin.{sub}ed", backend=shown)
        if sub == "queue" and not args:
            jobs = self.all_jobs()
            if not jobs:
                return t(locale, "admin.queue_empty")
            lines = [tn(locale, "admin.queue_title", len(jobs))]
            for job in jobs[:ADMIN_QUEUE_LINES]:
                where = t(locale, "admin.queue_running") if job.running else f"#{job.position}"
                lines.append(f"{where} {job.job_id} {job.user_key}: {cut(job.prompt, 60)}")
            return "\n".join(lines)
        if sub == "cancel" and len(args) == 1:
            cancelled = await self._engine.cancel(requester, args[0])
            return t(locale, "admin.cancelled", job=cancelled.job_id, credits=cancelled.refunded)
        if sub == "stats" and not args:
            return "\n".join(await self.stats_lines(locale))
        if sub == "reload" and not args:
            await self.reload_policy()
            return t(locale, "admin.reloaded")
        return usage

    def _backends(self) -> list[Any]:
        return list(self._engine.dispatcher.backends)

    # --- the user ---------------------------------------------------------------------------
    async def defaults(self, requester: Requester) -> UserDefaults:
        """The user's saved /draw defaults."""
        return defaults.defaults_of(await self._db.users.get_settings(requester.key))

    @property
    def settings_options(self) -> list[Option]:
        """Every option /settings takes (preset, size, steps, negative, the favourites)."""
        return defaults.settings_options(self.options)

    def parse_defaults(self, text: str) -> dict[str, Any]:
        """`/settings --lora add_detail:0.6 --style cinematic --steps 30` as the changes
        `change_defaults` takes; raises OptionError naming the flag."""
        return defaults.parse(text, self.options, self.limits)

    def check_defaults(self, wanted: dict[str, Any]) -> None:
        """Check a change like `change_defaults` does, without saving (no database, and the
        favourites' names not yet against the backends)."""
        defaults.changes(wanted, self.options, self.presets, self.limits)

    async def change_defaults(self, requester: Requester, wanted: dict[str, Any]) -> UserDefaults:
        """Change defaults by name (preset, size, steps, negative, loras, styles; None = the
        preset's value, `none` no favourites; reset=True clears all), checked like /draw (the
        favourites' names against the backends' catalogues); raises OptionError or
        RefusedError, saving nothing."""
        fields = defaults.changes(wanted, self.options, self.presets, self.limits)
        await self._engine.check_favourites(*defaults.favourites_in(fields))
        if fields:
            await self._db.users.save_settings(requester.key, **fields)
        return await self.defaults(requester)

    async def last_locale(self, user_key: str) -> str | None:
        """The language a user's last command came in, if they were seen before."""
        row = await self._db.users.get(user_key)
        locale = getattr(row, "locale", None) if row is not None else None
        return str(locale) if locale else None


ADMIN_QUEUE_LINES = 30


def user_key_of(text: str, platform: str) -> str:
    """A user as an admin names them: "platform:id", a mention (<@id>), or a bare id on the
    admin's own platform."""
    text = text.strip().removeprefix("<@").removeprefix("!").removesuffix(">").lstrip("@")
    return text if ":" in text else f"{platform}:{text}"


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def picture_size(data: bytes) -> tuple[int, int]:
    """Width and height of a picture as displayed, from its header only."""
    return image_size(data)


def not_a_picture() -> DrawbridgeError:
    """The error for a file that is not a picture drawbridge can use."""
    return ImageError("image.bad_format", formats=FORMATS_TEXT)


async def wait_for_database(settings: Settings) -> None:
    """Wait (bounded by DATABASE_CONNECT_TIMEOUT) for the database; DatabaseError if it stays away."""
    await database.wait(settings)


async def check_database(settings: Settings) -> str:
    """`drawbridge db check`: connect once; the line to print."""
    return await database.check(settings)


async def backup_database(settings: Settings, target: Path) -> database.BackupOutcome:
    """`drawbridge db backup FILE`: the SQLite online backup, or the pg_dump advice."""
    return await database.backup(settings, target)


def database_problem(exc: BaseException, settings: Settings) -> DrawbridgeError | None:
    """A database failure as one operator sentence, or None when `exc` is not one."""
    return database.problem(exc, settings)


async def upgrade_database(settings: Settings) -> None:
    """`drawbridge db upgrade`: bring the database to the newest schema."""
    await upgrade(settings.database_url)

"""The members of the backend pool: one WebUI each, with its flavour, its own catalogue, its
health and cool-off, the jobs in flight on it, and what a job needs of it.

Names differ between forks and between servers, so a job carries what it *needs* (a checkpoint,
a sampler, an upscaler, LoRAs) and each backend answers in its own spelling, or says what it
lacks; nothing is ever drawn with a model the job did not ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.checkpoints import model_key, model_label
from bot.fairqueue import Entry
from bot.i18n import Phrase, t
from bot.options import LORA_TAG
from bot.payload import Resolved, Target, drawn_steps
from bot.types import Mode
from bot.webui.client import GenerationResult, WebUIClient
from bot.webui.flavour import Flavour, Identity, identify

log = logging.getLogger(__name__)

# what a job asks of a backend: built just before sending, so queued jobs hold no payload
WebUICall = Callable[[WebUIClient], Awaitable[GenerationResult]]

LISTING_TIMEOUT = 15.0  # seconds for one backend's listings
ORPHAN_WATCH = 600.0  # seconds an abandoned request is watched for, to interrupt it once it runs


# The same upscaler under each fork's name (forks.md: SD.Next names them "RealESRGAN 4x+" and
# "Latent Nearest" …, upscaler_simple.py:57-65); A1111's "Latent" is its bilinear mode.
UPSCALER_TWINS: tuple[tuple[str, ...], ...] = (
    ("Latent", "Latent Bilinear"),
    ("Latent (antialiased)", "Latent Bilinear antialias"),
    ("Latent (bicubic)", "Latent Bicubic"),
    ("Latent (bicubic antialiased)", "Latent Bicubic antialias"),
    ("Latent (nearest)", "Latent Nearest"),
    ("Latent (nearest-exact)", "Latent Nearest exact"),
    ("R-ESRGAN 4x+", "RealESRGAN 4x+"),
    ("R-ESRGAN 4x+ Anime6B", "RealESRGAN 4x+ Anime6B"),
)


@dataclass(frozen=True)
class Needs:
    """What a job needs of a backend, and what its progress looks like (its fingerprint)."""

    mode: Mode
    model: str | None = None
    sampler: str | None = None
    upscaler: str | None = None
    loras: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    control: str | None = None  # the ControlNet preprocessor, as the user named it
    # sampling_steps values /progress may show while this job samples
    steps: frozenset[int] = frozenset()

    @property
    def webui_job(self) -> str:
        """The name A1111/Forge give this kind of API job in /progress's state.job."""
        if self.mode is Mode.UPSCALE:
            return "extras"
        return "scripts_txt2img" if self.mode is Mode.TXT2IMG else "scripts_img2img"


def needs_of(spec: Resolved) -> Needs:
    """A resolved job's needs: its model, sampler, upscaler and the LoRAs its prompt names."""
    if spec.mode is Mode.UPSCALE:
        return Needs(Mode.UPSCALE, upscaler=spec.hr_upscaler)
    loras = tuple(dict.fromkeys(m.strip() for m in LORA_TAG.findall(spec.prompt)))
    steps = {drawn_steps(spec, Flavour.A1111), spec.steps}
    hires = spec.hires and spec.mode is Mode.TXT2IMG
    if hires:
        steps.add(spec.hr_steps or spec.steps)
    return Needs(
        spec.mode,
        model=spec.model,
        sampler=spec.sampler,
        upscaler=spec.hr_upscaler if hires else None,
        loras=loras,
        styles=tuple(spec.styles),
        control=spec.control,
        steps=frozenset(steps),
    )


@dataclass(frozen=True)
class Missing:
    """One thing a backend lacks: kind is model, sampler, upscaler or lora."""

    kind: str
    name: str


@dataclass
class Listing:
    """One backend's catalogue, as it answered its listing routes."""

    checkpoints: list[dict[str, Any]]
    samplers: list[str]
    schedulers: list[str]
    upscalers: list[str] | None  # None: the backend did not list them
    loras: list[str] | None  # None: no /loras (no Lora extension, SD.Next's original backend)
    scripts: list[str] | None
    fetched_at: float
    styles: list[str] | None = None  # None: it did not answer /prompt-styles
    # sd-webui-controlnet's /controlnet/model_list and /module_list (None: no extension)
    control_models: list[str] | None = None
    control_modules: list[str] | None = None

    @property
    def adetailer(self) -> bool:
        """Whether the ADetailer extension is installed (its script is listed)."""
        return "adetailer" in (self.scripts or ())

    def titles(self) -> list[str]:
        """Checkpoint titles (as override_settings takes them)."""
        return [str(m.get("title") or m.get("model_name") or "") for m in self.checkpoints]

    @functools.cached_property
    def title_by_key(self) -> dict[str, str]:
        """The first title of each model key (a listing is replaced, never changed: every
        job's routing looks its checkpoint up here instead of keying every title again)."""
        found: dict[str, str] = {}
        for title in self.titles():
            found.setdefault(model_key(title), title)
        return found

    @functools.cached_property
    def sampler_by_lower(self) -> dict[str, str]:
        """Sampler names by their lower case (the last spelling of each, as listed)."""
        return {s.lower(): s for s in self.samplers}


async def fetch_listing(client: WebUIClient) -> Listing:
    """Ask a backend for everything it can draw with; checkpoints and samplers are required."""
    async with asyncio.timeout(LISTING_TIMEOUT):
        models = await client.sd_models()
        samplers = [str(s["name"]) for s in await client.samplers()]
        schedulers = [str(s.get("label") or s.get("name")) for s in await client.schedulers()]
        upscalers: list[str] | None = None
        with contextlib.suppress(Exception):  # optional listings: absent is not broken
            found = [str(u["name"]) for u in await client.upscalers()]
            found += [str(u["name"]) for u in await client.latent_upscale_modes()]
            upscalers = found
        loras: list[str] | None = None
        with contextlib.suppress(Exception):
            names: dict[str, None] = {}
            for lora in await client.loras():
                for key in ("name", "alias"):
                    if lora.get(key):
                        names[str(lora[key])] = None
            loras = list(names)
        scripts: list[str] | None = None
        with contextlib.suppress(Exception):
            listed = await client.scripts()
            scripts = sorted(
                {str(s) for kind in listed.values() if isinstance(kind, list) for s in kind}
            )
        styles: list[str] | None = None
        with contextlib.suppress(Exception):
            styles = [str(s["name"]) for s in await client.prompt_styles() if s.get("name")]
        control_models: list[str] | None = None
        control_modules: list[str] | None = None
        with contextlib.suppress(Exception):
            control_models = await client.controlnet_models()
            control_modules = await client.controlnet_modules()
    return Listing(
        models,
        samplers,
        schedulers,
        upscalers,
        loras,
        scripts,
        time.monotonic(),
        styles,
        control_models,
        control_modules,
    )


# what a user's --control NAME means when the extension has no module of exactly that name
CONTROL_DEFAULTS = {
    "depth": "depth_midas",
    "lineart": "lineart_realistic",
    "softedge": "softedge_pidinet",
    "scribble": "scribble_pidinet",
    "tile": "tile_resample",
    "reference": "reference_only",
}
MODEL_FREE = ("reference",)  # reference_* preprocessors run without a ControlNet model


def control_for(name: str, modules: list[str], models: list[str]) -> tuple[str, str] | None:
    """The (module, model) a backend runs for `--control name`, or None when it lacks either:
    the module of that name (or the family's usual one, or the first of the family), and the
    first model whose name holds the family ("None" for reference)."""
    wanted = name.strip().lower()
    family = wanted.split("_", 1)[0]
    lowered = {m.lower(): m for m in modules}
    module = lowered.get(wanted) or lowered.get(CONTROL_DEFAULTS.get(wanted, ""))
    if module is None:
        module = next((m for m in modules if m.lower().startswith(family)), None)
    if module is None:
        return None
    if family in MODEL_FREE:
        return module, "None"
    model = next((m for m in models if family in m.lower()), None)
    return (module, model) if model is not None else None


def upscaler_in(name: str, available: list[str]) -> str | None:
    """`available`'s spelling of upscaler `name`: the same, another case, or its twin on
    another fork; None when this backend has no such upscaler."""
    if name in available:
        return name
    lowered = {a.lower(): a for a in available}
    if name.lower() in lowered:
        return lowered[name.lower()]
    for twins in UPSCALER_TWINS:
        if name.lower() in (x.lower() for x in twins):
            for twin in twins:
                if twin.lower() in lowered:
                    return lowered[twin.lower()]
    return None


@dataclass(eq=False)
class Running:
    """A job handed to a backend, and how far its progress is proven to be its own."""

    entry: Entry
    backend: Backend
    prepare: Callable[[Target], Awaitable[WebUICall]]
    sent_at: float = 0.0
    started_at: float | None = None
    progress: float = 0.0
    progress_at: float = 0.0
    eta_relative: float | None = None
    cancel_requested: bool = False
    interrupted: bool = False
    task: asyncio.Task[Any] | None = None
    down_error: Any = None  # the WebUIError that took its backend down
    ended: bool = False  # the request came back (or failed); nobody may cancel the task now
    # binding: force_task_id (task mode) or the job_timestamp seen before sending and the one
    # adopted once it changed (timestamp mode)
    task_id: str | None = None
    baseline: str | None = None
    timestamp: str | None = None
    proven: bool = False  # the last look showed the backend running this very job
    server_done: bool = False  # the WebUI has finished it (the answer is on its way)
    preview_id: int = -1
    bound: bool = False  # Events.bound was sent for this render
    hand_back: bool = False  # shutting down: an interrupted result goes back to the queue

    @property
    def needs(self) -> Needs:
        """What the job needs (kept on its queue entry)."""
        needs = self.entry.needs
        return needs if isinstance(needs, Needs) else Needs(Mode.TXT2IMG)


@dataclass(eq=False)
class Backend:
    """One SD-WebUI server and what we know of it."""

    client: WebUIClient
    index: int = 1  # 1-based position in WEBUI_URLS
    label: str = ""  # the operator's name for it (WEBUI_NAMES)
    up: bool = True
    identity: Identity | None = None
    listing: Listing | None = None
    loaded: str | None = None  # the checkpoint we believe it has loaded (a title)
    last_error: str = ""
    inflight: list[Running] = field(default_factory=list)
    sec_per_credit: float = 1.0
    jobs_done: int = 0
    failures: int = 0  # backend failures in a row (5xx, empty answers, stalls, timeouts)
    cooling_until: float = 0.0  # time.monotonic() before which it takes no new job
    frozen_told: bool = False
    # abandoned requests (task id → watch until): interrupted once they start running
    orphans: dict[str, float] = field(default_factory=dict)
    # the job_timestamps our own jobs ran under (timestamp mode), newest last
    seen_timestamps: list[str] = field(default_factory=list)
    # stall watch: the last /progress signature, when it last changed, whether it was sampling
    signature: tuple[Any, ...] = ()
    changed_at: float = 0.0
    sampling: bool = False
    refresh_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def url(self) -> str:
        """The backend's URL, without credentials."""
        return self.client.base_url

    @property
    def name(self) -> str:
        """host:port, for logs and the operator (never for chat users)."""
        return self.client.display

    @property
    def model(self) -> str | None:
        """The checkpoint we believe it has loaded (its title)."""
        return self.loaded

    @property
    def flavour(self) -> Flavour:
        """Its fork (A1111 until a health check said otherwise)."""
        return self.identity.flavour if self.identity else Flavour.A1111

    @property
    def binds_tasks(self) -> bool:
        """Whether force_task_id + POST /internal/progress bind progress to our request."""
        return bool(self.identity and self.identity.binds_tasks)

    @property
    def frozen(self) -> frozenset[str] | None:
        """Options the server refuses to change (None: all)."""
        return self.identity.frozen if self.identity else frozenset()

    @property
    def prefetch(self) -> bool:
        """Whether a second request may wait on its lock: not on SD.Next, whose plain lock has
        no order, so a later request could overtake and its progress pass for the other's."""
        return self.flavour is not Flavour.SDNEXT

    def public_name(self) -> Phrase:
        """How chat users may read its name: the operator's label, else "backend N"."""
        label, index = self.label, self.index
        return Phrase(lambda locale: label or t(locale, "backends.numbered", n=index))

    def cooling(self, now: float | None = None) -> float:
        """Seconds of cool-off left (0 when it may take jobs)."""
        now = time.monotonic() if now is None else now
        return max(0.0, self.cooling_until - now)

    def available(self, now: float | None = None) -> bool:
        """Up and not cooling off: it may take a new job."""
        return self.up and self.cooling(now) == 0.0

    # --- what it has ---------------------------------------------------------------------
    def checkpoint_for(self, name: str | None) -> str | None:
        """This backend's title of checkpoint `name`; None when it has none such (a frozen
        server offers only the model it has loaded)."""
        if not name or self.listing is None:
            return None
        if self.frozen is None or "sd_model_checkpoint" in (self.frozen or ()):
            loaded = self.identity.loaded_model if self.identity else None
            titles = [
                x for x in self.listing.titles() if loaded and model_key(x) == model_key(loaded)
            ]
            key = model_key(name)
            return next((x for x in titles if x == name or model_key(x) == key), None)
        return self.listing.title_by_key.get(model_key(name))

    def sampler_for(self, name: str | None) -> str | None:
        """This backend's spelling of sampler `name` (case aside); None when it lacks it."""
        if not name or self.listing is None:
            return None
        return self.listing.sampler_by_lower.get(name.lower())

    def upscaler_for(self, name: str | None) -> str | None:
        """This backend's name of upscaler `name`; the name as given when it lists none."""
        if not name:
            return None
        if self.listing is None or self.listing.upscalers is None:
            return name
        return upscaler_in(name, self.listing.upscalers)

    def control_for(self, name: str) -> tuple[str, str] | None:
        """This backend's ControlNet (module, model) for `--control name`, or None."""
        listing = self.listing
        if listing is None or listing.control_modules is None:
            return None
        return control_for(name, listing.control_modules, listing.control_models or [])

    def lacks(self, needs: Needs) -> list[Missing]:
        """What of `needs` this backend does not have ([] when it can draw the job)."""
        if self.listing is None:
            return [Missing("catalogue", "")]
        missing = []
        if needs.mode is not Mode.UPSCALE:
            if needs.model and self.checkpoint_for(needs.model) is None:
                missing.append(Missing("model", needs.model))
            if needs.sampler and self.sampler_for(needs.sampler) is None:
                missing.append(Missing("sampler", needs.sampler))
            known = self.listing.loras
            if known is not None:
                missing += [Missing("lora", x) for x in needs.loras if x not in known]
            styles = self.listing.styles or []
            missing += [Missing("style", x) for x in needs.styles if x not in styles]
            if needs.control and self.control_for(needs.control) is None:
                missing.append(Missing("control", needs.control))
        if needs.upscaler and self.upscaler_for(needs.upscaler) is None:
            missing.append(Missing("upscaler", needs.upscaler))
        return missing

    def offers(self, kind: str) -> list[str]:
        """The names it offers of one kind, as users write them."""
        listing = self.listing
        if listing is None:
            return []
        if kind == "model":
            titles = listing.titles()
            if self.frozen is None:
                titles = [x for x in titles if self.checkpoint_for(x)]
            return list(dict.fromkeys(model_label(x) for x in titles if x))
        if kind == "sampler":
            return list(listing.samplers)
        if kind == "upscaler":
            return [u for u in listing.upscalers or [] if u != "None"]
        if kind == "lora":
            return list(listing.loras or [])
        if kind == "style":
            return list(listing.styles or [])
        if kind == "control":
            modules = listing.control_modules or []
            return [m for m in modules if m != "none" and self.control_for(m) is not None]
        return []

    def target_for(self, needs: Needs, *, restore: bool, task_id: str | None) -> Target:
        """The payload target for a job on this backend: its own names, its frozen options."""
        model = self.checkpoint_for(needs.model) if needs.model else self.loaded
        upscaler = self.upscaler_for(needs.upscaler) if needs.upscaler else None
        control = self.control_for(needs.control) if needs.control else None
        return Target(
            flavour=self.flavour,
            checkpoint=model,
            sampler=self.sampler_for(needs.sampler) if needs.sampler else None,
            upscaler=upscaler,
            frozen=self.frozen,
            restore=restore,
            task_id=task_id if self.binds_tasks else None,
            adetailer=bool(self.listing and self.listing.adetailer),
            control_module=control[0] if control else None,
            control_model=control[1] if control else None,
        )

    def remaining(self, now: float) -> float:
        """Estimated seconds until everything in flight is done."""
        total = 0.0
        for run in self.inflight:
            expected = run.entry.cost * self.sec_per_credit
            if run.started_at is None:
                total += expected
            elif run.eta_relative is not None and run.progress > 0:
                total += max(0.0, run.eta_relative - (now - run.progress_at))
            else:
                total += max(0.0, expected - (now - run.started_at))
        return total

    # --- learning what it is ---------------------------------------------------------------
    async def identify(self) -> Identity:
        """Learn (again) its flavour, frozen settings and binding; logs a freeze once."""
        identity = await identify(self.client)
        if self.identity is None or self.loaded is None or identity.frozen is None:
            self.loaded = identity.loaded_model or self.loaded
        self.identity = identity
        if identity.frozen != frozenset() and not self.frozen_told:
            self.frozen_told = True
            log.warning("%s", frozen_notice(self))
        return identity

    async def refresh(self, *, min_age: float = 0.0) -> bool:
        """Fetch its catalogue again unless one younger than `min_age` seconds is at hand
        (concurrent callers share one fetch); True when it was fetched."""
        async with self.refresh_lock:
            listing = self.listing
            if listing is not None and time.monotonic() - listing.fetched_at < min_age:
                return False
            self.listing = await fetch_listing(self.client)
            return True


def frozen_notice(backend: Backend) -> str:
    """The operator's one-time notice about a server that refuses setting changes."""
    frozen = backend.frozen
    loaded = model_label(backend.identity.loaded_model or "?") if backend.identity else "?"
    if frozen is None:
        return t("en", "backends.frozen_all", backend=backend.name, model=loaded)
    return t("en", "backends.frozen_some", backend=backend.name, keys=", ".join(sorted(frozen)))

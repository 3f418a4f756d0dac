"""Neutral types that cross the adapter seam; nothing here knows about a chat platform.

Adapters and the CLI hand these to `bot.service.Service` and get these back. `Mode` and
`JobState` are the storage layer's vocabulary (`storage.vocab`), re-exported here.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from storage.vocab import JobState, Mode

if TYPE_CHECKING:
    from bot.errors import DrawbridgeError

__all__ = [
    "CANVAS_ACTIONS",
    "IMAGE_ACTIONS",
    "INTERROGATORS",
    "JOB_ACTIONS",
    "SINGLE_ACTIONS",
    "Cancelled",
    "Catalogue",
    "Checkpoint",
    "Description",
    "GenerationRequest",
    "HistoryEntry",
    "HistoryJob",
    "HistoryPage",
    "ImageResult",
    "JobHandle",
    "JobResult",
    "JobState",
    "JobUpdate",
    "Mode",
    "Original",
    "Pictures",
    "Pressed",
    "QueueEntry",
    "QueueView",
    "QuotaView",
    "Replier",
    "ReplierFactory",
    "Requester",
    "UserDefaults",
]

# Button actions a delivered result carries keys for: once per job, and once per picture.
JOB_ACTIONS = ("reroll", "delete")
IMAGE_ACTIONS = ("variations", "upscale", "original")
# and under a single drawn picture: zoom out, pan, make square (outpainting), fix faces
CANVAS_ACTIONS = ("zoom15", "zoom2", "pan_left", "pan_right", "pan_up", "pan_down", "square")
SINGLE_ACTIONS = (*CANVAS_ACTIONS, "faces")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Requester:
    """Who asked, and where to answer."""

    platform: str
    user_id: str
    display_name: str = ""
    chat_id: str = ""
    locale: str = "en"
    is_admin: bool = False
    roles: tuple[str, ...] = ()  # the platform's role ids (Discord), for tiers
    nsfw: bool = False  # asked in a place marked NSFW (a Discord NSFW channel): not checked
    # quota and queue key, "platform:user_id": made once, not one new text per use (the
    # queue, the job table and the quotas each hold it for every queued job)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.platform}:{self.user_id}")

    def shared(self) -> Requester:
        """The one live Requester equal to this one: a user's queued jobs and their repliers
        hold one object rather than one each (kept while anything holds it)."""
        return _REQUESTERS.setdefault(self, self)


_REQUESTERS: weakref.WeakValueDictionary[Requester, Requester] = weakref.WeakValueDictionary()


@dataclass
class GenerationRequest:
    """A draw request as a user expressed it; None means "use the preset's value"."""

    prompt: str
    mode: Mode = Mode.TXT2IMG
    negative: str | None = None
    width: int | None = None
    height: int | None = None
    aspect: tuple[int, int] | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    model: str | None = None
    seed: int | None = None
    count: int | None = None
    strength: float | None = None
    hires: bool | None = None
    preset: str | None = None
    # img2img / inpaint: references into the image store (sha256 keys), never raw bytes
    init_image: str | None = None
    mask: str | None = None
    invert: bool | None = None
    fill: str | None = None
    only_masked: bool | None = None
    relax: bool | None = None  # RELAX_MODE: free, behind every job with credits
    # the hires pass, faces, LoRAs (name, weight) and an A1111 style
    hr_scale: float | None = None
    hr_denoise: float | None = None
    hr_steps: int | None = None
    hr_upscaler: str | None = None
    face: bool | None = None
    loras: tuple[tuple[str, float], ...] = ()
    style: str | None = None
    # ControlNet: the preprocessor family (canny, depth …), its weight and guidance span, and
    # the control picture (an image store key)
    control: str | None = None
    control_weight: float | None = None
    control_guidance: tuple[float, float] | None = None
    control_image: str | None = None


@dataclass(frozen=True)
class Pictures:
    """What the user sent with a draw request, as bytes: the picture to start from, and what
    says which part to change (a mask, a painted-over copy or nothing)."""

    init: bytes | None = None
    mask: bytes | None = None
    control: bytes | None = None  # the ControlNet picture (--control)


@dataclass
class JobUpdate:
    """A change a user may want to see: queued with position/ETA, progress with preview.

    `notes` are lines for the user about the request itself (e.g. which mask was used), in
    their language, shown above the status.
    """

    job_id: str
    state: JobState
    position: int | None = None
    eta_seconds: float | None = None
    progress: float | None = None
    preview: bytes | None = None
    attempt: int | None = None
    note: str | None = None
    notes: tuple[str, ...] = ()


@dataclass
class ImageResult:
    """One generated image: PNG bytes as the WebUI made them, what produced it, the keys of
    its buttons (`IMAGE_ACTIONS` → key) and, once stored, its key in the image store (`ref`):
    a replier may then let go of `png` while the result waits for the platform and read the
    bytes back with `Service.stored_picture(ref)`."""

    png: bytes
    seed: int
    width: int
    height: int
    infotext: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    ref: str = ""
    spoiler: bool = False  # NSFW_CHECK=spoiler flagged it: shown behind a spoiler


@dataclass
class JobResult:
    """What a finished job delivers; `keys` holds the job's own buttons (`JOB_ACTIONS` → key)."""

    job_id: str
    images: list[ImageResult]
    prompt: str
    model: str
    elapsed: float
    cost: int
    mode: Mode = Mode.TXT2IMG
    notes: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)


@dataclass
class JobHandle:
    """What a draw or a button press that starts a job returns: enough for a first reply."""

    job_id: str
    cost: int
    position: int
    eta_seconds: float
    notes: tuple[str, ...] = ()


@dataclass
class Pressed:
    """What a result button did: `handle` when it started a job (reroll, variations, upscale)."""

    kind: str
    job_id: str
    index: int
    handle: JobHandle | None = None


@dataclass(frozen=True)
class Original:
    """A result picture as the WebUI made it, behind an 📄 Original key."""

    job_id: str
    index: int
    png: bytes


@dataclass(frozen=True)
class Cancelled:
    """A cancelled job and the credits it gave back."""

    job_id: str
    refunded: int


@dataclass(frozen=True)
class QueueEntry:
    """One of the asking user's jobs: running, or queued at `position` starting in `eta`."""

    job_id: str
    running: bool
    position: int = 0
    eta_seconds: float = 0.0


@dataclass(frozen=True)
class QueueView:
    """/queue: how busy drawbridge is, and where the user's own jobs are."""

    queued: int
    running: int
    backends_up: int
    mine: tuple[QueueEntry, ...] = ()


@dataclass(frozen=True)
class QuotaView:
    """/quota: a user's credits and when they refill."""

    user_key: str
    available: int
    allowance: int
    bonus: int
    reserved: int
    reset: str
    tier: str = ""  # the user's tier(s) in POLICY_FILE, "" when in none


@dataclass(frozen=True)
class UserDefaults:
    """A user's saved /draw defaults; None means "the preset's value", "" an empty negative."""

    preset: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    negative: str | None = None
    # favourites a /draw without --lora / --style of its own uses: (name, weight) and names
    loras: tuple[tuple[str, float], ...] = ()
    styles: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The values by field name."""
        return {
            "preset": self.preset,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "negative": self.negative,
            "loras": self.loras,
            "styles": self.styles,
        }


# the WebUI's interrogators (/sdapi/v1/interrogate "model"), as users name them
INTERROGATORS = {"clip": "clip", "deepbooru": "deepdanbooru"}


@dataclass(frozen=True)
class Description:
    """/describe: what the interrogator saw, the picture's own parameters when it carries
    them (a WebUI PNG), and the /draw text ▶ "Draw this" starts from."""

    caption: str
    interrogator: str
    prompt: str = ""  # from the PNG's parameters
    negative: str = ""
    parameters: str = ""  # the rest of its infotext line (steps, sampler, seed …)

    @property
    def draw_text(self) -> str:
        """/draw text for ▶: the PNG's own prompt (and negative) when known, else the caption."""
        text = self.prompt or self.caption
        if self.prompt and self.negative:
            text += f' --neg "{self.negative}"'
        return text


@dataclass(frozen=True)
class HistoryEntry:
    """One delivered job in /history."""

    job_id: str
    prompt: str
    when: str  # "2025-03-01 14:05" UTC
    images: int
    size: str  # "512×512"


@dataclass(frozen=True)
class HistoryPage:
    """One page of a user's /history, newest first; `page` counts from 0."""

    entries: tuple[HistoryEntry, ...]
    page: int
    pages: int


@dataclass
class HistoryJob:
    """/history JOB: the job's pictures with their stored buttons, and its full parameters."""

    result: JobResult
    infotext: str


@dataclass(frozen=True)
class Catalogue:
    """What the backends can draw with."""

    checkpoints: list[str]
    samplers: list[str]
    loras: list[str]
    embeddings: list[str] = field(default_factory=list)  # textual inversions, by trigger word
    styles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint for autocomplete: how people say it, its full title, its short name."""

    label: str
    title: str
    name: str


class Replier(Protocol):
    """The reply capability bound to one conversation; one implementation per adapter.

    The core calls it only for a job that is stored: the first `update` of a job is its
    acknowledgement. When the message that shows the job's status is sent or replaced, the
    adapter hands its new reply_ref to `Service.remember_reply`, so whoever delivers the job
    after a restart edits that message rather than leave it behind.
    """

    async def update(self, update: JobUpdate) -> None:
        """Show queue position, progress or a state change (never blocks on the platform)."""

    async def deliver(self, result: JobResult) -> None:
        """Post the images with their actions; return only once the platform confirmed every
        message of the result (the core settles the credits then). Raise
        bot.errors.DeliveryFailed when the platform's retries are exhausted: the core fails
        and refunds the job and calls `fail` with it. Cancelled (a shutdown), the job stays
        rendered and the next owner delivers it again."""

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        """Tell the user the job failed or was cancelled, and what was refunded. For
        DeliveryFailed: in a new message, once the platform is reachable again, returning
        only when the platform confirmed it (raising if it refused it for good): the core
        then records the notice sent (bot.notices); cancelled (a shutdown), it stays owed and
        the next owner calls `fail` again."""


# Rebuilds the replier of a job resumed after a restart from what it stored (its reply_ref).
ReplierFactory = Callable[[Requester, dict[str, Any]], Replier]

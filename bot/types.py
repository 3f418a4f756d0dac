"""Neutral types that cross the adapter seam; nothing here knows about a chat platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.errors import DrawbridgeError


class Mode(StrEnum):
    """What the WebUI is asked to do."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    UPSCALE = "upscale"


class JobState(StrEnum):
    """Life of a job (storage/lifecycle.py); DELIVERED, FAILED and CANCELLED are final."""

    QUEUED = "queued"
    RUNNING = "running"
    RENDERED = "rendered"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class Requester:
    """Who asked, and where to answer."""

    platform: str
    user_id: str
    display_name: str = ""
    chat_id: str = ""
    locale: str = "en"
    is_admin: bool = False

    @property
    def key(self) -> str:
        """Quota and queue key: "platform:user_id"."""
        return f"{self.platform}:{self.user_id}"


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


@dataclass
class JobUpdate:
    """A change a user may want to see: queued with position/ETA, progress with preview."""

    job_id: str
    state: JobState
    position: int | None = None
    eta_seconds: float | None = None
    progress: float | None = None
    preview: bytes | None = None
    attempt: int | None = None
    note: str | None = None


@dataclass
class ImageResult:
    """One generated image: PNG bytes as the WebUI made them, plus what produced it."""

    png: bytes
    seed: int
    width: int
    height: int
    infotext: str = ""


@dataclass
class JobResult:
    """What a finished job delivers."""

    job_id: str
    images: list[ImageResult]
    prompt: str
    model: str
    elapsed: float
    cost: int
    mode: Mode = Mode.TXT2IMG
    notes: list[str] = field(default_factory=list)


class Replier(Protocol):
    """The reply capability bound to one conversation; one implementation per adapter."""

    async def update(self, update: JobUpdate) -> None:
        """Show queue position, progress or a state change."""

    async def deliver(self, result: JobResult) -> None:
        """Post the images with their actions."""

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        """Tell the user the job failed or was cancelled, and what was refunded."""

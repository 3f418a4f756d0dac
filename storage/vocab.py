"""The words every layer shares: modes, job states and the "not enough credits" condition.

They live at the bottom so that storage needs nothing from bot/; `bot.types` re-exports the
enums, and the core turns `InsufficientCredits` into the user-facing `bot.errors.QuotaExceeded`.
"""

from __future__ import annotations

from enum import StrEnum


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


class InsufficientCredits(Exception):
    """A reservation needs more credits than the user has; nothing was written."""

    def __init__(self, *, cost: int, balance: int, reset: str = "") -> None:
        self.cost, self.balance, self.reset = cost, balance, reset
        super().__init__(f"needs {cost} credits, {balance} left (refill {reset or '?'})")

    @property
    def params(self) -> dict[str, int | str]:
        """The numbers, as bot.errors.QuotaExceeded takes them."""
        return {"cost": self.cost, "balance": self.balance, "reset": self.reset}


class DuplicateJob(Exception):
    """A job for this command is already stored (the platform handed the same message or
    press over twice: a replay after a crash, two processes on one bot); nothing was written."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"already taken in as job {job_id}")


class StorageFault(Exception):
    """The database failed; what the write would have changed was rolled back whole.

    `key` names the sentence the core shows a user (bot.errors.StorageError.from_fault).
    """

    key = "storage.unavailable"


class StorageUnavailable(StorageFault):
    """Connection lost, locked or busy for longer than DB_RETRY_SECONDS allows."""


class StorageFull(StorageFault):
    """The disk holding the database is full (SQLITE_FULL, PostgreSQL 53100)."""

    key = "storage.full"


class StorageUncertain(StorageFault):
    """The connection died during COMMIT of a write that is not safe to repeat."""


class LeaseLost(StorageFault):
    """This instance's lease expired and was removed: its jobs may belong to another now."""

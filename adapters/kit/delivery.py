"""Small pieces both platforms' repliers use around a delivery."""

from __future__ import annotations

import contextlib
from typing import Any

from adapters.kit.outbox import GaveUp
from bot.service import Service


async def remember_reply(service: Service, job_id: str, ref: dict[str, Any]) -> None:
    """Store where a job's status message now is (best effort: a job already gone, or the
    database busy, is harmless; a restart then sends a new message instead of editing)."""
    with contextlib.suppress(Exception):
        await service.remember_reply(job_id, ref)


def why(exc: BaseException) -> str:
    """A delivery failure as one line for the log (the last attempt's, when the outbox gave
    up; neither library's exception texts hold the token)."""
    if isinstance(exc, GaveUp):
        exc = exc.last
    return f"{type(exc).__name__}: {exc}"

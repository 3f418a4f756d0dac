"""Platform-neutral text every adapter shows: cut to a limit, ETAs, job status, model names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.i18n import t
from bot.presets import PresetBook
from bot.types import JobState, JobUpdate

if TYPE_CHECKING:
    from bot.engine import Engine

ELLIPSIS = "…"

_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{8,10}\]$")
_EXTENSION = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf)$", re.I)


def cut(text: str, limit: int) -> str:
    """Text shortened to `limit` characters, marked with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + ELLIPSIS


def eta_text(locale: str | None, seconds: float | None) -> str:
    """'12 s' / '3 min' in the reader's language."""
    seconds = max(0.0, seconds or 0.0)
    if seconds < 90:
        return t(locale, "eta.seconds", n=max(1, round(seconds)))
    return t(locale, "eta.minutes", n=round(seconds / 60))


def status_text(
    locale: str | None, update: JobUpdate, notes: Sequence[str], max_attempts: int, limit: int
) -> str:
    """The status message of a queued or running job, at most `limit` characters."""
    lines = list(notes)
    if update.note == "queue.retrying":
        lines.append(t(locale, "queue.retrying", attempt=update.attempt or 2, max=max_attempts))
    elif update.note:
        lines.append(t(locale, update.note))
    elif update.state is JobState.RUNNING:
        lines.append(t(locale, "queue.running", percent=round((update.progress or 0.0) * 100)))
    elif update.position is not None and update.position > 1:
        eta = eta_text(locale, update.eta_seconds)
        lines.append(t(locale, "queue.queued", position=update.position, eta=eta))
    else:
        lines.append(t(locale, "queue.queued_next"))
    return cut("\n".join(lines), limit)


def model_label(model: str) -> str:
    """A checkpoint title as people say it: no folder, extension or hash."""
    name = _HASH_SUFFIX.sub("", model.strip()).replace("\\", "/").rsplit("/", 1)[-1]
    return _EXTENSION.sub("", name)


def settings_lines(locale: str | None, presets: PresetBook, values: dict[str, Any]) -> list[str]:
    """A user's /draw defaults (preset, size, steps, negative); unset ones show the preset's."""
    try:
        preset = presets.get(values.get("preset"))
    except KeyError:
        preset = presets.default

    def shown(value: Any, fallback: str) -> str:
        if value is None:
            return t(locale, "settings.from_preset", value=fallback)
        if value == "":
            return t(locale, "settings.empty")
        return str(value)

    width, height = values.get("width"), values.get("height")
    size = f"{width}×{height}" if width and height else None
    negative = shown(values.get("negative"), cut(preset.negative, 60))
    return [
        t(locale, "settings.title"),
        t(locale, "settings.preset", value=values.get("preset") or preset.name),
        t(locale, "settings.size", value=shown(size, f"{preset.width}×{preset.height}")),
        t(locale, "settings.steps", value=shown(values.get("steps"), str(preset.steps))),
        t(locale, "settings.negative", value=cut(negative, 300)),
    ]


def queue_lines(engine: Engine, user_key: str, locale: str | None) -> list[str]:
    """/queue: the summary, the user's own jobs with position and start estimate, backends down."""
    status = engine.status()
    if status["queued"] == 0 and status["running"] == 0:
        lines = [t(locale, "queue.empty")]
    else:
        up = sum(1 for b in status["backends"] if b["up"])
        lines = [
            t(
                locale,
                "queue.summary",
                queued=status["queued"],
                running=status["running"],
                backends=up,
            )
        ]
    mine = engine.user_jobs(user_key)
    if mine:
        lines.append(t(locale, "queue.yours"))
        for job in mine:
            position, eta = engine.position(job.id)
            if job.state is JobState.RUNNING or position == 0:
                lines.append(t(locale, "queue.job_running", job=job.id))
            else:
                eta_words = eta_text(locale, eta)
                lines.append(
                    t(locale, "queue.job_queued", job=job.id, position=position, eta=eta_words)
                )
    if not any(b["up"] for b in status["backends"]):
        lines.append(t(locale, "queue.no_backend"))
    return lines

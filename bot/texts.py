"""Platform-neutral text every adapter shows: cut to a limit, ETAs, job status, model names,
and the texts of /queue, /quota, /settings and /models built from the service's views."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.checkpoints import model_label
from bot.i18n import t
from bot.presets import PresetBook
from bot.types import Catalogue, Description, HistoryPage, JobState, JobUpdate, QueueView, QuotaView

__all__ = [
    "ELLIPSIS",
    "catalogue_lines",
    "cut",
    "describe_text",
    "draw_text_of",
    "eta_text",
    "history_lines",
    "model_label",
    "queue_lines",
    "quota_text",
    "settings_lines",
    "status_text",
]

ELLIPSIS = "…"


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


def status_text(locale: str | None, update: JobUpdate, max_attempts: int, limit: int) -> str:
    """The status message of a queued or running job (its notes first), at most `limit`
    characters."""
    lines = list(update.notes)
    if update.note == "queue.retrying":
        lines.append(t(locale, "queue.retrying", attempt=update.attempt or 2, max=max_attempts))
    elif update.note == "queue.waiting_no_backend":
        lines.append(t(locale, update.note, position=update.position or 1))
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


def settings_lines(locale: str | None, presets: PresetBook, values: dict[str, Any]) -> list[str]:
    """A user's /draw defaults (preset, size, steps, negative, favourites); unset ones show the
    preset's."""
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
    none = t(locale, "settings.no_favourites")
    return [
        t(locale, "settings.title"),
        t(locale, "settings.preset", value=values.get("preset") or preset.name),
        t(locale, "settings.size", value=shown(size, f"{preset.width}×{preset.height}")),
        t(locale, "settings.steps", value=shown(values.get("steps"), str(preset.steps))),
        t(locale, "settings.negative", value=cut(negative, 300)),
        t(locale, "settings.loras", value=shown_loras(values.get("loras") or ()) or none),
        t(locale, "settings.styles", value=", ".join(values.get("styles") or ()) or none),
    ]


def shown_loras(loras: Iterable[tuple[str, float]]) -> str:
    """Favourite LoRAs as /settings lists them: `add_detail (0.6), film` (weight 1 unsaid)."""
    return ", ".join(name if weight == 1 else f"{name} ({weight:g})" for name, weight in loras)


def queue_lines(view: QueueView, locale: str | None) -> list[str]:
    """/queue: the summary, the user's own jobs with position and start estimate, backends down."""
    if view.queued == 0 and view.running == 0:
        lines = [t(locale, "queue.empty")]
    else:
        lines = [
            t(
                locale,
                "queue.summary",
                queued=view.queued,
                running=view.running,
                backends=view.backends_up,
            )
        ]
    if view.mine:
        lines.append(t(locale, "queue.yours"))
        for job in view.mine:
            if job.running or job.position == 0:
                lines.append(t(locale, "queue.job_running", job=job.job_id))
            elif view.backends_up == 0:  # no start time can be known: none is pretended
                lines.append(t(locale, "queue.job_waiting", job=job.job_id, position=job.position))
            else:
                eta_words = eta_text(locale, job.eta_seconds)
                lines.append(
                    t(
                        locale,
                        "queue.job_queued",
                        job=job.job_id,
                        position=job.position,
                        eta=eta_words,
                    )
                )
    if view.backends_up == 0:
        lines.append(t(locale, "queue.no_backend"))
    return lines


def quota_text(locale: str | None, view: QuotaView, user: str) -> str:
    """/quota (and `drawbridge quota show`): `user`'s credits and when they refill."""
    return t(
        locale,
        "quota.show",
        user=user,
        balance=view.available,
        allowance=view.allowance,
        bonus=view.bonus,
        reserved=view.reserved,
        reset=view.reset,
    ) + (f"\n{t(locale, 'tier.show', tier=view.tier)}" if view.tier else "")


def catalogue_lines(
    locale: str | None, found: Catalogue, checkpoints_key: str, samplers_key: str
) -> list[str]:
    """/models: checkpoints, samplers and LoRAs under headings (each platform names the options
    its own way); empty when the backends reported nothing."""
    if not found.checkpoints and not found.samplers:
        return []
    lines = [t(locale, checkpoints_key), *(f"• {n}" for n in found.checkpoints)]
    lines += [t(locale, samplers_key), *(f"• {n}" for n in found.samplers)]
    if found.loras:
        lines += [t(locale, "models.loras"), *(f"• {n}" for n in found.loras)]
    if found.embeddings:
        lines += [t(locale, "models.embeddings"), *(f"• {n}" for n in found.embeddings)]
    if found.styles:
        lines += [t(locale, "models.styles"), *(f"• {n}" for n in found.styles)]
    return lines


# the last line of a /describe answer: what ▶ "Draw this" draws (read back from the message,
# so the button needs nothing stored and works after a restart)
DRAW_MARK = "▶ /draw "


def describe_text(locale: str | None, found: Description) -> str:
    """/describe's answer: the interrogator's caption, the picture's own parameters, and the
    /draw line ▶ starts."""
    lines = [t(locale, "describe.caption", interrogator=found.interrogator, caption=found.caption)]
    if found.prompt:
        lines.append(t(locale, "describe.prompt", prompt=found.prompt))
        if found.negative:
            lines.append(t(locale, "describe.negative", negative=found.negative))
        if found.parameters:
            lines.append(t(locale, "describe.settings", settings=found.parameters))
    lines += ["", DRAW_MARK + found.draw_text]
    return "\n".join(lines)


def draw_text_of(text: str | None) -> str | None:
    """The /draw text a /describe answer ends with, or None when `text` is not one."""
    if not text or DRAW_MARK not in text:
        return None
    found = text.rsplit(DRAW_MARK, 1)[1].strip()
    return found or None


def history_lines(locale: str | None, found: HistoryPage) -> list[str]:
    """/history: one page of a user's pictures, newest first, each with its /history JOB."""
    if not found.entries:
        return [t(locale, "history.empty")]
    lines = [t(locale, "history.title", page=found.page + 1, pages=found.pages)]
    for n, entry in enumerate(found.entries, start=1):
        lines.append(
            t(
                locale,
                "history.entry",
                n=n,
                when=entry.when,
                size=entry.size,
                prompt=cut(entry.prompt, 60),
                job=entry.job_id,
            )
        )
    return lines

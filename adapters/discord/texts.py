"""What the Discord adapter writes: status lines, result embeds and Discord's length limits."""

from __future__ import annotations

import re
from collections.abc import Sequence

import discord

from bot.i18n import t
from bot.types import JobResult, JobState, JobUpdate

CONTENT_MAX = 2000
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELD_MAX = 1024
EMBED_FOOTER_MAX = 2048
CHOICE_MAX = 100  # characters of an autocomplete choice's name and value
CHOICES_MAX = 25
ELLIPSIS = "…"
EMBED_COLOUR = 0x5865F2


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
    locale: str | None, update: JobUpdate, notes: Sequence[str], max_attempts: int
) -> str:
    """The status message of a queued or running job."""
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
    return cut("\n".join(lines), CONTENT_MAX)


_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{8,10}\]$")
_EXTENSION = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf)$", re.I)


def model_label(model: str) -> str:
    """A checkpoint title as people say it: no folder, extension or hash."""
    name = _HASH_SUFFIX.sub("", model.strip()).replace("\\", "/").rsplit("/", 1)[-1]
    return _EXTENSION.sub("", name)


def result_embed(locale: str | None, result: JobResult, notes: Sequence[str]) -> discord.Embed:
    """Prompt, seed, size, model and time of a finished job; notes and the job id at the foot."""
    embed = discord.Embed(
        description=cut(result.prompt, EMBED_DESCRIPTION_MAX) or None, colour=EMBED_COLOUR
    )
    seeds = ", ".join(str(image.seed) for image in result.images)
    sizes = dict.fromkeys(f"{image.width}×{image.height}" for image in result.images)
    embed.add_field(name=t(locale, "discord.embed.seed"), value=cut(seeds, EMBED_FIELD_MAX))
    embed.add_field(name=t(locale, "discord.embed.size"), value=", ".join(sizes) or "?")
    if result.model:
        embed.add_field(name=t(locale, "discord.embed.model"), value=model_label(result.model))
    embed.add_field(
        name=t(locale, "discord.embed.time"),
        value=t(locale, "eta.seconds", n=f"{result.elapsed:.1f}"),
    )
    footer = [*notes, t(locale, "discord.embed.job", job=result.job_id)]
    embed.set_footer(text=cut("\n".join(footer), EMBED_FOOTER_MAX))
    return embed


def prompt_of(message: discord.Message) -> str:
    """The prompt of one of our results (its embed's description), or ''."""
    for embed in message.embeds:
        if embed.description:
            return embed.description.removesuffix(ELLIPSIS).strip()
    return ""


def human_size(size: int) -> str:
    """'9.5 MB', '200 KB', '900 bytes'."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"

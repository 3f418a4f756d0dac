"""What the Discord adapter writes: status lines, result embeds and Discord's length limits."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.i18n import t
from bot.texts import ELLIPSIS, cut, model_label
from bot.texts import status_text as core_status_text
from bot.types import JobResult, JobUpdate

CONTENT_MAX = 2000
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELD_MAX = 1024
EMBED_FOOTER_MAX = 2048
CHOICE_MAX = 100  # characters of an autocomplete choice's name and value
CHOICES_MAX = 25
EMBED_COLOUR = 0x5865F2


def status_text(locale: str | None, update: JobUpdate, max_attempts: int) -> str:
    """The status message of a queued or running job, cut to this platform's limit."""
    return core_status_text(locale, update, max_attempts, CONTENT_MAX)


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

"""Starting a job from an interaction (/draw, /inpaint, the "Use as init image" box, buttons).

Checks that need nothing but the payload (channel rules, option ranges) answer at once and
ephemerally. Everything else comes after `defer()`, which always goes out first: downloading
pictures, deriving the mask, the quota and the queue. A refusal after that removes the public
"thinking…" message and answers ephemerally; nothing was charged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp
import discord

from adapters.discord.encode import UPLOAD_LIMIT
from adapters.discord.replier import DiscordReplier, Target
from adapters.discord.runtime import Runtime
from adapters.discord.slash import discord_names
from adapters.discord.texts import CONTENT_MAX, human_size
from bot.errors import DrawbridgeError, ImageError, OptionError
from bot.i18n import t
from bot.options import Option
from bot.texts import cut
from bot.types import GenerationRequest, Pictures

log = logging.getLogger(__name__)

ACK_DEADLINE = 2.0  # Discord wants an answer within 3 s; queueing usually takes milliseconds
T = TypeVar("T")


def render(exc: DrawbridgeError, locale: str, options: Sequence[Option]) -> str:
    """An error as the user reads it on Discord (option names as in the slash command)."""
    if isinstance(exc, OptionError):
        discord_names(exc, options)
    return cut(exc.render(locale), CONTENT_MAX)


async def ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer only the user who asked, whether or not the interaction was acknowledged."""
    text = cut(text, CONTENT_MAX)
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def refuse_after_defer(interaction: discord.Interaction, text: str) -> None:
    """Replace the public "thinking…" message with an ephemeral answer."""
    if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
    await interaction.followup.send(cut(text, CONTENT_MAX), ephemeral=True)


def in_guild(interaction: discord.Interaction) -> bool:
    """Whether the interaction comes from a server (not a DM)."""
    return interaction.guild_id is not None


def channel_refusal(rt: Runtime, interaction: discord.Interaction) -> str | None:
    """Why we do not draw where this interaction comes from, in the user's language, or None."""
    channel = interaction.channel or discord.Object(id=interaction.channel_id or 0)
    key = rt.refusal(channel, in_guild(interaction))
    return t(str(interaction.locale), key) if key else None


async def download(rt: Runtime, attachment: discord.Attachment) -> bytes:
    """A user's attachment, refused before downloading when it is too large."""
    limit = rt.settings.max_upload_bytes
    if attachment.size > limit:
        raise ImageError(
            "discord.file_too_large", size=human_size(attachment.size), limit=human_size(limit)
        )
    try:
        return await attachment.read()
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
        log.info("downloading attachment %s failed: %s", attachment.id, type(exc).__name__)
        raise ImageError("discord.download_failed") from None


def interaction_target(
    rt: Runtime, interaction: discord.Interaction, message_id: int | None
) -> Target:
    """Where a job started by this interaction reports: its response, by its token."""
    return Target(
        channel_id=interaction.channel_id or 0,
        user_id=interaction.user.id,
        locale=str(interaction.locale),
        message_id=message_id,
        token=interaction.token,
        token_at=interaction.created_at.timestamp(),
        upload_limit=min(UPLOAD_LIMIT, interaction.filesize_limit or UPLOAD_LIMIT),
        spoiler=rt.spoiler(interaction.channel, in_guild(interaction)),
    )


async def start_job(
    rt: Runtime,
    interaction: discord.Interaction,
    request: GenerationRequest,
    *,
    init: discord.Attachment | None = None,
    mask: discord.Attachment | None = None,
    control: discord.Attachment | None = None,
) -> None:
    """Submit first, talk later: the job is queued before anything is sent, and its first
    status is the interaction's response. Pictures must be downloaded first, so with pictures
    (or when queueing takes near Discord's 3 s) a "thinking…" answers first. Never waits for
    the picture."""
    service = rt.service
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale, interaction.channel)
    replier = DiscordReplier(
        rt, requester, interaction_target(rt, interaction, None), interaction=interaction
    )
    try:
        if init is not None or mask is not None or control is not None:
            await replier.acknowledge()  # downloading takes time
        pictures = Pictures(
            init=await download(rt, init) if init is not None else None,
            mask=await download(rt, mask) if mask is not None else None,
            control=await download(rt, control) if control is not None else None,
        )
        await submit(
            replier,
            service.draw(
                requester,
                request,
                replier,
                pictures=pictures,
                reply_ref=replier.ref(),
                source=f"ix:{interaction.id}",  # one job per interaction, however often delivered
            ),
        )
    except DrawbridgeError as exc:
        await refuse(interaction, render(exc, locale, service.options))


async def submit(replier: DiscordReplier, job: Coroutine[Any, Any, T]) -> T:
    """Run `job` (a draw or a press); if it is not done within ACK_DEADLINE, answer the
    interaction with "thinking…" meanwhile."""
    task = asyncio.ensure_future(job)
    done, _ = await asyncio.wait({task}, timeout=ACK_DEADLINE)
    if not done:
        await replier.acknowledge()
    return await task


async def refuse(interaction: discord.Interaction, text: str) -> None:
    """A refusal only the user sees (replacing a public "thinking…" if there is one)."""
    if interaction.response.is_done():
        await refuse_after_defer(interaction, text)
    else:
        await ephemeral(interaction, text)

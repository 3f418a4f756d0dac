"""Button presses: acknowledged at once, then run through the service.

Reroll, Variations and Upscale start a new job charged to whoever pressed, in a new message
(the job is queued first; its first status is the press's answer).
Delete (the result) and Cancel (a running job) are for the owner or an admin; anyone else gets
an ephemeral refusal and nothing happens.
"""

from __future__ import annotations

import io
import logging

import discord

from adapters.discord.draw import (
    channel_refusal,
    ephemeral,
    interaction_target,
    refuse,
    render,
    start_job,
    submit,
)
from adapters.discord.replier import DiscordReplier
from adapters.discord.runtime import Runtime
from bot.errors import DrawbridgeError, OptionError
from bot.i18n import t
from bot.texts import draw_text_of

log = logging.getLogger(__name__)


async def on_press(rt: Runtime, interaction: discord.Interaction, kind: str, key: str) -> None:
    """One press of an action button."""
    service = rt.service
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale, interaction.channel)
    if kind in ("delete", "cancel"):
        await interaction.response.defer()  # nothing visible until we know who may do this
        try:
            if kind == "cancel":
                await service.cancel(requester, key)  # a cancel button carries the job id
            else:
                await service.press(requester, key, kind=kind)
        except DrawbridgeError as exc:
            await interaction.followup.send(render(exc, locale, service.options), ephemeral=True)
            return
        if kind == "delete":
            await interaction.delete_original_response()  # the message the button is on
        return
    refusal = channel_refusal(rt, interaction)
    if refusal is not None:
        await ephemeral(interaction, refusal)
        return
    if kind == "draw_this":
        await draw_this(rt, interaction)
        return
    if kind == "control_map":
        await show_control_map(rt, interaction, key)
        return
    target = interaction_target(rt, interaction, None)
    replier = DiscordReplier(rt, requester, target, interaction=interaction)
    try:  # queued first; its first status answers the press
        pressed = service.press(
            requester,
            key,
            replier,
            kind=kind,
            reply_ref=replier.ref(),
            source=f"ix:{interaction.id}",
        )
        await submit(replier, pressed)
    except DrawbridgeError as exc:
        await refuse(interaction, render(exc, locale, service.options))


async def draw_this(rt: Runtime, interaction: discord.Interaction) -> None:
    """▶ under a /describe answer: /draw the text its last line holds, for whoever pressed."""
    locale = str(interaction.locale)
    message = interaction.message
    text = draw_text_of(message.content if message is not None else None)
    if text is None:
        await ephemeral(interaction, t(locale, "describe.gone"))
        return
    try:
        request = rt.service.parse(text)
    except OptionError as exc:
        await ephemeral(interaction, render(exc, locale, rt.service.options))
        return
    await start_job(rt, interaction, request)


async def show_control_map(rt: Runtime, interaction: discord.Interaction, key: str) -> None:
    """🦴: the preprocessor's detected map, only to whoever pressed (nothing is charged)."""
    locale = str(interaction.locale)
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        found = await rt.service.control_map(key)
    except DrawbridgeError as exc:
        await interaction.followup.send(render(exc, locale, rt.service.options), ephemeral=True)
        return
    name = f"drawbridge-{found.job_id}-control.png"
    await interaction.followup.send(file=discord.File(io.BytesIO(found.png), name), ephemeral=True)

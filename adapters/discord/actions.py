"""Button presses: acknowledged at once, then run through the service.

Reroll, Variations and Upscale start a new job charged to whoever pressed, in a new message.
Delete (the result) and Cancel (a running job) are for the owner or an admin; anyone else gets
an ephemeral refusal and nothing happens.
"""

from __future__ import annotations

import logging

import discord

from adapters.discord.draw import (
    channel_refusal,
    defer_thinking,
    ephemeral,
    interaction_target,
    refuse_after_defer,
    render,
)
from adapters.discord.replier import DiscordReplier
from adapters.discord.runtime import Runtime
from bot.errors import DrawbridgeError

log = logging.getLogger(__name__)


async def on_press(rt: Runtime, interaction: discord.Interaction, kind: str, key: str) -> None:
    """One press of an action button."""
    service = rt.service
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale)
    if kind in ("delete", "cancel"):
        await interaction.response.defer()  # nothing visible until we know who may do this
        try:
            if kind == "cancel":
                await service.cancel(requester, key)  # a cancel button carries the job id
            else:
                await service.press(requester, key)
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
    message_id = await defer_thinking(interaction)
    target = interaction_target(rt, interaction, message_id)
    replier = DiscordReplier(rt, requester, target)
    try:
        await service.press(
            requester, key, replier, reply_ref=replier.ref(), source=f"ix:{interaction.id}"
        )
    except DrawbridgeError as exc:
        await refuse_after_defer(interaction, render(exc, locale, service.options))

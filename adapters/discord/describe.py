"""/describe picture [interrogator] and the message menu "Describe": what the WebUI's
interrogator sees and the parameters the picture carries, in a public answer with ▶ Draw this
(adapters/discord/actions.py reads the /draw line back from that answer)."""

from __future__ import annotations

from typing import Any

import discord

from adapters.discord.draw import channel_refusal, download, ephemeral, refuse, render
from adapters.discord.replies import first_image
from adapters.discord.runtime import Runtime
from adapters.discord.texts import CONTENT_MAX
from adapters.discord.views import describe_view
from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.texts import cut, describe_text


async def on_describe(
    rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]
) -> None:
    """/describe: the attached picture."""
    picture = values.get("picture")
    if not isinstance(picture, discord.Attachment):
        await ephemeral(interaction, t(str(interaction.locale), "discord.describe_needs_picture"))
        return
    await _describe(rt, interaction, picture, str(values.get("interrogator") or "clip"))


async def describe_message(
    rt: Runtime, interaction: discord.Interaction, message: discord.Message
) -> None:
    """Message menu "Describe": the message's first picture."""
    picture = first_image(message)
    if picture is None:
        await ephemeral(interaction, t(str(interaction.locale), "discord.describe_needs_picture"))
        return
    await _describe(rt, interaction, picture, "clip")


async def _describe(
    rt: Runtime, interaction: discord.Interaction, picture: discord.Attachment, model: str
) -> None:
    locale = str(interaction.locale)
    refusal = channel_refusal(rt, interaction)
    if refusal is not None:
        await ephemeral(interaction, refusal)
        return
    await interaction.response.defer(thinking=True)  # the interrogator waits for the GPU
    try:
        found = await rt.service.describe(await download(rt, picture), model)
    except DrawbridgeError as exc:
        await refuse(interaction, render(exc, locale, rt.service.options))
        return
    text = cut(describe_text(locale, found), CONTENT_MAX)
    await interaction.followup.send(text, view=describe_view(locale))

"""The message context-menu command "Use as init image": a box asks what to draw (text options
such as ``--strength 0.6`` work), then img2img from the message's picture (an inpaint when the
picture has a transparent area)."""

from __future__ import annotations

import discord

from adapters.discord.draw import channel_refusal, ephemeral, render, start_job
from adapters.discord.replies import first_image
from adapters.discord.runtime import Runtime
from adapters.discord.texts import prompt_of
from bot.errors import OptionError
from bot.i18n import t

MODAL_TIMEOUT = 15 * 60.0
PROMPT_MAX = 4000  # a text input's limit


class InitImageModal(discord.ui.Modal):
    """Asks for the prompt (and options) to draw from one picture."""

    def __init__(self, rt: Runtime, locale: str, picture: discord.Attachment, prompt: str) -> None:
        super().__init__(title=t(locale, "discord.modal_title"), timeout=MODAL_TIMEOUT)
        self.rt = rt
        self.picture = picture
        limit = min(PROMPT_MAX, rt.service.limits.max_prompt_length)
        self.prompt: discord.ui.TextInput[InitImageModal] = discord.ui.TextInput(
            label=t(locale, "discord.modal_prompt"),
            style=discord.TextStyle.paragraph,
            placeholder=t(locale, "discord.modal_placeholder"),
            default=prompt[:limit] or None,
            max_length=limit,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        service = self.rt.service
        locale = str(interaction.locale)
        try:
            request = service.parse(self.prompt.value)
        except OptionError as exc:
            await ephemeral(interaction, render(exc, locale, service.options))
            return
        await start_job(self.rt, interaction, request, init=self.picture)


async def use_as_init_image(
    rt: Runtime, interaction: discord.Interaction, message: discord.Message
) -> None:
    """Context menu: open the box (the acknowledgement), or say why not."""
    locale = str(interaction.locale)
    refusal = channel_refusal(rt, interaction)
    if refusal is not None:
        await ephemeral(interaction, refusal)
        return
    picture = first_image(message)
    if picture is None:
        await ephemeral(interaction, t(locale, "discord.no_picture"))
        return
    me = rt.client.user if rt.client is not None else None
    prompt = prompt_of(message) if me is not None and message.author.id == me.id else ""
    await interaction.response.send_modal(InitImageModal(rt, locale, picture, prompt))

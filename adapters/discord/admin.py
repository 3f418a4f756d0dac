"""/admin …: a subcommand group hidden from members without Manage Server by default member
permissions (a server can change that in its integration settings), still checked against
ADMIN_IDS and admin tiers by the service; answered ephemerally. Also the ban gate every
command and button passes, and the admin notices sent to DISCORD_ADMIN_CHANNEL."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from adapters.discord.draw import ephemeral, refuse_after_defer
from adapters.discord.runtime import Runtime
from adapters.discord.slash import Param, command, loc
from adapters.discord.texts import CONTENT_MAX
from adapters.kit import Priority
from bot.i18n import t
from bot.texts import cut

log = logging.getLogger(__name__)

# subcommand → its options (name, type, required), in the order admins type them
SUBCOMMANDS: dict[str, tuple[tuple[str, Any, bool], ...]] = {
    "grant": (("user", str, True), ("amount", int, True)),
    "ban": (("user", str, True), ("days", float, False), ("reason", str, False)),
    "unban": (("user", str, True),),
    "pause": (("reason", str, False),),
    "resume": (),
    "drain": (("backend", str, True),),
    "undrain": (("backend", str, True),),
    "queue": (),
    "cancel": (("job", str, True),),
    "stats": (),
    "reload": (),
}


def admin_group(rt: Runtime, availability: dict[str, Any]) -> app_commands.Group:
    """The /admin group with one subcommand per admin action."""
    group = app_commands.Group(
        name=app_commands.locale_str("admin", key="discord.cmd.admin.name"),
        description=loc("discord.cmd.admin"),
        default_permissions=discord.Permissions(manage_guild=True),
        **availability,
    )
    for sub, options in SUBCOMMANDS.items():
        params = [
            Param(name, kind, loc(f"discord.opt.{name}.desc"), required=required)
            for name, kind, required in options
        ]
        handler = _handler(rt, sub, [name for name, _, _ in options])
        key = f"discord.cmd.admin.{sub}"
        group.add_command(command(f"{key}.name", key, params, handler))
    return group


def _handler(rt: Runtime, sub: str, order: list[str]) -> Any:
    async def run(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        locale = str(interaction.locale)
        requester = rt.requester(interaction.user, interaction.channel_id, locale)
        words = [sub]
        for name in order:
            value = values.get(name)
            if value is None:
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            words += str(value).split() if name in ("reason", "backend") else [str(value)]
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await rt.service.admin(requester, words)
        await interaction.followup.send(cut(text, CONTENT_MAX), ephemeral=True)

    return run


async def ban_gate(rt: Runtime, interaction: discord.Interaction) -> bool:
    """Whether to go on with this command or press: a banned user gets one ephemeral line
    (once per period; in between, nothing at all)."""
    if interaction.type is discord.InteractionType.autocomplete:
        return True  # it cannot be answered with a line, and runs nothing
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale)
    notice = await rt.service.ban_notice(requester)
    if not notice.banned:
        return True
    if notice.line is not None:
        text = notice.line.render(locale)
        if interaction.response.is_done():
            await refuse_after_defer(interaction, text)
        else:
            await ephemeral(interaction, text)
    return False


def send_notices(rt: Runtime) -> None:
    """Admin notices → DISCORD_ADMIN_CHANNEL, through the outbox (nothing when unset)."""
    channel_id = rt.settings.discord_admin_channel
    if not channel_id:
        return

    def notify(key: str, params: dict[str, object]) -> None:
        text = cut(t("en", key, **params), CONTENT_MAX)

        async def send() -> None:
            client = await rt.wait_ready()
            channel = client.get_channel(int(channel_id)) or await client.fetch_channel(
                int(channel_id)
            )
            await channel.send(text)  # type: ignore[union-attr]

        rt.outbox.post(int(channel_id), send, what="notice", priority=Priority.NOTICE)

    rt.service.listen_notices(notify)

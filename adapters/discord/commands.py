"""The command tree, derived from bot.commands: /draw (options from the declaration), /inpaint,
/cancel, /queue, /quota, /models, /settings, /help and the message command "Use as init image";
names, descriptions and replies in the user's language (English or Simplified Chinese).

Each declared Discord command has one handler below (`HANDLERS`); its slash options come from
the declaration's parameters (`params_of`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord
from discord import app_commands

from adapters.discord.admin import admin_group, ban_gate
from adapters.discord.describe import describe_message, on_describe
from adapters.discord.draw import (
    channel_refusal,
    ephemeral,
    refuse_after_defer,
    render,
    start_job,
)
from adapters.discord.history import on_history
from adapters.discord.init_image import use_as_init_image
from adapters.discord.runtime import Runtime
from adapters.discord.slash import (
    Autocomplete,
    Param,
    command,
    draw_params,
    loc,
    matching,
    option_param,
    prompt_param,
    request_from,
)
from adapters.discord.texts import CHOICE_MAX, CONTENT_MAX, EMBED_COLOUR, EMBED_DESCRIPTION_MAX
from bot.commands import Command, Kind, Where, commands_on
from bot.errors import DrawbridgeError, OptionError
from bot.i18n import t
from bot.options import Option
from bot.texts import catalogue_lines, cut, queue_lines, quota_text, settings_lines
from bot.types import INTERROGATORS, UserDefaults

log = logging.getLogger(__name__)

NO_NEGATIVE = "-"

Handler = Callable[[Runtime, discord.Interaction, dict[str, Any]], Awaitable[None]]


def build_tree(client: discord.Client, rt: Runtime) -> app_commands.CommandTree[Any]:
    """Every Discord command declared in bot.commands on a new CommandTree of `client`."""
    tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
    common = _availability(rt)
    for declared in commands_on(Where.DISCORD):
        if any(p.kind is Kind.ADMIN for p in declared.params):
            tree.add_command(admin_group(rt, common))
            continue
        if any(p.kind is Kind.MESSAGE for p in declared.params):
            tree.add_command(_context_menu(rt, declared, common))
            continue
        handler = functools.partial(HANDLERS[declared.name], rt)
        key = declared.catalogue_key(Where.DISCORD)
        tree.add_command(command(f"{key}.name", key, params_of(rt, declared), handler, **common))
    tree.on_error = on_error  # type: ignore[method-assign]

    async def not_banned(interaction: discord.Interaction) -> bool:
        return await ban_gate(rt, interaction)

    tree.interaction_check = not_banned  # type: ignore[method-assign]
    return tree


def _availability(rt: Runtime) -> dict[str, Any]:
    """Where the commands show: servers, and DMs unless DISCORD_ALLOW_DMS is off."""
    return {
        "allowed_contexts": app_commands.AppCommandContext(
            guild=True, dm_channel=rt.settings.discord_allow_dms, private_channel=False
        ),
        "allowed_installs": app_commands.AppInstallationType(guild=True, user=False),
    }


def params_of(rt: Runtime, declared: Command) -> list[Param]:
    """The slash options of a declared command."""
    service = rt.service
    params: list[Param] = []
    for p in declared.params:
        if p.kind is Kind.PROMPT:
            params.append(prompt_param(service.limits))
        elif p.kind is Kind.DRAW_OPTIONS:
            preset = service.presets.default
            params += draw_params(service.options, service.limits, preset, _completers(rt))
        elif p.kind is Kind.PICTURE:
            desc = loc(f"discord.opt.{p.name}.desc")
            params.append(Param(p.name, discord.Attachment, desc, required=p.required))
        elif p.kind is Kind.JOB:
            job = app_commands.Range[str, 1, 32]
            params.append(Param(p.name, job, loc(f"discord.opt.{p.name}.desc")))
        elif p.kind is Kind.DEFAULTS:
            params += _setting_params(rt)
        elif p.kind is Kind.AMOUNT:
            page = app_commands.Range[int, 1, 10_000]
            params.append(Param(p.name, page, loc(f"discord.opt.{p.name}.desc")))
        elif p.kind is Kind.INTERROGATOR:
            choices = tuple(app_commands.Choice(name=n, value=n) for n in INTERROGATORS)
            desc = loc(f"discord.opt.{p.name}.desc")
            params.append(Param(p.name, str, desc, choices=choices))
        else:
            raise ValueError(f"no Discord form for {p.kind} ({declared.name})")
    return params


def _setting_params(rt: Runtime) -> list[Param]:
    service = rt.service
    preset = service.presets.default
    params = [
        option_param(opt, service.limits, preset, _completers(rt))
        for opt in service.settings_options
    ]
    params.append(Param("reset", bool, loc("discord.opt.reset.desc")))
    return params


def _completers(rt: Runtime) -> dict[str, Autocomplete]:
    async def samplers(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return sampler_choices(rt, current)

    async def checkpoints(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return model_choices(rt, current)

    def offered(kind: str, *, favourites: bool = False, several: bool = False) -> Autocomplete:
        """Names of `kind` the backends offer (the user's favourites first), one or several
        separated by commas."""
        choose = list_choices if several else name_choices

        async def complete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            names = rt.service.offered(kind)
            if favourites:
                names = [*await _favourites(rt, interaction, kind), *names]
            return choose(names, current)

        return complete

    return {
        "sampler": samplers,
        "model": checkpoints,
        "hr_upscaler": offered("upscaler"),
        "style": offered("style", favourites=True),
        "loras": offered("lora", favourites=True, several=True),  # /draw's lora, /settings'
        "styles": offered("style", favourites=True, several=True),  # /settings' styles
        "control": offered("control"),
    }


async def _favourites(rt: Runtime, interaction: discord.Interaction, kind: str) -> list[str]:
    """The user's favourite LoRA or style names, listed first when completing (none when the
    database does not answer: completing goes on without them)."""
    requester = rt.requester(interaction.user, interaction.channel_id, str(interaction.locale))
    try:
        saved = await rt.service.defaults(requester)
    except DrawbridgeError:
        return []
    return [name for name, _ in saved.loras] if kind == "lora" else list(saved.styles)


def _context_menu(
    rt: Runtime, declared: Command, common: dict[str, Any]
) -> app_commands.ContextMenu:
    async def init_image(interaction: discord.Interaction, message: discord.Message) -> None:
        await use_as_init_image(rt, interaction, message)

    async def describe(interaction: discord.Interaction, message: discord.Message) -> None:
        await describe_message(rt, interaction, message)

    menus = {"use_as_init": init_image, "describe_message": describe}
    key = f"{declared.catalogue_key(Where.DISCORD)}.name"
    return app_commands.ContextMenu(
        name=app_commands.locale_str(t("en", key), key=key),
        callback=menus[declared.name],
        **common,
    )


async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """A command handler failed: log it, tell the user we are sorry (privately)."""
    if isinstance(error, app_commands.CheckFailure):
        return  # the ban gate said what there was to say
    original = getattr(error, "original", error)
    name = interaction.command.name if interaction.command else "?"
    log.error("discord command %s failed: %s: %s", name, type(original).__name__, original)
    text = t(str(interaction.locale), "error.internal")
    try:
        if interaction.response.is_done():
            await refuse_after_defer(interaction, text)
        else:
            await ephemeral(interaction, text)
    except discord.HTTPException:
        pass


# --- drawing ------------------------------------------------------------------------------------


async def on_draw(rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]) -> None:
    """/draw: checks that need nothing but the payload first, then the job."""
    locale = str(interaction.locale)
    refusal = channel_refusal(rt, interaction)
    if refusal is not None:
        await ephemeral(interaction, refusal)
        return
    try:
        request = request_from(values, rt.service)
    except OptionError as exc:
        await ephemeral(interaction, render(exc, locale, rt.service.options))
        return
    await start_job(
        rt,
        interaction,
        request,
        init=values.get("init_image"),
        mask=values.get("mask"),
        control=values.get("control_image"),
    )


async def on_inpaint(rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]) -> None:
    """/inpaint image mask prompt: /draw with both pictures."""
    await on_draw(rt, interaction, {**values, "init_image": values.get("image")})


# --- jobs and credits -----------------------------------------------------------------------------


async def on_cancel(rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]) -> None:
    """/cancel [job]: the newest job, or the one named."""
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale)
    await interaction.response.defer(ephemeral=True, thinking=True)
    job_id = (values.get("job") or "").strip() or None
    try:
        cancelled = await rt.service.cancel(requester, job_id)
    except DrawbridgeError as exc:
        await interaction.followup.send(render(exc, locale, rt.service.options))
        return
    text = t(locale, "discord.cancelled_reply", job=cancelled.job_id, credits=cancelled.refunded)
    await interaction.followup.send(text)


async def on_queue(rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]) -> None:
    """Queue summary and the user's own jobs with position and estimated start."""
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale)
    lines = queue_lines(rt.service.queue(requester), locale)
    await ephemeral(interaction, cut("\n".join(lines), CONTENT_MAX))


async def on_quota(rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]) -> None:
    """The user's credits."""
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale)
    await interaction.response.defer(ephemeral=True, thinking=True)
    view = await rt.service.quota(requester.key, requester)
    await interaction.followup.send(quota_text(locale, view, requester.display_name))


async def on_models(rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]) -> None:
    """Checkpoints, samplers and LoRAs the backends offer."""
    locale = str(interaction.locale)
    await interaction.response.defer(ephemeral=True, thinking=True)
    lines = catalogue_lines(
        locale,
        await rt.service.catalogue(),
        "discord.models_checkpoints",
        "discord.models_samplers",
    )
    if not lines:
        await interaction.followup.send(t(locale, "models.none"))
        return
    embed = discord.Embed(
        description=cut("\n".join(lines), EMBED_DESCRIPTION_MAX), colour=EMBED_COLOUR
    )
    await interaction.followup.send(embed=embed)


# --- settings and help ----------------------------------------------------------------------------


async def on_settings(
    rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]
) -> None:
    """/settings: show the user's defaults, or change the ones given."""
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale)
    wanted = setting_changes(values, rt.service.settings_options)
    try:
        rt.service.check_defaults(wanted)  # before the acknowledgement: needs no database
    except OptionError as exc:
        await ephemeral(interaction, render(exc, locale, rt.service.settings_options))
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        if wanted:
            saved = await rt.service.change_defaults(requester, wanted)
        else:
            saved = await rt.service.defaults(requester)
    except DrawbridgeError as exc:  # a favourite no backend has, the database away
        await interaction.followup.send(render(exc, locale, rt.service.settings_options))
        return
    text = settings_text(rt, locale, saved)
    if wanted:
        text = f"{t(locale, 'settings.saved')}\n{text}"
    await interaction.followup.send(cut(text, CONTENT_MAX))


def setting_changes(values: dict[str, Any], options: Sequence[Option]) -> dict[str, Any]:
    """The /settings options given, as the service takes them by field (`-` is "no negative
    prompt")."""
    if values.get("reset"):
        return {"reset": True}
    wanted: dict[str, Any] = {}
    for opt in options:
        value = values.get(opt.name)
        if value is None:
            continue
        if opt.field == "negative":
            text = str(value).strip()
            value = "" if text == NO_NEGATIVE else text
        wanted[opt.field] = value
    return wanted


def settings_text(rt: Runtime, locale: str, values: UserDefaults) -> str:
    """A user's /draw defaults; unset ones show the preset's value."""
    lines = [*settings_lines(locale, rt.service.presets, values.as_dict()), ""]
    lines.append(t(locale, "discord.settings_usage"))
    return "\n".join(lines)


async def on_help(rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]) -> None:
    """Every option and what the bot does."""
    locale = str(interaction.locale)
    lines = [
        t(locale, "discord.help_commands"),
        t(locale, "discord.help_images"),
        "",
        t(locale, "discord.help_text_options"),
        *rt.service.help_lines(locale)[1:],
    ]
    embed = discord.Embed(
        description=cut("\n".join(lines), EMBED_DESCRIPTION_MAX), colour=EMBED_COLOUR
    )
    await interaction.response.send_message(embed=embed, ephemeral=True)


# one handler per slash command declared for Discord in bot.commands
HANDLERS: dict[str, Handler] = {
    "draw": on_draw,
    "inpaint": on_inpaint,
    "cancel": on_cancel,
    "queue": on_queue,
    "quota": on_quota,
    "models": on_models,
    "settings": on_settings,
    "help": on_help,
    "describe": on_describe,
    "history": on_history,
}


# --- autocomplete ------------------------------------------------------------------------------


def sampler_choices(rt: Runtime, current: str) -> list[app_commands.Choice[str]]:
    """Samplers of every backend matching what the user typed."""
    return matching([(name, name) for name in rt.service.samplers()], current)


def name_choices(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    """Names (upscalers, styles) matching what the user typed: at most 25 of any number."""
    return matching([(name, name) for name in names], current)


def list_choices(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    """Names (LoRAs, styles) matching the last of the comma-separated ones typed so far, the
    earlier ones kept in front (one option holds several: "detail:0.7, grain")."""
    done, _, typing = current.rpartition(",")
    head = f"{done.strip()}, " if done.strip() else ""
    word = typing.strip().split(":", 1)[0]
    return matching([(f"{head}{name}", f"{head}{name}") for name in names], head + word)


def model_choices(rt: Runtime, current: str) -> list[app_commands.Choice[str]]:
    """Checkpoints of every backend matching what the user typed (label shown, title sent)."""
    items: dict[str, str] = {}
    for checkpoint in rt.service.checkpoints():
        title = checkpoint.title
        value = title if len(title) <= CHOICE_MAX else checkpoint.name
        if value:
            items.setdefault(value, checkpoint.label)
    return matching([(label, value) for value, label in items.items()], current)

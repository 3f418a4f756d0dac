"""The command tree: /draw (options from the declaration), /inpaint, /cancel, /queue, /quota,
/models, /settings, /help and the message command "Use as init image"; names, descriptions and
replies in the user's language (English or Simplified Chinese)."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from adapters.discord.draw import (
    channel_refusal,
    ephemeral,
    refuse_after_defer,
    render,
    start_job,
)
from adapters.discord.init_image import use_as_init_image
from adapters.discord.runtime import Runtime
from adapters.discord.slash import (
    STRING_MAX,
    Autocomplete,
    Param,
    command,
    discord_names,
    draw_params,
    loc,
    matching,
    option_param,
    request_from,
)
from adapters.discord.texts import CONTENT_MAX, EMBED_COLOUR, EMBED_DESCRIPTION_MAX
from bot.errors import DrawbridgeError, OptionError
from bot.i18n import t
from bot.options import Option, help_lines, resolve_size
from bot.texts import cut, model_label, queue_lines, settings_lines
from bot.types import GenerationRequest

log = logging.getLogger(__name__)

SETTING_OPTIONS = ("preset", "size", "steps", "negative")
NO_NEGATIVE = "-"


def build_tree(client: discord.Client, rt: Runtime) -> app_commands.CommandTree[Any]:
    """Every command of drawbridge on a new CommandTree of `client`."""
    engine, settings = rt.engine, rt.settings
    tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
    common: dict[str, Any] = {
        "allowed_contexts": app_commands.AppCommandContext(
            guild=True, dm_channel=settings.discord_allow_dms, private_channel=False
        ),
        "allowed_installs": app_commands.AppInstallationType(guild=True, user=False),
    }

    async def samplers(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return sampler_choices(rt, current)

    async def checkpoints(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return model_choices(rt, current)

    completers: dict[str, Autocomplete] = {"sampler": samplers, "model": checkpoints}
    preset = engine.presets.default
    by_field = {opt.field: opt for opt in engine.options}

    # --- drawing ----------------------------------------------------------------------------
    async def draw(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        locale = str(interaction.locale)
        refusal = channel_refusal(rt, interaction)
        if refusal is not None:
            await ephemeral(interaction, refusal)
            return
        try:
            request = request_from(values, engine.options, engine.limits)
        except OptionError as exc:
            await ephemeral(interaction, render(exc, locale, engine.options))
            return
        await start_job(
            rt, interaction, request, init=values.get("init_image"), mask=values.get("mask")
        )

    tree.add_command(
        command(
            "discord.cmd.draw.name",
            "discord.cmd.draw",
            draw_params(engine.options, engine.limits, preset, completers),
            draw,
            **common,
        )
    )
    prompt_type = app_commands.Range[str, 1, min(STRING_MAX, engine.limits.max_prompt_length)]
    inpaint_params = [
        Param("image", discord.Attachment, loc("discord.opt.image.desc"), required=True),
        Param("mask", discord.Attachment, loc("discord.opt.mask.desc"), required=True),
        Param("prompt", prompt_type, loc("discord.opt.prompt.desc"), required=True),
    ]

    async def inpaint(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        await draw(interaction, {**values, "init_image": values.get("image")})

    tree.add_command(
        command(
            "discord.cmd.inpaint.name", "discord.cmd.inpaint", inpaint_params, inpaint, **common
        )
    )

    # --- jobs and credits -------------------------------------------------------------------
    async def cancel(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        locale = str(interaction.locale)
        requester = rt.requester(interaction.user, interaction.channel_id, locale)
        await interaction.response.defer(ephemeral=True, thinking=True)
        job_id = (values.get("job") or "").strip() or None
        if job_id is None:
            mine = engine.user_jobs(requester.key)
            job_id = mine[-1].id if mine else None
        try:
            refunded = await engine.cancel(requester, job_id)
        except DrawbridgeError as exc:
            await interaction.followup.send(render(exc, locale, engine.options))
            return
        text = t(locale, "discord.cancelled_reply", job=job_id, credits=refunded)
        await interaction.followup.send(text)

    job_param = Param("job", app_commands.Range[str, 1, 32], loc("discord.opt.job.desc"))
    tree.add_command(
        command("discord.cmd.cancel.name", "discord.cmd.cancel", [job_param], cancel, **common)
    )

    async def queue(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        locale = str(interaction.locale)
        requester = rt.requester(interaction.user, interaction.channel_id, locale)
        await ephemeral(interaction, queue_text(rt, requester.key, locale))

    tree.add_command(command("discord.cmd.queue.name", "discord.cmd.queue", [], queue, **common))

    async def quota(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        locale = str(interaction.locale)
        requester = rt.requester(interaction.user, interaction.channel_id, locale)
        await interaction.response.defer(ephemeral=True, thinking=True)
        view = await engine.quotas.show(requester.key)
        text = t(
            locale,
            "quota.show",
            user=requester.display_name,
            balance=view.available,
            allowance=view.allowance,
            bonus=view.bonus,
            reserved=view.reserved,
            reset=engine.quotas.reset_label(),
        )
        await interaction.followup.send(text)

    tree.add_command(command("discord.cmd.quota.name", "discord.cmd.quota", [], quota, **common))

    async def models(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        locale = str(interaction.locale)
        await interaction.response.defer(ephemeral=True, thinking=True)
        lines = await model_lines(rt, locale)
        if not lines:
            await interaction.followup.send(t(locale, "models.none"))
            return
        embed = discord.Embed(
            description=cut("\n".join(lines), EMBED_DESCRIPTION_MAX), colour=EMBED_COLOUR
        )
        await interaction.followup.send(embed=embed)

    tree.add_command(command("discord.cmd.models.name", "discord.cmd.models", [], models, **common))

    # --- settings and help ------------------------------------------------------------------
    setting_params = [
        option_param(by_field[name], engine.limits, preset, completers)
        for name in SETTING_OPTIONS
        if name in by_field
    ]
    setting_params.append(Param("reset", bool, loc("discord.opt.reset.desc")))

    async def user_settings(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        locale = str(interaction.locale)
        requester = rt.requester(interaction.user, interaction.channel_id, locale)
        try:
            changes = setting_changes(values, engine.options, engine.limits)
        except OptionError as exc:
            await ephemeral(interaction, render(exc, locale, engine.options))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        users = engine.db.users
        if changes:
            await users.save_settings(requester.key, **changes)
        row = await users.get_settings(requester.key)
        text = settings_text(rt, locale, row)
        if changes:
            text = f"{t(locale, 'settings.saved')}\n{text}"
        await interaction.followup.send(cut(text, CONTENT_MAX))

    tree.add_command(
        command(
            "discord.cmd.settings.name",
            "discord.cmd.settings",
            setting_params,
            user_settings,
            **common,
        )
    )

    async def help_command(interaction: discord.Interaction, values: dict[str, Any]) -> None:
        locale = str(interaction.locale)
        lines = [
            t(locale, "discord.help_commands"),
            t(locale, "discord.help_images"),
            "",
            t(locale, "discord.help_text_options"),
            *help_lines(engine.options, engine.presets, locale)[1:],
        ]
        embed = discord.Embed(
            description=cut("\n".join(lines), EMBED_DESCRIPTION_MAX), colour=EMBED_COLOUR
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    tree.add_command(
        command("discord.cmd.help.name", "discord.cmd.help", [], help_command, **common)
    )

    # --- the message command ----------------------------------------------------------------
    async def init_image(interaction: discord.Interaction, message: discord.Message) -> None:
        await use_as_init_image(rt, interaction, message)

    menu_key = "discord.cmd.use_as_init.name"
    tree.add_command(
        app_commands.ContextMenu(
            name=app_commands.locale_str(t("en", menu_key), key=menu_key),
            callback=init_image,
            **common,
        )
    )

    async def on_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
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

    tree.on_error = on_error  # type: ignore[method-assign]
    return tree


# --- autocomplete ------------------------------------------------------------------------------


def sampler_choices(rt: Runtime, current: str) -> list[app_commands.Choice[str]]:
    """Samplers of every backend matching what the user typed."""
    names: dict[str, None] = {}
    for backend in rt.engine.dispatcher.backends:
        names.update(dict.fromkeys(backend.samplers))
    return matching([(name, name) for name in names], current)


def model_choices(rt: Runtime, current: str) -> list[app_commands.Choice[str]]:
    """Checkpoints of every backend matching what the user typed (label shown, title sent)."""
    items: dict[str, str] = {}
    for backend in rt.engine.dispatcher.backends:
        for model in backend.models:
            title = str(model.get("title") or model.get("model_name") or "")
            value = title if len(title) <= 100 else str(model.get("model_name") or "")
            if value:
                items.setdefault(value, model_label(title))
    return matching([(label, value) for value, label in items.items()], current)


# --- texts of the simple commands ----------------------------------------------------------------


def queue_text(rt: Runtime, user_key: str, locale: str) -> str:
    """Queue summary and the user's own jobs with position and estimated start."""
    return cut("\n".join(queue_lines(rt.engine, user_key, locale)), CONTENT_MAX)


async def model_lines(rt: Runtime, locale: str) -> list[str]:
    """Checkpoints, samplers and LoRAs the backends offer."""
    found = await rt.engine.catalogue()
    if not found.checkpoints and not found.samplers:
        return []
    lines = [t(locale, "discord.models_checkpoints"), *(f"• {n}" for n in found.checkpoints)]
    lines += [t(locale, "discord.models_samplers"), *(f"• {n}" for n in found.samplers)]
    if found.loras:
        lines += [t(locale, "models.loras"), *(f"• {n}" for n in found.loras)]
    return lines


def setting_changes(values: dict[str, Any], options: list[Option], limits: Any) -> dict[str, Any]:
    """The /settings values to save, checked by the same declaration /draw uses."""
    if values.get("reset"):
        return {"preset": None, "width": None, "height": None, "steps": None, "negative": None}
    by_name = {opt.name: opt for opt in options}
    changes: dict[str, Any] = {}
    try:
        for name, value in values.items():
            opt = by_name.get(name)
            if opt is None or value is None:
                continue
            if opt.field == "size":
                width, height = opt.coerce(str(value))
                request = GenerationRequest("", width=width, height=height)
                changes["width"], changes["height"] = resolve_size(request, (width, height), limits)
            elif opt.field == "negative":
                text = str(value).strip()
                changes["negative"] = "" if text == NO_NEGATIVE else text
            else:
                changes[opt.field] = opt.check(value)
    except OptionError as exc:
        raise discord_names(exc, options) from None
    return changes


def settings_text(rt: Runtime, locale: str, row: Any) -> str:
    """A user's /draw defaults; unset ones show the preset's value."""
    values = {
        f: getattr(row, f, None) if row is not None else None
        for f in ("preset", "width", "height", "steps", "negative")
    }
    lines = [*settings_lines(locale, rt.engine.presets, values), ""]
    lines.append(t(locale, "discord.settings_usage"))
    return "\n".join(lines)

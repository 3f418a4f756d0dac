"""/history [page] and /history job:JOB, answered ephemerally: a page of the user's pictures,
newest first, or one job's pictures with their stored buttons (they work after a restart) and
its full parameters."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import discord

from adapters.discord.draw import render
from adapters.discord.encode import fit_all
from adapters.discord.runtime import Runtime
from adapters.discord.texts import CONTENT_MAX
from adapters.discord.views import result_view
from bot.errors import DrawbridgeError
from bot.texts import cut, history_lines


async def on_history(rt: Runtime, interaction: discord.Interaction, values: dict[str, Any]) -> None:
    """One page, or one job when `job` is given."""
    locale = str(interaction.locale)
    requester = rt.requester(interaction.user, interaction.channel_id, locale)
    await interaction.response.defer(ephemeral=True, thinking=True)
    job_id = str(values.get("job") or "").strip()
    try:
        if not job_id:
            page = max(1, int(values.get("page") or 1)) - 1
            found = await rt.service.history(requester, page)
            text = cut("\n".join(history_lines(locale, found)), CONTENT_MAX)
            await interaction.followup.send(text, ephemeral=True)
            return
        job = await rt.service.history_job(requester, job_id)
    except DrawbridgeError as exc:
        await interaction.followup.send(render(exc, locale, rt.service.options), ephemeral=True)
        return
    result = job.result
    limit = interaction.filesize_limit or 8 * 1024 * 1024
    encoded = await asyncio.to_thread(fit_all, [image.png for image in result.images], limit)
    files = [
        discord.File(io.BytesIO(item.data), f"drawbridge-{result.job_id}-{i + 1}.{item.extension}")
        for i, item in enumerate(encoded)
    ]
    text = cut(f"`{result.job_id}`\n{job.infotext}", CONTENT_MAX)
    await interaction.followup.send(
        text, files=files, view=result_view(locale, result), ephemeral=True
    )

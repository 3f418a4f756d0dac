"""Buttons under results and status messages, persistent across restarts.

A button's custom_id is ``db:<code>:<key>``: the code says what kind of press it is (so the
right acknowledgement goes out before any database work), the key is one the result carries
(the core stored it with the job and picture), or the job id for Cancel. `ActionButton` is a DynamicItem: any such
custom_id on any message, old or new, reaches it; it hands the press to the client's
``on_action_press`` event.
"""

from __future__ import annotations

from typing import Any

import discord

from adapters.kit.buttons import BUTTON_CODES
from bot.i18n import t
from bot.types import JobResult, Mode

KIND_CODES = BUTTON_CODES | {
    "delete": "d",
    "draw_this": "p",
}  # draw_this: under a /describe answer (its key is a
# constant, the text is read back)
CODE_KINDS = {code: kind for kind, code in KIND_CODES.items()}
EMOJI = {"reroll": "🔁", "variations": "🎨", "upscale": "⬆️", "delete": "🗑️", "cancel": "✖️"}
EMOJI |= {
    "zoom15": "🔍",
    "zoom2": "🔍",
    "pan_left": "⬅️",
    "pan_right": "➡️",
    "pan_up": "⬆️",
    "pan_down": "⬇️",
    "square": "⬛",
    "faces": "🙂",
    "draw_this": "▶️",
    "control_map": "🦴",
}
# under a single picture, after its first row: zoom out and make square, pan, fix faces
SINGLE_ROWS = (
    ("zoom15", "zoom2", "square", "faces"),
    ("pan_left", "pan_right", "pan_up", "pan_down"),
)
ROW_MAX = 5


def custom_id(kind: str, key: str) -> str:
    """The custom_id of an action button."""
    return f"db:{KIND_CODES[kind]}:{key}"


class ActionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"db:(?P<code>[rvudxzwlgkjqfpc]):(?P<key>[A-Za-z0-9_-]{1,40})",
):
    """Reroll, Variations, Upscale, Delete or Cancel, found again from its custom_id."""

    def __init__(
        self,
        kind: str,
        key: str,
        *,
        label: str | None = None,
        row: int | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=EMOJI.get(kind),
                style=style,
                custom_id=custom_id(kind, key),
                row=row,
            )
        )
        self.kind = kind
        self.key = key

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: Any,
        /,
    ) -> ActionButton:
        return cls(CODE_KINDS[match["code"]], match["key"])

    async def callback(self, interaction: discord.Interaction) -> None:
        interaction.client.dispatch("action_press", interaction, self.kind, self.key)


def describe_view(locale: str | None) -> discord.ui.View:
    """▶ Draw this, under a /describe answer."""
    view = discord.ui.View(timeout=None)
    view.add_item(ActionButton("draw_this", "d", label=t(locale, "discord.btn.draw_this")))
    return view


def cancel_view(locale: str | None, job_id: str) -> discord.ui.View:
    """✖ Cancel under a queued or running job's status."""
    view = discord.ui.View(timeout=None)
    view.add_item(ActionButton("cancel", job_id, label=t(locale, "discord.btn.cancel")))
    return view


def result_view(locale: str | None, result: JobResult) -> discord.ui.View:
    """Buttons under a result: one picture gets Reroll, Variations, Upscale, Delete; a batch
    gets Reroll and Delete, then Variations and Upscale numbered per picture (an upscale gets
    Delete only)."""
    view = discord.ui.View(timeout=None)
    count = len(result.images)
    upscaled = result.mode is Mode.UPSCALE

    def button(kind: str, key: str, row: int, label: str) -> None:
        style = discord.ButtonStyle.danger if kind == "delete" else discord.ButtonStyle.secondary
        view.add_item(ActionButton(kind, key, label=label, row=row, style=style))

    def image_key(index: int, kind: str) -> str:
        return result.images[index].keys[kind]

    if not upscaled:
        button("reroll", result.keys["reroll"], 0, t(locale, "discord.btn.reroll"))
        if count == 1:
            button("variations", image_key(0, "variations"), 0, t(locale, "discord.btn.variations"))
            button("upscale", image_key(0, "upscale"), 0, t(locale, "discord.btn.upscale"))
    button("delete", result.keys["delete"], 0, t(locale, "discord.btn.delete"))
    if "control_map" in result.keys:
        button("control_map", result.keys["control_map"], 0, t(locale, "discord.btn.control_map"))
    if upscaled:
        return view
    if count == 1:
        keys = result.images[0].keys
        for row, group in enumerate(SINGLE_ROWS, start=1):
            for kind in group:
                if kind in keys:
                    button(kind, keys[kind], row, t(locale, f"discord.btn.{kind}"))
        return view
    row = 1
    for kind in ("variations", "upscale"):
        for start in range(0, count, ROW_MAX):
            if row >= ROW_MAX:
                return view  # Discord allows five rows; more pictures than fit keep Reroll only
            for index in range(start, min(start + ROW_MAX, count)):
                button(kind, image_key(index, kind), row, f"#{index + 1}")
            row += 1
    return view

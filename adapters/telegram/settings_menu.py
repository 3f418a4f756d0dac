"""/settings: a user's defaults (preset, size, steps, negative, favourite LoRAs and styles)
with an inline keyboard.

Buttons carry ``s:<owner>:<field>:<value>`` so only the user the menu belongs to can change it;
free values are typed: ``/settings size 640x832``, ``steps 30``, ``negative TEXT``, ``preset
NAME``, ``lora NAME:W, NAME``, ``style NAME``, ``reset``, or as /draw's flags: ``/settings
--lora add_detail:0.6 --style cinematic`` (the service parses those from the one declaration).
Values are checked by the same option declaration /draw uses.
"""

from __future__ import annotations

import contextlib
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from adapters.kit import Priority
from adapters.telegram.runtime import Runtime, answer_query, asked, pressed
from adapters.telegram.texts import TEXT_MAX, cut, split_command
from bot.errors import DrawbridgeError, OptionError
from bot.i18n import t
from bot.texts import settings_lines
from bot.types import Requester, UserDefaults

SIZES = ((512, 512), (512, 768), (768, 512), (768, 768), (1024, 1024))
STEPS = (20, 28, 35, 50)
CLEAR = "-"
ROW = 3  # buttons in a keyboard row


def render(rt: Runtime, requester: Requester, values: UserDefaults) -> str:
    """The settings as text."""
    locale = requester.locale
    lines = [*settings_lines(locale, rt.service.presets, values.as_dict()), ""]
    lines.append(t(locale, "telegram.settings_usage"))
    return cut("\n".join(lines), TEXT_MAX)


def keyboard(rt: Runtime, requester: Requester, values: UserDefaults) -> InlineKeyboardMarkup:
    """Buttons for the common choices; ✓ marks the current one."""
    locale = requester.locale
    owner = requester.user_id
    limits = rt.service.limits

    def button(label: str, field: str, value: str, chosen: bool) -> InlineKeyboardButton:
        text = f"✓ {label}" if chosen else label
        return InlineKeyboardButton(text, callback_data=f"s:{owner}:{field}:{value}")

    rows: list[list[InlineKeyboardButton]] = []
    names = rt.service.presets.names
    if names:
        default = t(locale, "telegram.btn.preset_default")
        presets = [button(default, "p", "0", values.preset is None)]
        presets += [button(n, "p", str(i + 1), values.preset == n) for i, n in enumerate(names)]
        # rows of three: a long row is unreadable (and Telegram clients cap a row at 8)
        rows += [presets[i : i + ROW] for i in range(0, len(presets), ROW)]
    sizes = [s for s in SIZES if s[0] * s[1] <= limits.max_pixels]
    size_now = (values.width, values.height)
    size_buttons = [button(f"{w}×{h}", "z", f"{w}x{h}", size_now == (w, h)) for w, h in sizes]
    size_buttons.append(
        button(t(locale, "telegram.btn.from_preset"), "z", CLEAR, values.width is None)
    )
    rows += [size_buttons[i : i + ROW] for i in range(0, len(size_buttons), ROW)]
    steps = [s for s in STEPS if s <= limits.max_steps]
    rows.append(
        [button(str(s), "t", str(s), values.steps == s) for s in steps]
        + [button(t(locale, "telegram.btn.from_preset"), "t", CLEAR, values.steps is None)]
    )
    rows.append(
        [
            button(t(locale, "telegram.btn.from_preset"), "n", CLEAR, values.negative is None),
            button(t(locale, "telegram.btn.no_negative"), "n", "0", values.negative == ""),
        ]
    )
    rows.append([button(t(locale, "telegram.btn.reset"), "r", CLEAR, False)])
    return InlineKeyboardMarkup(rows)


def typed_change(field: str, raw: str) -> dict[str, Any]:
    """A typed change (`size 640x832`) for the service; an empty value goes back to the preset's
    (``preset default`` too; the service checks the values)."""
    raw = raw.strip()
    if field == "reset":
        return {"reset": True}
    return {field: raw or None}


def flags(word: str) -> bool:
    """Whether /settings is written as /draw's flags (`--lora`; phones make `--` a dash)."""
    return word.startswith(("--", "—", "–", "−"))


def button_change(rt: Runtime, field: str, value: str) -> dict[str, Any]:
    """What a settings button sets."""
    if field == "r":
        return {"reset": True}
    if field == "p":
        names = rt.service.presets.names
        index = int(value)
        if not 0 <= index <= len(names):  # a forged or stale press: nothing is saved
            raise ValueError(value)
        return {"preset": names[index - 1] if index else None}
    if field == "z":
        if value == CLEAR:
            return {"size": None}
        return {"size": value}  # checked by the same code as a typed `/settings size`
    if field == "t":
        return {"steps": None if value == CLEAR else value}
    if field == "n":
        return {"negative": None if value == CLEAR else ""}
    return {}


_FIELDS = {
    "neg": "negative",
    "negative": "negative",
    "size": "size",
    "steps": "steps",
    "preset": "preset",
    "reset": "reset",
    "lora": "loras",
    "loras": "loras",
    "style": "styles",
    "styles": "styles",
}


async def on_settings(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/settings, or /settings FIELD VALUE."""
    if (found := await asked(update, context)) is None or found[1].text is None:
        return
    rt, message, requester = found
    locale = requester.locale
    _, rest = split_command(found[1].text, rt.username)
    prefix = ""
    if rest:
        word, _, raw = rest.partition(" ")
        field = _FIELDS.get(word.lower(), "")
        try:
            if flags(word):
                change = rt.service.parse_defaults(rest)
            elif field:
                change = typed_change(field, raw)
            else:
                raise OptionError("telegram.settings_unknown")
            values = await rt.service.change_defaults(requester, change)
        except DrawbridgeError as exc:
            rt.answer(message, exc.render(locale), priority=Priority.REFUSAL)
            return
        prefix = t(locale, "settings.saved") + "\n"
    else:
        values = await rt.service.defaults(requester)
    rt.answer(
        message, prefix + render(rt, requester, values), markup=keyboard(rt, requester, values)
    )


async def on_settings_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A /settings button: only the menu's owner may use it."""
    got = await pressed(update, context)
    if got is None:
        return
    rt, query, requester, data = got
    parts = data.split(":", 3)
    if len(parts) != 4 or parts[1] != requester.user_id:
        await answer_query(query, t(requester.locale, "telegram.settings_not_yours"))
        return
    try:
        change = button_change(rt, parts[2], parts[3])
        values = await rt.service.change_defaults(requester, change)
    except (ValueError, DrawbridgeError) as exc:
        # a value no button of ours carries: refused privately, like an expired button
        error = exc if isinstance(exc, DrawbridgeError) else DrawbridgeError("action.expired")
        await answer_query(query, error.render(requester.locale))
        return
    with contextlib.suppress(BadRequest):  # "query is too old": the change is saved anyway
        await query.answer(t(requester.locale, "settings.saved"))
    message = query.message
    if message is not None:
        text = render(rt, requester, values)
        rt.edit(message.chat.id, message.message_id, text, keyboard(rt, requester, values))

"""/settings: a user's defaults (preset, size, steps, negative) with an inline keyboard.

Buttons carry ``s:<owner>:<field>:<value>`` so only the user the menu belongs to can change it;
free values are typed: ``/settings size 640x832``, ``steps 30``, ``negative TEXT``, ``preset
NAME``, ``reset``. Values are checked by the same option declaration /draw uses.
"""

from __future__ import annotations

import contextlib
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from adapters.telegram.runtime import Runtime
from adapters.telegram.texts import TEXT_MAX, split_command
from bot.errors import DrawbridgeError, OptionError
from bot.i18n import t
from bot.options import Option, resolve_size
from bot.texts import cut, settings_lines
from bot.types import GenerationRequest, Requester

SIZES = ((512, 512), (512, 768), (768, 512), (768, 768), (1024, 1024))
STEPS = (20, 28, 35, 50)
FIELDS = ("preset", "width", "height", "steps", "negative")
CLEAR = "-"


def _rt(context: ContextTypes.DEFAULT_TYPE) -> Runtime:
    runtime: Runtime = context.bot_data["runtime"]
    return runtime


async def current(rt: Runtime, key: str) -> dict[str, Any]:
    """The user's saved values (None = the preset's)."""
    row = await rt.engine.db.users.get_settings(key)
    return {f: getattr(row, f, None) if row is not None else None for f in FIELDS}


def render(rt: Runtime, requester: Requester, values: dict[str, Any]) -> str:
    """The settings as text."""
    locale = requester.locale
    lines = [*settings_lines(locale, rt.engine.presets, values), ""]
    lines.append(t(locale, "telegram.settings_usage"))
    return cut("\n".join(lines), TEXT_MAX)


def keyboard(rt: Runtime, requester: Requester, values: dict[str, Any]) -> InlineKeyboardMarkup:
    """Buttons for the common choices; ✓ marks the current one."""
    locale = requester.locale
    owner = requester.user_id
    limits = rt.engine.limits

    def button(label: str, field: str, value: str, chosen: bool) -> InlineKeyboardButton:
        text = f"✓ {label}" if chosen else label
        return InlineKeyboardButton(text, callback_data=f"s:{owner}:{field}:{value}")

    rows: list[list[InlineKeyboardButton]] = []
    names = rt.engine.presets.names
    if names:
        default = t(locale, "telegram.btn.preset_default")
        rows.append(
            [button(default, "p", "0", values["preset"] is None)]
            + [button(n, "p", str(i + 1), values["preset"] == n) for i, n in enumerate(names)]
        )
    sizes = [s for s in SIZES if s[0] * s[1] <= limits.max_pixels]
    size_now = (values["width"], values["height"])
    size_buttons = [button(f"{w}×{h}", "z", f"{w}x{h}", size_now == (w, h)) for w, h in sizes]
    size_buttons.append(
        button(t(locale, "telegram.btn.from_preset"), "z", CLEAR, values["width"] is None)
    )
    rows += [size_buttons[i : i + 3] for i in range(0, len(size_buttons), 3)]
    steps = [s for s in STEPS if s <= limits.max_steps]
    rows.append(
        [button(str(s), "t", str(s), values["steps"] == s) for s in steps]
        + [button(t(locale, "telegram.btn.from_preset"), "t", CLEAR, values["steps"] is None)]
    )
    rows.append(
        [
            button(t(locale, "telegram.btn.from_preset"), "n", CLEAR, values["negative"] is None),
            button(t(locale, "telegram.btn.no_negative"), "n", "0", values["negative"] == ""),
        ]
    )
    rows.append([button(t(locale, "telegram.btn.reset"), "r", CLEAR, False)])
    return InlineKeyboardMarkup(rows)


def _option(rt: Runtime, field: str) -> Option:
    return next(o for o in rt.engine.options if o.field == field)


def parse_change(rt: Runtime, field: str, raw: str) -> dict[str, Any]:
    """A typed change (`size 640x832`) as save_settings fields; raises OptionError."""
    raw = raw.strip()
    if field == "reset":
        return dict.fromkeys(FIELDS)
    if field == "preset":
        if not raw or raw.lower() == "default":
            return {"preset": None}
        names = rt.engine.presets.names
        if raw.lower() not in names:
            choices = ", ".join(["default", *names])
            raise OptionError("option.unknown_preset", value=raw, choices=choices)
        return {"preset": raw.lower()}
    if field == "size":
        if not raw:
            return {"width": None, "height": None}
        width, height = _option(rt, "size").coerce(raw)
        width, height = resolve_size(
            GenerationRequest("", width=width, height=height), (width, height), rt.engine.limits
        )
        return {"width": width, "height": height}
    if field == "steps":
        return {"steps": int(_option(rt, "steps").coerce(raw)) if raw else None}
    if field == "negative":
        return {"negative": raw or None}
    raise OptionError("telegram.settings_unknown")


def button_change(rt: Runtime, field: str, value: str) -> dict[str, Any]:
    """What a settings button sets."""
    if field == "r":
        return dict.fromkeys(FIELDS)
    if field == "p":
        names = rt.engine.presets.names
        index = int(value)
        return {"preset": names[index - 1] if 0 < index <= len(names) else None}
    if field == "z":
        if value == CLEAR:
            return {"width": None, "height": None}
        width, height = (int(v) for v in value.split("x"))
        return {"width": width, "height": height}
    if field == "t":
        return {"steps": None if value == CLEAR else int(value)}
    if field == "n":
        return {"negative": None if value == CLEAR else ""}
    return {}


_ALIASES = {"neg": "negative", "negative": "negative", "size": "size", "steps": "steps"}


async def on_settings(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/settings, or /settings FIELD VALUE."""
    rt = _rt(context)
    message = update.effective_message
    if message is None or message.text is None:
        return
    requester = rt.requester(update.effective_user, update.effective_chat)
    locale = requester.locale
    _, rest = split_command(message.text, rt.username)
    prefix = ""
    if rest:
        word, _, raw = rest.partition(" ")
        field = {**_ALIASES, "preset": "preset", "reset": "reset"}.get(word.lower(), "")
        try:
            if not field:
                raise OptionError("telegram.settings_unknown")
            change = parse_change(rt, field, raw)
        except DrawbridgeError as exc:
            await message.reply_text(exc.render(locale), do_quote=True)
            return
        await rt.engine.db.users.save_settings(requester.key, **change)
        prefix = t(locale, "settings.saved") + "\n"
    values = await current(rt, requester.key)
    await message.reply_text(
        prefix + render(rt, requester, values),
        reply_markup=keyboard(rt, requester, values),
        do_quote=True,
    )


async def on_settings_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A /settings button: only the menu's owner may use it."""
    rt = _rt(context)
    query = update.callback_query
    if query is None or query.data is None:
        return
    requester = rt.requester(query.from_user, update.effective_chat)
    parts = query.data.split(":", 3)
    if len(parts) != 4 or parts[1] != requester.user_id:
        await query.answer(t(requester.locale, "telegram.settings_not_yours"), show_alert=True)
        return
    await query.answer(t(requester.locale, "settings.saved"))
    try:
        change = button_change(rt, parts[2], parts[3])
    except ValueError:
        return
    if change:
        await rt.engine.db.users.save_settings(requester.key, **change)
    values = await current(rt, requester.key)
    with contextlib.suppress(BadRequest):  # the same choice again: "message is not modified"
        await query.edit_message_text(
            render(rt, requester, values), reply_markup=keyboard(rt, requester, values)
        )

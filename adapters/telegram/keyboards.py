"""Inline keyboards and their callback_data (≤ 64 bytes, a short key into the database).

Layout of callback_data:

* ``r:<key>`` reroll, ``v:<key>`` variations, ``u:<key>`` upscale, ``o:<key>`` original: a key
  from ``engine.action_key`` (≤ 12 characters), so buttons keep working after a restart;
* ``x:<key>:<owner>`` cancel; the owner's user id lets another user's press be refused at once;
* ``m:<page>`` /models pages; ``s:<owner>:<field>:<value>`` /settings buttons.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.engine import Engine
from bot.i18n import t

KIND_CODES = {"reroll": "r", "variations": "v", "upscale": "u", "original": "o", "cancel": "x"}
CODE_KINDS = {code: kind for kind, code in KIND_CODES.items()}


@dataclass(frozen=True)
class Press:
    """A decoded action button."""

    kind: str
    key: str
    owner: str | None = None


def decode_action(data: str) -> Press | None:
    """The action behind callback_data, or None if it is not an action button."""
    code, _, rest = data.partition(":")
    kind = CODE_KINDS.get(code)
    if kind is None or not rest:
        return None
    key, _, owner = rest.partition(":")
    return Press(kind, key, owner or None)


def _button(
    locale: str | None, kind: str, key: str, number: int | None = None
) -> InlineKeyboardButton:
    label = t(locale, f"telegram.btn.{kind}")
    if number is not None:  # album rows hold three buttons: the emoji and the picture's number
        label = f"{label.split(' ', 1)[0]} #{number}"
    return InlineKeyboardButton(label, callback_data=f"{KIND_CODES[kind]}:{key}")


async def cancel_keyboard(
    engine: Engine, locale: str | None, job_id: str, owner: str
) -> InlineKeyboardMarkup:
    """✖ Cancel, for a queued or running job."""
    key = await engine.action_key(job_id, 0, "cancel")
    label = t(locale, "telegram.btn.cancel")
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"x:{key}:{owner}")]])


async def result_keyboard(
    engine: Engine, locale: str | None, job_id: str, index: int, *, upscaled: bool = False
) -> InlineKeyboardMarkup:
    """The buttons under one result picture."""
    original = _button(locale, "original", await engine.action_key(job_id, index, "original"))
    if upscaled:
        return InlineKeyboardMarkup([[original]])
    reroll = _button(locale, "reroll", await engine.action_key(job_id, index, "reroll"))
    variations = _button(locale, "variations", await engine.action_key(job_id, index, "variations"))
    upscale = _button(locale, "upscale", await engine.action_key(job_id, index, "upscale"))
    return InlineKeyboardMarkup([[reroll, variations], [upscale, original]])


async def album_keyboard(
    engine: Engine, locale: str | None, job_id: str, count: int, *, upscaled: bool = False
) -> InlineKeyboardMarkup:
    """Buttons for a batch: one reroll for the job, then variations/upscale/original per image."""
    rows: list[list[InlineKeyboardButton]] = []
    if not upscaled:
        rows.append([_button(locale, "reroll", await engine.action_key(job_id, 0, "reroll"))])
    for index in range(count):
        row = []
        if not upscaled:
            for kind in ("variations", "upscale"):
                key = await engine.action_key(job_id, index, kind)
                row.append(_button(locale, kind, key, index + 1))
        key = await engine.action_key(job_id, index, "original")
        row.append(_button(locale, "original", key, index + 1))
        rows.append(row)
    return InlineKeyboardMarkup(rows)


def original_key(markup: InlineKeyboardMarkup | None) -> str | None:
    """The 📄 Original key of a single result's keyboard (to reuse the stored PNG)."""
    if markup is None:
        return None
    keys = []
    for row in markup.inline_keyboard:
        for button in row:
            data = button.callback_data
            if isinstance(data, str):
                press = decode_action(data)
                if press is not None and press.kind == "original":
                    keys.append(press.key)
    return keys[0] if len(keys) == 1 else None

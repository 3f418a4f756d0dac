"""Inline keyboards and their callback_data (≤ 64 bytes, a short key into the database).

Layout of callback_data:

* ``r:<key>`` reroll, ``v:<key>`` variations, ``u:<key>`` upscale, ``o:<key>`` original: a key
  the result carries (≤ 12 characters, stored by the core), so buttons work after a restart;
* ``z``/``w`` zoom out ×1.5/×2, ``l``/``g``/``k``/``j`` pan left/right/up/down, ``q`` make
  square, ``f`` fix faces: keys under a single picture, as above;
* ``x:<job>:<owner>`` cancel, by job id; the owner's user id lets another user's press be
  refused at once;
* ``X:<owner>`` cancel every job a burst's status message lists (adapters/kit/burst.py);
* ``m:<page>`` /models pages; ``s:<owner>:<field>:<value>`` /settings buttons.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from adapters.kit.buttons import BUTTON_CODES
from bot.i18n import t
from bot.types import JobResult, Mode

KIND_CODES = BUTTON_CODES | {"original": "o"}
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


def cancel_keyboard(locale: str | None, job_id: str, owner: str) -> InlineKeyboardMarkup:
    """✖ Cancel, for a queued or running job."""
    label = t(locale, "telegram.btn.cancel")
    data = f"x:{job_id}:{owner}"
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)]])


def result_keyboard(locale: str | None, result: JobResult, index: int) -> InlineKeyboardMarkup:
    """The buttons under one result picture (an upscale gets only 📄)."""
    keys = result.images[index].keys
    original = _button(locale, "original", keys["original"])
    if result.mode is Mode.UPSCALE:
        return InlineKeyboardMarkup([[original]])
    reroll = _button(locale, "reroll", result.keys["reroll"])
    variations = _button(locale, "variations", keys["variations"])
    upscale = _button(locale, "upscale", keys["upscale"])
    rows = [[reroll, variations], [upscale, original]]
    for group in (("zoom15", "zoom2", "square"), ("pan_left", "pan_right", "pan_up", "pan_down")):
        row = [_button(locale, kind, keys[kind]) for kind in group if kind in keys]
        if row:
            rows.append(row)
    last = [_button(locale, "faces", keys["faces"])] if "faces" in keys else []
    if "control_map" in result.keys:
        last.append(_button(locale, "control_map", result.keys["control_map"]))
    if last:
        rows.append(last)
    return InlineKeyboardMarkup(rows)


def album_keyboard(locale: str | None, result: JobResult) -> InlineKeyboardMarkup:
    """Buttons for a batch: one reroll for the job, then variations/upscale/original per image."""
    rows: list[list[InlineKeyboardButton]] = []
    if result.mode is not Mode.UPSCALE:
        first = [_button(locale, "reroll", result.keys["reroll"])]
        if "control_map" in result.keys:
            first.append(_button(locale, "control_map", result.keys["control_map"]))
        rows.append(first)
    for index, image in enumerate(result.images):
        row = [
            _button(locale, kind, image.keys[kind], index + 1)
            for kind in ("variations", "upscale", "original")
            if kind in image.keys
        ]
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


def cancel_all_keyboard(locale: str | None, owner: str, count: int) -> InlineKeyboardMarkup:
    """✖ Cancel all N, under a burst's status message (its jobs are found by chat and owner)."""
    label = t(locale, "telegram.btn.cancel_all", count=count)
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"X:{owner}")]])

"""The short codes result buttons carry in their custom id / callback data (``code:key``),
the same on both platforms; each adds its own (Discord's delete, Telegram's original)."""

from __future__ import annotations

BUTTON_CODES: dict[str, str] = {
    "reroll": "r",
    "variations": "v",
    "upscale": "u",
    "cancel": "x",
    "zoom15": "z",
    "zoom2": "w",
    "pan_left": "l",
    "pan_right": "g",
    "pan_up": "k",
    "pan_down": "j",
    "square": "q",
    "faces": "f",
    "control_map": "c",
}

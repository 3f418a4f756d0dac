"""A user's /draw defaults (preset, size, steps, negative): reading them, and changes checked by
the same option declaration /draw uses. Both platforms' /settings come here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.errors import OptionError
from bot.options import Limits, Option, resolve_size
from bot.presets import PresetBook
from bot.types import GenerationRequest, UserDefaults

FIELDS = ("preset", "width", "height", "steps", "negative")
CHANGEABLE = ("preset", "size", "steps", "negative", "reset")
DEFAULT_PRESET = "default"  # the word that picks the operator's defaults again


def defaults_of(row: Any) -> UserDefaults:
    """The saved values of a settings row (None: never saved)."""
    if row is None:
        return UserDefaults()
    return UserDefaults(**{f: getattr(row, f, None) for f in FIELDS})


def changes(
    wanted: Mapping[str, Any], options: Sequence[Option], presets: PresetBook, limits: Limits
) -> dict[str, Any]:
    """The settings fields to save for `wanted` (by name: preset, size, steps, negative, reset;
    None puts one back to the preset's value); raises OptionError naming the flag."""
    unknown = set(wanted) - set(CHANGEABLE)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; expected {CHANGEABLE}")
    if wanted.get("reset"):
        return dict.fromkeys(FIELDS)
    by_field = {opt.field: opt for opt in options}
    fields: dict[str, Any] = {}
    for name, value in wanted.items():
        if name == "preset":
            fields["preset"] = _preset(value, presets)
        elif name == "size":
            fields["width"], fields["height"] = _size(value, by_field["size"], limits)
        elif name == "steps":
            fields["steps"] = None if value in (None, "") else _number(by_field["steps"], value)
        elif name == "negative":
            fields["negative"] = None if value is None else str(value).strip()
    return fields


def _preset(value: Any, presets: PresetBook) -> str | None:
    raw = "" if value is None else str(value).strip()
    if not raw or raw.lower() == DEFAULT_PRESET:
        return None
    if raw.lower() not in presets.names:
        choices = ", ".join([DEFAULT_PRESET, *presets.names])
        raise OptionError("option.unknown_preset", value=raw, choices=choices)
    return raw.lower()


def _size(value: Any, option: Option, limits: Limits) -> tuple[int | None, int | None]:
    if value is None or value == "":
        return None, None
    # a button's value is checked exactly as a typed one (a forged press is input too)
    width, height = option.check(value) if isinstance(value, tuple) else option.coerce(str(value))
    request = GenerationRequest("", width=width, height=height)
    return resolve_size(request, (width, height), limits)


def _number(option: Option, value: Any) -> int:
    return int(option.coerce(value) if isinstance(value, str) else option.check(value))

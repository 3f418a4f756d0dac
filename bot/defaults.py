"""A user's /draw defaults (preset, size, steps, negative, favourite LoRAs and styles): reading
them, and changes checked by the same option declaration /draw uses. Both platforms' /settings
come here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bot.errors import OptionError
from bot.options import (
    NONE_WORD,
    DrawParser,
    Kind,
    Limits,
    Option,
    check_name,
    resolve_size,
)
from bot.presets import PresetBook
from bot.texts import cut
from bot.types import GenerationRequest, UserDefaults

FIELDS = ("preset", "width", "height", "steps", "negative", "loras", "styles")
CHANGEABLE = ("preset", "size", "steps", "negative", "loras", "styles", "reset")
DEFAULT_PRESET = "default"  # the word that picks the operator's defaults again
# /draw's options that /settings changes too, in the order /settings shows them
DRAW_FIELDS = ("preset", "size", "steps", "negative")
FAVOURITE_LORAS = 5  # favourite LoRAs a user may keep (and never more than MAX_LORAS)
FAVOURITE_STYLES = 5  # favourite styles a user may keep


def favourite_options() -> list[Option]:
    """The favourites, declared once: Discord's `loras` and `styles` options of /settings, and
    the `--lora NAME[:WEIGHT]` and `--style NAME` flags of its text (each repeatable)."""
    return [
        Option(
            "loras",
            "--lora",
            Kind.LORA,
            "help.opt.fav_loras",
            discord_name="loras",
            repeatable=True,
        ),
        Option(
            "styles",
            "--style",
            Kind.TEXT,
            "help.opt.fav_styles",
            discord_name="styles",
            repeatable=True,
        ),
    ]


def settings_options(options: Sequence[Option]) -> list[Option]:
    """Every option /settings takes: the ones it shares with /draw (`options`), then the
    favourites."""
    by_field = {opt.field: opt for opt in options}
    return [by_field[f] for f in DRAW_FIELDS if f in by_field] + favourite_options()


def parse(text: str, options: Sequence[Option], limits: Limits) -> dict[str, Any]:
    """`/settings --steps 30 --lora add_detail:0.6 --style cinematic` as changes for `changes`;
    raises OptionError naming the flag (words that belong to no flag too)."""
    words, values = DrawParser(settings_options(options), limits).values(text)
    if words:
        raise OptionError("settings.stray_words", words=cut(words, 60))
    return values


def defaults_of(row: Any) -> UserDefaults:
    """The saved values of a settings row (None: never saved)."""
    if row is None:
        return UserDefaults()
    values = {f: getattr(row, f, None) for f in FIELDS[:5]}
    loras = tuple((str(n), float(w)) for n, w in _stored(getattr(row, "loras", None)))
    styles = tuple(str(s) for s in _stored(getattr(row, "styles", None)))
    return UserDefaults(**values, loras=loras, styles=styles)


def _stored(text: str | None) -> list[Any]:
    """A favourites column's JSON list ([] for none, or for what is not one)."""
    try:
        found = json.loads(text) if text else []
    except ValueError:
        return []
    return found if isinstance(found, list) else []


def changes(
    wanted: Mapping[str, Any], options: Sequence[Option], presets: PresetBook, limits: Limits
) -> dict[str, Any]:
    """The settings fields to save for `wanted` (by name: preset, size, steps, negative, loras,
    styles, reset; None puts one back to the preset's value, `none` empties a favourites list);
    raises OptionError naming the flag. Favourites are not yet checked against the backends."""
    unknown = set(wanted) - set(CHANGEABLE)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; expected {CHANGEABLE}")
    if wanted.get("reset"):
        return dict.fromkeys(FIELDS)
    by_field = {opt.field: opt for opt in settings_options(options)}
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
        elif name == "loras":
            loras = _loras(value, by_field["loras"], min(FAVOURITE_LORAS, limits.max_loras))
            fields["loras"] = json.dumps([list(x) for x in loras]) if loras else None
        elif name == "styles":
            styles = _styles(value, by_field["styles"])
            fields["styles"] = json.dumps(styles) if styles else None
    return fields


def favourites_in(fields: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The LoRA and style names that `changes` is about to save (to check with the backends)."""
    loras = [str(name) for name, _ in _stored(fields.get("loras"))]
    return loras, [str(s) for s in _stored(fields.get("styles"))]


def _items(value: Any) -> list[Any]:
    """A favourites value as its items: a tuple of typed ones (the text flags), or words
    separated by commas (Discord's option, `/settings lora a, b`)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    return list(value)


def _loras(value: Any, option: Option, limit: int) -> list[tuple[str, float]]:
    chosen: dict[str, float] = {}
    for item in _items(value):
        # a typed pair is checked again like a written one (a client may send anything)
        name, weight = option.coerce(item if isinstance(item, str) else f"{item[0]}:{item[1]}")
        check_name(option.flag, name)
        if name.lower() != NONE_WORD:
            chosen[name] = weight  # named twice: the last weight counts
    _within(len(chosen), limit, "settings.too_many_loras")
    return list(chosen.items())


def _styles(value: Any, option: Option) -> list[str]:
    chosen: dict[str, None] = {}
    for item in _items(value):
        name = option.coerce(str(item))
        check_name(option.flag, name)
        if name and name.lower() != NONE_WORD:
            chosen[name] = None
    _within(len(chosen), FAVOURITE_STYLES, "settings.too_many_styles")
    return list(chosen)


def _within(count: int, limit: int, key: str) -> None:
    if count > limit:
        raise OptionError(key, limit=limit, count=count)


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

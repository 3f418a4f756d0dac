"""Slash commands built from declarations: /draw's options come from `service.options` (the one
declaration the text parser and the help use), each with its type, range or choices, and a
name and description that the catalogue localises.

discord.py reads a command's options from its callback's signature, so `command` writes that
signature from a list of `Param`s and applies the library's own decorators (describe, rename,
choices, autocomplete). Typed values come back as a dict; `request_from` has the service run the
same checks the text parser runs, since a client or a stale command may send anything.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import locale_str

from adapters.discord.texts import CHOICE_MAX, CHOICES_MAX
from bot.errors import OptionError
from bot.i18n import MESSAGES, normalize_locale, t
from bot.options import MAX_SIDE, MIN_SIDE, Kind, Limits, Option
from bot.presets import Preset
from bot.service import Service
from bot.types import GenerationRequest

Handler = Callable[[discord.Interaction, dict[str, Any]], Awaitable[None]]
Autocomplete = Callable[
    [discord.Interaction, str], Coroutine[Any, Any, list[app_commands.Choice[str]]]
]

STRING_MAX = 6000  # Discord's longest string option
SIZES = (
    (512, 512),
    (512, 768),
    (768, 512),
    (640, 640),
    (576, 1024),
    (1024, 576),
    (768, 768),
    (832, 1216),
    (1216, 832),
    (896, 1152),
    (1152, 896),
    (1024, 1024),
    (1536, 1536),
    (2048, 2048),
)
RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9")


def loc(key: str) -> locale_str:
    """A string Discord shows in English and the translator localises by catalogue key."""
    return locale_str(t("en", key), key=key)


class CatalogueTranslator(app_commands.Translator):
    """Command, option and choice names and descriptions in Simplified Chinese from bot.i18n."""

    async def translate(
        self,
        string: locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        key = string.extras.get("key")
        if key not in MESSAGES or locale is not discord.Locale.chinese:
            return None
        text = t(normalize_locale(locale.value), key)
        return text if text != string.message else None


@dataclass(frozen=True)
class Param:
    """One slash option."""

    name: str
    annotation: Any
    description: locale_str
    required: bool = False
    choices: tuple[app_commands.Choice[str], ...] = ()
    autocomplete: Autocomplete | None = None


def command(
    name_key: str,
    description_key: str,
    params: Sequence[Param],
    handler: Handler,
    **options: Any,
) -> app_commands.Command[Any, ..., None]:
    """A slash command whose options are `params`; `handler(interaction, values)` runs it."""

    async def callback(interaction: discord.Interaction, **values: Any) -> None:
        await handler(interaction, values)

    ordered = sorted(params, key=lambda p: not p.required)  # Discord: required ones first
    signature = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        )
    ]
    for p in ordered:
        signature.append(
            inspect.Parameter(
                p.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if p.required else None,
                annotation=p.annotation if p.required else p.annotation | None,
            )
        )
    callback.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    name = t("en", name_key)
    callback.__name__ = callback.__qualname__ = name.replace(" ", "_")
    decorated: Any = app_commands.describe(**{p.name: p.description for p in params})(callback)
    renames = {p.name: locale_str(p.name, key=f"discord.opt.{p.name}") for p in params}
    decorated = app_commands.rename(**renames)(decorated)
    choices = {p.name: list(p.choices) for p in params if p.choices}
    if choices:
        decorated = app_commands.choices(**choices)(decorated)
    completers = {p.name: p.autocomplete for p in params if p.autocomplete is not None}
    if completers:
        decorated = app_commands.autocomplete(**completers)(decorated)
    return app_commands.Command(
        name=locale_str(name, key=name_key),
        description=loc(description_key),
        callback=decorated,
        **options,
    )


# --- /draw from the declaration ------------------------------------------------------------


def _range(kind: type, low: float | None, high: float | None) -> Any:
    if low is None or high is None:
        return kind
    rng: Any = app_commands.Range
    if kind is int:
        return rng[int, int(low), int(high)]
    return rng[float, float(low), float(high)]


def size_choices(limits: Limits, default: Preset) -> tuple[app_commands.Choice[str], ...]:
    """Common sizes the operator's pixel limit allows, the preset's own first."""
    sizes = [(default.width, default.height), *SIZES]
    seen: dict[tuple[int, int], None] = {}
    for width, height in sizes:
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            continue
        if width * height <= limits.max_pixels:
            seen[(width, height)] = None
    return tuple(app_commands.Choice(name=f"{w}×{h}", value=f"{w}x{h}") for w, h in seen)[
        :CHOICES_MAX
    ]


def option_param(
    opt: Option, limits: Limits, preset: Preset, completers: dict[str, Autocomplete]
) -> Param:
    """The slash option for one declared option."""
    description = loc(opt.help_key)
    if opt.kind in (Kind.TEXT, Kind.LORA):
        return Param(opt.name, str, description, autocomplete=completers.get(opt.field))
    if opt.kind is Kind.INT:
        return Param(opt.name, _range(int, opt.low, opt.high), description)
    if opt.kind is Kind.FLOAT:
        return Param(opt.name, _range(float, opt.low, opt.high), description)
    if opt.kind is Kind.FLAG:
        return Param(opt.name, bool, description)
    if opt.kind is Kind.SIZE:
        choices = size_choices(limits, preset)
        return Param(opt.name, str, loc("discord.opt.size.desc"), choices=choices)
    if opt.kind is Kind.RATIO:
        return Param(
            opt.name,
            str,
            description,
            choices=tuple(app_commands.Choice(name=r, value=r) for r in RATIOS),
        )
    if 0 < len(opt.choices) <= CHOICES_MAX:  # Kind.CHOICE
        choices = tuple(app_commands.Choice(name=c[:CHOICE_MAX], value=c) for c in opt.choices)
        return Param(opt.name, str, description, choices=choices)
    return Param(opt.name, str, description, autocomplete=_choice_completer(opt))


def _choice_completer(opt: Option) -> Autocomplete:
    async def complete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return matching([(c, c) for c in opt.choices], current)

    return complete


def prompt_param(limits: Limits) -> Param:
    """What to draw, as long as the operator allows (and Discord can take)."""
    return Param(
        "prompt",
        app_commands.Range[str, 1, min(STRING_MAX, limits.max_prompt_length)],
        loc("discord.opt.prompt.desc"),
        required=True,
    )


def draw_params(
    options: Sequence[Option],
    limits: Limits,
    preset: Preset,
    completers: dict[str, Autocomplete],
) -> list[Param]:
    """/draw's options: every declared one, and the two pictures before the picture-only ones."""
    images = [
        Param("init_image", discord.Attachment, loc("discord.opt.init_image.desc")),
        Param("mask", discord.Attachment, loc("discord.opt.mask.desc")),
    ]
    params: list[Param] = []
    for opt in options:
        if opt.images_only and images:
            params += images
            images = []
        if not opt.slash:
            continue  # written in `more` (Discord takes 25 options per command)
        params.append(option_param(opt, limits, preset, completers))
        if opt.field == "control":
            params.append(
                Param("control_image", discord.Attachment, loc("discord.opt.control_image.desc"))
            )
    more = Param("more", str, loc("discord.opt.more.desc"))
    return [*params, *images, more]


def matching(
    items: Sequence[tuple[str, str]], current: str, limit: int = CHOICES_MAX
) -> list[app_commands.Choice[str]]:
    """Autocomplete choices (name, value) for what the user typed: names starting with it
    first, then names containing it; at most 25, each name and value at most 100 characters."""
    typed = current.strip().lower()
    first: list[tuple[str, str]] = []
    then: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in items:
        if value in seen or len(value) > CHOICE_MAX:
            continue
        low = name.lower()
        if low.startswith(typed) or value.lower().startswith(typed):
            first.append((name, value))
        elif typed in low or typed in value.lower():
            then.append((name, value))
        else:
            continue
        seen.add(value)
    return [
        app_commands.Choice(name=name[:CHOICE_MAX], value=value)
        for name, value in (first + then)[:limit]
    ]


# --- values back into a request -------------------------------------------------------------


def discord_names(exc: OptionError, options: Sequence[Option]) -> OptionError:
    """The error with text flags (--steps) replaced by the slash option names (`steps`)."""
    names: dict[str, str] = {}
    for opt in options:
        for flag in (opt.flag, *opt.aliases, *([opt.negation] if opt.negation else [])):
            names[flag] = f"`{opt.name}`"
    for key in ("flag", "a", "b"):
        value = exc.params.get(key)
        if isinstance(value, str) and value in names:
            exc.params[key] = names[value]
    return exc


def request_from(values: dict[str, Any], service: Service) -> GenerationRequest:
    """A GenerationRequest from typed slash values, checked like text; raises OptionError
    naming the slash options."""
    try:
        return service.request(values)
    except OptionError as exc:
        raise discord_names(exc, service.options) from None


# --- Discord's rules for command declarations, checked before a sync -----------------------

NAME_RULE = re.compile(r"^[-_\w]{1,32}$")
DESCRIPTION_MAX = 100
OPTIONS_MAX = 25
CHOICES_MAX = 25


class DeclarationError(ValueError):
    """A slash-command declaration Discord would refuse (the whole sync fails with it)."""


def declaration_problems(payload: list[dict[str, Any]]) -> list[str]:
    """What Discord would refuse in the commands `tree.sync()` sends: names (1-32, lowercase),
    descriptions (1-100), at most 25 options and 25 choices, choice names and values ≤ 100."""
    problems: list[str] = []

    def check(node: dict[str, Any], where: str, top: bool) -> None:
        name = str(node.get("name", ""))
        context_menu = top and node.get("type", 1) != 1  # its name may have spaces and capitals
        if not context_menu and (not NAME_RULE.match(name) or name != name.lower()):
            problems.append(f"{where}: name {name[:40]!r} must be 1-32 lowercase letters")
        if not context_menu and not 1 <= len(str(node.get("description", ""))) <= DESCRIPTION_MAX:
            length = len(str(node.get("description", "")))
            problems.append(f"{where}: description is {length} characters (Discord allows 1-100)")
        for text in (node.get("description_localizations") or {}).values():
            if not 1 <= len(str(text)) <= DESCRIPTION_MAX:
                problems.append(f"{where}: a translated description is {len(str(text))} long")
        for text in (node.get("name_localizations") or {}).values():
            if not context_menu and not NAME_RULE.match(str(text)):
                problems.append(f"{where}: translated name {str(text)[:40]!r} breaks the rule")
        choices = node.get("choices") or []
        if len(choices) > CHOICES_MAX:
            problems.append(f"{where}: {len(choices)} choices (Discord allows {CHOICES_MAX})")
        for choice in choices:
            label, value = str(choice.get("name", "")), choice.get("value")
            if not 1 <= len(label) <= 100 or (isinstance(value, str) and len(value) > 100):
                problems.append(f"{where}: choice {label[:40]!r} is over 100 characters")
        options = node.get("options") or []
        if len(options) > OPTIONS_MAX:
            problems.append(f"{where}: {len(options)} options (Discord allows {OPTIONS_MAX})")
        for option in options:
            check(option, f"{where}/{option.get('name')}", False)

    for command in payload:
        check(command, f"/{command.get('name')}", True)
    return problems

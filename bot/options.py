"""The draw options, declared once; the text parser, Telegram help and Discord options derive from it.

Text syntax: ``PROMPT [--neg TEXT] [--ar W:H | --size WxH] [--steps N] [--cfg X] [--seed N]
[--sampler NAME] [--model NAME] [--n N] [--strength X] [--hires | --no-hires] [--preset NAME]
[--hr-scale X] [--hr-denoise X] [--hr-steps N] [--hr-upscaler NAME] [--face] [--lora NAME[:WEIGHT]]…
[--style NAME]``. A repeatable option (``--lora``) may be given more than once.
Values with spaces go in "double quotes"; a text option (``--neg``) takes every word up to the next
flag. Phones turn ``--`` into an em dash, so ``—seed`` is read as ``--seed``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import StrEnum
from typing import Any

from bot.errors import OptionError
from bot.i18n import Phrase, t
from bot.presets import PresetBook
from bot.types import GenerationRequest

FILL_CHOICES = ("fill", "original", "noise", "nothing")  # index = WebUI inpainting_fill
MAX_SEED = 2**32 - 1
MIN_SIDE = 64
MAX_SIDE = 2048
LORA_WEIGHT = (-2.0, 2.0)  # what the WebUI's sliders allow
# `--lora none` / `--style none`: no LoRA or style for this draw (not the /settings favourites)
NONE_WORD = "none"
# <lora:NAME:weight> and the LyCORIS form, as the WebUI's extra networks parse them
LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+)(?::[^>]*)?>", re.IGNORECASE)
HIRES_FIELDS = ("hr_scale", "hr_denoise", "hr_steps", "hr_upscaler")
# what Discord's `more` text may set (every field a flag fills, but the size pair)
MORE_FIELDS = (
    "negative",
    "aspect",
    "steps",
    "cfg",
    "seed",
    "sampler",
    "model",
    "count",
    "strength",
    "hires",
    "preset",
    "invert",
    "fill",
    "only_masked",
    *HIRES_FIELDS,
    "face",
    "loras",
    "style",
    "control",
    "control_weight",
    "control_guidance",
    "relax",
)


class Kind(StrEnum):
    """How an option's value is written and checked."""

    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    SIZE = "size"
    RATIO = "ratio"
    CHOICE = "choice"
    FLAG = "flag"
    LORA = "lora"  # NAME or NAME:WEIGHT
    SPAN = "span"  # START:END, fractions of the sampling steps


@dataclass(frozen=True)
class Limits:
    """Operator limits that bound the options."""

    max_pixels: int = 1024 * 1024
    max_steps: int = 50
    max_images: int = 4
    max_prompt_length: int = 1000
    max_hr_scale: float = 2.0
    max_loras: int = 5

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """Take the limits out of Settings."""
        return cls(
            max_pixels=settings.max_pixels,
            max_steps=settings.max_steps,
            max_images=settings.max_images,
            max_prompt_length=settings.max_prompt_length,
            max_hr_scale=settings.max_hr_scale,
            max_loras=settings.max_loras,
        )


@dataclass(frozen=True)
class Option:
    """One draw option: where it goes, how it is written, what it accepts, and its help."""

    field: str
    flag: str
    kind: Kind
    help_key: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    negation: str | None = None
    default_from: str | None = None
    discord_name: str = ""
    aliases: tuple[str, ...] = ()
    images_only: bool = False
    repeatable: bool = False  # given again, it adds a value (the field holds a tuple)
    slash: bool = True  # its own Discord option (else written in the `more` option's text)
    extra: dict[str, Any] = dc_field(default_factory=dict)

    @property
    def name(self) -> str:
        """Name without dashes (also the Discord option name unless overridden)."""
        return self.discord_name or self.flag.removeprefix("--")

    def accepts(self) -> Phrase:
        """What values it takes, in words, in the reader's language."""
        return Phrase(self._accepts)

    def _accepts(self, locale: str | None) -> str:
        if self.kind is Kind.CHOICE:
            return ", ".join(self.choices) if self.choices else t(locale, "option.accepts_text")
        if self.kind in (Kind.INT, Kind.FLOAT) and self.low is not None:
            rng = t(locale, "help.range", low=_num(self.low), high=_num(self.high))
            return f"{t(locale, f'option.accepts_{self.kind.value}')} {rng}"
        return t(locale, f"option.accepts_{self.kind.value}")

    def coerce(self, raw: str) -> Any:
        """Turn the written value into a typed one and check it; OptionError names the flag."""
        raw = raw.strip()
        if self.kind is Kind.TEXT:
            return raw
        if self.kind is Kind.CHOICE:
            return self._check_choice(raw)
        if self.kind is Kind.LORA:
            return self._lora(raw)
        if self.kind is Kind.SPAN:
            return self._span(raw)
        try:
            if self.kind is Kind.INT:
                value: Any = int(raw)
            elif self.kind is Kind.FLOAT:
                value = float(raw.replace(",", "."))
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError(raw)
            elif self.kind is Kind.SIZE:
                value = _pair(raw, r"[x×*X]")
            elif self.kind is Kind.RATIO:
                value = _pair(raw, r"[:/x×]")
            else:
                raise ValueError(raw)
        except ValueError:
            raise OptionError(
                "option.bad_value", flag=self.flag, value=raw, accepts=self.accepts()
            ) from None
        return self.check(value)

    def check(self, value: Any) -> Any:
        """Range/choice checks for an already typed value (Discord options arrive typed)."""
        if self.kind in (Kind.INT, Kind.FLOAT) and self.low is not None and self.high is not None:
            if not self.low <= value <= self.high:
                raise OptionError(
                    "option.out_of_range",
                    flag=self.flag,
                    low=_num(self.low),
                    high=_num(self.high),
                    value=_num(value),
                )
        if self.kind is Kind.SIZE:
            w, h = value
            if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
                raise OptionError(
                    "option.out_of_range",
                    flag=self.flag,
                    low=MIN_SIDE,
                    high=MAX_SIDE,
                    value=f"{w}x{h}",
                )
        if self.kind is Kind.RATIO:
            a, b = value
            if a <= 0 or b <= 0 or max(a, b) / min(a, b) > 4:
                raise OptionError(
                    "option.out_of_range", flag=self.flag, low="1:4", high="4:1", value=f"{a}:{b}"
                )
        if self.kind is Kind.CHOICE:
            return self._check_choice(str(value))
        return value

    def _lora(self, raw: str) -> tuple[str, float]:
        """NAME or NAME:WEIGHT (a name may hold colons: the weight is after the last one)."""
        name, sep, weight = raw.rpartition(":")
        if not sep or not name.strip():
            name, weight = raw, "1"
        try:
            value = float(weight.replace(",", "."))
            if value != value:
                raise ValueError(weight)
        except ValueError:
            raise OptionError(
                "option.bad_value", flag=self.flag, value=raw, accepts=self.accepts()
            ) from None
        low, high = LORA_WEIGHT
        if not low <= value <= high:
            raise OptionError(
                "option.out_of_range",
                flag=self.flag,
                low=_num(low),
                high=_num(high),
                value=_num(value),
            )
        return name.strip(), value

    def _span(self, raw: str) -> tuple[float, float]:
        """START:END, both between 0 and 1, START not after END."""
        try:
            start, end = (float(x.replace(",", ".")) for x in re.split(r"[:\-–]", raw, maxsplit=1))
        except ValueError:
            raise OptionError(
                "option.bad_value", flag=self.flag, value=raw, accepts=self.accepts()
            ) from None
        if not (0.0 <= start <= end <= 1.0):
            raise OptionError(
                "option.out_of_range", flag=self.flag, low="0:0", high="1:1", value=raw
            )
        return start, end

    def _check_choice(self, raw: str) -> str:
        if not self.choices:
            return raw
        for choice in self.choices:
            if choice.lower() == raw.lower():
                return choice
        key = "option.unknown_preset" if self.field == "preset" else "option.bad_choice"
        raise OptionError(key, flag=self.flag, value=raw, choices=", ".join(self.choices))


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _pair(raw: str, sep: str) -> tuple[int, int]:
    parts = re.split(sep, raw)
    if len(parts) != 2:
        raise ValueError(raw)
    return int(parts[0]), int(parts[1])


def draw_options(limits: Limits, presets: PresetBook) -> list[Option]:
    """The one declaration of /draw's options, bounded by the operator's limits."""
    return [
        Option(
            "negative",
            "--neg",
            Kind.TEXT,
            "help.opt.neg",
            default_from="negative",
            discord_name="negative",
            aliases=("--negative", "--no"),
        ),
        Option("aspect", "--ar", Kind.RATIO, "help.opt.ar", aliases=("--aspect",)),
        Option("size", "--size", Kind.SIZE, "help.opt.size", default_from="size"),
        Option(
            "steps",
            "--steps",
            Kind.INT,
            "help.opt.steps",
            1,
            limits.max_steps,
            default_from="steps",
        ),
        Option("cfg", "--cfg", Kind.FLOAT, "help.opt.cfg", 1, 30, default_from="cfg"),
        Option("seed", "--seed", Kind.INT, "help.opt.seed", -1, MAX_SEED),
        Option("sampler", "--sampler", Kind.TEXT, "help.opt.sampler", default_from="sampler"),
        Option("model", "--model", Kind.TEXT, "help.opt.model"),
        Option(
            "count",
            "--n",
            Kind.INT,
            "help.opt.n",
            1,
            limits.max_images,
            default_from="count",
            discord_name="count",
            aliases=("--count",),
        ),
        Option(
            "strength",
            "--strength",
            Kind.FLOAT,
            "help.opt.strength",
            0.01,
            1.0,
            default_from="strength",
            images_only=True,
            aliases=("--denoise",),
        ),
        Option(
            "hires",
            "--hires",
            Kind.FLAG,
            "help.opt.hires",
            negation="--no-hires",
            default_from="hires",
        ),
        Option("preset", "--preset", Kind.CHOICE, "help.opt.preset", choices=tuple(presets.names)),
        Option("invert", "--invert", Kind.FLAG, "help.opt.invert", images_only=True),
        Option(
            "fill",
            "--fill",
            Kind.CHOICE,
            "help.opt.fill",
            choices=FILL_CHOICES,
            default_from="fill",
            images_only=True,
        ),
        Option(
            "only_masked",
            "--only-masked",
            Kind.FLAG,
            "help.opt.only_masked",
            images_only=True,
            discord_name="only_masked",
        ),
        Option(
            "hr_scale",
            "--hr-scale",
            Kind.FLOAT,
            "help.opt.hr_scale",
            1.0,
            limits.max_hr_scale,
            default_from="hr_scale",
            discord_name="hr_scale",
        ),
        Option(
            "hr_denoise",
            "--hr-denoise",
            Kind.FLOAT,
            "help.opt.hr_denoise",
            0.0,
            1.0,
            default_from="hr_denoise",
            discord_name="hr_denoise",
            slash=False,
        ),
        Option(
            "hr_steps",
            "--hr-steps",
            Kind.INT,
            "help.opt.hr_steps",
            0,
            limits.max_steps,
            discord_name="hr_steps",
            slash=False,
        ),
        Option(
            "hr_upscaler",
            "--hr-upscaler",
            Kind.TEXT,
            "help.opt.hr_upscaler",
            default_from="hr_upscaler",
            discord_name="hr_upscaler",
            slash=False,
        ),
        Option("face", "--face", Kind.FLAG, "help.opt.face"),
        Option("loras", "--lora", Kind.LORA, "help.opt.lora", discord_name="lora", repeatable=True),
        Option("style", "--style", Kind.TEXT, "help.opt.style"),
        Option("control", "--control", Kind.TEXT, "help.opt.control"),
        Option(
            "control_weight",
            "--control-weight",
            Kind.FLOAT,
            "help.opt.control_weight",
            0.0,
            2.0,
            discord_name="control_weight",
            slash=False,
        ),
        Option(
            "control_guidance",
            "--control-guidance",
            Kind.SPAN,
            "help.opt.control_guidance",
            discord_name="control_guidance",
            slash=False,
        ),
        # RELAX_MODE: queue for free behind every job with credits (bot.relaxqueue)
        # on Discord in /draw's `more` text (the slash command holds 25 options at most)
        Option("relax", "--relax", Kind.FLAG, "help.opt.relax", slash=False),
    ]


@dataclass
class _Token:
    text: str
    quoted: bool


_DASHES = ("—", "–", "−")  # phones autocorrect "--" into these
_QUOTES = {'"': '"', "“": "”", "„": "“", "”": "”"}


def tokenize(text: str) -> list[_Token]:
    """Split on whitespace; "double quotes" (straight or curly) group words."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _QUOTES:
            close = _QUOTES[ch]
            end = text.find(close, i + 1)
            if end < 0 and close != '"':
                end = text.find('"', i + 1)
            if end < 0:
                raise OptionError("option.unclosed_quote")
            tokens.append(_Token(text[i + 1 : end], True))
            i = end + 1
            continue
        start = i
        while i < n and not text[i].isspace():
            i += 1
        tokens.append(_Token(text[start:i], False))
    return tokens


def _as_flag(token: _Token) -> str | None:
    if token.quoted:
        return None
    word = token.text
    for dash in _DASHES:
        if word.startswith(dash) and len(word) > 1 and word[1:2].isalpha():
            return "--" + word[1:]
    if word.startswith("--") and len(word) > 2 and word[2:3].isalpha():
        return word
    return None


class DrawParser:
    """Parses `/draw` text into a GenerationRequest using the option declaration."""

    def __init__(self, options: list[Option], limits: Limits) -> None:
        self.options = options
        self.limits = limits
        self._by_flag: dict[str, tuple[Option, bool]] = {}
        for opt in options:
            for flag in (opt.flag, *opt.aliases):
                self._by_flag[flag] = (opt, True)
            if opt.negation:
                self._by_flag[opt.negation] = (opt, False)

    def known_flags(self) -> list[str]:
        """Every primary flag, in declaration order."""
        flags: list[str] = []
        for opt in self.options:
            flags.append(opt.flag)
            if opt.negation:
                flags.append(opt.negation)
        return flags

    def _lookup(self, flag: str) -> tuple[Option, bool]:
        found = self._by_flag.get(flag.lower())
        if found is None:
            close = difflib.get_close_matches(flag.lower(), list(self._by_flag), n=1, cutoff=0.6)
            flags = ", ".join(self.known_flags())
            known: str | Phrase = flags
            if close:
                hint = close[0]
                known = Phrase(lambda loc: t(loc, "option.did_you_mean", known=flags, flag=hint))
            raise OptionError("option.unknown", flag=flag, known=known)
        return found

    def parse(self, text: str, *, require_prompt: bool = True) -> GenerationRequest:
        """Parse the whole text; raises OptionError (only) on anything wrong."""
        request = self._parse(text)
        validate_request(request, self.limits, require_prompt=require_prompt)
        return request

    def _parse(self, text: str) -> GenerationRequest:
        """The flags of `text` as a request, each checked, the whole not yet."""
        prompt, values = self.values(text)
        if "aspect" in values and "size" in values:
            raise OptionError("option.conflict", a="--ar", b="--size")
        request = GenerationRequest(prompt=prompt)
        size = values.pop("size", None)
        if size is not None:
            request.width, request.height = size
        for name, value in values.items():
            setattr(request, name, value)
        return request

    def values(self, text: str) -> tuple[str, dict[str, Any]]:
        """The words of `text` that are no flag, and each flag's checked value by field (a
        repeatable one's as a tuple); raises OptionError naming the flag."""
        tokens = tokenize(text)
        prompt: list[str] = []
        values: dict[str, Any] = {}
        seen: dict[str, str] = {}
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            flag = _as_flag(tok)
            if flag is None:
                prompt.append(tok.text)
                i += 1
                continue
            inline: str | None = None
            if "=" in flag:
                flag, inline = flag.split("=", 1)
            opt, positive = self._lookup(flag)
            if opt.field in seen and seen[opt.field] != flag and not opt.repeatable:
                raise OptionError("option.conflict", a=seen[opt.field], b=flag)
            if opt.field in seen and not opt.repeatable:  # twice: say so, not keep the last
                raise OptionError("option.repeated", flag=flag)
            seen[opt.field] = flag
            i += 1
            if opt.kind is Kind.FLAG:
                values[opt.field] = positive
                continue
            if inline is not None:
                raw = inline
            elif opt.kind is Kind.TEXT:
                words: list[str] = []
                while i < len(tokens) and _as_flag(tokens[i]) is None:
                    words.append(tokens[i].text)
                    i += 1
                raw = " ".join(words)
            elif i < len(tokens) and _as_flag(tokens[i]) is None:
                raw = tokens[i].text
                i += 1
            else:
                raw = ""
            if not raw.strip():
                raise OptionError("option.missing_value", flag=flag, accepts=opt.accepts())
            if opt.repeatable:
                values[opt.field] = (*values.get(opt.field, ()), opt.coerce(raw))
            else:
                values[opt.field] = opt.coerce(raw)
        return " ".join(prompt).strip(), values

    def from_values(self, values: dict[str, Any]) -> GenerationRequest:
        """A request from typed values keyed by option name (Discord's slash options), checked
        like text: a client or a stale command may send anything. Raises OptionError."""
        request = GenerationRequest(prompt=str(values.get("prompt") or "").strip())
        by_name = {opt.name: opt for opt in self.options}
        given: set[str] = set()
        more = str(values.get("more") or "").strip()
        if more:  # the options without a slash option of their own, written as text
            extra = self._parse(more)  # checked as a whole with the other options
            if extra.prompt:
                request.prompt = f"{request.prompt} {extra.prompt}".strip()
            for name in MORE_FIELDS:
                value = getattr(extra, name)
                if value not in (None, ()):
                    setattr(request, name, value)
                    given.add(name)
            if extra.width and extra.height:
                request.width, request.height = extra.width, extra.height
                given.add("size")
        for name, value in values.items():
            opt = by_name.get(name)
            if opt is None or value is None:
                continue
            typed: Any
            if opt.repeatable:  # one slash option: the values separated by commas
                typed = tuple(opt.coerce(x) for x in str(value).split(",") if x.strip())
                if not typed:
                    continue
            elif opt.kind is Kind.TEXT:
                typed = str(value).strip()
                if not typed:
                    continue
            elif opt.kind in (Kind.SIZE, Kind.RATIO):
                typed = opt.coerce(str(value))
            else:
                typed = opt.check(value)
            given.add(opt.field)
            if opt.field == "size":
                request.width, request.height = typed
            else:
                setattr(request, opt.field, typed)
        if {"size", "aspect"} <= given:
            raise OptionError("option.conflict", a="--ar", b="--size")
        validate_request(request, self.limits)
        return request


# never echoed or sent on: NUL and other control characters, bidi overrides and isolates
_STRIPPED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# invisible: a prompt of only these draws nothing the user meant
_INVISIBLE = re.compile(r"[\s\u00ad\u034f\u180e\u200b-\u200d\u2060-\u2064\ufeff]")
NAME_MAX = 200  # longest checkpoint or sampler name accepted


def clean_text(text: str) -> str:
    """Text without control, NUL and bidi-override characters (they are echoed in captions)."""
    return _STRIPPED.sub("", text).strip()


def check_name(flag: str, value: str | None) -> None:
    """A checkpoint or sampler name, checked even before any backend reported a catalogue:
    no path tricks (`..`, an absolute path), no control characters, a sane length."""
    if value is None:
        return
    parts = re.split(r"[/\\]", value)
    if (
        ".." in parts
        or value.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", value)
        or len(value) > NAME_MAX
        or value != clean_text(value)
    ):
        raise OptionError("option.bad_name", flag=flag, value=value[:60])


def validate_request(
    request: GenerationRequest, limits: Limits, *, require_prompt: bool = True
) -> None:
    """Whole-request checks shared by every adapter (Discord options arrive already typed)."""
    request.prompt = clean_text(request.prompt)
    if request.negative is not None:
        request.negative = clean_text(request.negative)
    if require_prompt and not _INVISIBLE.sub("", request.prompt):
        raise OptionError("option.empty_prompt")
    hires_flags = [f for f in HIRES_FIELDS if getattr(request, f) is not None]
    if hires_flags:
        if request.hires is False:
            raise OptionError(
                "option.conflict", a="--no-hires", b="--" + hires_flags[0].replace("_", "-")
            )
        request.hires = True  # asking how the hires pass runs asks for one
    if request.control_weight is not None or request.control_guidance is not None:
        if not request.control:
            flag = (
                "--control-weight" if request.control_weight is not None else "--control-guidance"
            )
            raise OptionError("option.needs_control", flag=flag)
    if len(request.loras) > limits.max_loras:
        raise OptionError(
            "option.out_of_range",
            flag="--lora",
            low=0,
            high=limits.max_loras,
            value=len(request.loras),
        )
    if len(request.prompt) > limits.max_prompt_length:
        raise OptionError(
            "option.prompt_too_long", length=len(request.prompt), limit=limits.max_prompt_length
        )
    if request.negative is not None and len(request.negative) > limits.max_prompt_length:
        raise OptionError(
            "option.negative_too_long",
            length=len(request.negative),
            limit=limits.max_prompt_length,
        )
    check_name("--model", request.model)
    check_name("--sampler", request.sampler)


def images_only_given(request: GenerationRequest, options: list[Option]) -> list[str]:
    """Flags given that only work with a picture (--strength, --invert …)."""
    return [
        opt.flag
        for opt in options
        if opt.images_only and getattr(request, opt.field, None) not in (None, False)
    ]


def snap8(value: float) -> int:
    """Nearest multiple of 8, at least 64."""
    return max(MIN_SIDE, round(value / 8.0) * 8)


def resolve_size(
    request: GenerationRequest, base: tuple[int, int], limits: Limits
) -> tuple[int, int]:
    """Final first-pass size: explicit size, else the base area at the requested ratio; snapped."""
    if request.width and request.height:
        width, height = snap8(request.width), snap8(request.height)
    elif request.aspect:
        area = base[0] * base[1]
        a, b = request.aspect
        width = snap8((area * a / b) ** 0.5)
        height = snap8((area * b / a) ** 0.5)
    else:
        width, height = snap8(base[0]), snap8(base[1])
    if width * height > limits.max_pixels:
        side = int((limits.max_pixels**0.5) // 8 * 8)
        raise OptionError(
            "option.too_many_pixels",
            width=width,
            height=height,
            limit=limits.max_pixels,
            example=f"{side}x{side}",
        )
    return width, height


def help_lines(options: list[Option], presets: PresetBook, locale: str | None) -> list[str]:
    """`/help` text for the text syntax, generated from the declaration."""
    lines = [t(locale, "help.draw_usage")]
    default = presets.default
    for opt in options:
        head = opt.flag if opt.kind is Kind.FLAG else f"{opt.flag} {_metavar(opt)}"
        if opt.negation:
            head = f"{opt.flag} | {opt.negation}"
        text = f"{head} — {t(locale, opt.help_key)}"
        if opt.kind in (Kind.INT, Kind.FLOAT) and opt.low is not None:
            text += f" ({t(locale, 'help.range', low=_num(opt.low), high=_num(opt.high))})"
        if opt.kind is Kind.CHOICE and opt.choices:
            text += f" ({', '.join(opt.choices)})"
        shown = _default_of(opt, default)
        if shown is not None:
            text += f"; {t(locale, 'help.default', value=shown)}"
        lines.append(text)
    lines.append(t(locale, "help.example"))
    return lines


def usage_line(options: list[Option]) -> str:
    """`PROMPT [--neg TEXT] [--steps N] … [--hires | --no-hires]`, from the declaration."""
    parts = ["PROMPT"]
    for opt in options:
        if opt.negation:
            parts.append(f"[{opt.flag} | {opt.negation}]")
        elif opt.kind is Kind.FLAG:
            parts.append(f"[{opt.flag}]")
        elif opt.kind is Kind.CHOICE and opt.choices:
            parts.append(f"[{opt.flag} {'|'.join(opt.choices)}]")
        else:
            parts.append(f"[{opt.flag} {_metavar(opt)}]")
    return " ".join(parts)


def _metavar(opt: Option) -> str:
    return {
        Kind.TEXT: "TEXT",
        Kind.INT: "N",
        Kind.FLOAT: "X",
        Kind.SIZE: "WxH",
        Kind.RATIO: "W:H",
        Kind.CHOICE: "NAME",
        Kind.FLAG: "",
        Kind.LORA: "NAME[:WEIGHT]",
        Kind.SPAN: "START:END",
    }[opt.kind]


def _default_of(opt: Option, preset: Any) -> str | None:
    if opt.default_from is None:
        return None
    if opt.default_from == "size":
        return f"{preset.width}x{preset.height}"
    if opt.default_from == "fill":
        return FILL_CHOICES[preset.inpainting_fill]
    if opt.default_from == "negative":
        return None  # long; shown by /settings instead
    value = getattr(preset, opt.default_from)
    if isinstance(value, bool):
        return "on" if value else "off"
    return _num(value) if isinstance(value, int | float) else str(value)

"""Generation defaults (the origin deployment's), operator overrides from TOML, and named presets."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bot.errors import DrawbridgeError

ORIGIN_NEGATIVE = "(worst quality:2), (low quality:2), (normal quality:2),"


@dataclass(frozen=True)
class Preset:
    """Every default a draw request can fall back to."""

    name: str = "default"
    description: str = ""
    steps: int = 28
    sampler: str = "Euler a"
    scheduler: str | None = None
    cfg: float = 7.0
    width: int = 512
    height: int = 768
    negative: str = ORIGIN_NEGATIVE
    count: int = 1
    model: str | None = None
    vae: str | None = None
    hires: bool = True
    hr_denoise: float = 0.58
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"
    hr_steps: int = 20
    clip_skip: int = 2
    ensd: int = 0
    # img2img / inpaint
    strength: float = 0.58
    mask_blur: int = 4
    inpainting_fill: int = 1
    inpaint_full_res: bool = False
    inpaint_padding: int = 32
    mask_invert: int = 0
    resize_mode: int = 0
    variation_strength: float = 0.6
    upscaler: str = "R-ESRGAN 4x+"
    upscale_factor: float = 2.0


PRESET_FIELDS = {f.name for f in fields(Preset)} - {"name"}
# a preset name is a Discord choice value, a settings column (64) and a word users type:
# short, lowercase, no spaces
PRESET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
DESCRIPTION_MAX = 100  # Discord's limit on a choice or option description


@dataclass(frozen=True)
class PresetBook:
    """The defaults plus the operator's named presets."""

    default: Preset = field(default_factory=Preset)
    named: dict[str, Preset] = field(default_factory=dict)

    def get(self, name: str | None) -> Preset:
        """The named preset, or the defaults for None."""
        if name is None:
            return self.default
        return self.named[name.lower()]

    @property
    def names(self) -> list[str]:
        return sorted(self.named)


class PresetFileError(DrawbridgeError):
    """The presets file cannot be used; raised at startup, shown to the operator."""

    key = "error.input"


def _overrides(table: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(table) - PRESET_FIELDS - {"presets"}
    if unknown:
        raise PresetFileError(
            detail=f"{where}: unknown keys {sorted(unknown)}; known: {sorted(PRESET_FIELDS)}"
        )
    return {k: v for k, v in table.items() if k != "presets"}


def load_presets(path: Path | None) -> PresetBook:
    """Read PRESETS_FILE: top-level keys override the defaults, [presets.NAME] tables add presets."""
    if path is None:
        return PresetBook()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PresetFileError(detail=f"PRESETS_FILE {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PresetFileError(detail=f"PRESETS_FILE {path} is not valid TOML: {exc}") from exc
    try:
        default = replace(Preset(), **_overrides(data, str(path)))
        named = {
            name.lower(): replace(
                default, name=name.lower(), **_overrides(table, f"[presets.{name}]")
            )
            for name, table in data.get("presets", {}).items()
        }
    except TypeError as exc:
        raise PresetFileError(detail=f"PRESETS_FILE {path}: {exc}") from exc
    for name, preset in named.items():
        _check_name(path, name, preset)
    return PresetBook(default=default, named=named)


def _check_name(path: Path, name: str, preset: Preset) -> None:
    if not PRESET_NAME.fullmatch(name):
        raise PresetFileError(
            detail=f"PRESETS_FILE {path}: preset name {name[:40]!r} must be 1-32 lowercase "
            "letters, digits, '-' or '_' (it is a word users type and a Discord choice)"
        )
    if len(preset.description) > DESCRIPTION_MAX:
        raise PresetFileError(
            detail=f"PRESETS_FILE {path}: [presets.{name}] description is "
            f"{len(preset.description)} characters; Discord allows {DESCRIPTION_MAX}"
        )

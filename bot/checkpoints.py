"""Checkpoint names as people say them, and as the dispatcher compares them."""

from __future__ import annotations

import re

_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{8,10}\]$")
_EXTENSION = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf)$", re.I)


def model_label(model: str) -> str:
    """A checkpoint title as people say it: no folder, extension or hash."""
    name = _HASH_SUFFIX.sub("", model.strip()).replace("\\", "/").rsplit("/", 1)[-1]
    return _EXTENSION.sub("", name)


def model_key(name: str | None) -> str:
    """Compare checkpoint names across title, file name and model_name forms."""
    return model_label(name).lower() if name else ""

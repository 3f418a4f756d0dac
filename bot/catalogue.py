"""What the backends can draw with (checkpoints, samplers, LoRAs), and a request checked against
it: the WebUI silently swaps an unknown sampler and ignores an unknown model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.checkpoints import model_key, model_label
from bot.dispatcher import Backend
from bot.errors import OptionError
from bot.payload import Resolved
from bot.types import Catalogue, Checkpoint

log = logging.getLogger(__name__)

LORA_TIMEOUT = 5.0  # seconds to wait for a backend's LoRA list


def check(spec: Resolved, backends: Sequence[Backend]) -> None:
    """Reject a sampler or model no backend has; names are matched as people write them."""
    known_samplers = {s for b in backends for s in b.samplers}
    if known_samplers and spec.sampler not in known_samplers:
        match = {s.lower(): s for s in known_samplers}.get(spec.sampler.lower())
        if match is None:
            raise OptionError(
                "option.bad_choice",
                flag="--sampler",
                value=spec.sampler,
                choices=", ".join(sorted(known_samplers)),
            )
        spec.sampler = match
    if spec.model:
        titles = {m["title"]: m for b in backends for m in b.models}
        if titles:
            spec.model = match_model(spec.model, list(titles))


def match_model(name: str, titles: list[str]) -> str:
    """The checkpoint title `name` means (exact, same key, or the one title containing it)."""
    key = model_key(name)
    for title in titles:
        if title == name or model_key(title) == key:
            return title
    partial = [t for t in titles if key and key in model_key(t)]
    if len(partial) == 1:
        return partial[0]
    raise OptionError(
        "option.bad_choice",
        flag="--model",
        value=name,
        choices=", ".join(sorted(model_key(t) for t in titles)),
    )


def samplers(backends: Sequence[Backend]) -> list[str]:
    """Sampler names of every backend, without repeats."""
    names: dict[str, None] = {}
    for backend in backends:
        names.update(dict.fromkeys(backend.samplers))
    return list(names)


def checkpoints(backends: Sequence[Backend]) -> list[Checkpoint]:
    """Checkpoints of every backend, without repeats."""
    found: dict[str, Checkpoint] = {}
    for backend in backends:
        for model in backend.models:
            title = str(model.get("title") or model.get("model_name") or "")
            name = str(model.get("model_name") or "")
            if title and title not in found:
                found[title] = Checkpoint(model_label(title), title, name)
    return list(found.values())


async def gather(backends: Sequence[Backend]) -> Catalogue:
    """Checkpoints, samplers and LoRAs (asked of the first backend that answers), no repeats."""
    titles: dict[str, None] = {}
    for backend in backends:
        for model in backend.models:
            title = model_label(str(model.get("title") or model.get("model_name") or ""))
            titles[title] = None
    loras: dict[str, None] = {}
    for backend in backends:
        if not backend.up:
            continue
        try:
            async with asyncio.timeout(LORA_TIMEOUT):
                for lora in await backend.client.loras():
                    loras[str(lora.get("name") or lora.get("alias"))] = None
            break
        except Exception as exc:  # a WebUI without the Lora extension, or down
            log.info("no LoRA list from %s: %s", backend.name, type(exc).__name__)
    return Catalogue([n for n in titles if n], samplers(backends), list(loras))

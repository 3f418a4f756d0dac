"""What the backends can draw with (checkpoints, samplers, upscalers, LoRAs), and a request
checked against it: the WebUI silently swaps an unknown sampler and ignores an unknown model,
so a job is queued only when some backend has everything it needs, and the user who asks for
what none has is told which backends exist and what each offers."""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.backends import Backend, Needs, needs_of
from bot.checkpoints import model_key, model_label
from bot.errors import NoBackendCanDraw, OptionError, RefusedError
from bot.i18n import Phrase, t
from bot.payload import Resolved
from bot.types import Catalogue, Checkpoint, Mode

log = logging.getLogger(__name__)

LORA_TIMEOUT = 5.0  # seconds to wait for a backend's LoRA list
OFFER_LIMIT = 12  # names listed per backend in a refusal

# the order missing things are named in, and the catalogue key of each kind
KINDS = ("model", "sampler", "upscaler", "lora", "style", "control")


def check(spec: Resolved, backends: Sequence[Backend]) -> Needs:
    """Reject what no backend can draw; names are matched as people write them (the sampler
    and model are rewritten to a backend's spelling). Returns what the job needs."""
    listed = [b for b in backends if b.listing is not None]
    if not listed:
        return needs_of(spec)  # nothing answered yet: it waits for a backend that can draw it
    # as typed on some backend: most draws (the default sampler); the set only for the rest
    if not any(spec.sampler in b.listing.samplers for b in listed):  # type: ignore[union-attr]
        known_samplers = {s for b in listed for s in b.offers("sampler")}
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
        titles = {title: None for b in listed for title in b.listing.titles() if title}  # type: ignore[union-attr]
        if titles:
            spec.model = match_model(spec.model, list(titles))
    needs = needs_of(spec)
    _known_names(needs.loras, [b.listing.loras for b in listed], "lora")  # type: ignore[union-attr]
    _known_names(needs.styles, [b.listing.styles for b in listed], "style")  # type: ignore[union-attr]
    if not any(not b.lacks(needs) for b in listed):
        raise undrawable(needs, listed)
    return needs


def _known_names(wanted: Sequence[str], lists: Sequence[list[str] | None], kind: str) -> None:
    """Refuse a misspelt LoRA or style with the nearest names ("did you mean"): the WebUI
    would draw without it, silently. A name like none of them is left to the routing's
    refusal, which names what each backend offers."""
    if not wanted:
        return  # most draws: nothing to look up among hundreds of names
    known = sorted({n for names in lists for n in names or ()})
    for name in wanted:
        if name in known:
            continue
        lowered = {k.lower(): k for k in known}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
        close = close or difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        if close:
            raise OptionError(f"option.unknown_{kind}", name=name, close=", ".join(close))


def check_favourites(
    loras: Sequence[str], styles: Sequence[str], backends: Sequence[Backend]
) -> None:
    """Favourite LoRAs and styles as /settings saves them, checked like a typed --lora and
    --style against what the up backends report: a misspelt name gets "did you mean", one no
    backend has the routing's refusal; RefusedError when no backend answered to check with."""
    if not loras and not styles:
        return
    listed = [b for b in backends if b.up and b.listing is not None]
    if not listed:
        raise RefusedError("settings.cannot_check")
    _known_names(loras, [b.listing.loras for b in listed], "lora")  # type: ignore[union-attr]
    _known_names(styles, [b.listing.styles for b in listed], "style")  # type: ignore[union-attr]
    # each on its own: any backend that has it will do (together is the draw's concern)
    wanted = [Needs(Mode.TXT2IMG, loras=(n,)) for n in loras]
    wanted += [Needs(Mode.TXT2IMG, styles=(n,)) for n in styles]
    for needs in wanted:
        if all(b.lacks(needs) for b in listed):
            raise undrawable(needs, listed)


async def check_fresh(
    spec: Resolved, backends: Sequence[Backend], refresh: Callable[[], Awaitable[bool]]
) -> Needs:
    """`check`, and when it refuses, once more after fetching the catalogues again: a model
    added to a WebUI while drawbridge runs is usable without a restart."""
    try:
        return check(spec, backends)
    except (OptionError, NoBackendCanDraw):
        if not await refresh():
            raise
        return check(spec, backends)


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


def undrawable(needs: Needs, backends: Sequence[Backend]) -> NoBackendCanDraw:
    """The refusal for a job no backend can draw: what it needs that is missing, and what each
    backend offers of those kinds (backends by their public name, never host:port)."""
    listed = [b for b in backends if b.listing is not None]
    lacking = {m for b in listed for m in b.lacks(needs) if m.kind in KINDS}
    anywhere = {m for m in lacking if all(m in b.lacks(needs) for b in listed)}
    named = sorted(anywhere or lacking, key=lambda m: (KINDS.index(m.kind), m.name))
    kinds = [k for k in KINDS if any(m.kind == k for m in named)]

    def missing(locale: str | None) -> str:
        return ", ".join(
            t(
                locale,
                f"route.missing.{m.kind}",
                name=model_label(m.name) if m.kind == "model" else m.name,
            )
            for m in named
        )

    def offers(locale: str | None) -> str:
        lines = []
        for backend in listed:
            parts = []
            for kind in kinds:
                names = backend.offers(kind)
                shown = ", ".join(names[:OFFER_LIMIT]) + (" …" if len(names) > OFFER_LIMIT else "")
                parts.append(t(locale, f"route.offer.{kind}", names=shown or "–"))
            lines.append(
                t(
                    locale,
                    "route.offer",
                    backend=backend.public_name().render(locale),
                    what="; ".join(parts),
                )
            )
        return "\n".join(lines)

    key = "route.none" if anywhere else "route.none_together"
    return NoBackendCanDraw(key, missing=Phrase(missing), offers=Phrase(offers))


def names_of(backends: Sequence[Backend], kind: str) -> list[str]:
    """The names of one kind (upscaler, lora, style) every backend offers, without repeats."""
    names: dict[str, None] = {}
    for backend in backends:
        names.update(dict.fromkeys(backend.offers(kind)))
    return list(names)


def samplers(backends: Sequence[Backend]) -> list[str]:
    """Sampler names of every backend, without repeats."""
    names: dict[str, None] = {}
    for backend in backends:
        names.update(dict.fromkeys(backend.offers("sampler")))
    return list(names)


def checkpoints(backends: Sequence[Backend]) -> list[Checkpoint]:
    """Checkpoints of every backend, without repeats."""
    found: dict[str, Checkpoint] = {}
    for backend in backends:
        if backend.listing is None:
            continue
        for model in backend.listing.checkpoints:
            title = str(model.get("title") or model.get("model_name") or "")
            name = str(model.get("model_name") or "")
            if title and title not in found and backend.checkpoint_for(title):
                found[title] = Checkpoint(model_label(title), title, name)
    return list(found.values())


async def gather(backends: Sequence[Backend]) -> Catalogue:
    """Checkpoints, samplers and LoRAs of every backend, no repeats (LoRAs asked afresh of the
    first backend that answers when none were listed)."""
    titles = {c.label: None for c in checkpoints(backends)}
    loras: dict[str, None] = {}
    for backend in backends:
        loras.update(dict.fromkeys(backend.offers("lora")))
    if not loras:
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
    embeddings: dict[str, None] = {}
    for backend in backends:
        if not backend.up:
            continue
        try:
            async with asyncio.timeout(LORA_TIMEOUT):
                embeddings.update(dict.fromkeys(await backend.client.embeddings()))
        except Exception as exc:  # an old WebUI without the route, or down
            log.info("no embeddings from %s: %s", backend.name, type(exc).__name__)
    return Catalogue(
        [n for n in titles if n],
        samplers(backends),
        list(loras),
        sorted(embeddings),
        names_of(backends, "style"),
    )

"""`drawbridge backends`: each configured WebUI probed afresh (flavour, loaded model, what it
offers, how progress is bound, frozen settings), beside drawbridge's own jobs and what the
running service knows that a probe cannot see (cool-off after failures, from its state file)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bot.backends import Backend, frozen_notice
from bot.checkpoints import model_label
from bot.errors import DrawbridgeError
from bot.i18n import t, tn
from bot.settings import Settings
from bot.webui.client import WebUIClient
from storage.db import Database

STATE_FILE = "backends.json"  # in DATA_DIR, written by the running service's dispatcher
NAMES_SHOWN = 20


def state_path(settings: Settings) -> Path:
    """Where the running service keeps its view of the backends."""
    return settings.data_dir / STATE_FILE


def read_state(path: Path) -> dict[str, Any] | None:
    """The running service's view of its backends, or None when there is none (not running
    yet, another DATA_DIR, an unreadable file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("backends"), list) else None


async def backend_lines(
    settings: Settings, db: Database, *, refresh: bool = False
) -> tuple[list[str], bool]:
    """Lines per backend and one for the queue; False when every backend is down. With
    `refresh`, every WebUI rescans its checkpoint and LoRA folders first."""
    jobs = await db.jobs.list_by_state(["queued", "running"])
    running: dict[str, int] = {}
    for job in jobs:
        if job.state == "running" and job.backend:
            running[job.backend] = running.get(job.backend, 0) + 1
    state = read_state(state_path(settings))
    seen = {str(b.get("url")): b for b in (state or {}).get("backends", []) if isinstance(b, dict)}
    lines: list[str] = []
    failed = 0
    for i, url in enumerate(settings.webui_urls):
        label = settings.webui_names[i] if i < len(settings.webui_names) else ""
        async with WebUIClient(
            url,
            auth=settings.webui_credentials(),
            timeout=max(30.0, settings.webui_connect_timeout * 2),
            connect_timeout=settings.webui_connect_timeout,
        ) as client:
            backend = Backend(client, index=i + 1, label=label)
            backend.frozen_told = True  # shown in its block, not logged
            block, ok = await _backend_block(backend, running.get(backend.url, 0), refresh)
        failed += not ok
        lines += block
        lines += _seen_lines(seen.get(backend.url))
    if state and any(_seen_lines(seen.get(b)) for b in seen):
        lines.append(
            t(
                "en",
                "backends.state_from",
                pid=state.get("pid", "?"),
                host=state.get("host", "?"),
                when=state.get("written_at", "?"),
            )
        )
    queued = [job for job in jobs if job.state == "queued"]
    users = tn("en", "backends.users", len({job.user_key for job in queued}))
    lines.append(tn("en", "backends.queue", len(queued), users=users))
    return lines, failed < len(settings.webui_urls)


async def _backend_block(backend: Backend, jobs: int, refresh: bool) -> tuple[list[str], bool]:
    """One backend: its health line, then what it offers and how drawbridge treats it."""
    name = backend.public_name().render("en")
    client = backend.client
    extra: list[str] = []
    try:
        await client.ping()
        identity = await backend.identify()
        if refresh:
            try:
                await client.refresh_checkpoints()
                await client.refresh_loras()
                extra.append(t("en", "backends.refreshed"))
            except DrawbridgeError as exc:
                extra.append(t("en", "backends.refresh_failed", error=exc.render("en")))
        await backend.refresh()
        progress = await client.progress(skip_current_image=True)
    except DrawbridgeError as exc:
        line = t(
            "en",
            "backends.line_down",
            name=name,
            where=client.display,
            error=exc.render("en"),
            jobs=jobs,
        )
        return [line], False
    busy = (
        t(
            "en",
            "backends.busy",
            percent=round(progress.progress * 100),
            job=progress.job or "job",
        )
        if progress.active
        else t("en", "backends.idle")
    )
    loaded = identity.loaded_model
    lines = [
        t(
            "en",
            "backends.line_up",
            name=name,
            where=client.display,
            flavour=identity.flavour.display_name,
            model=model_label(loaded) if loaded else "?",
            busy=busy,
            jobs=jobs,
        )
    ]
    listing = backend.listing
    if listing is not None:
        lines.append(
            t(
                "en",
                "backends.catalogue",
                checkpoints=tn("en", "backends.count.checkpoints", len(listing.checkpoints)),
                samplers=tn("en", "backends.count.samplers", len(listing.samplers)),
                upscalers=tn("en", "backends.count.upscalers", len(backend.offers("upscaler"))),
                loras=tn("en", "backends.count.loras", len(backend.offers("lora"))),
            )
        )
        names = backend.offers("model")
        shown = ", ".join(names[:NAMES_SHOWN]) + (" …" if len(names) > NAMES_SHOWN else "")
        lines.append(t("en", "backends.checkpoints", names=shown or "–"))
    mode = "task" if identity.binds_tasks else "timestamp"
    lines.append(t("en", f"backends.binding.{mode}"))
    if identity.frozen != frozenset():
        lines.append("  " + frozen_notice(backend))
    return lines + extra, True


def _seen_lines(seen: dict[str, Any] | None) -> list[str]:
    """Cool-off and failures in a row, as the running service saw them."""
    if not seen:
        return []
    failures = int(seen.get("failures") or 0)
    error = str(seen.get("last_error") or "?")
    until = seen.get("cooling_until")
    left = float(until) - time.time() if isinstance(until, int | float) else 0.0
    if left > 0:
        return [tn("en", "backends.cooling", failures, seconds=f"{left:.0f}", error=error)]
    if failures:
        return [tn("en", "backends.failing", failures, error=error)]
    return []

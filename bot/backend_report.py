"""`drawbridge backends`: each configured WebUI probed afresh, beside drawbridge's own jobs."""

from __future__ import annotations

from bot.errors import DrawbridgeError
from bot.settings import Settings
from bot.webui.client import WebUIClient
from storage.db import Database


async def backend_lines(settings: Settings, db: Database) -> tuple[list[str], bool]:
    """One line per backend and one for the queue; False when every backend is down."""
    jobs = await db.jobs.list_by_state(["queued", "running"])
    running: dict[str, int] = {}
    for job in jobs:
        if job.state == "running" and job.backend:
            running[job.backend] = running.get(job.backend, 0) + 1
    lines = []
    failed = 0
    for url in settings.webui_urls:
        line, ok = await _backend_line(settings, url)
        failed += not ok
        lines.append(f"{line}  drawbridge jobs on it: {running.get(url, 0)}")
    queued = [job for job in jobs if job.state == "queued"]
    users = len({job.user_key for job in queued})
    lines.append(f"queue: {len(queued)} job(s) waiting from {users} user(s)")
    return lines, failed < len(settings.webui_urls)


async def _backend_line(settings: Settings, url: str) -> tuple[str, bool]:
    """One backend's health, loaded model and what it is doing."""
    async with WebUIClient(
        url,
        auth=settings.webui_credentials(),
        timeout=settings.webui_connect_timeout * 2,
        connect_timeout=settings.webui_connect_timeout,
    ) as client:
        try:
            await client.ping()
            options = await client.options()
            progress = await client.progress(skip_current_image=True)
        except DrawbridgeError as exc:
            return f"{client.display}  DOWN  {exc.render('en')}", False
        busy = (
            f"busy {progress.progress:.0%} ({progress.state.get('job') or 'job'})"
            if progress.active
            else "idle"
        )
        model = options.get("sd_model_checkpoint")
        return f"{client.display}  UP  model {model}  {busy}", True

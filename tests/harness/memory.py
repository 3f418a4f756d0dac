"""The in-memory adapter (errbot's test backend is the model): a conversation with the service
as a transcript, with no platform and no fakes, so core flows read like a chat.

    async with memory_service(tmp_path, webui) as service:
        alice = MemoryChat(service, "alice")
        await alice.send("/draw a fox --seed 1")
        result = await alice.result()
        assert result.images[0].seed == 1

`MemoryReplier` is the replier behind it (also usable on its own against the engine): it records
every update, result and failure the core sends one conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.presets import PresetBook
from bot.service import Service
from bot.texts import queue_lines, quota_text, settings_lines, status_text
from bot.types import JobHandle, JobResult, JobState, JobUpdate, Pictures, Pressed, Requester
from devwebui import DevWebUI
from tests.harness.settings import SMALL, make_settings

PLATFORM = "memory"


class MemoryReplier:
    """Records everything the engine tells one conversation."""

    def __init__(self, name: str = "", log: list[tuple[str, str, str]] | None = None) -> None:
        self.name = name
        self.updates: list[JobUpdate] = []
        self.results: list[JobResult] = []
        self.failures: list[tuple[str, DrawbridgeError, int]] = []
        self.log = log if log is not None else []
        self._changed = asyncio.Event()

    async def update(self, update: JobUpdate) -> None:
        self.updates.append(update)
        if update.state is JobState.RUNNING and update.progress == 0.0:
            self.log.append(("started", self.name, update.job_id))
        self._changed.set()

    async def deliver(self, result: JobResult) -> None:
        self.results.append(result)
        self.log.append(("done", self.name, result.job_id))
        self._changed.set()

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        self.failures.append((job_id, error, refunded))
        self.log.append(("failed", self.name, job_id))
        self._changed.set()

    @property
    def finished(self) -> int:
        return len(self.results) + len(self.failures)

    async def wait(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until predicate(self) holds."""

        async def _loop() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_loop(), timeout)


class MemoryChat:
    """One user's chat with drawbridge: `send` text, `press` buttons, read `said`."""

    def __init__(
        self, service: Service, user: str, *, admin: bool = False, locale: str = "en"
    ) -> None:
        self.service = service
        self.requester = Requester(
            PLATFORM, user, user.title(), chat_id=f"chat-{user}", locale=locale, is_admin=admin
        )
        self.said: list[str] = []  # everything the bot answered, in order
        self.replier = MemoryReplier(user)
        self.handles: list[JobHandle] = []

    @property
    def locale(self) -> str:
        return self.requester.locale

    def _say(self, text: str) -> str:
        self.said.append(text)
        return text

    async def send(self, text: str, pictures: Pictures = Pictures()) -> str:
        """A message to the bot; returns the bot's immediate answer (also in `said`)."""
        command, _, rest = text.strip().partition(" ")
        handler = _COMMANDS.get(command)
        if handler is None:
            return self._say(t(self.locale, "error.input", detail=f"unknown command {command}"))
        try:
            return self._say(await handler(self, rest.strip(), pictures))
        except DrawbridgeError as exc:
            return self._say(exc.render(self.locale))

    async def press(self, key: str, kind: str) -> str:
        """A result button of `kind` carrying `key`; returns what the bot answered."""
        try:
            pressed: Pressed = await self.service.press(
                self.requester, key, self.replier, kind=kind
            )
        except DrawbridgeError as exc:
            return self._say(exc.render(self.locale))
        if pressed.handle is not None:
            self.handles.append(pressed.handle)
            return self._say(f"{pressed.kind}: job {pressed.handle.job_id}")
        return self._say(f"{pressed.kind}: done")

    # --- what comes later ----------------------------------------------------------------------
    async def result(self, count: int = 1, timeout: float = 10.0) -> JobResult:
        """The `count`-th result delivered to this chat."""
        await self.replier.wait(lambda r: len(r.results) >= count, timeout)
        return self.replier.results[count - 1]

    async def failure(self, count: int = 1, timeout: float = 10.0) -> str:
        """The `count`-th failure or cancellation, as the user reads it."""
        await self.replier.wait(lambda r: len(r.failures) >= count, timeout)
        _, error, refunded = self.replier.failures[count - 1]
        return error.render(self.locale)

    def status(self) -> str:
        """The status line the user would see now."""
        update = self.replier.updates[-1]
        return status_text(self.locale, update, self.service.settings.max_attempts, 4096)


async def _draw(chat: MemoryChat, rest: str, pictures: Pictures) -> str:
    request = chat.service.parse(rest, require_prompt=pictures.init is None)
    handle = await chat.service.draw(chat.requester, request, chat.replier, pictures=pictures)
    chat.handles.append(handle)
    return f"queued job {handle.job_id} ({handle.cost} credits)"


async def _cancel(chat: MemoryChat, rest: str, _: Pictures) -> str:
    cancelled = await chat.service.cancel(chat.requester, rest or None)
    return f"cancelled job {cancelled.job_id}, {cancelled.refunded} credits back"


async def _queue(chat: MemoryChat, rest: str, _: Pictures) -> str:
    return "\n".join(queue_lines(chat.service.queue(chat.requester), chat.locale))


async def _quota(chat: MemoryChat, rest: str, _: Pictures) -> str:
    view = await chat.service.quota(chat.requester.key)
    return quota_text(chat.locale, view, chat.requester.display_name)


async def _settings(chat: MemoryChat, rest: str, _: Pictures) -> str:
    field, _, value = rest.partition(" ")
    if not field:
        values = await chat.service.defaults(chat.requester)
    elif field == "reset":
        values = await chat.service.change_defaults(chat.requester, {"reset": True})
    else:
        values = await chat.service.change_defaults(chat.requester, {field: value or None})
    return "\n".join(settings_lines(chat.locale, chat.service.presets, values.as_dict()))


async def _help(chat: MemoryChat, rest: str, _: Pictures) -> str:
    return "\n".join(chat.service.help_lines(chat.locale))


_COMMANDS: dict[str, Callable[[MemoryChat, str, Pictures], Any]] = {
    "/draw": _draw,
    "/cancel": _cancel,
    "/queue": _queue,
    "/quota": _quota,
    "/settings": _settings,
    "/help": _help,
}


@contextlib.asynccontextmanager
async def memory_service(
    tmp_path: Path,
    webui: DevWebUI | list[DevWebUI],
    *,
    presets: PresetBook | None = SMALL,
    resumed: Callable[[Requester, dict[str, Any]], MemoryReplier] | None = None,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """A started Service over DevWebUI backends, with the memory platform registered (jobs of
    it resumed at start go to `resumed`, or to a fresh MemoryReplier)."""
    backends = webui if isinstance(webui, list) else [webui]
    settings = make_settings(tmp_path, [b.url for b in backends], **overrides)
    service = Service(settings, presets=presets)
    service.register_replier(PLATFORM, resumed or (lambda requester, ref: MemoryReplier()))
    async with service:
        yield service

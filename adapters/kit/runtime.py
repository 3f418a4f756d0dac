"""What every handler and replier of one running bot shares: the service, the settings, the
platform's client once it is usable, and the background tasks shutdown cancels."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Self, TypeVar

from pydantic import SecretStr

from adapters.kit.adapter import AdapterStartError
from adapters.kit.limits import Admission, InputLimits
from adapters.kit.outbox import LaneSpec, Outbox, Verdict
from adapters.kit.spool import Spool
from adapters.kit.tasks import TaskSet
from bot.service import Service
from bot.settings import Settings
from bot.types import Replier, Requester

READY_TIMEOUT = 120.0  # a job resumed at startup waits this long for the platform to come up
MIB = 1024 * 1024

WRITES_GRACE = 5.0  # seconds shutdown waits for the adapter's pending database writes

Client = TypeVar("Client")


class NotReady(RuntimeError):
    """The platform's client did not come up in time, so a reply cannot be sent."""


class Runtime(Generic[Client]):
    """Shared state of one bot of `platform`; `set_ready(client)` once it can send."""

    platform: str = ""
    token_setting: str = ""  # the Settings field holding this platform's token

    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        secret = getattr(settings, self.token_setting, None) if self.token_setting else None
        token = secret.get_secret_value() if isinstance(secret, SecretStr) else None
        # which bot answers this platform's jobs: only processes running it take them over
        self.route = bot_route(self.platform, token)
        self.client: Client | None = None
        self.tasks = TaskSet()
        # database writes the adapter started (where a status message is): shutdown lets them
        # land, or a restart would post a new message instead of editing the one users saw
        self.writes = TaskSet()
        self._ready = asyncio.Event()
        # the edge: what leaves (the outbox), what waits to leave (the spool), what comes in
        self.outbox = self.make_outbox()
        service.metrics.watch_outbox(self.platform, self.outbox)  # /metrics counts its retries
        self.spool = Spool(settings.delivery_memory_mb * MIB, service.stored_picture)
        self.limits = InputLimits(settings.user_rate_limit, settings.user_rate_period)

    def make_outbox(self) -> Outbox:
        """The platform's outbox (a platform with its own budgets overrides this)."""
        return Outbox(_Unlimited(), retry_seconds=self.settings.delivery_retry_seconds)

    async def admit(self, user_key: str) -> Admission:
        """The per-user input limit, before anything is answered."""
        return await self.limits.admit(user_key)

    def resume_with(self, from_ref: Callable[[Self, Requester, dict[str, Any]], Replier]) -> None:
        """Register how a job of this platform finds its conversation again after a restart
        (`from_ref(runtime, requester, reply_ref)`); before the service starts."""
        self.service.register_replier(
            self.platform, lambda requester, ref: from_ref(self, requester, ref), route=self.route
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task (status edits) that shutdown cancels."""
        return self.tasks.spawn(coro)

    def spawn_write(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background database write that shutdown waits for (a few seconds at most)."""
        return self.writes.spawn(coro)

    async def cancel_tasks(self) -> None:
        """Let pending writes land (bounded), then cancel what `spawn` started and wait."""
        await self.writes.finish(WRITES_GRACE)
        await self.writes.cancel_all()
        await self.tasks.cancel_all()

    def set_ready(self, client: Client) -> None:
        """The client can send now; repliers waiting in `wait_ready` go on."""
        self.client = client
        self._ready.set()

    @property
    def is_ready(self) -> bool:
        """Whether `set_ready` has run."""
        return self._ready.is_set()

    async def wait_ready(self) -> Client:
        """The usable client (jobs resumed at startup may finish before the platform is up)."""
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), READY_TIMEOUT)
            except TimeoutError:
                raise NotReady(f"the {self.platform} client did not start") from None
        assert self.client is not None
        return self.client

    def make_requester(
        self, user_id: str, display_name: str, chat_id: str, locale: str
    ) -> Requester:
        """The neutral Requester for a user of this platform (ADMIN_IDS decide is_admin)."""
        return Requester(
            platform=self.platform,
            user_id=user_id,
            display_name=display_name,
            chat_id=chat_id,
            locale=locale,
            is_admin=self.settings.is_admin(f"{self.platform}:{user_id}"),
        ).shared()


def bot_route(platform: str, token: str | None) -> str:
    """The bot a token belongs to, as "platform:bot id", without the token's secret part:
    Telegram's numeric id before the colon, Discord's user id its first segment encodes (both
    stay when the token is reset), else a short hash. The platform alone without a token."""
    if not token:
        return platform
    head, colon, _ = token.partition(":")
    if colon and head.isdigit():
        return f"{platform}:{head}"
    first = token.split(".", 1)[0]
    try:
        decoded = base64.b64decode(first + "=" * (-len(first) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if decoded.isdigit():
        return f"{platform}:{decoded}"
    return f"{platform}:{hashlib.blake2b(token.encode(), digest_size=6).hexdigest()}"


def token_of(
    secret: SecretStr | None, setting: str, error: type[AdapterStartError] = AdapterStartError
) -> str:
    """The platform token, or `error` naming the setting to set."""
    if secret is None:
        raise error(f"{setting} is not set")
    return secret.get_secret_value()


class _Unlimited:
    """A platform plug without budgets of its own; every failure is fatal."""

    def lane_spec(self, lane: object) -> LaneSpec:
        return LaneSpec()

    def verdict(self, exc: BaseException) -> Verdict:
        return Verdict.FATAL

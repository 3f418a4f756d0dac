"""What every handler and replier of one running bot shares: engine, settings and the Bot."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, Chat, Message, ReplyParameters, User

from bot.engine import Engine
from bot.settings import Settings
from bot.tasks import TaskSet
from bot.types import Requester

PLATFORM = "telegram"
READY_TIMEOUT = 120.0  # a resumed job waits this long for the bot to come up


class NotReady(RuntimeError):
    """The Telegram bot did not start in time, so a result cannot be sent."""


@dataclass
class Runtime:
    """Shared state of one bot; `bot` is set once the Application is built."""

    engine: Engine
    settings: Settings
    bot: Bot | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    username: str = ""
    tasks: TaskSet = field(default_factory=TaskSet)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task (status edits) that shutdown cancels."""
        return self.tasks.spawn(coro)

    async def cancel_tasks(self) -> None:
        """Cancel what `spawn` started and wait for it."""
        await self.tasks.cancel_all()

    async def wait_bot(self) -> Bot:
        """The initialized Bot (jobs resumed at startup may run before polling starts)."""
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT)
            except TimeoutError:
                raise NotReady("the Telegram bot did not start") from None
        assert self.bot is not None
        return self.bot

    def requester(self, user: User | None, chat: Chat | None) -> Requester:
        """The neutral Requester for a Telegram user in a chat."""
        if user is None:
            raise ValueError("an update without a user")
        user_id = str(user.id)
        return Requester(
            platform=PLATFORM,
            user_id=user_id,
            display_name=user.full_name or user.username or user_id,
            chat_id=str(chat.id if chat is not None else user.id),
            locale=user.language_code or "en",
            is_admin=self.settings.is_admin(f"{PLATFORM}:{user_id}"),
        )

    def chat_allowed(self, chat: Chat | None, user: User | None) -> bool:
        """TELEGRAM_ALLOWED_CHATS: empty allows every chat; 'private' allows private chats;
        admins may always use the bot in their private chat."""
        allowed = self.settings.telegram_allowed_chats
        if not allowed or chat is None:
            return True
        if str(chat.id) in allowed:
            return True
        if chat.type == Chat.PRIVATE:
            if "private" in allowed:
                return True
            return user is not None and self.settings.is_admin(f"{PLATFORM}:{user.id}")
        return False


class NullReplier:
    """For `engine.act` calls that start no job (📄 Original, ✖ Cancel)."""

    async def update(self, update: object) -> None:
        return None

    async def deliver(self, result: object) -> None:
        return None

    async def fail(self, job_id: str, error: object, refunded: int) -> None:
        return None


def reply_to(message: Message | None) -> ReplyParameters | None:
    """Reply parameters that still work if the user deleted their message."""
    if message is None:
        return None
    return ReplyParameters(message.message_id, allow_sending_without_reply=True)


def send_kwargs(reply_message_id: int | None, thread_id: int | None = None) -> dict[str, Any]:
    """reply_parameters / message_thread_id for a send_* call."""
    kwargs: dict[str, Any] = {}
    if reply_message_id is not None:
        kwargs["reply_parameters"] = ReplyParameters(
            reply_message_id, allow_sending_without_reply=True
        )
    if thread_id is not None:
        kwargs["message_thread_id"] = thread_id
    return kwargs


def reply_ref(
    chat_id: int,
    status_id: int | None,
    reply_message_id: int | None,
    thread_id: int | None,
    locale: str | None,
    notes: list[str],
) -> dict[str, Any]:
    """What a job stores so a replier can be rebuilt after a restart."""
    return {
        "chat_id": chat_id,
        "status_id": status_id,
        "reply_to": reply_message_id,
        "thread_id": thread_id,
        "locale": locale,
        "notes": notes,
    }

"""What every handler and replier of one running bot shares: the kit's runtime (service,
settings, the Bot once initialized, background tasks) plus Telegram's chat rules."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable
from typing import Any, NamedTuple

from telegram import (
    Bot,
    CallbackQuery,
    Chat,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
    User,
)
from telegram.error import BadRequest, Forbidden
from telegram.ext import ContextTypes

from adapters.kit import Admission, Outbox, Priority
from adapters.kit import Runtime as KitRuntime
from adapters.kit.burst import Bursts
from adapters.telegram.edge import make_outbox
from adapters.telegram.texts import TEXT_MAX, cut
from bot.i18n import t
from bot.service import Service
from bot.settings import Settings
from bot.types import Requester

PLATFORM = "telegram"
ALERT_MAX = 200  # answerCallbackQuery's text limit


class Runtime(KitRuntime[Bot]):
    """Shared state of one bot; `set_ready(bot)` once the Application is initialized."""

    platform = PLATFORM
    token_setting = "telegram_token"
    username: str = ""

    def __init__(self, service: Service, settings: Settings) -> None:
        super().__init__(service, settings)
        self._doomed: dict[int, list[int]] = {}  # status messages waiting to be deleted
        self.bursts = Bursts(self.outbox)  # one status message per user's burst in a chat

    def make_outbox(self) -> Outbox:
        """Telegram's budgets (per chat, per group, overall) and error verdicts."""
        return make_outbox(self.settings)

    # --- what leaves: every message through the outbox ---------------------------------
    def answer(
        self,
        message: Message,
        text: str,
        *,
        markup: InlineKeyboardMarkup | None = None,
        priority: Priority = Priority.NOTICE,
        key: Hashable | None = None,
    ) -> asyncio.Future[Any]:
        """Reply to `message` (quoting it, in its topic) through the outbox; never waits."""
        thread_id = message.message_thread_id if message.is_topic_message else None
        return self.say(
            message.chat_id,
            text,
            reply_to=message.message_id,
            thread_id=thread_id,
            markup=markup,
            priority=priority,
            key=key,
        )

    def say(
        self,
        chat_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
        markup: InlineKeyboardMarkup | None = None,
        priority: Priority = Priority.NOTICE,
        key: Hashable | None = None,
        forever: bool = False,
    ) -> asyncio.Future[Any]:
        """A new message in `chat_id` through the outbox; never waits."""
        text = cut(text, TEXT_MAX)

        async def send() -> Message:
            bot = await self.wait_ready()
            return await bot.send_message(
                chat_id, text, reply_markup=markup, **send_kwargs(reply_to, thread_id)
            )

        return self.outbox.post(
            chat_id, send, what="reply", priority=priority, key=key, forever=forever
        )

    def edit(
        self, chat_id: int, message_id: int, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> asyncio.Future[Any]:
        """Edit one of our text messages (a menu page) through the outbox; the newest wins."""
        text = cut(text, TEXT_MAX)

        async def edit() -> None:
            bot = await self.wait_ready()
            with contextlib.suppress(BadRequest):  # pressed twice: "message is not modified"
                await bot.edit_message_text(
                    text, chat_id=chat_id, message_id=message_id, reply_markup=markup
                )

        key = ("edit", message_id)
        return self.outbox.post(chat_id, edit, what="edit", key=key)

    def drop_message(self, chat_id: int, message_id: int) -> None:
        """Delete one of our messages (a status that made way): deletions waiting in a chat go
        together in one deleteMessages call, retried until Telegram is reachable."""
        self._doomed.setdefault(chat_id, []).append(message_id)

        async def delete() -> None:
            ids = self._doomed.pop(chat_id, [])
            if not ids:
                return
            bot = await self.wait_ready()
            try:
                if len(ids) == 1:
                    await bot.delete_message(chat_id, ids[0])
                else:
                    await bot.delete_messages(chat_id, ids)
            except (BadRequest, Forbidden):
                pass  # gone already, or we were removed from the chat
            except BaseException:
                self._doomed.setdefault(chat_id, []).extend(ids)  # for the retry
                raise

        self.outbox.post(
            chat_id,
            delete,
            what="deletion",
            priority=Priority.CLEANUP,
            key=("delete",),
            counts=False,
            forever=True,
        )

    # --- what comes in: per-user input limits ------------------------------------------
    async def admit_message(self, requester: Requester, message: Message) -> bool:
        """Whether to take this command; past the user's limit, one "slow down" answer."""
        admission = await self.admit(requester.key)
        if admission is Admission.WARN:
            text = t(requester.locale, "input.slow_down", seconds=self.limits.wait_seconds())
            self.answer(message, text, priority=Priority.REFUSAL, key=("slow", requester.user_id))
        return admission is Admission.TAKE

    async def admit_press(self, requester: Requester, query: CallbackQuery) -> bool:
        """Whether to take this button press; past the limit it is answered privately (an
        alert the first time, then only the spinner stops)."""
        admission = await self.admit(requester.key)
        if admission is Admission.TAKE:
            return True
        text = None
        if admission is Admission.WARN:
            text = t(requester.locale, "input.slow_down", seconds=self.limits.wait_seconds())
        await answer_query(query, text)
        return False

    def requester(self, user: User | None, chat: Chat | None) -> Requester:
        """The neutral Requester for a Telegram user in a chat."""
        if user is None:
            raise ValueError("an update without a user")
        user_id = str(user.id)
        return self.make_requester(
            user_id,
            user.full_name or user.username or user_id,
            str(chat.id if chat is not None else user.id),
            user.language_code or "en",
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


async def asked(
    update: Update, context: ContextTypes.DEFAULT_TYPE
) -> tuple[Runtime, Message, Requester] | None:
    """What a command handler needs: the runtime, the message and who sent it (None when the
    update carries no message, or the user is over their input limit)."""
    message = update.effective_message
    if message is None:
        return None
    rt: Runtime = context.bot_data["runtime"]
    requester = rt.requester(update.effective_user, update.effective_chat)
    if not await rt.admit_message(requester, message):
        return None
    return rt, message, requester


async def answer_query(query: CallbackQuery, alert: str | None = None) -> None:
    """Answer a button press: privately, as an alert when there is something to say (never a
    public message); a press answered too late is only logged by the caller's error handler."""
    with contextlib.suppress(BadRequest):  # "query is too old": the spinner has stopped
        if alert is None:
            await query.answer()
        else:
            await query.answer(cut(alert, ALERT_MAX), show_alert=True)


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
) -> dict[str, Any]:
    """What a job stores so a replier can be rebuilt after a restart."""
    return {
        "chat_id": chat_id,
        "status_id": status_id,
        "reply_to": reply_message_id,
        "thread_id": thread_id,
        "locale": locale,
    }


class Press(NamedTuple):
    """A button press a handler may act on: the bot's runtime, the query, who pressed."""

    rt: Runtime
    query: CallbackQuery
    requester: Requester
    data: str


async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Press | None:
    """The press behind `update`, once admitted (past the presser's limit it was answered,
    and None comes back, as for an update without a button's data)."""
    rt: Runtime = context.bot_data["runtime"]
    query = update.callback_query
    if query is None or query.data is None:
        return None
    requester = rt.requester(query.from_user, update.effective_chat)
    if not await rt.admit_press(requester, query):
        return None
    return Press(rt, query, requester, query.data)

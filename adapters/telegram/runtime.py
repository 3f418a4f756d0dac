"""What every handler and replier of one running bot shares: the kit's runtime (service,
settings, the Bot once initialized, background tasks) plus Telegram's chat rules."""

from __future__ import annotations

from typing import Any

from telegram import Bot, Chat, Message, ReplyParameters, Update, User
from telegram.ext import ContextTypes

from adapters.kit import Runtime as KitRuntime
from bot.types import Requester

PLATFORM = "telegram"


class Runtime(KitRuntime[Bot]):
    """Shared state of one bot; `set_ready(bot)` once the Application is initialized."""

    platform = PLATFORM
    token_setting = "telegram_token"
    username: str = ""

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


def asked(
    update: Update, context: ContextTypes.DEFAULT_TYPE
) -> tuple[Runtime, Message, Requester] | None:
    """What a command handler needs: the runtime, the message and who sent it (None when the
    update carries no message)."""
    message = update.effective_message
    if message is None:
        return None
    rt: Runtime = context.bot_data["runtime"]
    return rt, message, rt.requester(update.effective_user, update.effective_chat)


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

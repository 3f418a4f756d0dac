"""/draw, plain text in a private chat, and pictures: parse, enqueue, return (the outbox
acknowledges: submit first, talk later).

Where the picture comes from decides the mode (the core decides the mask):

* a photo/image file with a /draw caption (or any caption in a private chat) → img2img from it;
* /draw (or private text) replying to a picture → img2img from the replied picture;
* a picture replying to a picture → inpaint: the replied one is the init image, the new one
  says what to change (painted-over copy, black-and-white mask or transparent PNG).
"""

from __future__ import annotations

import logging

from telegram import Chat, Message, Update
from telegram.ext import ContextTypes

from adapters.kit import Priority
from adapters.telegram.describe import describe
from adapters.telegram.media import ImageRef, fetch, image_of, is_image_file, not_an_image
from adapters.telegram.replier import TelegramReplier
from adapters.telegram.runtime import Runtime
from adapters.telegram.texts import prompt_from_caption, split_command
from bot.errors import DrawbridgeError, OptionError
from bot.i18n import t
from bot.types import Pictures

log = logging.getLogger(__name__)


async def draw(
    rt: Runtime,
    message: Message,
    text: str,
    *,
    init: ImageRef | None = None,
    mask: ImageRef | None = None,
    admitted: bool = False,
) -> None:
    """One draw request from `message`: parsed, persisted and queued before anything is sent
    (the status message is the job's first status, sent by the outbox); errors are answered;
    nothing waits for the picture."""
    user = message.from_user
    requester = rt.requester(user, message.chat)
    if not admitted and not await rt.admit_message(requester, message):
        return
    locale = requester.locale
    bot = message.get_bot()
    refusal = ("refusal", requester.user_id)  # a flood of refusals coalesces into one
    if not text and init is not None:
        # "change this part" with no words: keep the prompt of the picture replied to
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == bot.id:
            text = prompt_from_caption(replied.caption)
    try:
        request = rt.service.parse(text, require_prompt=init is None)
    except OptionError as exc:
        rt.answer(message, exc.render(locale), priority=Priority.REFUSAL, key=refusal)
        return
    control: ImageRef | None = None
    if request.control is not None:
        # --control: the picture sent (or the one replied to) guides; sent while replying to
        # a picture, the replied one is the init picture
        control = mask if mask is not None else init
        init = init if mask is not None else None
        mask = None
    thread_id = message.message_thread_id if message.is_topic_message else None
    try:
        max_bytes = rt.settings.max_upload_bytes
        pictures = Pictures(
            init=await fetch(bot, rt.service, init, max_bytes) if init is not None else None,
            mask=await fetch(bot, rt.service, mask, max_bytes) if mask is not None else None,
            control=(
                await fetch(bot, rt.service, control, max_bytes) if control is not None else None
            ),
        )
        # No status message yet: the job is stored first, and its first status is the
        # acknowledgement (the replier sends it, replying to the user's message).
        replier = TelegramReplier(
            rt,
            requester,
            chat_id=message.chat_id,
            status_id=None,
            reply_to=message.message_id,
            thread_id=thread_id,
            locale=locale,
        )
        await rt.service.draw(
            requester,
            request,
            replier,
            pictures=pictures,
            reply_ref=replier.ref(),
            # Telegram hands an update over again when it was fetched but not confirmed
            # (a process killed meanwhile): the same message is the same job
            source=f"{message.chat_id}:{message.message_id}",
        )
    except DrawbridgeError as exc:
        if exc.private and message.chat.type != Chat.PRIVATE and user is not None:
            rt.say(user.id, exc.render(locale), priority=Priority.REFUSAL, key=refusal)
        else:
            rt.answer(message, exc.render(locale), priority=Priority.REFUSAL, key=refusal)


async def on_draw_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/draw PROMPT [flags], possibly replying to a picture."""
    rt: Runtime = context.bot_data["runtime"]
    message = update.effective_message
    if message is None or message.text is None:
        return
    _, rest = split_command(message.text, rt.username)
    bot_id = message.get_bot().id
    await draw(rt, message, rest, init=image_of(message.reply_to_message, bot_id))


async def on_private_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Plain text in a private chat is /draw."""
    rt: Runtime = context.bot_data["runtime"]
    message = update.effective_message
    if message is None or message.text is None:
        return
    bot_id = message.get_bot().id
    await draw(rt, message, message.text.strip(), init=image_of(message.reply_to_message, bot_id))


async def on_picture(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or file: img2img with a /draw caption, inpaint when it replies to a picture."""
    rt: Runtime = context.bot_data["runtime"]
    message = update.effective_message
    if message is None:
        return
    bot_id = message.get_bot().id
    command, rest = split_command(message.caption, rt.username)
    private = message.chat.type == Chat.PRIVATE
    replied = message.reply_to_message
    to_us = replied is not None and replied.from_user is not None and replied.from_user.id == bot_id
    if command == "describe":  # a picture with /describe as its caption
        await describe(rt, message, image_of(message), rest)
        return
    if command is not None and command != "draw":
        return  # another command, or one for another bot
    if command is None and not (private or to_us):
        return  # groups: only what is addressed to us
    requester = rt.requester(message.from_user, message.chat)
    if not await rt.admit_message(requester, message):
        return
    locale = requester.locale
    own = image_of(message)
    if own is None:
        document = message.document
        if document is not None and not is_image_file(document.mime_type, document.file_name):
            rt.answer(message, not_an_image().render(locale), priority=Priority.REFUSAL)
        return
    base = image_of(replied, bot_id)
    if base is not None:
        await draw(rt, message, rest, init=base, mask=own, admitted=True)
        return
    if command is None and not rest:
        rt.answer(message, t(locale, "telegram.photo_needs_prompt"), priority=Priority.REFUSAL)
        return
    await draw(rt, message, rest, init=own, admitted=True)

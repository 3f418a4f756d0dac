"""Sending finished pictures: a photo when Telegram's limits allow, else a PNG document;
batches as albums with the buttons on a following message."""

from __future__ import annotations

import logging

from telegram import Bot, InlineKeyboardMarkup, InputMediaDocument, InputMediaPhoto, Message
from telegram.error import BadRequest

from adapters.telegram.keyboards import album_keyboard, result_keyboard
from adapters.telegram.runtime import send_kwargs
from adapters.telegram.texts import ALBUM_MAX, fits_photo, meta_line, result_caption
from bot.i18n import t
from bot.types import ImageResult, JobResult

log = logging.getLogger(__name__)


def file_name(job_id: str, index: int) -> str:
    """Name of a result file as users download it."""
    return f"drawbridge-{job_id}-{index + 1}.png"


def _photo_ok(image: ImageResult) -> bool:
    return fits_photo(len(image.png), image.width, image.height)


def _photo_refused(exc: BadRequest) -> bool:
    text = exc.message.upper()
    return "PHOTO" in text or "IMAGE_PROCESS" in text or "TOO BIG" in text


async def send_picture(
    bot: Bot,
    chat_id: int,
    png: bytes,
    name: str,
    *,
    as_photo: bool,
    caption: str | None = None,
    markup: InlineKeyboardMarkup | None = None,
    reply_to: int | None = None,
    thread_id: int | None = None,
) -> Message:
    """A photo if it fits, else (or if Telegram refuses the photo) the PNG as a document."""
    kwargs = send_kwargs(reply_to, thread_id)
    if as_photo:
        try:
            return await bot.send_photo(
                chat_id, png, caption=caption, reply_markup=markup, filename=name, **kwargs
            )
        except BadRequest as exc:
            if not _photo_refused(exc):
                raise
            log.info("photo refused (%s); sending %s as a document", exc.message, name)
    return await bot.send_document(
        chat_id, png, caption=caption, reply_markup=markup, filename=name, **kwargs
    )


async def send_result(
    bot: Bot,
    chat_id: int,
    result: JobResult,
    *,
    locale: str | None,
    reply_to: int | None = None,
    thread_id: int | None = None,
) -> list[Message]:
    """Every picture of a finished job, with the buttons it carries."""
    images = result.images
    notes = result.notes
    if not images:
        return []
    captions = []
    for index, image in enumerate(images):
        meta = meta_line(locale, image, result.model, result.elapsed if index == 0 else None)
        if len(images) == 1:
            captions.append(result_caption(locale, result.prompt, meta, notes))
        elif index == 0:
            captions.append(result_caption(locale, result.prompt, meta, notes, index=0))
        else:
            captions.append(result_caption(locale, "", meta, index=index))
    if len(images) == 1:
        markup = result_keyboard(locale, result, 0)
        sent = await send_picture(
            bot,
            chat_id,
            images[0].png,
            file_name(result.job_id, 0),
            as_photo=_photo_ok(images[0]),
            caption=captions[0],
            markup=markup,
            reply_to=reply_to,
            thread_id=thread_id,
        )
        return [sent]
    messages: list[Message] = []
    for start in range(0, len(images), ALBUM_MAX):
        chunk = list(range(start, min(start + ALBUM_MAX, len(images))))
        as_photos = all(_photo_ok(images[i]) for i in chunk)
        if len(chunk) == 1:
            i = chunk[0]
            messages.append(
                await send_picture(
                    bot,
                    chat_id,
                    images[i].png,
                    file_name(result.job_id, i),
                    as_photo=as_photos,
                    caption=captions[i],
                    reply_to=reply_to,
                    thread_id=thread_id,
                )
            )
            continue
        messages.extend(
            await _album(bot, chat_id, result, chunk, captions, as_photos, reply_to, thread_id)
        )
    markup = album_keyboard(locale, result)
    buttons = await bot.send_message(
        chat_id,
        t(locale, "telegram.album_buttons", count=len(images)),
        reply_markup=markup,
        **send_kwargs(messages[0].message_id, thread_id),
    )
    return [*messages, buttons]


async def _album(
    bot: Bot,
    chat_id: int,
    result: JobResult,
    chunk: list[int],
    captions: list[str],
    as_photos: bool,
    reply_to: int | None,
    thread_id: int | None,
) -> list[Message]:
    def media(photos: bool) -> list[InputMediaPhoto | InputMediaDocument]:
        items: list[InputMediaPhoto | InputMediaDocument] = []
        for i in chunk:
            name = file_name(result.job_id, i)
            png = result.images[i].png
            if photos:
                items.append(InputMediaPhoto(png, caption=captions[i], filename=name))
            else:
                items.append(InputMediaDocument(png, caption=captions[i], filename=name))
        return items

    kwargs = send_kwargs(reply_to, thread_id)
    if as_photos:
        try:
            return list(await bot.send_media_group(chat_id, media(True), **kwargs))
        except BadRequest as exc:
            if not _photo_refused(exc):
                raise
            log.info("album refused as photos (%s); sending documents", exc.message)
    return list(await bot.send_media_group(chat_id, media(False), **kwargs))

"""Sending finished pictures through the outbox: a photo when Telegram's limits allow, else a
PNG document; batches as albums with the buttons on a following message.

Each message is one outbox call at `Priority.RESULT` (retried on network errors and 5xx, a 429
pauses only this chat); the bytes are read from the spool when the call runs, so a result
waiting for its turn holds only its reference.
"""

from __future__ import annotations

import logging

from telegram import InlineKeyboardMarkup, InputMediaDocument, InputMediaPhoto, Message
from telegram.error import BadRequest

from adapters.kit import Held, Priority
from adapters.telegram.keyboards import album_keyboard, result_keyboard
from adapters.telegram.runtime import Runtime, send_kwargs
from adapters.telegram.texts import ALBUM_MAX, fits_photo, meta_line, result_caption
from bot.i18n import t
from bot.types import ImageResult, JobResult

log = logging.getLogger(__name__)


def file_name(job_id: str, index: int) -> str:
    """Name of a result file as users download it."""
    return f"drawbridge-{job_id}-{index + 1}.png"


def _photo_ok(image: ImageResult, held: Held) -> bool:
    return fits_photo(held.size, image.width, image.height)


def _photo_refused(exc: BadRequest) -> bool:
    text = exc.message.upper()
    return "PHOTO" in text or "IMAGE_PROCESS" in text or "TOO BIG" in text


async def send_picture(
    rt: Runtime,
    chat_id: int,
    png: bytes,
    name: str,
    *,
    as_photo: bool,
    caption: str | None = None,
    markup: InlineKeyboardMarkup | None = None,
    reply_to: int | None = None,
    thread_id: int | None = None,
    spoiler: bool = False,
) -> Message:
    """A photo if it fits, else (or if Telegram refuses the photo) the PNG as a document;
    `spoiler` (NSFW_CHECK=spoiler) hides a photo behind Telegram's spoiler."""
    bot = await rt.wait_ready()
    kwargs = send_kwargs(reply_to, thread_id)
    if as_photo:
        try:
            return await bot.send_photo(
                chat_id,
                png,
                caption=caption,
                reply_markup=markup,
                filename=name,
                has_spoiler=spoiler or None,
                **kwargs,
            )
        except BadRequest as exc:
            if not _photo_refused(exc):
                raise
            log.info("photo refused (%s); sending %s as a document", exc.message, name)
    return await bot.send_document(
        chat_id, png, caption=caption, reply_markup=markup, filename=name, **kwargs
    )


async def send_result(
    rt: Runtime,
    chat_id: int,
    result: JobResult,
    held: list[Held],
    *,
    locale: str | None,
    reply_to: int | None = None,
    thread_id: int | None = None,
) -> list[Message]:
    """Every picture of a finished job, with the buttons it carries; raises GaveUp (the
    platform stayed away) or the platform's error."""
    images = result.images
    notes = result.notes
    if not images:
        return []
    outbox = rt.outbox
    captions = []
    for index, image in enumerate(images):
        meta = meta_line(locale, image, result.model, result.elapsed if index == 0 else None)
        if len(images) == 1:
            captions.append(result_caption(locale, result.prompt, meta, notes))
        elif index == 0:
            captions.append(result_caption(locale, result.prompt, meta, notes, index=0))
        else:
            captions.append(result_caption(locale, "", meta, index=index))

    async def picture(i: int, markup: InlineKeyboardMarkup | None, as_photo: bool) -> Message:
        return await send_picture(
            rt,
            chat_id,
            await rt.spool.read(held[i]),
            file_name(result.job_id, i),
            as_photo=as_photo,
            caption=captions[i],
            markup=markup,
            reply_to=reply_to,
            thread_id=thread_id,
            spoiler=images[i].spoiler,
        )

    if len(images) == 1:
        markup = result_keyboard(locale, result, 0)
        as_photo = _photo_ok(images[0], held[0])
        sent = await outbox.send(
            chat_id, lambda: picture(0, markup, as_photo), priority=Priority.RESULT
        )
        return [sent]
    messages: list[Message] = []
    for start in range(0, len(images), ALBUM_MAX):
        chunk = list(range(start, min(start + ALBUM_MAX, len(images))))
        as_photos = all(_photo_ok(images[i], held[i]) for i in chunk)
        if len(chunk) == 1:
            i = chunk[0]
            messages.append(
                await outbox.send(
                    chat_id,
                    lambda i=i, photo=as_photos: picture(i, None, photo),  # type: ignore[misc]
                    priority=Priority.RESULT,
                )
            )
            continue

        async def album(chunk: list[int] = chunk, as_photos: bool = as_photos) -> list[Message]:
            return await _album(
                rt, chat_id, result, held, chunk, captions, as_photos, reply_to, thread_id
            )

        messages.extend(await outbox.send(chat_id, album, priority=Priority.RESULT))
    markup = album_keyboard(locale, result)
    text = t(locale, "telegram.album_buttons", count=len(images))

    async def buttons() -> Message:
        bot = await rt.wait_ready()
        return await bot.send_message(
            chat_id, text, reply_markup=markup, **send_kwargs(messages[0].message_id, thread_id)
        )

    return [*messages, await outbox.send(chat_id, buttons, priority=Priority.RESULT)]


async def _album(
    rt: Runtime,
    chat_id: int,
    result: JobResult,
    held: list[Held],
    chunk: list[int],
    captions: list[str],
    as_photos: bool,
    reply_to: int | None,
    thread_id: int | None,
) -> list[Message]:
    bot = await rt.wait_ready()
    pngs = {i: await rt.spool.read(held[i]) for i in chunk}

    def media(photos: bool) -> list[InputMediaPhoto | InputMediaDocument]:
        items: list[InputMediaPhoto | InputMediaDocument] = []
        for i in chunk:
            name = file_name(result.job_id, i)
            if photos:
                spoiler = result.images[i].spoiler or None
                items.append(
                    InputMediaPhoto(
                        pngs[i], caption=captions[i], filename=name, has_spoiler=spoiler
                    )
                )
            else:
                items.append(InputMediaDocument(pngs[i], caption=captions[i], filename=name))
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

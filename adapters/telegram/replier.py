"""The Replier for one job in one chat: a status message edited in place, then the result.

Everything goes through the chat's lane of the outbox. The first status is the job's
acknowledgement, sent once the job is queued (`Service.draw` has returned: submit first, talk
later); later ones are coalesced edits, at most one per TELEGRAM_EDIT_INTERVAL in the chat. A
job's percentage and the WebUI's preview are shown only once it has run TELEGRAM_PREVIEW_AFTER
seconds (a short job shows "Drawing…": its preview would cost a photo sent and deleted, its
percentage an edit per step). `deliver` waits for Telegram: the result
is retried for DELIVERY_RETRY_SECONDS; if Telegram stays away it raises DeliveryFailed (the
engine refunds, and owes the user a notice in the database: bot.notices) and `fail` then says
so in a new message once Telegram is reachable again, returning when Telegram took it. The status message
never outlives its job: it is deleted (or says "Cancelled") in every ending.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, TelegramError

from adapters.kit import GaveUp, Priority, StatusMessage, StatusView
from adapters.kit.burst import Burst, Place
from adapters.kit.delivery import remember_reply, why
from adapters.telegram.burst import TelegramBoard
from adapters.telegram.delivery import send_result
from adapters.telegram.keyboards import cancel_keyboard
from adapters.telegram.runtime import Runtime, reply_ref, send_kwargs
from adapters.telegram.texts import PHOTO_MAX_BYTES, TEXT_MAX, cut, status_text
from bot.errors import DeliveryFailed, DrawbridgeError
from bot.i18n import t
from bot.service import picture_size
from bot.types import JobResult, JobState, JobUpdate, Requester

log = logging.getLogger(__name__)


def _usable_preview(data: bytes | None) -> bytes | None:
    """A preview Telegram will take as a photo, or None."""
    if not data or len(data) > PHOTO_MAX_BYTES:
        return None
    try:
        width, height = picture_size(data)
    except Exception:
        return None
    if width + height > 10000 or max(width, height) > 20 * min(width, height):
        return None
    return data


class TelegramReplier:
    """Status message + result for one job; rebuilt from `reply_ref` after a restart."""

    __slots__ = (
        "burst",
        "burst_ran",
        "chat_id",
        "job_id",
        "locale",
        "reply_to",
        "requester",
        "rt",
        "running_since",
        "said_soon",
        "status",
        "status_id",
        "status_is_photo",
        "thread_id",
        "undelivered",
    )

    def __init__(
        self,
        rt: Runtime,
        requester: Requester,
        *,
        chat_id: int,
        status_id: int | None,
        reply_to: int | None = None,
        thread_id: int | None = None,
        locale: str | None = None,
        status_is_photo: bool = False,
    ) -> None:
        self.rt = rt
        self.requester = requester
        self.chat_id = chat_id
        self.status_id = status_id
        self.reply_to = reply_to
        self.thread_id = thread_id
        self.locale = locale or requester.locale
        self.job_id: str | None = None
        self.status_is_photo = status_is_photo
        self.running_since: float | None = None
        self.said_soon = False  # the status says the job starts within an edit gap
        self.undelivered = False  # told "could not deliver": no other ending is shown
        self.status = StatusMessage(self._show, rt.outbox, chat_id)
        self.burst: Burst | None = None  # shown in the user's burst message (kit/burst.py)
        self.burst_ran = False  # left its burst as it started: no own status unless it runs long
        if status_id is not None:
            self.status.shown_once = True  # resumed: the acknowledgement went out before

    @classmethod
    def from_ref(cls, rt: Runtime, requester: Requester, ref: dict[str, Any]) -> TelegramReplier:
        """The factory the service uses for jobs resumed after a restart."""
        return cls(
            rt,
            requester,
            chat_id=int(ref.get("chat_id") or requester.chat_id),
            status_id=ref.get("status_id"),
            reply_to=ref.get("reply_to"),
            thread_id=ref.get("thread_id"),
            locale=ref.get("locale"),
            status_is_photo=bool(ref.get("photo")),
        )

    def ref(self) -> dict[str, Any]:
        """What to store with the job so `from_ref` can rebuild this replier."""
        ref = reply_ref(self.chat_id, self.status_id, self.reply_to, self.thread_id, self.locale)
        if self.status_is_photo:
            ref["photo"] = True  # a photo status is edited by caption, not text
        return ref

    # --- engine callbacks ------------------------------------------------------------------
    async def update(self, update: JobUpdate) -> None:
        """Record the new status; the outbox shows it (never blocks the caller). A job that
        waits while another of the user's waits in this chat is shown in their burst's one
        message instead (adapters/kit/burst.py) until it runs long enough for progress."""
        self.job_id = self.status.label = update.job_id
        if update.state is JobState.RUNNING and self.running_since is None:
            self.running_since = time.monotonic()
        long_job = self.running_since is not None and (
            time.monotonic() - self.running_since >= self.rt.settings.telegram_preview_after
        )
        if self._in_burst(update, long_job):
            return
        preview = None
        if self.running_since is not None:
            if long_job and update.preview is not None:
                preview = _usable_preview(update.preview)
            elif not long_job and update.state is JobState.RUNNING and update.note is None:
                # a short job: "Drawing…" without the percentage, so its status is not
                # edited for every step (the percentage and the preview come after
                # TELEGRAM_PREVIEW_AFTER seconds); a status saying it starts soon stays (the
                # result follows in seconds: one edit less)
                if self.status.shown_once and self.said_soon:
                    return
                update = dataclasses.replace(update, progress=None, note="queue.drawing")
        if update.state is JobState.QUEUED and update.note is None:
            soon = (update.position or 0) <= 1 or (update.eta_seconds or 0.0) < self._gap()
            if soon and self.said_soon and self.status.shown_once:
                return  # it starts before this edit would be seen for long: one call less
            self.said_soon = soon
        text = status_text(self.locale, update, self.rt.settings.max_attempts)
        self.status.want(text, preview, cancel=not update.state.final)

    async def deliver(self, result: JobResult) -> None:
        """Send the pictures with their buttons, then remove the status message; raises
        DeliveryFailed when Telegram stayed away (or refused the result)."""
        spool = self.rt.spool
        held = [spool.hold(image) for image in result.images]
        try:
            await self.status.close()
            await send_result(
                self.rt,
                self.chat_id,
                result,
                held,
                locale=self.locale,
                reply_to=self.reply_to,
                thread_id=self.thread_id,
            )
        except (GaveUp, TelegramError) as exc:
            log.warning("delivering job %s failed: %s", result.job_id, why(exc))
            raise DeliveryFailed(job=result.job_id) from None
        finally:
            for one in held:
                spool.release(one)
            self._leave_burst(result.job_id)
        self._drop_status()

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        """Cancelled: the status message says so. Failed: a new message says why. Not
        delivered: a new message says so, returning once Telegram took it."""
        await self.status.close()
        if self.undelivered:
            return  # the "could not deliver" message says it all
        cancelled = error.key == "queue.cancelled"
        if self._leave_burst(job_id, cancelled=refunded if cancelled else None) and cancelled:
            return  # the burst's message says so once its last job has left
        if isinstance(error, DeliveryFailed):
            await self._tell_undelivered(job_id, refunded)
            return
        if error.key == "queue.cancelled":
            self._say_cancelled(error.render(self.locale))
            return
        reason = error.render(self.locale)
        text = t(self.locale, "queue.failed", reason=reason, credits=refunded)
        self.rt.say(self.chat_id, text, **self._reply(), priority=Priority.NOTICE)
        self._drop_status()

    # --- a burst: one status message for the user's jobs in this chat ----------------------
    def _in_burst(self, update: JobUpdate, long_job: bool) -> bool:
        """Whether the user's burst message shows this update (not the job's own status)."""
        key = self._burst_key()
        joins = update.note in (None, "queue.waiting_no_backend")  # not one being retried
        if update.state is JobState.QUEUED and (self.burst is not None or joins):
            place = Place(
                update.position or 1,
                update.eta_seconds or 0.0,
                tuple(update.notes),
                no_backend=update.note == "queue.waiting_no_backend",
            )
            burst = self.rt.bursts.queued(
                key, self.chat_id, update.job_id, self, place, locale=self.locale, board=self._board
            )
            return burst is not None
        if self.burst is None and not self.burst_ran:
            self.rt.bursts.waits_no_more(key, update.job_id)
            return False
        if update.state is not JobState.RUNNING:
            if self.burst is not None:
                return True  # its ending comes through `deliver` or `fail`
            self.burst_ran = False  # started, then queued again: its own status says why
            self.status = StatusMessage(self._show, self.rt.outbox, self.chat_id)
            return False
        if self.burst is not None:  # it starts: out of the list, its result follows
            self.burst.leave(update.job_id)
            self.burst, self.burst_ran = None, True
        if not long_job:
            return True
        # running long enough for its percentage and preview: its own status from now on
        self.burst_ran = False
        self.status = StatusMessage(self._show, self.rt.outbox, self.chat_id, label=update.job_id)
        return False

    def _burst_key(self) -> tuple[int, int | None, str]:
        return (self.chat_id, self.thread_id, self.requester.user_id)

    def _board(self) -> TelegramBoard:
        user = self.requester.user_id
        return TelegramBoard(
            self.rt, self.chat_id, user, self.locale, self.reply_to, self.thread_id
        )

    def _leave_burst(self, job_id: str, *, cancelled: int | None = None) -> bool:
        """Out of its burst (it ended); False if it was listed in none."""
        burst, self.burst = self.burst, None
        if burst is None:
            self.rt.bursts.waits_no_more(self._burst_key(), job_id)
            return False
        burst.leave(job_id, cancelled=cancelled)
        return True

    def joined(self, burst: Burst) -> None:
        """Shown in `burst` from now on: its own status stops (what it sent is handed over)."""
        self.burst = burst
        self.status.closed = True
        self.rt.outbox.cancel(self.chat_id, self.status.key)

    def hand_over(self) -> int | None:
        """Its status message, for the burst to edit (a photo status is deleted instead)."""
        if self.status_id is None:
            return None
        if self.status_is_photo:
            self._drop_status()
            return None
        message_id, self.status_id = self.status_id, None
        return message_id

    def placed(self, message: int) -> None:
        """The burst's message, stored as this job's status (a restart edits it)."""
        if self.job_id is not None:
            ref = reply_ref(self.chat_id, message, self.reply_to, self.thread_id, self.locale)
            self.rt.spawn_write(remember_reply(self.rt.service, self.job_id, ref))

    def _gap(self) -> float:
        """The least time between two status edits in this chat."""
        return self.rt.outbox.progress_gap(self.chat_id)

    # --- endings -----------------------------------------------------------------------------
    async def _tell_undelivered(self, job_id: str, credits: int) -> None:
        """A new message once Telegram is reachable again (retried until then); returns when
        Telegram took it, raises when it refused it."""
        self.undelivered = True
        text = t(self.locale, "delivery.failed", job=job_id, platform="Telegram", credits=credits)
        told = self.rt.say(
            self.chat_id, text, **self._reply(), priority=Priority.NOTICE, forever=True
        )
        self._drop_status()
        await told

    def _say_cancelled(self, text: str) -> None:
        async def show() -> None:
            bot = await self.rt.wait_ready()
            if not await self._edit(bot, text, None):
                await self._send_text(bot, text)

        self.rt.outbox.post(self.chat_id, show, what="cancel notice", priority=Priority.NOTICE)

    def _drop_status(self) -> None:
        """Delete the status message (batched with the chat's other stale statuses)."""
        if self.status_id is None:
            return
        message_id, self.status_id = self.status_id, None
        self.rt.drop_message(self.chat_id, message_id)

    # --- showing the status ----------------------------------------------------------------
    async def _show(self, view: StatusView) -> None:
        bot = await self.rt.wait_ready()
        markup = self._markup() if view.cancel else None
        text, preview = view.text, view.preview
        if view.preview_changed and preview is not None and self.status_is_photo:
            media = InputMediaPhoto(preview, caption=text, filename="preview.png")
            await bot.edit_message_media(
                media, chat_id=self.chat_id, message_id=self.status_id, reply_markup=markup
            )
            return
        if view.preview_changed and preview is not None:
            # a text message cannot become a photo: post the photo status, drop the text one
            sent = await bot.send_photo(
                self.chat_id,
                preview,
                caption=text,
                filename="preview.png",
                reply_markup=markup,
                **self._reply_kwargs(),
            )
            self._drop_status()
            self._set_status(sent.message_id, photo=True)
            return
        if await self._edit(bot, text, markup):
            return
        sent = await self._send_text(bot, text, markup)
        self._set_status(sent.message_id, photo=False)

    def _set_status(self, message_id: int, *, photo: bool) -> None:
        self.status_id, self.status_is_photo = message_id, photo
        if self.job_id is not None:  # a restart must find this message, not post another
            job_id, ref = self.job_id, self.ref()
            self.rt.spawn_write(remember_reply(self.rt.service, job_id, ref))

    async def _edit(self, bot: Bot, text: str, markup: InlineKeyboardMarkup | None) -> bool:
        """Edit the status message in place; False when there is none (any more)."""
        if self.status_id is None:
            return False
        try:
            if self.status_is_photo:
                await bot.edit_message_caption(
                    chat_id=self.chat_id,
                    message_id=self.status_id,
                    caption=text,
                    reply_markup=markup,
                )
            else:
                await bot.edit_message_text(
                    text, chat_id=self.chat_id, message_id=self.status_id, reply_markup=markup
                )
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return True
            if "not found" in exc.message.lower():
                self.status_id = None
                return False
            raise
        return True

    def _markup(self) -> InlineKeyboardMarkup | None:
        if self.job_id is None:
            return None
        return cancel_keyboard(self.locale, self.job_id, self.requester.user_id)

    def _reply(self) -> dict[str, Any]:
        return {"reply_to": self.reply_to, "thread_id": self.thread_id}

    def _reply_kwargs(self) -> dict[str, Any]:
        return send_kwargs(self.reply_to, self.thread_id)

    async def _send_text(
        self, bot: Bot, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> Message:
        return await bot.send_message(
            self.chat_id, cut(text, TEXT_MAX), reply_markup=markup, **self._reply_kwargs()
        )

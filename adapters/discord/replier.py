"""The Replier for one job: a status message edited in place, then the result.

A job started by a slash command or a button lives in that interaction's response: the
interaction token edits it (queue position, progress with the WebUI's preview, result) for its
15 minutes. Once the token has expired, the result is posted as a new channel message replying
to that response and pinging the user, and the stale status is tidied through the channel API.
A job started by replying to a result lives in our own channel message, edited directly.

The kit's StatusMessage coalesces and throttles the status (at most once per
DISCORD_EDIT_INTERVAL, only when something changed); this module says how Discord shows it.
`deliver` and `fail` wait for Discord (the service refunds when delivering fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import discord

from adapters.discord.encode import UPLOAD_LIMIT, Encoded, fit_all
from adapters.discord.runtime import Runtime
from adapters.discord.texts import result_embed, status_text
from adapters.discord.views import cancel_view, result_view
from adapters.kit import GaveUp, Priority, StatusMessage, StatusView
from adapters.kit.delivery import remember_reply, why
from bot.errors import DeliveryFailed, DrawbridgeError
from bot.i18n import t
from bot.types import JobResult, JobUpdate, Requester

log = logging.getLogger(__name__)

TOKEN_TTL = 15 * 60.0  # an interaction token's lifetime
TOKEN_MARGIN = 60.0  # stop using it this long before, so an edit never races the expiry
_TOKEN_DEAD = {50027, 10015}  # Invalid Webhook Token, Unknown Webhook
_UNKNOWN_MESSAGE = 10008


@dataclass
class Target:
    """Where one job's messages go; stored as the job's reply_ref so a restart finds it again."""

    channel_id: int
    user_id: int
    locale: str = "en"
    message_id: int | None = None  # the status message
    token: str | None = None  # the interaction's token (None: a plain channel message)
    token_at: float = 0.0  # when the interaction was created (epoch seconds)
    reply_to: int | None = None  # the user's message, when a reply started the job
    upload_limit: int = UPLOAD_LIMIT
    spoiler: bool = False

    def to_ref(self) -> dict[str, Any]:
        """JSON for the job row."""
        return asdict(self)

    @classmethod
    def from_ref(cls, ref: dict[str, Any], requester: Requester) -> Target:
        """Rebuilt from the job row (missing fields fall back to the requester's)."""
        known = {k: v for k, v in ref.items() if k in cls.__dataclass_fields__}
        known.setdefault("channel_id", int(requester.chat_id or 0))
        known.setdefault("user_id", int(requester.user_id))
        known.setdefault("locale", requester.locale)
        return cls(**known)

    @property
    def interaction(self) -> bool:
        """Whether the status message is an interaction response."""
        return self.token_at > 0


def _extension(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "png"


def _token_dead(exc: discord.HTTPException) -> bool:
    return exc.status == 401 or exc.code in _TOKEN_DEAD


class DiscordReplier:
    """Status message + result for one job; rebuilt from `reply_ref` after a restart."""

    def __init__(
        self,
        rt: Runtime,
        requester: Requester,
        target: Target,
        *,
        interaction: discord.Interaction | None = None,
    ) -> None:
        self.rt = rt
        self.requester = requester
        self.target = target
        self.locale = target.locale
        self.job_id: str | None = None
        self._cancel: discord.ui.View | None = None
        self._posted = target.message_id is not None  # the status message exists
        self.undelivered = False
        # An interaction not answered yet: the job's first status is its response (submit
        # first, talk later). discord.py keeps Discord's rate-limit buckets, so each job has
        # its own lane: its status, result and notices in order, no job waiting for another.
        self.interaction = interaction
        self._answering = asyncio.Lock()
        self.lane = ("discord job", id(self))
        self.status = StatusMessage(self._show, rt.outbox, self.lane)

    @classmethod
    def from_ref(cls, rt: Runtime, requester: Requester, ref: dict[str, Any]) -> DiscordReplier:
        """The factory the service uses for jobs resumed after a restart."""
        return cls(rt, requester, Target.from_ref(ref, requester))

    def ref(self) -> dict[str, Any]:
        """What to store with the job so `from_ref` can rebuild this replier."""
        return self.target.to_ref()

    # --- engine callbacks ------------------------------------------------------------------
    async def update(self, update: JobUpdate) -> None:
        """Record the new status; a background task shows it (never blocks the caller)."""
        self.job_id = self.status.label = update.job_id
        preview = update.preview
        if not preview or len(preview) > self.target.upload_limit:
            preview = None
        text = status_text(self.locale, update, self.rt.settings.max_attempts)
        self.status.want(text, preview, cancel=not update.state.final)

    async def deliver(self, result: JobResult) -> None:
        """The pictures with an embed and buttons, in place of the status when possible;
        retried through the outbox, DeliveryFailed when Discord stayed away."""
        spool = self.rt.spool
        held = [spool.hold(image) for image in result.images]
        lane = self.lane
        try:
            await self.status.close()
            pngs = [await spool.read(one) for one in held]
            encoded = await asyncio.to_thread(fit_all, pngs, self.target.upload_limit)
            del pngs
            delivered = await self.rt.outbox.send(
                lane, lambda: self._deliver(result, encoded), priority=Priority.RESULT
            )
        except (GaveUp, discord.HTTPException) as exc:
            log.warning("delivering job %s failed: %s", result.job_id, why(exc))
            raise DeliveryFailed(job=result.job_id) from None
        finally:
            for one in held:
                spool.release(one)
        if delivered == "posted" and self.target.interaction:
            done = {"content": t(self.locale, "discord.done_below"), "view": None}

            async def tidy() -> None:
                client = await self.rt.wait_ready()
                await self._channel_edit(client, {**done, "attachments": [], "embeds": []})

            self.rt.outbox.post(lane, tidy, what="status tidy", priority=Priority.CLEANUP)

    async def _deliver(self, result: JobResult, encoded: list[Encoded]) -> str:
        client = await self.rt.wait_ready()
        target = self.target
        notes = list(result.notes)
        for item in encoded:
            note = item.note(self.locale, target.upload_limit)
            if note is not None and note not in notes:
                notes.append(note)
        embed = result_embed(self.locale, result, notes)
        view = result_view(self.locale, result)

        def files() -> list[discord.File]:
            return self._files(result.job_id, encoded, [i.spoiler for i in result.images])

        fields: dict[str, Any] = {
            "content": "",
            "embeds": [embed],
            "attachments": files(),
            "view": view,
        }
        if target.interaction and await self._webhook_edit(client, fields):
            return "edited"
        if not target.interaction and await self._channel_edit(client, fields):
            return "edited"
        # the token has expired (or the status is gone): a new message replying to the user
        await self._post(client, embeds=[embed], files=files(), view=view)
        return "posted"

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        """Cancelled or failed: the status message says so and what was refunded. Not
        delivered: a new message says so, returning once Discord took it."""
        await self.status.close()
        if self.undelivered:
            return
        if isinstance(error, DeliveryFailed):
            await self._tell_undelivered(job_id, refunded)
            return
        if error.key == "queue.cancelled":
            text = error.render(self.locale)
        else:
            reason = error.render(self.locale)
            text = t(self.locale, "queue.failed", reason=reason, credits=refunded)
        self._say(text)

    async def _tell_undelivered(self, job_id: str, credits: int) -> None:
        """A new message once Discord is reachable again (retried until then); returns when
        Discord took it, raises when it refused it."""
        self.undelivered = True
        text = t(self.locale, "delivery.failed", job=job_id, platform="Discord", credits=credits)
        await self._say(text, new=True, forever=True)

    def _say(self, text: str, *, new: bool = False, forever: bool = False) -> asyncio.Future[Any]:
        """The status message says `text` (or a new message does, pinging the user)."""

        async def say() -> None:
            client = await self.rt.wait_ready()
            fields: dict[str, Any] = {"content": text, "view": None, "attachments": []}
            if new:
                await self._edit(client, {**fields, "content": t(self.locale, "delivery.ended")})
            elif await self._edit(client, fields):
                return
            await self._post(client, content=text)

        return self.rt.outbox.post(
            self.lane, say, what="notice", priority=Priority.NOTICE, forever=forever
        )

    # --- the interaction's response ----------------------------------------------------------
    async def acknowledge(self) -> None:
        """Answer the interaction with a public "thinking…" now (the job's first status could
        not be ready within Discord's 3 s); later statuses edit it."""
        async with self._answering:
            interaction = self.interaction
            if interaction is None or interaction.response.is_done():
                return
            self.target.message_id = await defer_thinking(interaction)

    async def _respond(self, fields: dict[str, Any]) -> bool:
        """The first status as the interaction's response; False when it was answered already."""
        async with self._answering:
            interaction = self.interaction
            if interaction is None or interaction.response.is_done():
                return False
            response: dict[str, Any] = {"content": fields["content"]}
            if fields.get("view") is not None:
                response["view"] = fields["view"]
            if fields.get("attachments"):
                response["files"] = fields["attachments"]
            callback = await interaction.response.send_message(**response)
            message_id = getattr(callback, "message_id", None)
            if message_id is None:
                with contextlib.suppress(discord.HTTPException):
                    message_id = (await interaction.original_response()).id
            self.target.message_id = message_id
        if self.job_id is not None and message_id is not None:
            self.rt.spawn_write(remember_reply(self.rt.service, self.job_id, self.ref()))
        return True

    # --- showing the status ----------------------------------------------------------------
    async def _show(self, view: StatusView) -> bool:
        client = await self.rt.wait_ready()
        fields: dict[str, Any] = {"content": view.text, "view": None}
        if view.cancel and self.job_id is not None:
            if self._cancel is None:
                self._cancel = cancel_view(self.locale, self.job_id)
            fields["view"] = self._cancel
        if view.preview_changed and view.preview is not None:
            name = f"preview.{_extension(view.preview)}"
            fields["attachments"] = [
                discord.File(io.BytesIO(view.preview), name, spoiler=self.target.spoiler)
            ]
        if await self._respond(fields):
            return True
        if self._first_status():
            return await self._post_status(client, fields)
        return await self._edit(client, fields)

    def _first_status(self) -> bool:
        """A job started by a reply has no status message until its first status (the
        acknowledgement, sent once the job is stored)."""
        target = self.target
        first = target.message_id is None and not target.interaction and not self._posted
        self._posted = self._posted or first
        return first

    async def _post_status(self, client: discord.Client, fields: dict[str, Any]) -> bool:
        target = self.target
        channel = client.get_partial_messageable(target.channel_id)
        reference = None
        if target.reply_to is not None:
            reference = discord.MessageReference(
                message_id=target.reply_to, channel_id=target.channel_id, fail_if_not_exists=False
            )
        files = fields.pop("attachments", None)
        if files:
            fields["files"] = files
        if fields.get("view") is None:
            fields.pop("view", None)
        sent = await channel.send(
            reference=reference,  # type: ignore[arg-type]
            allowed_mentions=discord.AllowedMentions.none(),
            **fields,
        )
        target.message_id = sent.id
        if self.job_id is not None:
            await self.rt.service.remember_reply(self.job_id, self.ref())
        return True

    # --- talking to Discord ------------------------------------------------------------------
    def _token_alive(self) -> bool:
        target = self.target
        if target.token is None:
            return False
        return time.time() - target.token_at < TOKEN_TTL - TOKEN_MARGIN

    async def _edit(self, client: discord.Client, fields: dict[str, Any]) -> bool:
        """Edit the status: by the interaction token while it lives, else by the channel API."""
        if self.target.interaction and await self._webhook_edit(client, fields):
            return True
        return await self._channel_edit(client, fields)

    async def _webhook_edit(self, client: discord.Client, fields: dict[str, Any]) -> bool:
        target = self.target
        if target.message_id is None or not self._token_alive():
            return False
        assert target.token is not None and client.application_id is not None
        webhook = discord.Webhook.partial(client.application_id, target.token, client=client)
        try:
            await webhook.edit_message(target.message_id, **fields)
        except discord.HTTPException as exc:
            if _token_dead(exc):
                log.info("interaction token of job %s expired; using the channel", self.job_id)
                target.token = None
                return False
            if exc.code == _UNKNOWN_MESSAGE:
                target.message_id = None
                return False
            raise
        return True

    async def _channel_edit(self, client: discord.Client, fields: dict[str, Any]) -> bool:
        target = self.target
        if target.message_id is None:
            return False
        channel = client.get_partial_messageable(target.channel_id)
        try:
            await channel.get_partial_message(target.message_id).edit(**fields)
        except (discord.NotFound, discord.Forbidden) as exc:
            log.info("cannot edit the status of job %s: %s", self.job_id, why(exc))
            if isinstance(exc, discord.NotFound):
                target.message_id = None
            return False
        return True

    async def _post(self, client: discord.Client, **fields: Any) -> None:
        """A new channel message replying to the user's message (or our status) and pinging
        the user."""
        target = self.target
        channel = client.get_partial_messageable(target.channel_id)
        anchor = target.reply_to or target.message_id
        reference = None
        if anchor is not None:
            reference = discord.MessageReference(
                message_id=anchor, channel_id=target.channel_id, fail_if_not_exists=False
            )
        mention = f"<@{target.user_id}>"
        if "content" in fields:
            fields["content"] = f"{mention} {fields['content']}"
        else:
            fields["content"] = t(self.locale, "discord.result_ready", mention=mention)
        await channel.send(
            reference=reference,  # type: ignore[arg-type]
            allowed_mentions=discord.AllowedMentions(
                users=[discord.Object(target.user_id)], replied_user=False
            ),
            **fields,
        )

    def _files(
        self, job_id: str, encoded: list[Encoded], flagged: list[bool] | None = None
    ) -> list[discord.File]:
        flagged = flagged or []
        return [
            discord.File(
                io.BytesIO(item.data),
                f"drawbridge-{job_id}-{index + 1}.{item.extension}",
                # the channel's rule (DISCORD_SPOILER_OUTSIDE_NSFW), or NSFW_CHECK=spoiler
                spoiler=self.target.spoiler or (index < len(flagged) and flagged[index]),
            )
            for index, item in enumerate(encoded)
        ]


async def defer_thinking(interaction: discord.Interaction) -> int | None:
    """Acknowledge with a public "thinking…" message; its id (edited with the job's status)."""
    callback = await interaction.response.defer(thinking=True)
    message_id = getattr(callback, "message_id", None)
    if message_id is None:
        with contextlib.suppress(discord.HTTPException):
            message_id = (await interaction.original_response()).id
    return message_id

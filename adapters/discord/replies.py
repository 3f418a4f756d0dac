"""Replies to our results: a picture → inpaint (the core works out the mask from it: a
painted-over copy, a black-and-white mask or a transparent PNG); only words → img2img. In a
batch the first picture is used, or the one named: ``#2 a harbour at night``.

A reply pings the bot, so Discord delivers its content and attachments without the privileged
message-content intent. The words may carry options (``--strength 0.5``); without a prompt the
result's own prompt is used. There is no interaction here, so answers are plain replies.
"""

from __future__ import annotations

import logging
import re

import discord

from adapters.discord.draw import download
from adapters.discord.replier import DiscordReplier, Target
from adapters.discord.runtime import Runtime
from adapters.discord.texts import CONTENT_MAX, prompt_of
from bot.errors import DrawbridgeError, OptionError
from bot.i18n import t
from bot.texts import cut
from bot.types import Pictures

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@!?\d+>")
_PICK = re.compile(r"(?:^|\s)#(\d{1,2})(?=\s|$)")


def images_of(message: discord.Message) -> list[discord.Attachment]:
    """The attachments that are pictures."""
    return [
        a for a in message.attachments if (a.content_type or "").startswith("image/") or a.width
    ]


def first_image(message: discord.Message) -> discord.Attachment | None:
    """The first attachment that is a picture."""
    images = images_of(message)
    return images[0] if images else None


def pick(text: str, count: int) -> tuple[int, str]:
    """Which picture of a batch ("#2" in the words picks the second) and the words without it."""
    match = _PICK.search(text)
    if match is None or not 1 <= int(match[1]) <= count:
        return 0, text
    return int(match[1]) - 1, (text[: match.start()] + " " + text[match.end() :]).strip()


async def replied_result(
    client: discord.Client, message: discord.Message
) -> discord.Message | None:
    """The result of ours this message replies to, or None."""
    ref = message.reference
    if ref is None or ref.message_id is None or client.user is None:
        return None
    replied = ref.resolved if isinstance(ref.resolved, discord.Message) else None
    if replied is None:
        try:
            replied = await message.channel.fetch_message(ref.message_id)
        except discord.HTTPException:
            return None
    if replied.author.id != client.user.id or not replied.embeds:
        return None
    return replied if first_image(replied) is not None else None


async def on_message(rt: Runtime, message: discord.Message) -> None:
    """A message: only replies to our results with a picture or words are for us."""
    client = rt.client
    if client is None or message.author.bot:
        return
    replied = await replied_result(client, message)
    if replied is None:
        return
    results = images_of(replied)
    mask = first_image(message)
    index, text = pick(_MENTION.sub(" ", message.content).strip(), len(results))
    if not results or (mask is None and not text):
        return
    init = results[index]
    in_guild = message.guild is not None
    locale = await rt.locale_of(message.author, message.guild)
    refusal = rt.refusal(message.channel, in_guild)
    if refusal is not None:
        await message.reply(t(locale, refusal), mention_author=False)
        return
    service = rt.service
    try:
        request = service.parse(text, require_prompt=False)
    except OptionError as exc:
        await message.reply(cut(exc.render(locale), CONTENT_MAX), mention_author=False)
        return
    if not request.prompt:
        request.prompt = prompt_of(replied)
    try:
        init_bytes = await download(rt, init)
        mask_bytes = await download(rt, mask) if mask is not None else None
        requester = rt.requester(message.author, message.channel.id, locale, message.channel)
        # No status message yet: the job is stored first, and its first status (posted by
        # the replier as a reply to this message) is the acknowledgement.
        target = Target(
            channel_id=message.channel.id,
            user_id=message.author.id,
            locale=locale,
            message_id=None,
            reply_to=message.id,
            spoiler=rt.spoiler(message.channel, in_guild),
        )
        replier = DiscordReplier(rt, requester, target)
        pictures = Pictures(init=init_bytes, mask=mask_bytes)
        await service.draw(
            requester,
            request,
            replier,
            pictures=pictures,
            reply_ref=replier.ref(),
            source=f"{message.channel.id}:{message.id}",
        )
    except DrawbridgeError as exc:
        await message.reply(cut(exc.render(locale), CONTENT_MAX), mention_author=False)

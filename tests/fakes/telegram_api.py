"""A fake Telegram Bot API server for end-to-end tests with the real python-telegram-bot.

The fake is an aiohttp app on 127.0.0.1 (OS-chosen port). Point a bot at it exactly as a real
deployment points at a self-hosted Bot API server::

    async with FakeTelegram() as fake:
        app = (
            ApplicationBuilder()
            .token(fake.token)
            .base_url(fake.base_url)            # f"{fake.root}/bot"
            .base_file_url(fake.base_file_url)  # f"{fake.root}/file/bot"
            .build()
        )

What it does, in short:

* ``POST|GET /bot<token>/<method>`` (form-urlencoded, multipart or JSON body; method names are
  case-insensitive as on the real server) and ``GET /file/bot<token>/<file_path>``.
* Answers ``{"ok": true, "result": ...}`` / ``{"ok": false, "error_code": N, "description": ...}``
  with the real server's descriptions for the errors it reproduces.
* Keeps a transcript (:attr:`FakeTelegram.calls`), a per-chat message store (edits/deletes are
  checked against it), the files uploaded and a real ``getUpdates`` long poll.
* Helpers build valid updates (``send_text``, ``send_photo``, ``send_document``, ``press_button``)
  and validate them before queueing them, because python-telegram-bot only logs (CRITICAL) and
  drops an update it cannot parse.
* Reproduces the platform limits: photo ≤ 10 MiB, width+height ≤ 10000, aspect ratio ≤ 20, other
  uploads ≤ 50 MiB (413), captions ≤ 1024, text ≤ 4096, callback_data ≤ 64 bytes, albums 2-10,
  ``getFile`` ≤ 20 MiB; ``parse_mode`` HTML / MarkdownV2 / Markdown are parsed into entities with
  the real "can't parse entities" errors (e.g. an unescaped ``.`` in MarkdownV2, ``<br>`` in HTML).
* Flood control as published (:class:`Limits`, on by default): 1 message/s per chat, 20/min per
  group, 30/s overall; past them 429 with ``retry_after`` (:attr:`FakeTelegram.floods`).
* Outages on command: :meth:`FakeTelegram.go_down` answers 502 to everything, or stops listening
  and cuts open connections ("unreachable"); :meth:`FakeTelegram.come_back` ends it.
* Group privacy mode (default on): in groups only commands for this bot (``/cmd`` or
  ``/cmd@this_bot``, in a text or a caption), replies to the bot's messages and button presses
  reach the bot; everything in private chats does. Filtered updates go to
  :attr:`FakeTelegram.dropped_updates`.
* Faults on command: ``fail_next`` (an error code for the next calls of a method), ``slow`` (a
  method takes seconds before it is processed, e.g. an upload), and ``refuse_second_poller``
  (a getUpdates while another waits gets 409, as a second process on the same token sees).

Known simplifications: no inline mode, no webhooks delivery (``setWebhook`` is only stored, and
makes ``getUpdates`` answer 409 as the real server does), no video/audio, files sent by URL fail
with "failed to get HTTP URL content", an album of one item is refused (the documented contract is
2-10 items; the real server currently sends one item as a plain message).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import math
import mimetypes
import re
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest_asyncio
from aiohttp import web
from PIL import Image, ImageOps

__all__ = [
    "CALLBACK_DATA_MAX_BYTES",
    "CAPTION_MAX_CHARS",
    "DOWNLOAD_MAX_BYTES",
    "PHOTO_MAX_BYTES",
    "PUBLISHED_LIMITS",
    "TEXT_MAX_CHARS",
    "UPLOAD_MAX_BYTES",
    "Call",
    "FakeChat",
    "FakeTelegram",
    "FakeUser",
    "Limits",
    "build_app",
    "fake_telegram",
    "running_app",
]

MIB = 1024 * 1024
PHOTO_MAX_BYTES = 10 * MIB
UPLOAD_MAX_BYTES = 50 * MIB
DOWNLOAD_MAX_BYTES = 20 * MIB
TEXT_MAX_CHARS = 4096
CAPTION_MAX_CHARS = 1024
CALLBACK_DATA_MAX_BYTES = 64
CALLBACK_ANSWER_MAX_CHARS = 200
ALBUM_MIN_ITEMS, ALBUM_MAX_ITEMS = 2, 10
PHOTO_MAX_SIDES_SUM = 10000
PHOTO_MAX_RATIO = 20
# Telegram's recompressed photo sizes ('s', 'm', 'x', 'y', 'w'): longest side in pixels.
PHOTO_SIDES = (90, 320, 800, 1280, 2560)
JPEG_QUALITY = 87

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types delivered when allowed_updates is not given or empty.
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
    }
)

# Parameters that the library JSON-encodes (objects, arrays) and the fake decodes.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "media",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "allowed_updates",
        "reply_parameters",
        "link_preview_options",
        "results",
        "message_ids",
    }
)
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "from_chat_id",
        "message_id",
        "reply_to_message_id",
        "message_thread_id",
        "offset",
        "limit",
        "timeout",
        "cache_time",
        "max_connections",
    }
)
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
        "has_spoiler",
        "allow_sending_without_reply",
        "disable_content_type_detection",
        "show_caption_above_media",
    }
)

_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?(?![A-Za-z0-9_@])")
_BOT_COMMAND_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")


# --------------------------------------------------------------------------------------------
# Errors and small helpers
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def _u16(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets and lengths."""
    return len(text.encode("utf-16-le")) // 2


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One Bot API call the bot made, as the fake saw and answered it.

    ``params`` has JSON-encoded fields (``reply_markup``, ``media``, ``entities`` ...) decoded and
    numeric/boolean fields converted; ``files`` maps a multipart part name to
    ``(filename, bytes, content_type)``. ``timestamp`` is ``time.monotonic()`` at arrival.
    """

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes, str]]
    timestamp: float
    ok: bool = True
    result: Any = None
    error_code: int | None = None
    description: str | None = None

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")

    def __repr__(self) -> str:  # keep assertion output readable (no file bytes)
        files = {k: (v[0], f"<{len(v[1])} bytes>", v[2]) for k, v in self.files.items()}
        outcome = "ok" if self.ok else f"{self.error_code} {self.description!r}"
        return f"Call({self.method}, {self.params!r}, files={files!r}, {outcome})"


@dataclass(frozen=True)
class FakeUser:
    id: int
    first_name: str
    language_code: str | None = "en"
    last_name: str | None = None
    username: str | None = None
    is_bot: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass(frozen=True)
class FakeChat:
    id: int
    type: str  # "private" | "group" | "supergroup"
    title: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        for key in ("title", "first_name", "last_name", "username"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass
class _ChatState:
    chat: FakeChat
    next_message_id: int = 1
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    bot_is_admin: bool = False
    blocked: bool = False

    def new_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # "photo" | "document"
    data: bytes
    file_name: str | None = None
    mime_type: str | None = None
    file_path: str | None = None
    # For photo sizes: the whole PhotoSize list and the bytes originally uploaded.
    photo_sizes: list[dict[str, Any]] | None = None
    original: bytes | None = None


@dataclass
class _Failure:
    error_code: int
    description: str
    parameters: dict[str, Any] | None
    times: int


@dataclass(frozen=True)
class Limits:
    """Flood control as Telegram publishes it: at most `chat` messages per chat, `group` per
    group and `overall` over every chat, each as (messages, seconds) in a sliding window.
    Sending and editing count; deleting, answering button presses, files and polling do not.
    Past a limit the call is answered 429 with ``retry_after`` (whole seconds, at least 1)."""

    chat: tuple[int, float] = (1, 1.0)
    group: tuple[int, float] = (20, 60.0)
    overall: tuple[int, float] = (30, 1.0)


PUBLISHED_LIMITS = Limits()
COUNTED_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "copyMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
    }
)


class _Window:
    def __init__(self, count: int, per: float) -> None:
        self.count, self.per = count, per
        self.stamps: list[float] = []

    def wait(self, now: float) -> float:
        """Seconds until one more call fits (0: it fits now)."""
        self.stamps = [t for t in self.stamps if t > now - self.per]
        if len(self.stamps) < self.count:
            return 0.0
        return self.stamps[len(self.stamps) - self.count] + self.per - now


# --------------------------------------------------------------------------------------------
# Image handling
# --------------------------------------------------------------------------------------------


def _open_image(data: bytes, check_dimensions: bool = False) -> Image.Image:
    """Decode an image; with ``check_dimensions`` the header is checked before decoding."""
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise _bad("IMAGE_PROCESS_FAILED") from exc
    if check_dimensions:
        _check_photo_dimensions(*image.size)
    try:
        image.load()
    except Exception as exc:
        raise _bad("IMAGE_PROCESS_FAILED") from exc
    return image


def _check_photo_dimensions(width: int, height: int) -> None:
    small, large = min(width, height), max(width, height)
    if small <= 0 or width + height > PHOTO_MAX_SIDES_SUM or large > PHOTO_MAX_RATIO * small:
        raise _bad("PHOTO_INVALID_DIMENSIONS")


def _to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("L", "CMYK", "YCbCr"):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, "white")
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _render_photo_sizes(image: Image.Image) -> list[tuple[int, int, bytes]]:
    """Telegram-like recompression: JPEG thumbnails up to the full size (capped at 2560)."""
    image = _to_rgb(image)
    width, height = image.size
    longest = max(width, height)
    variants: list[Image.Image] = []
    for side in PHOTO_SIDES:
        if side < longest:
            scale = side / longest
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            variants.append(image.resize(size, Image.Resampling.LANCZOS))
        else:
            variants.append(image)
            break
    rendered = []
    for variant in variants:
        buf = io.BytesIO()
        variant.save(buf, "JPEG", quality=JPEG_QUALITY)
        rendered.append((variant.width, variant.height, buf.getvalue()))
    return rendered


# --------------------------------------------------------------------------------------------
# parse_mode: text + entities
# --------------------------------------------------------------------------------------------


def _entity_error(message: str) -> ApiError:
    return _bad(f"can't parse entities: {message}")


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


class _HtmlEntities(HTMLParser):
    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0]
        for match in re.finditer("\n", source):
            self._line_starts.append(match.end())
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[dict[str, Any]] = []
        self.stack: list[tuple[str, dict[str, Any] | None]] = []

    def _byte_offset(self) -> int:
        line, col = self.getpos()
        index = self._line_starts[line - 1] + col
        return len(self._source[:index].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        kind = _HTML_TAGS.get(tag)
        if kind == "spoiler" and tag == "span" and attributes.get("class") != "tg-spoiler":
            kind = None
        if kind is None:
            raise _entity_error(
                f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}'
            )
        if kind == "code" and self.stack and self.stack[-1][0] == "pre":
            language = (attributes.get("class") or "").removeprefix("language-")
            pre_entity = self.stack[-1][1]
            if language and pre_entity is not None:
                pre_entity["language"] = language
            self.stack.append((tag, None))  # merged into the enclosing <pre>
            return
        entity: dict[str, Any] = {"type": kind, "offset": self.pos, "length": 0}
        if kind == "text_link":
            href = attributes.get("href") or ""
            match = re.fullmatch(r"tg://user\?id=(\d+)", href)
            if match:
                entity = {"type": "text_mention", "offset": self.pos, "length": 0}
                entity["user"] = {"id": int(match.group(1)), "is_bot": False, "first_name": ""}
            else:
                entity["url"] = href
        elif kind == "custom_emoji":
            entity["custom_emoji_id"] = attributes.get("emoji-id") or ""
        elif kind == "blockquote" and "expandable" in attributes:
            entity["type"] = "expandable_blockquote"
        self.stack.append((tag, entity))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise _entity_error(f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            raise _entity_error(f"Unexpected end tag at byte offset {self._byte_offset()}")
        open_tag, entity = self.stack.pop()
        if open_tag != tag:
            raise _entity_error(
                f'Unmatched end tag at byte offset {self._byte_offset()}, expected "</{open_tag}>", '
                f'found "</{tag}>"'
            )
        if entity is not None:
            entity["length"] = self.pos - entity["offset"]
            if entity["length"] > 0:
                self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        self.pos += _u16(data)

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        self.close()
        if self.stack:
            raise _entity_error(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"'
            )
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), self.entities


def _parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    parser = _HtmlEntities(source)
    parser.feed(source)
    return parser.finish()


_MD2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def _parse_markdown_v2(src: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    stack: list[tuple[str, int, int]] = []  # (type, start offset, byte offset of the marker)
    quote: list[Any] | None = None  # [start offset, expandable]
    pos = 0
    i, n = 0, len(src)

    def byte_offset(index: int) -> int:
        return len(src[:index].encode())

    def emit(text: str) -> None:
        nonlocal pos
        out.append(text)
        pos += _u16(text)

    def add(kind: str, start: int, **extra: Any) -> None:
        if pos > start:
            entities.append({"type": kind, "offset": start, "length": pos - start, **extra})

    def toggle(kind: str, index: int) -> None:
        for k in range(len(stack) - 1, -1, -1):
            if stack[k][0] == kind:
                _, start, _ = stack.pop(k)
                add(kind, start)
                return
        stack.append((kind, pos, byte_offset(index)))

    def read_until(start: int, end: str, what: str, opened_at: int) -> tuple[str, int]:
        buf: list[str] = []
        j = start
        while j < n and not src.startswith(end, j):
            if src[j] == "\\" and j + 1 < n:
                buf.append(src[j + 1])
                j += 2
            else:
                buf.append(src[j])
                j += 1
        if j >= n:
            raise _entity_error(f"Can't find end of {what} at byte offset {byte_offset(opened_at)}")
        return "".join(buf), j + len(end)

    def close_quote() -> None:
        nonlocal quote
        if quote is not None:
            add("expandable_blockquote" if quote[1] else "blockquote", quote[0])
            quote = None

    while i < n:
        c = src[i]
        line_start = i == 0 or src[i - 1] == "\n"
        if c == "\r":  # documented separator for ___italic underline_\r__, ignored
            i += 1
            continue
        if c == "\\":
            if i + 1 < n and 0 < ord(src[i + 1]) <= 126:
                emit(src[i + 1])
                i += 2
                continue
            raise _entity_error(
                "Character '\\' is reserved and must be escaped with the preceding '\\'"
            )
        if line_start and src.startswith("**>", i):
            if quote is None:
                quote = [pos, True]
            i += 3
            continue
        if line_start and c == ">":
            if quote is None:
                quote = [pos, False]
            i += 1
            continue
        if c == "\n":
            if quote is not None and not src.startswith(">", i + 1):
                close_quote()
            emit("\n")
            i += 1
            continue
        if c == "`":
            if src.startswith("```", i):
                body, i_next = read_until(i + 3, "```", "Pre entity", i)
                language = None
                newline = body.find("\n")
                if newline > 0 and not any(ch.isspace() for ch in body[:newline]):
                    language, body = body[:newline], body[newline + 1 :]
                elif newline == 0:
                    body = body[1:]
                start = pos
                emit(body)
                add("pre", start, **({"language": language} if language else {}))
                i = i_next
                continue
            body, i_next = read_until(i + 1, "`", "Code entity", i)
            start = pos
            emit(body)
            add("code", start)
            i = i_next
            continue
        if c == "*":
            toggle("bold", i)
            i += 1
            continue
        if c == "~":
            toggle("strikethrough", i)
            i += 1
            continue
        if src.startswith("||", i):
            if quote is not None and quote[1] and (i + 2 == n or src[i + 2] == "\n"):
                close_quote()
            else:
                toggle("spoiler", i)
            i += 2
            continue
        if c == "_":
            underline_open = any(kind == "underline" for kind, _, _ in stack)
            italic_on_top = bool(stack) and stack[-1][0] == "italic"
            if src.startswith("__", i) and (underline_open or not italic_on_top):
                toggle("underline", i)
                i += 2
            else:
                toggle("italic", i)
                i += 1
            continue
        if c == "[" or src.startswith("![", i):
            kind = "text_link" if c == "[" else "custom_emoji"
            stack.append((kind, pos, byte_offset(i)))
            i += 1 if c == "[" else 2
            continue
        if c == "]" and stack and stack[-1][0] in ("text_link", "custom_emoji"):
            kind, start, _ = stack.pop()
            if not src.startswith("(", i + 1):
                raise _entity_error(f"Can't find end of a URL at byte offset {byte_offset(i + 1)}")
            url, i_next = read_until(i + 2, ")", "a URL", i + 1)
            if kind == "custom_emoji":
                add(kind, start, custom_emoji_id=url.rsplit("id=", 1)[-1])
            else:
                add(kind, start, url=url)
            i = i_next
            continue
        if c in _MD2_RESERVED:
            raise _entity_error(
                f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )
        emit(c)
        i += 1
    close_quote()
    if stack:
        kind, _, offset = stack[0]
        raise _entity_error(f"Can't find end of {_MD2_NAMES[kind]} entity at byte offset {offset}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _parse_markdown_legacy(src: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    pos = 0
    i, n = 0, len(src)

    def emit(text: str) -> None:
        nonlocal pos
        out.append(text)
        pos += _u16(text)

    def unclosed(index: int) -> ApiError:
        return _entity_error(
            f"Can't find end of the entity starting at byte offset {len(src[:index].encode())}"
        )

    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            emit(src[i + 1])
            i += 2
        elif c in "*_`":
            marker = "```" if src.startswith("```", i) else c
            end = src.find(marker, i + len(marker))
            if end < 0:
                raise unclosed(i)
            kind = {"*": "bold", "_": "italic", "`": "code", "```": "pre"}[marker]
            start = pos
            emit(src[i + len(marker) : end])
            if pos > start:
                entities.append({"type": kind, "offset": start, "length": pos - start})
            i = end + len(marker)
        elif c == "[":
            close = src.find("]", i + 1)
            if close < 0 or not src.startswith("(", close + 1) or src.find(")", close) < 0:
                raise unclosed(i)
            url_end = src.find(")", close)
            start = pos
            emit(src[i + 1 : close])
            if pos > start:
                entities.append(
                    {
                        "type": "text_link",
                        "offset": start,
                        "length": pos - start,
                        "url": src[close + 2 : url_end],
                    }
                )
            i = url_end + 1
        else:
            emit(c)
            i += 1
    return "".join(out), entities


def _strip_text(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Telegram trims leading/trailing whitespace of texts and captions; entities follow."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = _u16(text[: len(text) - len(text.lstrip())])
    total = _u16(stripped)
    result = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(total, entity["offset"] + entity["length"] - lead)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


def _format_text(text: str, parse_mode: Any, entities: Any) -> tuple[str, list[dict[str, Any]]]:
    if entities is not None:
        if not isinstance(entities, list) or not all(
            isinstance(e, dict) and {"type", "offset", "length"} <= e.keys() for e in entities
        ):
            raise _bad("can't parse entities JSON object")
        parsed = (text, [dict(e) for e in entities])
    else:
        mode = (parse_mode or "").lower() if isinstance(parse_mode, str) else ""
        if mode == "html":
            parsed = _parse_html(text)
        elif mode == "markdownv2":
            parsed = _parse_markdown_v2(text)
        elif mode == "markdown":
            parsed = _parse_markdown_legacy(text)
        elif mode:
            raise _bad("unsupported parse_mode")
        else:
            parsed = (text, [])
    return _strip_text(*parsed)


# --------------------------------------------------------------------------------------------
# Validation of what the fake hands out
# --------------------------------------------------------------------------------------------

_CHAT_TYPES = frozenset({"private", "group", "supergroup", "channel"})


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(f"invalid Telegram object from the fake: {what}")


def _validate_user(user: Any, where: str) -> None:
    _require(isinstance(user, dict), f"{where} is not an object")
    _require(isinstance(user.get("id"), int), f"{where}.id")
    _require(isinstance(user.get("is_bot"), bool), f"{where}.is_bot")
    _require(isinstance(user.get("first_name"), str), f"{where}.first_name")


def _validate_file(obj: Any, where: str) -> None:
    _require(isinstance(obj, dict), f"{where} is not an object")
    _require(isinstance(obj.get("file_id"), str), f"{where}.file_id")
    _require(isinstance(obj.get("file_unique_id"), str), f"{where}.file_unique_id")


def _validate_message(message: Any, where: str = "message") -> None:
    _require(isinstance(message, dict), f"{where} is not an object")
    _require(isinstance(message.get("message_id"), int), f"{where}.message_id")
    _require(type(message.get("date")) is int, f"{where}.date must be an int")
    chat = message.get("chat")
    _require(isinstance(chat, dict), f"{where}.chat")
    _require(isinstance(chat.get("id"), int), f"{where}.chat.id")
    _require(chat.get("type") in _CHAT_TYPES, f"{where}.chat.type")
    if "from" in message:
        _validate_user(message["from"], f"{where}.from")
    for key in ("entities", "caption_entities"):
        for entity in message.get(key, []):
            _require({"type", "offset", "length"} <= entity.keys(), f"{where}.{key}")
    for size in message.get("photo", []):
        _validate_file(size, f"{where}.photo[]")
        _require(isinstance(size.get("width"), int), f"{where}.photo[].width")
        _require(isinstance(size.get("height"), int), f"{where}.photo[].height")
    if "photo" in message:
        _require(bool(message["photo"]), f"{where}.photo is empty")
    if "document" in message:
        _validate_file(message["document"], f"{where}.document")
    markup = message.get("reply_markup")
    if markup is not None:
        keyboard = markup.get("inline_keyboard")
        _require(isinstance(keyboard, list), f"{where}.reply_markup.inline_keyboard")
        for row in keyboard:
            _require(isinstance(row, list), f"{where}.reply_markup row")
            for button in row:
                _require(isinstance(button.get("text"), str), f"{where}.reply_markup button")
    if "reply_to_message" in message:
        _require(
            "reply_to_message" not in message["reply_to_message"],
            f"{where}.reply_to_message must not nest a further reply",
        )
        _validate_message(message["reply_to_message"], f"{where}.reply_to_message")


def _validate_update(update: dict[str, Any], *, parse: bool = True) -> None:
    _require(isinstance(update.get("update_id"), int), "update.update_id")
    payloads = [key for key in update if key != "update_id"]
    _require(len(payloads) == 1, f"update must carry exactly one payload, has {payloads}")
    kind = payloads[0]
    if kind in ("message", "edited_message", "channel_post", "edited_channel_post"):
        _validate_message(update[kind], kind)
    elif kind == "callback_query":
        query = update[kind]
        _require(isinstance(query.get("id"), str), "callback_query.id")
        _validate_user(query.get("from"), "callback_query.from")
        _require(isinstance(query.get("chat_instance"), str), "callback_query.chat_instance")
        if "message" in query:
            _validate_message(query["message"], "callback_query.message")
    if not parse:
        return
    # The strongest check: the library's own parser, when it is importable.
    try:
        from telegram import Update
    except ImportError:  # pragma: no cover - the fake only needs aiohttp + Pillow
        return
    try:
        Update.de_json(copy.deepcopy(update), None)
    except Exception as exc:
        raise ValueError(f"python-telegram-bot cannot parse this update: {exc!r}") from exc


def _inline_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    markup = message.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


# --------------------------------------------------------------------------------------------
# The fake server
# --------------------------------------------------------------------------------------------

ChatLike = FakeChat | FakeUser | int
MessageLike = dict[str, Any] | int


class FakeTelegram:
    """A fake Bot API server. Use as ``async with FakeTelegram() as fake: ...``."""

    def __init__(
        self,
        token: str = "123:ABC",
        username: str = "drawbridge_bot",
        *,
        first_name: str = "Drawbridge",
        privacy_mode: bool = True,
        host: str = "127.0.0.1",
        refuse_second_poller: bool = False,
        limits: Limits | None = PUBLISHED_LIMITS,
        parse_check: bool = True,
    ) -> None:
        bot_id, sep, _ = token.partition(":")
        if not sep or not bot_id.isdigit():
            raise ValueError("a bot token looks like '<digits>:<secret>'")
        self.token = token
        self.username = username
        self.first_name = first_name
        self.bot_id = int(bot_id)
        self.privacy_mode = privacy_mode
        self.host = host
        self.port: int | None = None
        self.limits = limits
        # every injected update is also parsed by python-telegram-bot (a check of the fake
        # itself); the benchmarks turn it off, so the library's parsing counts once, as the
        # bot's, not a second time as the fake's
        self.parse_check = parse_check
        self._windows: dict[Any, _Window] = {}
        self.down: str | None = None  # "502" or "unreachable" while an outage lasts
        self._site: web.TCPSite | None = None

        self.calls: list[Call] = []
        self.server_errors: list[BaseException] = []
        self.dropped_updates: list[dict[str, Any]] = []
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.webhook_url: str = ""

        self._chats: dict[int, _ChatState] = {}
        self._users: dict[int, FakeUser] = {}
        self._files: dict[str, _StoredFile] = {}
        self._paths: dict[str, _StoredFile] = {}
        self._sent_photos: dict[int, list[bytes]] = defaultdict(list)
        self._sent_documents: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._callbacks: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, list[_Failure]] = defaultdict(list)

        self._updates: list[dict[str, Any]] = []
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._update_ids = itertools.count(100_000_001)
        self._file_counter = itertools.count(1)
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._group_ids = itertools.count(1)
        self._media_group_ids = itertools.count(13_000_000_000_000_001)
        self._poll_generation = 0
        # True: a getUpdates while another one is waiting gets 409 (a second bot process on
        # the same token), instead of ending the waiting one (the real server's newest-wins)
        self.refuse_second_poller = refuse_second_poller
        self._polling = 0
        self._delays: dict[str, float] = {}
        self._poll_event = asyncio.Event()
        self._calls_event = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None

        handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            "getMe": self._m_get_me,
            "logOut": self._m_true,
            "close": self._m_true,
            "deleteWebhook": self._m_delete_webhook,
            "setWebhook": self._m_set_webhook,
            "getWebhookInfo": self._m_get_webhook_info,
            "getUpdates": self._m_get_updates,
            "setMyCommands": self._m_set_my_commands,
            "getMyCommands": self._m_get_my_commands,
            "deleteMyCommands": self._m_delete_my_commands,
            "sendMessage": self._m_send_message,
            "sendChatAction": self._m_send_chat_action,
            "sendPhoto": self._m_send_photo,
            "sendDocument": self._m_send_document,
            "sendMediaGroup": self._m_send_media_group,
            "copyMessage": self._m_copy_message,
            "editMessageText": self._m_edit_message_text,
            "editMessageCaption": self._m_edit_message_caption,
            "editMessageMedia": self._m_edit_message_media,
            "editMessageReplyMarkup": self._m_edit_message_reply_markup,
            "deleteMessage": self._m_delete_message,
            "deleteMessages": self._m_delete_messages,
            "answerCallbackQuery": self._m_answer_callback_query,
            "getFile": self._m_get_file,
        }
        self._handlers = handlers
        self._methods_by_lower = {name.lower(): name for name in handlers}

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        # Room above the 50 MiB upload limit, so the fake itself answers 413 like Telegram.
        app = web.Application(client_max_size=UPLOAD_MAX_BYTES + 4 * MIB)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port or 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self._site = site

    async def go_down(self, mode: str = "502") -> None:
        """An outage: every call is answered 502 Bad Gateway (``"502"``), or the server stops
        listening and drops the connections it has (``"unreachable"``) until `come_back`."""
        if mode not in ("502", "unreachable"):
            raise ValueError("mode is '502' or 'unreachable'")
        self.down = mode
        if mode == "unreachable" and self._site is not None:
            await self._site.stop()
            self._site = None

    async def come_back(self) -> None:
        """The outage ends (the server listens on the same port again)."""
        mode, self.down = self.down, None
        if mode == "unreachable" and self._site is None and self._runner is not None:
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            self._site = site

    @property
    def floods(self) -> list[Call]:
        """Calls answered 429 by flood control."""
        return [c for c in self.calls if not c.ok and c.error_code == 429]

    async def close(self) -> None:
        """Release pending long polls at once, then stop the server."""
        self._closing = True
        self._wake_polls()
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def root(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeTelegram is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.root}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    # ---------------------------------------------------------------- users and chats

    def user(
        self,
        id: int,
        first_name: str = "User",
        language_code: str | None = "en",
        *,
        last_name: str | None = None,
        username: str | None = None,
    ) -> FakeUser:
        """A user; their private chat with the bot exists from now on (chat id == user id)."""
        user = FakeUser(id, first_name, language_code, last_name=last_name, username=username)
        self._users[id] = user
        self.private_chat(user)
        return user

    def private_chat(self, user: FakeUser) -> FakeChat:
        state = self._chats.get(user.id)
        if state is None:
            chat = FakeChat(
                user.id,
                "private",
                first_name=user.first_name,
                last_name=user.last_name,
                username=user.username,
            )
            state = self._chats[user.id] = _ChatState(chat)
        return state.chat

    def group_chat(
        self,
        title: str = "Test group",
        *,
        id: int | None = None,
        supergroup: bool = False,
        bot_is_admin: bool = False,
    ) -> FakeChat:
        """A group the bot is a member of (negative id; supergroups as -100xxxxxxxxxx)."""
        if id is None:
            n = next(self._group_ids)
            id = -(1_000_000_000_000 + n) if supergroup else -(4_000_000_000 + n)
        chat = FakeChat(id, "supergroup" if supergroup else "group", title=title)
        self._chats[id] = _ChatState(chat, bot_is_admin=bot_is_admin)
        return chat

    def block_bot(self, user: FakeUser, blocked: bool = True) -> None:
        """The user blocks the bot: sends to their private chat answer 403."""
        self._state_for(user).blocked = blocked

    # ---------------------------------------------------------------- state for assertions

    def calls_of(self, method: str | None = None, *, ok: bool | None = None) -> list[Call]:
        """Calls of ``method`` (any method if None); ``ok`` filters on success/failure."""
        return [
            call
            for call in self.calls
            if (method is None or call.method == method) and (ok is None or call.ok == ok)
        ]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        count: int = 1,
        *,
        ok: bool | None = True,
    ) -> list[Call]:
        """Wait until at least ``count`` matching calls happened (counted from the start).

        Only successful calls count unless ``ok`` says otherwise (``ok=None``: any). Returns all
        matching calls. On timeout raises AssertionError listing what did arrive.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matches = [
                call
                for call in self.calls_of(method, ok=ok)
                if predicate is None or predicate(call)
            ]
            if len(matches) >= count:
                return matches
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = self.calls_of(method)
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} matching {method} call(s) "
                    f"(ok={ok}); got {len(matches)}. All {method} calls: {seen!r}. "
                    f"Fake server errors: {self.server_errors!r}"
                )
            event = self._calls_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        retry_after: int | None = None,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (checked before anything else).

        429 answers carry ``parameters.retry_after`` (default 1 s) as flood control does.
        """
        parameters = None
        if error_code == 429:
            retry_after = 1 if retry_after is None else retry_after
            parameters = {"retry_after": retry_after}
            description = description or f"Too Many Requests: retry after {retry_after}"
        elif retry_after is not None:
            parameters = {"retry_after": retry_after}
        if description is None:
            description = {
                400: "Bad Request",
                401: "Unauthorized",
                403: "Forbidden: bot was blocked by the user",
                404: "Not Found",
                409: "Conflict",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(error_code, "Error")
        canonical = self._methods_by_lower.get(method.lower(), method)
        self._failures[canonical].append(_Failure(error_code, description, parameters, times))

    def slow(self, method: str, seconds: float) -> None:
        """Make every ``method`` call take ``seconds`` before it is processed (0: normal); a
        client that goes away meanwhile leaves no trace (the upload never arrived)."""
        canonical = self._methods_by_lower.get(method.lower(), method)
        self._delays[canonical] = seconds

    def messages(self, chat: ChatLike) -> list[dict[str, Any]]:
        """The chat's current messages (not deleted), oldest first, as full Message dicts."""
        state = self._state_for(chat)
        return [copy.deepcopy(m) for _, m in sorted(state.messages.items())]

    def message(self, chat: ChatLike, message_id: int) -> dict[str, Any] | None:
        found = self._state_for(chat).messages.get(message_id)
        return copy.deepcopy(found) if found is not None else None

    def bot_messages(self, chat: ChatLike) -> list[dict[str, Any]]:
        return [m for m in self.messages(chat) if m.get("from", {}).get("id") == self.bot_id]

    def photos_sent(self, chat: ChatLike) -> list[bytes]:
        """Bytes of every photo the bot put in the chat, as uploaded (before recompression)."""
        return list(self._sent_photos[self._state_for(chat).chat.id])

    def documents_sent(self, chat: ChatLike) -> list[tuple[str, bytes]]:
        """``(file_name, bytes)`` of every document the bot put in the chat."""
        return list(self._sent_documents[self._state_for(chat).chat.id])

    def file_bytes(self, file_id: str) -> bytes:
        """What downloading ``file_id`` gives (recompressed JPEG for photo sizes)."""
        return self._files[file_id].data

    def commands(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        return copy.deepcopy(self._commands.get(self._commands_key(scope, language_code), []))

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        return copy.deepcopy(self._updates)

    # ---------------------------------------------------------------- injecting updates

    def push_update(self, payload_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (validated); returns the whole update."""
        update = {"update_id": next(self._update_ids), payload_type: copy.deepcopy(payload)}
        _validate_update(update, parse=self.parse_check)
        self._updates.append(update)
        self._wake_polls()
        return copy.deepcopy(update)

    def send_text(
        self,
        chat: ChatLike,
        user: FakeUser,
        text: str,
        reply_to: MessageLike | None = None,
    ) -> dict[str, Any]:
        """A user sends ``text``; a leading /command gets its bot_command entity."""
        if not text.strip() or len(text) > TEXT_MAX_CHARS:
            raise ValueError("a user message has 1..4096 characters")
        content: dict[str, Any] = {"text": text}
        entities = self._command_entities(text)
        if entities:
            content["entities"] = entities
        return self._user_message(chat, user, content, reply_to)

    def send_photo(
        self,
        chat: ChatLike,
        user: FakeUser,
        image_bytes: bytes,
        caption: str | None = None,
        reply_to: MessageLike | None = None,
    ) -> dict[str, Any]:
        """A user sends a photo: stored as several recompressed JPEG sizes, like Telegram."""
        image = _open_image(image_bytes)
        content: dict[str, Any] = {"photo": self._store_photo(image, image_bytes)}
        self._add_user_caption(content, caption)
        return self._user_message(chat, user, content, reply_to)

    def send_document(
        self,
        chat: ChatLike,
        user: FakeUser,
        data: bytes,
        filename: str,
        mime_type: str,
        caption: str | None = None,
        reply_to: MessageLike | None = None,
    ) -> dict[str, Any]:
        """A user sends a file; it is kept byte-exact."""
        if not data:
            raise ValueError("Telegram does not accept empty files")
        document = self._store_document(data, filename, mime_type)
        content: dict[str, Any] = {"document": document}
        self._add_user_caption(content, caption)
        return self._user_message(chat, user, content, reply_to)

    def press_button(
        self,
        chat: ChatLike,
        user: FakeUser,
        message: MessageLike,
        callback_data: str,
    ) -> dict[str, Any]:
        """A user presses an inline button of ``message``; returns the CallbackQuery dict.

        The query carries the message as it is now (after edits). The button must exist.
        """
        state = self._state_for(chat)
        message_id = message if isinstance(message, int) else message["message_id"]
        stored = state.messages.get(message_id)
        if stored is None:
            raise ValueError(f"message {message_id} does not exist (any more) in {state.chat.id}")
        data = [b.get("callback_data") for b in _inline_buttons(stored)]
        if callback_data not in data:
            raise ValueError(f"message {message_id} has no button with data {callback_data!r}")
        query = {
            "id": str(next(self._query_ids)),
            "from": user.to_dict(),
            "message": copy.deepcopy(stored),
            "chat_instance": str((state.chat.id * 7919) % 10**18 + 10**17),
            "data": callback_data,
        }
        self._callbacks[query["id"]] = {"query": query, "answered": False}
        self.push_update("callback_query", query)
        return copy.deepcopy(query)

    # ---------------------------------------------------------------- internals: updates

    def _command_entities(self, text: str) -> list[dict[str, Any]]:
        match = _COMMAND_RE.match(text)
        if not match:
            return []
        return [{"type": "bot_command", "offset": 0, "length": _u16(match.group(0))}]

    def _add_user_caption(self, content: dict[str, Any], caption: str | None) -> None:
        if caption is None:
            return
        if len(caption) > CAPTION_MAX_CHARS:
            raise ValueError("captions have at most 1024 characters")
        content["caption"] = caption
        entities = self._command_entities(caption)
        if entities:
            content["caption_entities"] = entities

    def _user_message(
        self,
        chat: ChatLike,
        user: FakeUser,
        content: dict[str, Any],
        reply_to: MessageLike | None,
    ) -> dict[str, Any]:
        state = self._state_for(chat)
        message: dict[str, Any] = {
            "message_id": state.new_message_id(),
            "from": user.to_dict(),
            "chat": state.chat.to_dict(),
            "date": int(time.time()),
        }
        if reply_to is not None:
            reply_id = reply_to if isinstance(reply_to, int) else reply_to["message_id"]
            target = state.messages.get(reply_id)
            if target is None:
                raise ValueError(f"no message {reply_id} in chat {state.chat.id} to reply to")
            message["reply_to_message"] = self._embedded(target)
        message.update(copy.deepcopy(content))
        _validate_message(message)
        state.messages[message["message_id"]] = message
        if self._bot_receives(message):
            self.push_update("message", message)
        else:
            self.dropped_updates.append({"message": copy.deepcopy(message)})
        return copy.deepcopy(message)

    def _bot_receives(self, message: dict[str, Any]) -> bool:
        if not self.privacy_mode or message["chat"]["type"] == "private":
            return True
        text = message.get("text", message.get("caption", ""))
        entities = message.get("entities", message.get("caption_entities", []))
        if entities and entities[0]["type"] == "bot_command" and entities[0]["offset"] == 0:
            command = text[: entities[0]["length"]]
            _, at, target = command.partition("@")
            if not at or target.lower() == self.username.lower():
                return True
        replied = message.get("reply_to_message")
        return bool(replied and replied.get("from", {}).get("id") == self.bot_id)

    @staticmethod
    def _embedded(message: dict[str, Any]) -> dict[str, Any]:
        embedded = copy.deepcopy(message)
        embedded.pop("reply_to_message", None)
        return embedded

    def _wake_polls(self) -> None:
        self._poll_event.set()
        self._poll_event = asyncio.Event()

    def _state_for(self, chat: ChatLike) -> _ChatState:
        if isinstance(chat, FakeUser):
            self.private_chat(chat)
            chat_id = chat.id
        elif isinstance(chat, FakeChat):
            chat_id = chat.id
        else:
            chat_id = chat
        state = self._chats.get(chat_id)
        if state is None:
            raise KeyError(f"unknown chat {chat_id}; create it with user() or group_chat()")
        return state

    # ---------------------------------------------------------------- internals: files

    def _new_file_ids(self, prefix: str) -> tuple[str, str]:
        n = next(self._file_counter)
        return (
            f"{prefix}AgADAgAD{n:06d}" + secrets.token_urlsafe(24),
            f"AQAD{n:06d}" + secrets.token_urlsafe(6),
        )

    def _store_photo(self, image: Image.Image, original: bytes) -> list[dict[str, Any]]:
        sizes: list[dict[str, Any]] = []
        records: list[_StoredFile] = []
        for width, height, jpeg in _render_photo_sizes(image):
            file_id, unique_id = self._new_file_ids("AgAC")
            record = _StoredFile(file_id, unique_id, "photo", jpeg, mime_type="image/jpeg")
            records.append(record)
            self._files[file_id] = record
            sizes.append(
                {
                    "file_id": file_id,
                    "file_unique_id": unique_id,
                    "file_size": len(jpeg),
                    "width": width,
                    "height": height,
                }
            )
        for record in records:
            record.photo_sizes = sizes
            record.original = original
        return copy.deepcopy(sizes)

    def _store_document(self, data: bytes, filename: str, mime_type: str) -> dict[str, Any]:
        file_id, unique_id = self._new_file_ids("BQAC")
        record = _StoredFile(
            file_id, unique_id, "document", data, file_name=filename, mime_type=mime_type
        )
        self._files[file_id] = record
        return self._document_dict(record)

    @staticmethod
    def _document_dict(record: _StoredFile) -> dict[str, Any]:
        document: dict[str, Any] = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "file_size": len(record.data),
        }
        if record.file_name:
            document["file_name"] = record.file_name
        if record.mime_type:
            document["mime_type"] = record.mime_type
        return document

    def _upload(
        self, value: Any, files: dict[str, tuple[str, bytes, str]], field_name: str, kind: str
    ) -> tuple[str, bytes, str] | str:
        """Resolve a file parameter to an upload tuple, or to a file_id string."""
        if value is None:
            if field_name in files:
                return files[field_name]
            raise _bad(f"there is no {kind} in the request")
        if not isinstance(value, str):
            raise _bad(f"wrong type of the {kind} parameter")
        if value.startswith("attach://"):
            name = value.removeprefix("attach://")
            if name not in files:
                raise _bad("can't parse InputMedia: media not found")
            return files[name]
        if value.startswith(("http://", "https://")):
            raise _bad("failed to get HTTP URL content")
        return value

    def _resolve_photo(
        self, value: Any, files: dict[str, tuple[str, bytes, str]], field_name: str
    ) -> tuple[list[dict[str, Any]], bytes]:
        upload = self._upload(value, files, field_name, "photo")
        if isinstance(upload, str):
            record = self._files.get(upload)
            if record is None:
                raise _bad("wrong file identifier/HTTP URL specified")
            if record.kind != "photo" or record.photo_sizes is None:
                raise _bad(f"can't use file of type {record.kind.title()} as Photo")
            return copy.deepcopy(record.photo_sizes), record.original or record.data
        _, data, _ = upload
        if not data:
            raise _bad("file must be non-empty")
        if len(data) > PHOTO_MAX_BYTES:
            raise _bad(
                f"file of size {len(data)} bytes is too big for a photo; the maximum size is "
                f"{PHOTO_MAX_BYTES} bytes"
            )
        image = _open_image(data, check_dimensions=True)
        return self._store_photo(image, data), data

    def _resolve_document(
        self, value: Any, files: dict[str, tuple[str, bytes, str]], field_name: str
    ) -> tuple[dict[str, Any], str, bytes]:
        upload = self._upload(value, files, field_name, "document")
        if isinstance(upload, str):
            record = self._files.get(upload)
            if record is None:
                raise _bad("wrong file identifier/HTTP URL specified")
            if record.kind != "document":
                raise _bad(f"can't use file of type {record.kind.title()} as Document")
            return self._document_dict(record), record.file_name or "", record.data
        filename, data, content_type = upload
        if not data:
            raise _bad("file must be non-empty")
        # Telegram derives the MIME type from the file name's extension.
        mime_type = mimetypes.guess_type(filename or "")[0] or content_type
        mime_type = mime_type or "application/octet-stream"
        return self._store_document(data, filename or "document", mime_type), filename, data

    # ---------------------------------------------------------------- internals: HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/bot"):
            return self._serve_file(path.removeprefix("/file/bot"))
        match = re.fullmatch(r"/bot([^/]*)/([A-Za-z_]+)/?", path)
        if match is None:
            return self._error_response(ApiError(404, "Not Found"))
        token, method_name = match.groups()
        if token != self.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        method = self._methods_by_lower.get(method_name.lower())
        if method is None:
            return self._error_response(ApiError(404, "Not Found"))

        if self.down == "unreachable":
            # a connection opened before the outage: cut it, as a dead server would
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the fake Telegram is unreachable")
        call = Call(method=method, params={}, files={}, timestamp=time.monotonic())
        try:
            call.params, call.files = await self._read_params(request)
            if self.down == "502":
                raise ApiError(502, "Bad Gateway")
            self._inject_failure(method)
            self._flood_control(method, call.params)
            if self._delays.get(method):
                await asyncio.sleep(self._delays[method])
            result = await self._handlers[method](call.params, call.files)
        except ApiError as exc:
            call.ok, call.error_code, call.description = False, exc.code, exc.description
            self._record(call)
            return self._error_response(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the fake: make it visible
            self.server_errors.append(exc)
            error = ApiError(500, f"Internal Server Error: fake bug: {exc!r}")
            call.ok, call.error_code, call.description = False, error.code, error.description
            self._record(call)
            return self._error_response(error)
        call.result = copy.deepcopy(result)
        self._record(call)
        return web.json_response({"ok": True, "result": result}, dumps=_json_dumps)

    @staticmethod
    def _error_response(error: ApiError) -> web.Response:
        return web.json_response(error.body(), status=error.code, dumps=_json_dumps)

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._calls_event.set()
        self._calls_event = asyncio.Event()

    def _flood_control(self, method: str, params: dict[str, Any]) -> None:
        limits = self.limits
        if limits is None or method not in COUNTED_METHODS:
            return
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            return  # refused by the method itself
        windows = [("overall", limits.overall), (("chat", chat_id), limits.chat)]
        if chat_id < 0:
            windows.append((("group", chat_id), limits.group))
        now = time.monotonic()
        found = []
        for key, (count, per) in windows:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(count, per)
            found.append(window)
        wait = max(w.wait(now) for w in found)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        for window in found:
            window.stamps.append(now)

    def _inject_failure(self, method: str) -> None:
        queue = self._failures.get(method)
        if not queue:
            return
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        raise ApiError(failure.error_code, failure.description, failure.parameters)

    async def _read_params(
        self, request: web.Request
    ) -> tuple[dict[str, Any], dict[str, tuple[str, bytes, str]]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, tuple[str, bytes, str]] = {}
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise _bad("can't parse JSON object") from exc
                if not isinstance(body, dict):
                    raise _bad("JSON object expected")
                raw.update(body)
            else:
                try:
                    form = await request.post()
                except web.HTTPRequestEntityTooLarge as exc:
                    raise ApiError(413, "Request Entity Too Large") from exc
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        data = value.file.read()
                        if len(data) > UPLOAD_MAX_BYTES:
                            raise ApiError(413, "Request Entity Too Large")
                        files[key] = (value.filename, data, value.content_type)
                    else:
                        raw[key] = value
        return {key: self._decode_param(key, value) for key, value in raw.items()}, files

    @staticmethod
    def _decode_param(key: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if key in _JSON_FIELDS:
            try:
                return json.loads(value)
            except ValueError as exc:
                if key == "reply_markup":
                    raise _bad("can't parse reply keyboard markup JSON object") from exc
                raise _bad(f"can't parse {key} JSON object") from exc
        if key in _INT_FIELDS:
            try:
                return int(value)
            except ValueError:
                try:
                    return int(float(value))
                except ValueError:
                    if key == "chat_id":
                        return value  # @username
                    raise _bad(f"wrong parameter {key}") from None
        if key in _BOOL_FIELDS:
            return value.lower() in ("true", "1")
        return value

    def _serve_file(self, rest: str) -> web.Response:
        token, _, file_path = rest.partition("/")
        if token != self.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        record = self._paths.get(file_path)
        if record is None:
            return self._error_response(ApiError(404, "Not Found"))
        content_type = record.mime_type or "application/octet-stream"
        return web.Response(body=record.data, content_type=content_type)

    # ---------------------------------------------------------------- internals: bot messages

    def _target_chat(self, params: dict[str, Any]) -> _ChatState:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        state = None
        if isinstance(chat_id, int):
            state = self._chats.get(chat_id)
        elif isinstance(chat_id, str):
            wanted = chat_id.removeprefix("@").lower()
            state = next(
                (s for s in self._chats.values() if (s.chat.username or "").lower() == wanted),
                None,
            )
        if state is None:
            raise _bad("chat not found")
        if state.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return state

    def _reply_target(self, state: _ChatState, params: dict[str, Any]) -> dict[str, Any] | None:
        reply = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = allow_missing or bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") not in (None, state.chat.id):
                raise _bad("cross-chat replies are not supported by the fake")
        else:
            message_id = params.get("reply_to_message_id")
        if message_id is None:
            return None
        target = state.messages.get(message_id) if isinstance(message_id, int) else None
        if target is None:
            if allow_missing:
                return None
            raise _bad("message to be replied not found")
        return self._embedded(target)

    @staticmethod
    def _inline_markup(params: dict[str, Any]) -> dict[str, Any] | None:
        """Validate ``reply_markup``; return it when it is an inline keyboard (else None)."""
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if not {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
                raise _bad("can't parse reply keyboard markup JSON object")
            return None
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad("can't parse inline keyboard button: Text must be a String")
                if "callback_data" in button:
                    data = button["callback_data"]
                    size = len(data.encode()) if isinstance(data, str) else 0
                    if not 1 <= size <= CALLBACK_DATA_MAX_BYTES:
                        raise _bad("BUTTON_DATA_INVALID")
                elif "url" in button:
                    if not re.match(r"(https?|tg)://", str(button["url"])):
                        raise _bad("BUTTON_URL_INVALID")
                elif not {
                    "login_url",
                    "switch_inline_query",
                    "switch_inline_query_current_chat",
                    "switch_inline_query_chosen_chat",
                    "copy_text",
                    "callback_game",
                    "pay",
                    "web_app",
                }.intersection(button):
                    raise _bad("text buttons are unallowed in the inline keyboard")
        return {"inline_keyboard": copy.deepcopy(rows)}

    @staticmethod
    def _text(params: dict[str, Any], *, edit: bool = False) -> dict[str, Any]:
        text = params.get("text")
        if not isinstance(text, str):
            raise _bad("message text is empty")
        text, entities = _format_text(text, params.get("parse_mode"), params.get("entities"))
        if not text:
            raise _bad("message text is empty")
        if len(text) > TEXT_MAX_CHARS:
            raise _bad("MESSAGE_TOO_LONG" if edit else "message is too long")
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return content

    @staticmethod
    def _caption(source: dict[str, Any]) -> dict[str, Any]:
        caption = source.get("caption")
        if caption is None or caption == "":
            return {}
        if not isinstance(caption, str):
            raise _bad("can't parse caption")
        caption, entities = _format_text(
            caption, source.get("parse_mode"), source.get("caption_entities")
        )
        if len(caption) > CAPTION_MAX_CHARS:
            raise _bad("message caption is too long")
        content: dict[str, Any] = {}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        return content

    def _bot_message(
        self,
        state: _ChatState,
        content: dict[str, Any],
        reply_to: dict[str, Any] | None = None,
        markup: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": state.new_message_id(),
            "from": self.bot_user,
            "chat": state.chat.to_dict(),
            "date": int(time.time()),
        }
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        message.update(content)
        if markup is not None:
            message["reply_markup"] = markup
        _validate_message(message)
        state.messages[message["message_id"]] = message
        return copy.deepcopy(message)

    def _edit_target(self, params: dict[str, Any]) -> tuple[_ChatState, dict[str, Any]]:
        if params.get("inline_message_id") is not None:
            raise _bad("MESSAGE_ID_INVALID")  # inline messages are not modelled
        state = self._target_chat(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        message = state.messages.get(message_id)
        if message is None:
            raise _bad("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return state, message

    @staticmethod
    def _apply_edit(
        message: dict[str, Any],
        content_keys: Iterable[str],
        new_content: dict[str, Any],
        markup: dict[str, Any] | None,
    ) -> dict[str, Any]:
        keys = list(content_keys)
        old = {key: message.get(key) for key in keys}
        new = {key: new_content.get(key) for key in keys}
        if old == new and message.get("reply_markup") == markup:
            raise _bad(NOT_MODIFIED)
        for key in keys:
            message.pop(key, None)
            if new[key] is not None:
                message[key] = copy.deepcopy(new[key])
        # As on the real server, an edit without reply_markup removes the inline keyboard.
        message.pop("reply_markup", None)
        if markup is not None:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        _validate_message(message)
        return copy.deepcopy(message)

    # ---------------------------------------------------------------- Bot API methods

    async def _m_true(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        return True

    async def _m_get_me(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_delete_webhook(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        self.webhook_url = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_set_webhook(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        if url and not url.startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if url:
            self._wake_polls()  # pending long polls now conflict
        return True

    async def _m_get_webhook_info(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _m_get_updates(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        if self.refuse_second_poller and self._polling:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one "
                "bot instance is running",
            )
        offset = params.get("offset")
        limit = params.get("limit") or 100
        limit = min(max(int(limit), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) or DEFAULT_UPDATE_TYPES
        if isinstance(offset, int) and offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif isinstance(offset, int) and offset < 0:
            self._updates = self._updates[offset:]
        self._polling += 1
        try:
            return await self._long_poll(offset, limit, timeout)
        finally:
            self._polling -= 1

    async def _long_poll(self, offset: Any, limit: int, timeout: float) -> list[dict[str, Any]]:
        # A new getUpdates terminates the previous one, as on the real server.
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_polls()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )
            if self.webhook_url:
                raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active")
            self._updates = [
                u for u in self._updates if self._update_type(u) in self._allowed_updates
            ]
            ready = self._updates[:limit]
            remaining = deadline - loop.time()
            if ready or remaining <= 0 or self._closing:
                return copy.deepcopy(ready)
            event = self._poll_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    @staticmethod
    def _update_type(update: dict[str, Any]) -> str:
        return next(key for key in update if key != "update_id")

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope if isinstance(scope, dict) else {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(language_code or "")

    async def _m_set_my_commands(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad('parameter "commands" is required')
        if len(commands) > 100:
            raise _bad("too many commands")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand")
            if not _BOT_COMMAND_NAME_RE.fullmatch(str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self._commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _m_get_my_commands(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> list[dict[str, Any]]:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        return copy.deepcopy(self._commands.get(key, []))

    async def _m_delete_my_commands(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        self._commands.pop(
            self._commands_key(params.get("scope"), params.get("language_code")), None
        )
        return True

    async def _m_send_message(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> dict[str, Any]:
        state = self._target_chat(params)
        content = self._text(params)
        markup = self._inline_markup(params)
        return self._bot_message(state, content, self._reply_target(state, params), markup)

    async def _m_send_chat_action(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _m_send_photo(
        self, params: dict[str, Any], files: dict[str, tuple[str, bytes, str]]
    ) -> dict[str, Any]:
        state = self._target_chat(params)
        caption = self._caption(params)
        markup = self._inline_markup(params)
        reply_to = self._reply_target(state, params)
        sizes, original = self._resolve_photo(params.get("photo"), files, "photo")
        message = self._bot_message(state, {"photo": sizes, **caption}, reply_to, markup)
        self._sent_photos[state.chat.id].append(original)
        return message

    async def _m_send_document(
        self, params: dict[str, Any], files: dict[str, tuple[str, bytes, str]]
    ) -> dict[str, Any]:
        state = self._target_chat(params)
        caption = self._caption(params)
        markup = self._inline_markup(params)
        reply_to = self._reply_target(state, params)
        document, filename, data = self._resolve_document(params.get("document"), files, "document")
        message = self._bot_message(state, {"document": document, **caption}, reply_to, markup)
        self._sent_documents[state.chat.id].append((filename, data))
        return message

    async def _m_send_media_group(
        self, params: dict[str, Any], files: dict[str, tuple[str, bytes, str]]
    ) -> list[dict[str, Any]]:
        state = self._target_chat(params)
        media = params.get("media")
        if media is None:
            raise _bad('parameter "media" is required')
        if not isinstance(media, list) or not media:
            raise _bad("there are no messages to send")
        if len(media) > ALBUM_MAX_ITEMS:
            raise _bad("too many messages to send as an album")
        if len(media) < ALBUM_MIN_ITEMS:
            raise _bad("media group must include 2-10 items")
        types = [item.get("type") if isinstance(item, dict) else None for item in media]
        for kind in types:
            if kind not in ("photo", "document", "video", "audio"):
                raise _bad(
                    f"can't parse InputMedia: type \"{kind}\" can't be used in sendMediaGroup"
                )
            if kind in ("video", "audio"):
                raise _bad(f"the fake does not support {kind} media")
        if "document" in types and set(types) != {"document"}:
            raise _bad("document can't be mixed with other media types")
        reply_to = self._reply_target(state, params)
        prepared: list[tuple[dict[str, Any], str, bytes, str | None]] = []
        for position, item in enumerate(media, start=1):
            caption = self._caption(item)
            try:
                if item["type"] == "photo":
                    sizes, original = self._resolve_photo(item.get("media"), files, "")
                    prepared.append(({"photo": sizes, **caption}, "photo", original, None))
                else:
                    document, filename, data = self._resolve_document(item.get("media"), files, "")
                    prepared.append(({"document": document, **caption}, "document", data, filename))
            except ApiError as exc:
                if any(tag in exc.description for tag in ("PHOTO_", "IMAGE_PROCESS")):
                    raise _bad(
                        f"failed to send message #{position} with the error message "
                        f'"{exc.description.removeprefix("Bad Request: ")}"'
                    ) from exc
                raise
        group_id = str(next(self._media_group_ids))
        messages = []
        for content, kind, data, filename in prepared:
            content["media_group_id"] = group_id
            messages.append(self._bot_message(state, content, copy.deepcopy(reply_to)))
            if kind == "photo":
                self._sent_photos[state.chat.id].append(data)
            else:
                self._sent_documents[state.chat.id].append((filename or "", data))
        return messages

    async def _m_copy_message(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> dict[str, Any]:
        state = self._target_chat(params)
        source_state = self._target_chat({"chat_id": params.get("from_chat_id")})
        source = source_state.messages.get(params.get("message_id") or 0)
        if source is None:
            raise _bad("message to copy not found")
        content = {
            key: copy.deepcopy(value)
            for key, value in source.items()
            if key in ("text", "entities", "photo", "document", "caption", "caption_entities")
        }
        if "caption" in params:
            content.pop("caption", None)
            content.pop("caption_entities", None)
            content.update(self._caption(params))
        message = self._bot_message(
            state, content, self._reply_target(state, params), self._inline_markup(params)
        )
        return {"message_id": message["message_id"]}

    async def _m_edit_message_text(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> dict[str, Any]:
        _, message = self._edit_target(params)
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        content = self._text(params, edit=True)
        markup = self._inline_markup(params)
        return self._apply_edit(message, ("text", "entities"), content, markup)

    async def _m_edit_message_caption(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> dict[str, Any]:
        _, message = self._edit_target(params)
        if not {"photo", "document"} & message.keys():
            raise _bad("there is no caption in the message to edit")
        content = self._caption(params)
        markup = self._inline_markup(params)
        return self._apply_edit(message, ("caption", "caption_entities"), content, markup)

    async def _m_edit_message_reply_markup(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> dict[str, Any]:
        _, message = self._edit_target(params)
        return self._apply_edit(message, (), {}, self._inline_markup(params))

    async def _m_edit_message_media(
        self, params: dict[str, Any], files: dict[str, tuple[str, bytes, str]]
    ) -> dict[str, Any]:
        state, message = self._edit_target(params)
        if not {"photo", "document"} & message.keys():
            raise _bad("there is no media in the message to edit")
        media = params.get("media")
        if not isinstance(media, dict):
            raise _bad('parameter "media" is required')
        kind = media.get("type")
        if kind not in ("photo", "document"):
            raise _bad(f'can\'t parse InputMedia: type "{kind}" is unsupported by the fake')
        if message.get("media_group_id") and kind not in message:
            raise _bad("can't change the media type of a message in an album")
        caption = self._caption(media)
        markup = self._inline_markup(params)
        keys = ("photo", "document", "caption", "caption_entities")
        if kind == "photo":
            sizes, original = self._resolve_photo(media.get("media"), files, "")
            edited = self._apply_edit(message, keys, {"photo": sizes, **caption}, markup)
            self._sent_photos[state.chat.id].append(original)
        else:
            document, filename, data = self._resolve_document(media.get("media"), files, "")
            edited = self._apply_edit(message, keys, {"document": document, **caption}, markup)
            self._sent_documents[state.chat.id].append((filename, data))
        return edited

    async def _m_delete_message(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        state = self._target_chat(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        message = state.messages.get(message_id)
        if message is None:
            raise _bad("message to delete not found")
        own = message.get("from", {}).get("id") == self.bot_id
        if not own and state.chat.type != "private" and not state.bot_is_admin:
            raise _bad("message can't be deleted")
        del state.messages[message_id]
        return True

    async def _m_delete_messages(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        state = self._target_chat(params)
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message identifiers are not specified")
        found = False
        for message_id in ids:
            message = state.messages.get(message_id)
            if message is None:
                continue  # as Telegram: messages that cannot be found are skipped
            own = message.get("from", {}).get("id") == self.bot_id
            if not own and state.chat.type != "private" and not state.bot_is_admin:
                continue
            del state.messages[message_id]
            found = True
        if not found:
            raise _bad("message to delete not found")
        return True

    async def _m_answer_callback_query(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        record = self._callbacks.get(query_id)
        if record is None or record["answered"]:
            raise _bad(QUERY_TOO_OLD)
        text = params.get("text")
        if isinstance(text, str) and len(text) > CALLBACK_ANSWER_MAX_CHARS:
            raise _bad("MESSAGE_TOO_LONG")
        record["answered"] = True
        self.callback_answers[query_id] = {
            key: params[key] for key in ("text", "show_alert", "url", "cache_time") if key in params
        }
        return True

    async def _m_get_file(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        file_id = params.get("file_id")
        record = self._files.get(file_id) if isinstance(file_id, str) else None
        if record is None:
            raise _bad("wrong file_id or the file is temporarily unavailable")
        if len(record.data) > DOWNLOAD_MAX_BYTES:
            raise _bad("file is too big")
        if record.file_path is None:
            n = next(self._file_counter)
            if record.kind == "photo":
                record.file_path = f"photos/file_{n}.jpg"
            else:
                suffix = ""
                if record.file_name and "." in record.file_name:
                    suffix = "." + record.file_name.rsplit(".", 1)[1]
                record.file_path = f"documents/file_{n}{suffix}"
            self._paths[record.file_path] = record
        return {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "file_size": len(record.data),
            "file_path": record.file_path,
        }


# --------------------------------------------------------------------------------------------
# Helpers for tests: a fixture and a running python-telegram-bot Application
# --------------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A started FakeTelegram; fails the test if the fake itself hit an internal error.

    Use it from a test module by importing it (``# noqa: F401``) and wrapping it, which keeps
    ruff's F811 (argument shadows an import) to one line::

        from tests.fakes.telegram_api import fake_telegram  # noqa: F401

        @pytest.fixture
        def fake(fake_telegram: FakeTelegram) -> FakeTelegram:  # noqa: F811
            return fake_telegram
    """
    async with FakeTelegram() as fake:
        yield fake
        if fake.server_errors:
            raise AssertionError(f"the fake Telegram server failed: {fake.server_errors!r}")


def build_app(fake: FakeTelegram, *, max_retries: int | None = 3, **builder_options: Any) -> Any:
    """An Application pointed at ``fake``, with AIORateLimiter(max_retries) unless None.

    ``builder_options`` are ApplicationBuilder method names and their single argument, e.g.
    ``concurrent_updates=True`` (``token=`` overrides the fake's token).
    """
    from telegram.ext import AIORateLimiter, ApplicationBuilder

    builder = ApplicationBuilder().token(builder_options.pop("token", fake.token))
    builder = builder.base_url(fake.base_url).base_file_url(fake.base_file_url)
    if max_retries is not None:
        builder = builder.rate_limiter(AIORateLimiter(max_retries=max_retries))
    for name, value in builder_options.items():
        builder = getattr(builder, name)(value)
    return builder.build()


@contextlib.asynccontextmanager
async def running_app(
    fake: FakeTelegram,
    *handlers: Any,
    app: Any = None,
    poll_timeout: int = 1,
    raise_handler_errors: bool = True,
    **build_options: Any,
) -> AsyncIterator[Any]:
    """Run an Application against ``fake`` with the manual lifecycle, polling.

    ``handlers`` are telegram.ext handlers (or ``(handler, group)`` tuples). Pass ``app`` to run
    an Application built elsewhere (e.g. by the adapter under test); otherwise ``build_app``
    makes one with ``build_options``. ``post_init`` is called (run_polling is not used, so the
    library would not). Exceptions raised inside handlers are collected; they fail the block at
    exit (or are attached as a note to the block's own exception) unless ``raise_handler_errors``
    is False. Shutdown releases the long poll at once.
    """
    if app is None:
        app = build_app(fake, **build_options)
    for handler in handlers:
        if isinstance(handler, tuple):
            app.add_handler(*handler)
        else:
            app.add_handler(handler)
    errors: list[BaseException] = []

    async def collect(update: object, context: Any) -> None:
        errors.append(context.error)

    if raise_handler_errors:
        app.add_error_handler(collect)
    await app.initialize()
    try:
        if app.post_init is not None:
            await app.post_init(app)
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=poll_timeout)
        try:
            yield app
        except BaseException as exc:
            for error in errors:
                exc.add_note(f"handler error: {error!r}")
            raise
        finally:
            if app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
    finally:
        await app.shutdown()
    if errors:
        raise AssertionError(f"handlers raised: {errors!r}") from errors[0]

"""Proves the fake Telegram Bot API against the real python-telegram-bot (not drawbridge)."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Message, Update
from telegram.error import BadRequest, InvalidToken
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram_api import (
    FakeTelegram,
    build_app,
    fake_telegram,  # noqa: F401 - the fixture
    running_app,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def fake(
    fake_telegram: FakeTelegram,  # noqa: F811 - the imported fixture
    caplog: pytest.LogCaptureFixture,
) -> Iterator[FakeTelegram]:
    yield fake_telegram
    # python-telegram-bot logs (instead of raising) when it cannot parse what the fake sent.
    problems = [r for r in caplog.records if r.name.startswith("telegram") and r.levelno >= 40]
    assert not problems, [r.getMessage() for r in problems]


def image_bytes(width: int, height: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    if mode == "RGB":
        image = Image.new("RGB", (width, height))
        image.paste((200, 30, 30), (0, 0, width // 2, height))  # red left half
        image.paste((30, 30, 200), (width // 2, 0, width, height))  # blue right half
    else:
        image = Image.new(mode, (width, height))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def collector() -> tuple[list[Update], asyncio.Event, Any]:
    seen: list[Update] = []
    event = asyncio.Event()

    async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update)
        event.set()

    return seen, event, handler


async def wait_seen(seen: list[Update], event: asyncio.Event, count: int) -> None:
    async with asyncio.timeout(5):
        while len(seen) < count:
            await event.wait()
            event.clear()


async def test_start_command_reply_reaches_the_fake(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_user is not None and update.message is not None
        await update.message.reply_text(f"Hello {update.effective_user.first_name}", do_quote=True)

    async with running_app(fake, CommandHandler("start", start)) as app:
        assert app.bot.username == "drawbridge_bot"
        incoming = fake.send_text(alice, alice, "/start")
        (call,) = await fake.wait_for("sendMessage")

    assert incoming["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert call.params["chat_id"] == alice.id
    assert call.params["text"] == "Hello Alice"
    assert call.params["reply_parameters"]["message_id"] == incoming["message_id"]
    reply = fake.bot_messages(alice)[-1]
    assert reply["reply_to_message"]["text"] == "/start"
    assert reply["message_id"] == incoming["message_id"] + 1  # one counter per chat
    assert fake.calls_of("getMe") and fake.calls_of("deleteWebhook")
    assert not fake.pending_updates  # the updater confirmed what it fetched


async def test_photo_with_caption_reaches_handler_and_downloads(
    fake: FakeTelegram,
) -> None:
    alice = fake.user(1001, "Alice")
    seen, done, on_photo = collector()
    downloaded: list[bytes] = []

    async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        file = await update.message.photo[-1].get_file()
        downloaded.append(bytes(await file.download_as_bytearray()))
        await on_photo(update, context)

    photo_filter = filters.PHOTO & filters.CaptionRegex(r"^/draw\b")
    async with running_app(fake, MessageHandler(photo_filter, handler)):
        sent = fake.send_photo(alice, alice, image_bytes(640, 480), caption="/draw a castle")
        await asyncio.wait_for(done.wait(), 5)

    message = seen[0].message
    assert message is not None and message.caption == "/draw a castle"
    assert message.caption_entities[0].type == "bot_command"
    assert [(s.width, s.height) for s in message.photo] == [(90, 68), (320, 240), (640, 480)]
    assert downloaded[0] == fake.file_bytes(sent["photo"][-1]["file_id"])
    image = Image.open(io.BytesIO(downloaded[0]))
    assert image.format == "JPEG" and image.size == (640, 480)  # recompressed, like Telegram
    red, blue = image.getpixel((10, 10)), image.getpixel((630, 470))
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]


async def test_document_keeps_exact_bytes(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    data = os.urandom(300_000)
    downloaded: list[bytes] = []
    done = asyncio.Event()

    async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.message.document is not None
        doc = update.message.document
        assert (doc.file_name, doc.mime_type, doc.file_size) == ("seed.bin", "x-test/raw", 300_000)
        file = await doc.get_file()
        downloaded.append(bytes(await file.download_as_bytearray()))
        done.set()

    async with running_app(fake, MessageHandler(filters.Document.ALL, handler)) as app:
        fake.send_document(alice, alice, data, "seed.bin", "x-test/raw")
        await asyncio.wait_for(done.wait(), 5)
        # and the bot's own upload is kept byte-exact too
        sent = await app.bot.send_document(alice.id, data, filename="echo.bin")
    assert downloaded == [data]
    assert fake.documents_sent(alice) == [("echo.bin", data)]
    assert sent.document is not None and sent.document.file_size == len(data)


async def test_callback_query_is_answered_and_edit_drops_keyboard(
    fake: FakeTelegram,
) -> None:
    alice = fake.user(1001, "Alice")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Again", callback_data="again:42")]])

    async def menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("Pick one", reply_markup=keyboard)

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer("Queued")
        await query.edit_message_text(f"Picked {query.data}")

    handlers = (CommandHandler("menu", menu), CallbackQueryHandler(on_button))
    async with running_app(fake, *handlers):
        fake.send_text(alice, alice, "/menu")
        (sent,) = await fake.wait_for("sendMessage")
        query = fake.press_button(alice, alice, sent.result, "again:42")
        await fake.wait_for("editMessageText")
        with pytest.raises(ValueError, match="no button"):
            fake.press_button(alice, alice, sent.result, "again:42")  # keyboard is gone

    (answer,) = fake.calls_of("answerCallbackQuery")
    assert answer.params["callback_query_id"] == query["id"]
    assert fake.callback_answers[query["id"]]["text"] == "Queued"
    assert query["message"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "again:42"
    edited = fake.message(alice, sent.result["message_id"])
    assert edited is not None and edited["text"] == "Picked again:42"
    assert "reply_markup" not in edited  # an edit without reply_markup removes the keyboard


async def test_platform_errors_surface_as_bad_request(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    async with running_app(fake) as app:
        bot = app.bot
        # python-telegram-bot strips "Bad Request: " and capitalizes: match case-insensitively.
        with pytest.raises(BadRequest, match=r"(?i)photo_invalid_dimensions"):
            await bot.send_photo(alice.id, image_bytes(100, 5000))  # ratio 50 > 20
        with pytest.raises(BadRequest, match=r"(?i)photo_invalid_dimensions"):
            await bot.send_photo(alice.id, image_bytes(5001, 5000, mode="1"))  # sum > 10000
        with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
            await bot.send_photo(alice.id, b"not an image at all")
        with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
            await bot.edit_message_text("new", chat_id=alice.id, message_id=999)
        with pytest.raises(BadRequest, match=r"(?i)message caption is too long"):
            await bot.send_photo(alice.id, image_bytes(64, 64), caption="x" * 1025)
        ok = await bot.send_photo(alice.id, image_bytes(64, 64), caption="x" * 1024)
        with pytest.raises(BadRequest, match=r"(?i)message is too long"):
            await bot.send_message(alice.id, "y" * 4097)
        with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
            await bot.send_message(
                alice.id,
                "hi",
                reply_markup=InlineKeyboardMarkup(
                    [[InlineKeyboardButton("b", callback_data="z" * 65)]]
                ),
            )
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await bot.send_message(424242, "who?")
        with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
            await bot.send_message(alice.id, "re", reply_to_message_id=999)
    assert len(fake.photos_sent(alice)) == 1 and ok.caption == "x" * 1024
    failed = fake.calls_of("sendPhoto", ok=False)
    assert [c.description for c in failed][:1] == ["Bad Request: PHOTO_INVALID_DIMENSIONS"]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter's own
async def test_flood_control_is_retried_by_aio_rate_limiter(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    photo = image_bytes(320, 200)
    fake.fail_next("sendPhoto", error_code=429, retry_after=1)
    async with running_app(fake, max_retries=3) as app:
        started = time.monotonic()
        message = await app.bot.send_photo(alice.id, photo, caption="done")
        elapsed = time.monotonic() - started

    assert elapsed >= 1.0
    first, second = fake.calls_of("sendPhoto")
    assert (first.ok, first.error_code) == (False, 429)
    assert first.description == "Too Many Requests: retry after 1"
    assert second.ok and second.timestamp - first.timestamp >= 1.0
    assert fake.photos_sent(alice) == [photo]
    assert message.photo[-1].width == 320 and message.caption == "done"


async def test_not_modified_delete_and_markup_edits(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
    async with running_app(fake) as app:
        bot = app.bot
        msg = await bot.send_message(alice.id, "Status", reply_markup=keyboard)
        with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
            await msg.edit_text("Status", reply_markup=keyboard)
        await msg.edit_text("Status")  # same text, keyboard removed: a modification
        with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
            await msg.edit_reply_markup(None)
        await msg.edit_reply_markup(keyboard)
        with pytest.raises(BadRequest, match=r"(?i)there is no caption"):
            await msg.edit_caption("cap")
        user_msg = fake.send_text(alice, alice, "mine")
        with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
            await bot.edit_message_text("x", chat_id=alice.id, message_id=user_msg["message_id"])
        assert await msg.delete()
        with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
            await msg.delete()
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await bot.answer_callback_query("12345")
        assert await bot.send_chat_action(alice.id, "upload_photo")
    assert fake.message(alice, msg.message_id) is None


async def test_albums_edit_media_and_reply_to_a_bot_photo(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    seen, done, handler = collector()
    first, second, third = image_bytes(300, 200), image_bytes(200, 300), image_bytes(256, 256)

    async with running_app(fake, MessageHandler(filters.REPLY, handler)) as app:
        bot = app.bot
        album = await bot.send_media_group(
            alice.id, [InputMediaPhoto(first, caption="one"), InputMediaPhoto(second)]
        )
        assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
        assert album[0].caption == "one"
        with pytest.raises(BadRequest, match=r"(?i)2-10 items"):
            await bot.send_media_group(alice.id, [InputMediaPhoto(first)])
        with pytest.raises(BadRequest, match=r"(?i)too many messages to send as an album"):
            await bot.send_media_group(alice.id, [InputMediaPhoto(first)] * 11)
        edited = await bot.edit_message_media(
            InputMediaPhoto(third, caption="three"),
            chat_id=alice.id,
            message_id=album[0].message_id,
        )
        assert isinstance(edited, Message) and edited.photo[-1].width == 256

        # a user replies to the bot's result; the handler sees the whole replied-to message
        result = fake.message(alice, album[0].message_id)
        assert result is not None
        fake.send_text(alice, alice, "again, but bigger", reply_to=result)
        await asyncio.wait_for(done.wait(), 5)
        assert seen[0].message is not None
        replied = seen[0].message.reply_to_message
        assert replied is not None and replied.caption == "three"
        file = await replied.photo[-1].get_file()
        data = bytes(await file.download_as_bytearray())
    assert data == fake.file_bytes(result["photo"][-1]["file_id"])
    assert fake.photos_sent(alice) == [first, second, third]


async def test_group_privacy_mode_delivers_only_what_a_bot_would_get(
    fake: FakeTelegram,
) -> None:
    alice = fake.user(1001, "Alice")
    group = fake.group_chat("Artists", supergroup=True)
    seen, event, handler = collector()
    async with running_app(fake, MessageHandler(filters.ALL, handler)) as app:
        bot_msg = await app.bot.send_message(group.id, "I am here")
        fake.send_text(group, alice, "just chatting")
        fake.send_text(group, alice, "/draw@other_bot a cat")
        fake.send_text(group, alice, "/draw@DrawBridge_Bot a dog")
        fake.send_text(group, alice, "thanks!", reply_to=bot_msg.message_id)
        fake.send_photo(group, alice, image_bytes(64, 64), caption="no command")
        fake.send_photo(group, alice, image_bytes(64, 64), caption="/draw a bird")
        fake.send_text(group, alice, "/done")
        await wait_seen(seen, event, 4)
    texts = [u.message.text or u.message.caption for u in seen if u.message]
    assert texts == ["/draw@DrawBridge_Bot a dog", "thanks!", "/draw a bird", "/done"]
    assert len(fake.dropped_updates) == 3
    assert seen[0].message is not None and seen[0].message.chat.type == "supergroup"


async def test_parse_modes_produce_entities_and_real_errors(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    async with running_app(fake) as app:
        bot = app.bot
        html = await bot.send_message(
            alice.id, "<b>Done</b> &amp; <a href='https://x.test/'>link</a>", parse_mode="HTML"
        )
        assert html.text == "Done & link"
        assert [(e.type, e.offset, e.length) for e in html.entities] == [
            ("bold", 0, 4),
            ("text_link", 7, 4),
        ]
        with pytest.raises(BadRequest, match=r'(?i)unsupported start tag "br"'):
            await bot.send_message(alice.id, "a<br>b", parse_mode="HTML")
        with pytest.raises(BadRequest, match=r"(?i)character '.' is reserved"):
            await bot.send_message(alice.id, "*Done*.", parse_mode="MarkdownV2")
        md = await bot.send_message(alice.id, "*Done*\\. 🎨 _ok_", parse_mode="MarkdownV2")
        assert md.text == "Done. 🎨 ok"
        assert [(e.type, e.offset, e.length) for e in md.entities] == [
            ("bold", 0, 4),
            ("italic", 9, 2),  # the emoji counts as 2 UTF-16 units
        ]


async def test_files_commands_and_tokens(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    big = fake.send_document(alice, alice, b"\0" * (20 * 1024 * 1024 + 1), "big.bin", "x/y")
    async with running_app(fake) as app:
        bot = app.bot
        with pytest.raises(BadRequest, match=r"(?i)file is too big"):
            await bot.get_file(big["document"]["file_id"])
        await bot.set_my_commands([("draw", "Draw a picture"), ("help", "Help")])
        assert [c.command for c in await bot.get_my_commands()] == ["draw", "help"]
        assert fake.commands()[0] == {"command": "draw", "description": "Draw a picture"}
        with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
            await bot.set_my_commands([("Draw", "Capital letters are refused")])
        with pytest.raises(Exception, match=r"(?i)not found"):
            await bot.do_api_request("noSuchMethod")
    # A token the server rejects fails initialize() with InvalidToken (getMe answers 401).
    rejected = build_app(fake, token="123:WRONG")
    with pytest.raises(InvalidToken):
        await rejected.initialize()
    await rejected.bot.shutdown()  # Application.shutdown() is a no-op when never initialized


async def test_long_poll_semantics_over_raw_http(fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    url = f"{fake.base_url}{fake.token}"
    async with httpx.AsyncClient(timeout=10) as client:
        # holds until an update arrives, then returns at once
        poll = asyncio.create_task(client.post(f"{url}/getUpdates", data={"timeout": "5"}))
        await asyncio.sleep(0.2)
        assert not poll.done()
        started = time.monotonic()
        sent = fake.send_text(alice, alice, "hello")
        body = (await poll).json()
        assert time.monotonic() - started < 3.0  # not the 5 s poll timeout
        assert body["ok"] and body["result"][0]["message"]["message_id"] == sent["message_id"]
        update_id = body["result"][0]["update_id"]
        # not confirmed yet: delivered again; offset confirms (JSON body, any method case)
        again = (await client.post(f"{url}/getupdates", json={"timeout": 0})).json()
        assert [u["update_id"] for u in again["result"]] == [update_id]
        empty = await client.post(f"{url}/getUpdates", json={"offset": update_id + 1})
        assert empty.json() == {"ok": True, "result": []}
        # a second long poll terminates the first with 409, as the real server does
        first = asyncio.create_task(client.post(f"{url}/getUpdates", data={"timeout": "5"}))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(client.post(f"{url}/getUpdates", data={"timeout": "10"}))
        conflict = await first
        assert (
            conflict.status_code == 409 and "terminated by other" in conflict.json()["description"]
        )
        # shutdown releases the held poll promptly
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await fake.close()
        released = await second
        assert time.monotonic() - started < 5.0  # not the 10 s poll timeout
        assert released.json() == {"ok": True, "result": []}


async def test_errors_unknown_method_and_token_over_raw_http(fake: FakeTelegram) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        wrong = await client.post(f"{fake.base_url}123:WRONG/getMe")
        assert wrong.status_code == 401
        assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        unknown = await client.post(f"{fake.base_url}{fake.token}/sendSticker")
        assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        fake.fail_next("getMe", error_code=500, times=2)
        statuses = [
            (await client.get(f"{fake.base_url}{fake.token}/getMe")).status_code for _ in range(3)
        ]
        assert statuses == [500, 500, 200]


async def test_shutdown_is_clean_and_quick(fake: FakeTelegram) -> None:
    fake.user(1001, "Alice")
    started = None
    async with running_app(fake, poll_timeout=30):
        await asyncio.sleep(0.3)  # the updater now holds a 30 s long poll
        started = time.monotonic()
    assert time.monotonic() - started < 10.0  # not the 30 s poll timeout
    cleanup = fake.calls_of("getUpdates")[-1]
    assert cleanup.params["timeout"] == 0 and cleanup.ok


@pytest.mark.parametrize("parse_check", [True, False])
def test_injected_updates_are_checked_with_or_without_the_librarys_parser(
    parse_check: bool,
) -> None:
    """The benchmarks leave out the fake's extra parse of each update with python-telegram-bot;
    its own checks of an update's shape stay either way."""
    fake = FakeTelegram(parse_check=parse_check)
    with pytest.raises(ValueError, match="invalid Telegram object from the fake"):
        fake.push_update("message", {"message_id": "one"})
    assert not fake.pending_updates
    alice = fake.user(7, "Alice")
    fake.send_text(alice, alice, "/draw a fox")
    assert [u["message"]["text"] for u in fake.pending_updates] == ["/draw a fox"]

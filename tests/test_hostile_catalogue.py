"""The bad-input catalogue (issue 11): what an attacker tries, through the real adapters and
the CLI, table-driven. Every case asserts the exact kind of answer (a reply in the chat, a
private alert, an ephemeral message, one line on stderr with exit status 2), that the WebUI
received no generation request, that the user was not charged, and that nothing logged a
traceback. One running bot per platform serves all of its cases (each case is a fresh user, so
per-user limits and quotas do not carry over between cases)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes.telegram_api import FakeTelegram
from tests.harness.cli import drawbridge
from tests.harness.discord import EPHEMERAL, discord_env
from tests.harness.env import LogRecords
from tests.harness.process import ledger
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(240)

LONG = "x" * 4000  # a user message holds at most 4096 characters
DRAW_PATHS = ("/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/extra-single-image")


# --- what every case checks ----------------------------------------------------------------


def _generations(webui: Any) -> int:
    return sum(1 for path, _ in webui.requests if path in DRAW_PATHS)


def _tracebacks(records: LogRecords) -> list[str]:
    return [
        r.getMessage()
        for r in records.records
        if r.exc_info or "Traceback" in r.getMessage() or r.levelno >= logging.ERROR
    ]


@dataclass
class Case:
    """One hostile input: what is sent, the kind of answer, a fragment it must contain."""

    name: str
    send: Callable[..., Any]
    kind: str  # "reply" | "alert" | "quiet" (Telegram); "ephemeral" (Discord)
    says: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- Telegram ------------------------------------------------------------------------------


def _text(text: str) -> Callable[..., Any]:
    def send(fake: FakeTelegram, user: Any, ctx: dict[str, Any]) -> None:
        fake.send_text(user, user, text)

    return send


def _press(data: Callable[[dict[str, Any]], str]) -> Callable[..., Any]:
    """A forged press: callback_data no button of ours carries, on the owner's result."""

    def send(fake: FakeTelegram, user: Any, ctx: dict[str, Any]) -> None:
        query = {
            "id": str(next(ctx["query_ids"])),
            "from": user.to_dict(),
            "message": ctx["result"],
            "chat_instance": "42",
            "data": data(ctx)[:64],
        }
        # a client may send any callback_data; the fake's press_button only sends ours
        fake._callbacks[query["id"]] = {"query": query, "answered": False}
        fake.push_update("callback_query", query)

    return send


def _document(data: bytes, name: str, mime: str, caption: str) -> Callable[..., Any]:
    def send(fake: FakeTelegram, user: Any, ctx: dict[str, Any]) -> None:
        fake.send_document(user, user, data, name, mime, caption=caption)

    return send


def _anonymous(text: str) -> Callable[..., Any]:
    def send(fake: FakeTelegram, user: Any, ctx: dict[str, Any]) -> None:
        group = ctx["group"]
        fake.push_update(
            "message",
            {
                "message_id": 900000 + user.id,
                "date": 1,
                "chat": group.to_dict(),
                "sender_chat": group.to_dict(),
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
            },
        )

    return send


def _key(kind: str) -> Callable[[dict[str, Any]], str]:
    return lambda ctx: ctx["keys"][kind]


TELEGRAM: list[Case] = [
    # the prompt
    Case("empty", _text("/draw"), "reply", "Please describe what to draw"),
    Case("zero-width", _text("/draw \u200b\u200c\u200d\u2060"), "reply", "describe what to draw"),
    Case("only bidi", _text("/draw \u202e\u202d"), "reply", "describe what to draw"),
    Case("only spaces", _text("/draw    "), "reply", "describe what to draw"),
    Case("too long", _text("/draw " + "y" * 1001), "reply", "1001 characters long"),
    Case("negative too long", _text("/draw fox --neg " + "n" * 1001), "reply", "negative prompt"),
    Case("unclosed quote", _text('/draw "a fox'), "reply", "double quote is not closed"),
    # numbers
    Case("steps 0", _text("/draw fox --steps 0"), "reply", "--steps must be between 1 and 50"),
    Case("steps 51", _text("/draw fox --steps 51"), "reply", "--steps must be between 1 and 50"),
    Case("steps -5", _text("/draw fox --steps -5"), "reply", "--steps must be between"),
    Case("steps word", _text("/draw fox --steps many"), "reply", "--steps"),
    Case("steps huge", _text("/draw fox --steps 1" + "0" * 40), "reply", "--steps"),
    Case("cfg nan", _text("/draw fox --cfg nan"), "reply", "--cfg"),
    Case("cfg inf", _text("/draw fox --cfg inf"), "reply", "--cfg"),
    Case("cfg 31", _text("/draw fox --cfg 31"), "reply", "--cfg must be between 1 and 30"),
    Case("seed 2^64", _text("/draw fox --seed 18446744073709551616"), "reply", "--seed"),
    Case("n 0", _text("/draw fox --n 0"), "reply", "--n must be between"),
    Case("n 99", _text("/draw fox --n 99"), "reply", "--n must be between"),
    Case("strength 2", _text("/draw fox --strength 2"), "reply", "--strength"),
    # sizes
    Case("size 0x0", _text("/draw fox --size 0x0"), "reply", "--size"),
    Case("size huge", _text("/draw fox --size 99999x99999"), "reply", "--size"),
    Case("size strip", _text("/draw fox --size 64x16384"), "reply", "--size"),
    Case("size words", _text("/draw fox --size bigxsmall"), "reply", "--size"),
    Case("ar 1:100", _text("/draw fox --ar 1:100"), "reply", "--ar"),
    Case("ar 0:1", _text("/draw fox --ar 0:1"), "reply", "--ar"),
    Case("ar and size", _text("/draw fox --ar 1:1 --size 512x512"), "reply", "not both"),
    # flags
    Case("unknown flag", _text("/draw fox --bogus 1"), "reply", "--bogus"),
    Case("missing value", _text("/draw fox --sampler"), "reply", "--sampler"),
    Case("repeated flag", _text("/draw fox --steps 20 --steps 30"), "reply", "given twice"),
    Case("hires twice", _text("/draw fox --hires --no-hires"), "reply", "not both"),
    Case("strength alone", _text("/draw fox --strength 0.5"), "reply", "send a picture"),
    Case("invert alone", _text("/draw fox --invert"), "reply", "send a picture"),
    Case("unknown preset", _text("/draw fox --preset nope"), "reply", "no preset called"),
    Case("bad fill", _text("/draw fox --fill bogus"), "reply", "--fill"),
    # names that cannot be checkpoints or samplers
    Case("model ..", _text("/draw fox --model ../../etc/passwd"), "reply", "cannot be a name"),
    Case("model abs", _text("/draw fox --model /etc/passwd"), "reply", "cannot be a name"),
    Case("model drive", _text(r"/draw fox --model C:\x.ckpt"), "reply", "cannot be a name"),
    Case("sampler ..", _text("/draw fox --sampler ../x"), "reply", "cannot be a name"),
    Case("model long", _text("/draw fox --model " + "m" * 300), "reply", "cannot be a name"),
    # /settings and /cancel, also quoting long input (the reply still fits 4096)
    Case("settings steps -5", _text("/settings steps -5"), "reply", "--steps must be between"),
    Case("settings size", _text("/settings size 64x16384"), "reply", "--size"),
    Case("settings preset", _text("/settings preset nope"), "reply", "no preset called"),
    Case("settings unknown", _text("/settings colour red"), "reply", "/settings"),
    Case("settings long", _text("/settings size " + LONG), "reply", "--size"),
    Case("cancel unknown", _text("/cancel nosuchjob"), "reply", "There is no job"),
    Case("cancel long", _text("/cancel " + LONG), "reply", "There is no job"),
    # forged buttons: a key stored for one kind under another kind's code
    Case("original with reroll key", _press(lambda c: f"o:{c['keys']['reroll']}"), "alert"),
    Case("variations with reroll key", _press(lambda c: f"v:{c['keys']['reroll']}"), "alert"),
    Case("upscale with original key", _press(lambda c: f"u:{c['keys']['original']}"), "alert"),
    Case("reroll with upscale key", _press(lambda c: f"r:{c['keys']['upscale']}"), "alert"),
    Case("cancel with reroll key", _press(lambda c: f"x:{c['keys']['reroll']}"), "alert"),
    Case("unknown key", _press(lambda c: "r:forged0000"), "alert", "no longer works"),
    Case("junk data", _press(lambda c: "zz:top"), "quiet"),
    Case("settings of another", _press(lambda c: "s:1:t:20"), "alert", "someone else's"),
    Case("settings steps -5 button", _press(lambda c: f"s:{c['me']}:t:-5"), "alert", "--steps"),
    Case("settings strip button", _press(lambda c: f"s:{c['me']}:z:64x16384"), "alert", "--size"),
    Case("settings preset 999", _press(lambda c: f"s:{c['me']}:p:999"), "alert", "no longer"),
    Case("settings junk size", _press(lambda c: f"s:{c['me']}:z:axb"), "alert", "--size"),
    # who and what was sent
    Case("anonymous admin", _anonymous("/draw a fox"), "group", "anonymous admins"),
    Case(
        "text file",
        _document(b"hello, not a picture", "x.png", "image/png", "/draw a fox"),
        "reply",
        "PNG, JPEG, WebP, GIF",
    ),
    Case(
        "oversize file",
        _document(b"\x89PNG" + b"0" * 60_000, "big.png", "image/png", "/draw a fox"),
        "reply",
        "That file is 59 KB; the limit is 49 KB",
    ),
]


async def test_telegram_refuses_every_hostile_input_politely(tmp_path) -> None:
    async with telegram_env(
        tmp_path,
        user_rate_limit=10_000,
        max_upload_bytes=50_000,
        telegram_chat_limit=(1000, 1.0),
        telegram_global_limit=(1000, 1.0),
    ) as env:
        fake = env.tg
        owner = fake.user(1, "Owner")
        fake.send_text(owner, owner, "/draw the owner's fox --seed 1")
        (photo,) = await env.wait_result(owner)
        result = photo.result
        keys = {}
        for row in result["reply_markup"]["inline_keyboard"]:
            for b in row:
                code, _, key = b["callback_data"].partition(":")
                kind = {"r": "reroll", "v": "variations", "u": "upscale", "o": "original"}
                keys[kind.get(code, code)] = key  # and the canvas buttons by code
        await env.settled(owner)
        before = _generations(env.webui)
        group = fake.group_chat("Hostile group")
        ctx: dict[str, Any] = {
            "result": result,
            "keys": keys,
            "group": group,
            "query_ids": itertools.count(10_000),
        }
        failures: list[str] = []
        with LogRecords(logging.DEBUG, "") as records:
            for number, case in enumerate(TELEGRAM):
                user = fake.user(5000 + number, f"Mallory {number}")
                ctx["me"] = str(user.id)
                try:
                    await _telegram_case(env, user, case, ctx)
                except AssertionError as exc:
                    failures.append(f"{case.name}: {exc}")
        assert not failures, "\n".join(failures)
        assert _generations(env.webui) == before, "a hostile input reached the WebUI"
        assert not _tracebacks(records), _tracebacks(records)
        assert len(TELEGRAM) >= 60


async def _telegram_case(env: Any, user: Any, case: Case, ctx: dict[str, Any]) -> None:
    fake = env.tg
    sent_before = len(fake.calls_of("sendMessage"))
    answers_before = len(fake.calls_of("answerCallbackQuery"))
    photos_before = len(fake.calls_of("sendPhoto"))
    case.send(fake, user, ctx)
    if case.kind == "alert" or case.kind == "quiet":
        (answer,) = (
            await fake.wait_for("answerCallbackQuery", count=answers_before + 1, timeout=10)
        )[answers_before:]
        text = answer.params.get("text") or ""
        if case.kind == "alert":
            assert answer.params.get("show_alert") and text, f"no private alert: {answer.params}"
            assert case.says in text, text
        else:
            assert not text, text
    else:
        chat = ctx["group"].id if case.kind == "group" else user.id
        calls = await fake.wait_for("sendMessage", lambda c: c.chat_id == chat, count=1, timeout=10)
        text = calls[-1].params["text"]
        assert case.says in text, text
        assert len(text.encode("utf-16-le")) // 2 <= 4096
        assert "Traceback" not in text and "127.0.0.1" not in text
    await asyncio.sleep(0.05)  # nothing else follows: no public message for a press
    new = fake.calls_of("sendMessage")[sent_before:]
    if case.kind in ("alert", "quiet"):
        assert new == [], [c.params.get("text") for c in new]
    assert len(fake.calls_of("sendPhoto")) == photos_before, "a job was started"
    view = await env.settled(user)
    assert view.reserved == 0 and view.available == view.allowance, view


# --- Discord -------------------------------------------------------------------------------


def _slash(name: str, options: dict[str, Any]) -> Callable[..., Any]:
    async def send(fake: Any, user: str, ctx: dict[str, Any]) -> Any:
        return await fake.slash(name, options, user=user)

    return send


def _click(custom_id: Callable[[dict[str, Any]], str]) -> Callable[..., Any]:
    async def send(fake: Any, user: str, ctx: dict[str, Any]) -> Any:
        # discord.py only runs a button found on the message (Discord itself checks that):
        # the forged one is put on the owner's result for this press, as a modified client
        # and a careless server would have it
        stored = fake.messages[str(ctx["result"]["id"])]
        saved = stored["components"]
        forged = {"type": 2, "style": 2, "label": "forged", "custom_id": custom_id(ctx)}
        stored["components"] = [*saved, {"type": 1, "components": [forged]}]
        try:
            return await fake.click(ctx["result"], custom_id(ctx), user=user)
        finally:
            stored["components"] = saved

    return send


DISCORD: list[Case] = [
    Case("zero-width prompt", _slash("draw", {"prompt": "\u200b\u200b"}), "ephemeral", "describe"),
    Case("bidi prompt", _slash("draw", {"prompt": "\u202e"}), "ephemeral", "describe"),
    Case("long prompt", _slash("draw", {"prompt": "y" * 1001}), "ephemeral", "1001 characters"),
    Case(
        "long negative",
        _slash("draw", {"prompt": "fox", "negative": "n" * 1001}),
        "ephemeral",
        "negative prompt",
    ),
    Case(
        "model ..",
        _slash("draw", {"prompt": "fox", "model": "../../etc/passwd"}),
        "ephemeral",
        "cannot be a name",
    ),
    Case(
        "sampler abs",
        _slash("draw", {"prompt": "fox", "sampler": "/etc/passwd"}),
        "ephemeral",
        "cannot be a name",
    ),
    Case(
        "strength without picture",
        _slash("draw", {"prompt": "fox", "strength": 0.5}),
        "ephemeral",
        "send a picture",
    ),
    Case(
        "size and ratio",
        _slash("draw", {"prompt": "fox", "size": "512x512", "ar": "1:1"}),
        "ephemeral",
        "not both",
    ),
    Case("cancel unknown", _slash("cancel", {"job": "nosuchjob"}), "ephemeral", "no job"),
    Case("cancel long", _slash("cancel", {"job": LONG[:100]}), "ephemeral", "no job"),
    # forged buttons
    Case("delete with reroll key", _click(lambda c: f"db:d:{c['keys']['r']}"), "ephemeral"),
    Case("reroll with delete key", _click(lambda c: f"db:r:{c['keys']['d']}"), "ephemeral"),
    Case("variations with delete key", _click(lambda c: f"db:v:{c['keys']['d']}"), "ephemeral"),
    Case("upscale with reroll key", _click(lambda c: f"db:u:{c['keys']['r']}"), "ephemeral"),
    Case("cancel with reroll key", _click(lambda c: f"db:x:{c['keys']['r']}"), "ephemeral"),
    Case("unknown key", _click(lambda c: "db:r:forged0000"), "ephemeral", "no longer works"),
    Case("delete of another", _click(lambda c: f"db:d:{c['keys']['d']}"), "ephemeral", "Only"),
]


async def test_discord_refuses_every_hostile_input_politely(tmp_path) -> None:
    async with discord_env(tmp_path, user_rate_limit=10_000) as env:
        fake = env.dc
        fake.add_user("owner")
        ix = await fake.slash("draw", {"prompt": "the owner's fox", "seed": 1}, user="owner")
        result = await env.result(ix)

        def ids() -> list[str]:
            found = fake.original_message(ix) or {}
            rows = found.get("components") or []
            return [c.get("custom_id", "") for r in rows for c in r["components"]]

        await env.until(lambda: any(i.startswith("db:r:") for i in ids()))
        result = fake.original_message(ix)
        keys = {i.split(":")[1]: i.split(":")[2] for i in ids() if i.startswith("db:")}
        await env.settled("owner")
        before = _generations(env.webui)
        ctx = {"result": result, "keys": keys}
        failures: list[str] = []
        with LogRecords(logging.DEBUG, "") as records:
            for number, case in enumerate(DISCORD):
                name = f"mallory{number}"
                fake.add_user(name)
                try:
                    await _discord_case(env, name, case, ctx)
                except AssertionError as exc:
                    failures.append(f"{case.name}: {exc}")
        assert not failures, "\n".join(failures)
        assert _generations(env.webui) == before, "a hostile input reached the WebUI"
        assert not _tracebacks(records), _tracebacks(records)
        assert fake.message(result["id"]), "a forged delete removed the owner's result"


async def _discord_case(env: Any, user: str, case: Case, ctx: dict[str, Any]) -> None:
    fake = env.dc
    ix = await case.send(fake, user, ctx)

    def answer() -> str | None:
        for message in [fake.original_message(ix), *fake.followups(ix)]:
            if message and message["flags"] & EPHEMERAL and message["content"]:
                return str(message["content"])
        return None

    try:
        text: str = await env.until(answer, 10)
    except AssertionError:
        seen = [c for c in fake.calls if c.interaction is ix]
        raise AssertionError(f"no ephemeral answer; {ix.response} {seen}") from None
    assert case.says in text, text
    assert len(text) <= 2000 and "127.0.0.1" not in text and "Traceback" not in text
    view = await env.settled(user)
    assert view.reserved == 0 and view.available == view.allowance, view


# --- the CLI -------------------------------------------------------------------------------

CLI: list[tuple[str, list[str], dict[str, str], str]] = [
    ("empty prompt", ["draw"], {}, "describe what to draw"),
    ("zero-width prompt", ["draw", "\u200b"], {}, "describe what to draw"),
    ("steps 0", ["draw", "fox", "--steps", "0"], {}, "--steps must be between"),
    ("cfg nan", ["draw", "fox", "--cfg", "nan"], {}, "--cfg"),
    ("repeated flag", ["draw", "fox", "--seed", "1", "--seed", "2"], {}, "given twice"),
    ("model ..", ["draw", "fox", "--model", "../../etc/passwd"], {}, "cannot be a name"),
    ("strength alone", ["draw", "fox", "--strength", "0.5"], {}, "send a picture"),
    ("negative too long", ["draw", "fox", "--neg", "n" * 1001], {}, "negative prompt"),
    ("out uncreatable", ["draw", "fox", "--out", "/proc/no/such/dir"], {}, "--out"),
    ("endless init image", ["draw", "fox", "--init-image", "/dev/zero"], {}, "MAX_UPLOAD_BYTES"),
    ("missing init image", ["draw", "fox", "--init-image", "nope.png"], {}, "cannot read"),
    ("grant 2^64", ["quota", "grant", "bob", str(2**64)], {}, "from 1 to"),
    ("grant 0", ["quota", "grant", "bob", "0"], {}, "from 1 to"),
    ("grant words", ["quota", "grant", "bob", "lots"], {}, "invalid int value"),
    ("bad log level", ["quota", "show", "bob"], {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ("bad database url", ["quota", "show", "bob"], {"DATABASE_URL": "nonsense"}, "DATABASE_URL"),
    ("mysql url", ["quota", "show", "bob"], {"DATABASE_URL": "mysql://a:b@c/d"}, "PostgreSQL"),
]


@pytest.mark.parametrize(("name", "args", "env", "says"), CLI, ids=[c[0] for c in CLI])
async def test_the_cli_refuses_hostile_input_in_one_line(tmp_path, name, args, env, says) -> None:
    from devwebui import DevWebUI

    async with DevWebUI(delay=0.05) as webui:
        code, out, err = await drawbridge(tmp_path, *args, WEBUI_URLS=webui.url, **env)
        assert _generations(webui) == 0
    assert code == 2, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert says in lines[-1], err
    assert "Traceback" not in err and "Error:" not in err.replace("error:", "")
    database = tmp_path / "cli.db"
    if database.exists():
        assert [
            e for e in await ledger(f"sqlite+aiosqlite:///{database}") if e.kind == "reserve"
        ] == []


def test_the_catalogue_has_at_least_80_cases() -> None:
    assert len(TELEGRAM) + len(DISCORD) + len(CLI) >= 80

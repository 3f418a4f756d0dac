"""A fake Discord (gateway websocket + REST v10) on 127.0.0.1 for end-to-end tests with real discord.py.

Usage::

    async with FakeDiscord() as fake, patch_discord_urls(fake):
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        task = asyncio.create_task(client.start(fake.token))
        ...
        ix = await fake.slash("draw", {"prompt": "a cat"}, attachments={"image": ("a.png", data, "image/png")})
        call = await fake.wait_for("followup", interaction=ix)

What the fake reproduces (so that the code under test meets the same walls as in production):

* JSON answers carry exactly ``Content-Type: application/json`` (discord.py compares the header verbatim).
* Bot-token auth on REST (wrong token -> 401, ``client.start`` raises ``LoginFailure``); webhook and
  interaction-callback routes are authenticated by the token in the URL instead.
* Uploads over ``upload_limit`` (10 MiB, total per message) -> 413 ``40005``; more than 10 files -> 400.
* An interaction must be acknowledged within ``ack_deadline`` (3 s) -> else 404 ``10062``; it can be
  acknowledged once (second callback -> 400 ``40060``); webhook calls before the acknowledgement
  -> 404 ``10015``; the token lives ``token_ttl`` (15 min, or ``expire_token``) -> then 401 ``50027``.
* After a deferred (type 5) response, the first follow-up *fills* the "thinking" message (same message
  id as ``@original``), as Discord does; later follow-ups are new messages.
* Empty messages -> 400 ``50006``; content > 2000 chars, > 10 embeds, > 5 action rows, custom_id > 100
  chars, > 25 autocomplete choices -> 400 ``50035`` (Invalid Form Body) with an ``errors`` tree.
* Without the MESSAGE_CONTENT intent, guild messages that do not mention the bot arrive with empty
  content/attachments/embeds/components; MESSAGE_* events honour GUILD_MESSAGES / DIRECT_MESSAGES.
* Messages the bot creates are echoed back as MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE
  (ephemeral ones are not), like the real gateway.
* Per-route rate limits (``rate_limit``, 5 per 5 s by default) per channel for messages and per
  interaction token for its webhook, with the ``X-RateLimit-*`` headers discord.py reads to wait
  before a bucket runs dry; past it 429 with ``retry_after`` (:attr:`FakeDiscord.rate_limited`).
* ``down = True`` makes REST unreachable (connections cut) until set back.

State (users, guilds, channels, messages, files, registered commands, interactions) lives on the
``FakeDiscord`` object, so a new ``Client`` on the same fake (a "restart") sees it all again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import io
import itertools
import json
import logging
import mimetypes
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, unquote

import yarl
from aiohttp import WSMsgType, web

__all__ = [
    "Call",
    "FakeDiscord",
    "Interaction",
    "MiB",
    "StoredFile",
    "Upload",
    "patch_discord_urls",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DISCORD_EPOCH_MS = 1_420_070_400_000

# Gateway intents (bits) the fake honours.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15
_SETTABLE_FLAGS = (
    FLAG_SUPPRESS_EMBEDS | FLAG_EPHEMERAL | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
)

# A sensible permission set (view, send, embed, attach, history, reactions, external emoji,
# application commands, threads).
DEFAULT_PERMISSIONS = (
    (1 << 6)
    | (1 << 10)
    | (1 << 11)
    | (1 << 14)
    | (1 << 15)
    | (1 << 16)
    | (1 << 18)
    | (1 << 31)
    | (1 << 35)
    | (1 << 38)
)

# Interaction types / callback types.
IX_PING, IX_COMMAND, IX_COMPONENT, IX_AUTOCOMPLETE, IX_MODAL = 1, 2, 3, 4, 5
CB_MESSAGE, CB_DEFERRED, CB_DEFERRED_UPDATE, CB_UPDATE, CB_AUTOCOMPLETE, CB_MODAL = 4, 5, 6, 7, 8, 9
_ALLOWED_CALLBACKS = {
    IX_COMMAND: {CB_MESSAGE, CB_DEFERRED, CB_MODAL, 12},
    IX_COMPONENT: {CB_MESSAGE, CB_DEFERRED, CB_DEFERRED_UPDATE, CB_UPDATE, CB_MODAL, 12},
    IX_AUTOCOMPLETE: {CB_AUTOCOMPLETE},
    IX_MODAL: {CB_MESSAGE, CB_DEFERRED, CB_DEFERRED_UPDATE, CB_UPDATE},
}

_MENTION_RE = re.compile(r"<@!?(\d+)>")
_COMMAND_NAME_RE = re.compile(r"^[-_\w]{1,32}$")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer with exactly ``Content-Type: application/json`` (no charset)."""
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class ApiError(Exception):
    """Raised inside handlers; becomes a Discord-shaped JSON error answer."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors


def _form_error(path: str, code: str, message: str) -> ApiError:
    """400 Invalid Form Body with Discord's nested ``errors`` tree for a dotted ``path``."""
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        tree = {part: tree}
    return ApiError(400, 50035, "Invalid Form Body", tree)


@dataclass
class Upload:
    """One file part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class StoredFile:
    """An attachment the fake holds (uploaded by the bot or injected as a user upload)."""

    id: str
    channel_id: str
    filename: str
    content_type: str | None
    data: bytes
    url: str
    proxy_url: str


@dataclass
class Call:
    """One request the fake received (REST) or one gateway op it handled (method ``"WS"``)."""

    kind: str
    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[Upload]
    time: float
    status: int = 0
    response: Any = None
    interaction: Interaction | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<Call {self.kind} {self.method} {self.path} -> {self.status}>"


@dataclass
class Interaction:
    """An interaction the fake sent over the gateway, and everything the bot did with it."""

    id: str
    token: str
    type: int
    payload: dict[str, Any]
    created_at: float
    user: dict[str, Any]
    channel_id: str
    guild_id: str | None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original_message_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)
    token_expired: bool = False
    _filled_loading: bool = False

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def response(self) -> dict[str, Any] | None:
        """The accepted callback ``{"type", "data", "files", "time"}`` or None."""
        return self.callbacks[0] if self.callbacks else None

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0]["type"] if self.callbacks else None

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """Autocomplete choices the bot answered (callback type 8)."""
        for cb in self.callbacks:
            if cb["type"] == CB_AUTOCOMPLETE:
                return list((cb.get("data") or {}).get("choices", []))
        return None

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9)."""
        for cb in self.callbacks:
            if cb["type"] == CB_MODAL:
                return cb.get("data")
        return None


@dataclass
class _Guild:
    id: str
    name: str
    owner_id: str
    joined_at: str
    channels: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> member sans user


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _Session | None = None

    async def send(self, frame: str) -> None:
        if self.ws.closed:
            return
        async with self.lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(frame)


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    shard: list[int]
    seq: int = 0
    log: list[tuple[int, str]] = field(default_factory=list)
    conn: _Conn | None = None

    async def push(self, t: str, d: Any) -> None:
        self.seq += 1
        frame = json.dumps({"op": 0, "t": t, "s": self.seq, "d": d})
        self.log.append((self.seq, frame))
        del self.log[:-2000]
        if self.conn is not None:
            await self.conn.send(frame)


class FakeDiscord:
    """Fake Discord gateway + REST v10 on an OS-chosen 127.0.0.1 port. Use as an async context manager."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        bot_name: str = "drawbridge",
        app_name: str = "drawbridge",
        heartbeat_interval: float = 1.0,
        upload_limit: int = 10 * MiB,
        ack_deadline: float = 3.0,
        rate_limit: tuple[int, float] | None = (5, 5.0),
        token_ttl: float = 15 * 60.0,
        echo_bot_messages: bool = True,
        users: tuple[str, ...] = ("alice", "bob"),
    ) -> None:
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.upload_limit = upload_limit
        self.ack_deadline = ack_deadline
        self.rate_limit = rate_limit
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self.rate_limited: list[tuple[tuple[str, str], float]] = []  # every 429 it answered
        self.down = False  # REST unreachable (connections cut) while True
        self.token_ttl = token_ttl
        self.echo_bot_messages = echo_bot_messages
        self.bot_permissions = DEFAULT_PERMISSIONS
        self.connect_grace = 2.0  # how long injections wait for a (re)connected client

        self._counter = itertools.count(1)
        self._clock_offset = 0.0
        self._port = 0
        self._runner: web.AppRunner | None = None

        self.users: dict[str, dict[str, Any]] = {}
        self.app_id = self._snowflake()
        self.bot_user = self._make_user(bot_name, bot=True, id=self.app_id)
        self.app_name = app_name
        self.guilds: dict[str, _Guild] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self._channel_guild: dict[str, str | None] = {}
        self._dm_by_user: dict[str, str] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.files: dict[str, StoredFile] = {}
        self.reactions: dict[str, list[str]] = {}
        self.interactions: dict[str, Interaction] = {}
        self._by_token: dict[str, Interaction] = {}
        self.commands: dict[str | None, list[dict[str, Any]]] = {None: []}
        self.command_puts: list[tuple[str | None, list[dict[str, Any]]]] = []
        self.identify_payloads: list[dict[str, Any]] = []

        self.calls: list[Call] = []
        self._consumed: set[int] = set()
        self._calls_changed: asyncio.Condition | None = None

        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()

        for name in users:
            self.add_user(name)
        owner = next(iter(self.users.values())) if users else self.bot_user
        self.owner = owner
        guild = self.add_guild("Fake Guild", owner_id=owner["id"])
        self.guild_id = guild.id
        self.channel_id = self.add_channel("general", guild_id=guild.id)["id"]
        self.add_channel("art", guild_id=guild.id)

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> FakeDiscord:
        self._calls_changed = asyncio.Condition()
        app = web.Application(client_max_size=256 * MiB)
        app.router.add_get("/gw", self._ws_handler)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        app.router.add_get("/media/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        app.router.add_route("*", r"/api/v{version:\d+}/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001), 2.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return f"{self.root}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gw"

    # ------------------------------------------------------------------ clock
    def now(self) -> float:
        """The fake's clock (monotonic seconds, shifted by ``advance``)."""
        return time.monotonic() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (ack deadlines and token lifetimes use it)."""
        self._clock_offset += seconds

    def expire_token(self, token: str | Interaction) -> None:
        """Make an interaction token expire now (webhook calls with it -> 401 50027)."""
        ix = token if isinstance(token, Interaction) else self._by_token[token]
        ix.token_expired = True

    def _token_expired(self, ix: Interaction) -> bool:
        return ix.token_expired or self.now() - ix.created_at >= self.token_ttl

    # ------------------------------------------------------------------ ids / world
    def _snowflake(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._counter) & 0x3FFFFF))

    def _make_user(self, username: str, *, bot: bool = False, id: str | None = None, **extra: Any):
        user = {
            "id": id or self._snowflake(),
            "username": username,
            "discriminator": "0",
            "global_name": extra.pop("global_name", None if bot else username.title()),
            "avatar": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            **extra,
        }
        if bot:
            user.update(verified=True, mfa_enabled=False)
        return user

    def add_user(
        self,
        username: str,
        *,
        id: str | int | None = None,
        global_name: str | None = None,
        bot: bool = False,
        guild_id: str | None = "default",
        roles: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create a user (and make it a member of the default guild unless ``guild_id=None``)."""
        user = self._make_user(username, bot=bot, id=str(id) if id is not None else None)
        if global_name is not None:
            user["global_name"] = global_name
        self.users[user["id"]] = user
        if guild_id is not None and self.guilds:  # during __init__ add_guild adds them later
            gid = self.guild_id if guild_id == "default" else guild_id
            self._add_member(self.guilds[gid], user, roles or [])
        return user

    def add_guild(self, name: str, *, owner_id: str | None = None) -> _Guild:
        gid = self._snowflake()
        guild = _Guild(
            id=gid, name=name, owner_id=owner_id or self.bot_user["id"], joined_at=_now_iso()
        )
        guild.roles.append(
            {
                "id": gid,
                "name": "@everyone",
                "permissions": str(DEFAULT_PERMISSIONS),
                "position": 0,
                "color": 0,
                "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "icon": None,
                "unicode_emoji": None,
                "flags": 0,
            }
        )
        self.guilds[gid] = guild
        self._add_member(guild, self.bot_user, [])
        for user in self.users.values():
            self._add_member(guild, user, [])
        return guild

    def _add_member(self, guild: _Guild, user: dict[str, Any], roles: list[str]) -> None:
        guild.members.setdefault(
            user["id"],
            {
                "roles": list(roles),
                "joined_at": _now_iso(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
                "nick": None,
                "avatar": None,
                "banner": None,
                "premium_since": None,
                "communication_disabled_until": None,
            },
        )

    def add_channel(self, name: str, *, guild_id: str | None = None, type: int = 0) -> dict:
        gid = guild_id or self.guild_id
        guild = self.guilds[gid]
        channel = {
            "id": self._snowflake(),
            "type": type,
            "guild_id": gid,
            "name": name,
            "position": len(guild.channels),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        guild.channels.append(channel)
        self.channels[channel["id"]] = channel
        self._channel_guild[channel["id"]] = gid
        return channel

    def dm_channel(self, user: Any = None) -> dict[str, Any]:
        """The DM channel between the bot and ``user`` (created on first use)."""
        u = self._user(user)
        cid = self._dm_by_user.get(u["id"])
        if cid is None:
            cid = self._snowflake()
            self._dm_by_user[u["id"]] = cid
            self.channels[cid] = {
                "id": cid,
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [u],
            }
            self._channel_guild[cid] = None
        return self.channels[cid]

    @property
    def guild(self) -> _Guild:
        return self.guilds[self.guild_id]

    def user(self, ref: Any = None) -> dict[str, Any]:
        """Look a user up by dict, id or username (default: the first user)."""
        return self._user(ref)

    def _user(self, ref: Any) -> dict[str, Any]:
        if ref is None:
            return next(u for u in self.users.values() if not u["bot"])
        if isinstance(ref, dict):
            if ref["id"] == self.bot_user["id"]:
                return self.bot_user
            return self.users.setdefault(ref["id"], ref)
        key = str(ref)
        if key == self.bot_user["id"]:
            return self.bot_user
        if key in self.users:
            return self.users[key]
        for u in self.users.values():
            if u["username"] == key:
                return u
        raise KeyError(f"unknown user {ref!r}")

    def _member_payload(self, guild: _Guild, user: dict[str, Any], *, with_user: bool = True):
        self._add_member(guild, user, [])
        member = dict(guild.members[user["id"]])
        if with_user:
            member["user"] = user
        return member

    def _guild_payload(self, guild: _Guild, intents: int) -> dict[str, Any]:
        if intents & INTENT_GUILD_MEMBERS:
            members = [self._member_payload(guild, self._user(uid)) for uid in guild.members]
        else:
            members = [self._member_payload(guild, self.bot_user)]
        return {
            "id": guild.id,
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": guild.owner_id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "system_channel_id": guild.channels[0]["id"] if guild.channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "application_id": None,
            "widget_enabled": False,
            "joined_at": guild.joined_at,
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(guild.members),
            "roles": copy.deepcopy(guild.roles),
            "emojis": [],
            "stickers": [],
            "channels": copy.deepcopy(guild.channels),
            "threads": [],
            "members": members,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    # ------------------------------------------------------------------ calls / waiting
    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        if self._calls_changed is not None:
            async with self._calls_changed:
                self._calls_changed.notify_all()

    async def wait_for(
        self,
        match: str | Callable[[Call], bool] | None = None,
        *,
        timeout: float = 5.0,
        interaction: Interaction | None = None,
        status: int | None = None,
    ) -> Call:
        """Wait for a call (a kind like ``"followup"`` or a predicate) not returned by an earlier wait_for.

        Calls that already happened count: ``wait_for`` returns the oldest matching call that no
        earlier ``wait_for`` returned, so two ``wait_for("followup")`` give the first and the second.
        """

        def ok(call: Call) -> bool:
            if isinstance(match, str) and call.kind != match:
                return False
            if callable(match) and not match(call):
                return False
            if interaction is not None and call.interaction is not interaction:
                return False
            return status is None or call.status == status

        def find() -> int | None:
            for i, call in enumerate(self.calls):
                if i not in self._consumed and ok(call):
                    return i
            return None

        assert self._calls_changed is not None, "use FakeDiscord as an async context manager"
        try:
            async with asyncio.timeout(timeout), self._calls_changed:
                await self._calls_changed.wait_for(lambda: find() is not None)
        except TimeoutError:
            recent = ", ".join(f"{c.kind}:{c.status}" for c in self.calls[-15:])
            raise TimeoutError(
                f"no call matching {match!r} within {timeout}s; recent calls: [{recent}]"
            ) from None
        index = find()
        assert index is not None
        self._consumed.add(index)
        return self.calls[index]

    def calls_of(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    @property
    def command_put_count(self) -> int:
        """How many times commands were bulk-overwritten (``tree.sync()``), all scopes."""
        return len(self.command_puts)

    # ------------------------------------------------------------------ messages helpers
    def message(self, message_id: str | int) -> dict[str, Any]:
        """A stored message rendered as the API would return it (with ``referenced_message``)."""
        return self._render(self.messages[str(message_id)])

    def channel_messages(self, channel_id: str | int | None = None) -> list[dict[str, Any]]:
        cid = str(channel_id or self.channel_id)
        return [self._render(m) for m in self.messages.values() if m["channel_id"] == cid]

    def original_message(self, ix: Interaction) -> dict[str, Any] | None:
        mid = ix.original_message_id
        return self.message(mid) if mid and mid in self.messages else None

    def followups(self, ix: Interaction) -> list[dict[str, Any]]:
        return [self.message(mid) for mid in ix.followup_ids if mid in self.messages]

    def attachment_bytes(self, attachment: dict[str, Any] | str | int) -> bytes:
        """Bytes of an attachment (dict, id or URL)."""
        if isinstance(attachment, dict):
            key = str(attachment["id"])
        else:
            key = str(attachment)
            if key.startswith("http"):
                key = yarl.URL(key).parts[-2]
        return self.files[key].data

    def _render(self, msg: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(msg)
        ref = msg.get("message_reference")
        if ref is not None and msg.get("type") == 19:
            target = self.messages.get(str(ref.get("message_id")))
            out["referenced_message"] = copy.deepcopy(target) if target is not None else None
        return out

    def _event_payload(self, msg: dict[str, Any]) -> dict[str, Any]:
        out = self._render(msg)
        gid = self._channel_guild.get(msg["channel_id"])
        if gid is not None:
            guild = self.guilds[gid]
            out["guild_id"] = gid
            if msg.get("webhook_id") is None:
                out["member"] = self._member_payload(guild, msg["author"], with_user=False)
            out["mentions"] = [
                {**u, "member": self._member_payload(guild, u, with_user=False)}
                for u in out.get("mentions", [])
            ]
            ref = out.get("referenced_message")
            if ref:
                ref["guild_id"] = gid
        return out

    def _store_file(
        self,
        channel_id: str,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> dict[str, Any]:
        aid = self._snowflake()
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(filename)[0] or content_type
        issued = int(time.time())
        sig = hashlib.sha256(f"{aid}{issued}".encode()).hexdigest()
        qs = f"?ex={issued + 86400:x}&is={issued:x}&hm={sig}&"
        path = f"attachments/{channel_id}/{aid}/{quote(filename)}"
        url = f"{self.root}/{path}{qs}"
        proxy_url = f"{self.root}/media/{path}{qs}"
        self.files[aid] = StoredFile(aid, channel_id, filename, content_type, data, url, proxy_url)
        att: dict[str, Any] = {
            "id": aid,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": proxy_url,
            "content_type": content_type,
        }
        if description is not None:
            att["description"] = description
        if ephemeral:
            att["ephemeral"] = True
        if content_type and content_type.startswith("image/"):
            size = _image_size(data)
            if size is not None:
                att["width"], att["height"] = size
        return att

    def _new_message(
        self,
        channel_id: str,
        author: dict[str, Any],
        *,
        content: str = "",
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        flags: int = 0,
        type: int = 0,
        tts: bool = False,
        reference: dict[str, Any] | None = None,
        mentions: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "id": self._snowflake(),
            "type": type,
            "content": content,
            "channel_id": channel_id,
            "author": author,
            "attachments": attachments or [],
            "embeds": embeds or [],
            "components": components or [],
            "mentions": mentions or [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": tts,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "flags": flags,
            **extra,
        }
        if reference is not None:
            msg["message_reference"] = reference
        self.messages[msg["id"]] = msg
        channel = self.channels.get(channel_id)
        if channel is not None:
            channel["last_message_id"] = msg["id"]
        return msg

    def _mentions_in(self, content: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for uid in _MENTION_RE.findall(content or ""):
            with contextlib.suppress(KeyError):
                user = self._user(uid)
                if user not in out:
                    out.append(user)
        return out

    # ------------------------------------------------------------------ message body handling
    def _check_uploads(self, files: list[Upload]) -> None:
        if sum(f.size for f in files) > self.upload_limit:
            raise ApiError(413, 40005, "Request entity too large")
        if len(files) > 10:
            raise _form_error("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")

    def _resolve_attachments(
        self,
        spec: list[dict[str, Any]] | None,
        files: list[Upload],
        channel_id: str,
        keep: list[dict[str, Any]],
        ephemeral: bool,
    ) -> list[dict[str, Any]]:
        by_field = {u.field: u for u in files}
        if spec is None:
            return keep + [
                self._store_file(
                    channel_id, u.filename, u.data, u.content_type, ephemeral=ephemeral
                )
                for u in files
            ]
        existing = {str(a["id"]): a for a in keep}
        out = []
        for i, item in enumerate(spec):
            aid = str(item.get("id"))
            if aid in existing:
                out.append(existing[aid])
                continue
            up = by_field.get(f"files[{aid}]")
            if up is None:
                raise _form_error(
                    f"attachments.{i}", "ATTACHMENT_NOT_FOUND", f"Unknown attachment {aid}."
                )
            out.append(
                self._store_file(
                    channel_id,
                    item.get("filename") or up.filename,
                    up.data,
                    up.content_type,
                    description=item.get("description"),
                    ephemeral=ephemeral,
                )
            )
        return out

    def _resolve_embeds(
        self, embeds: list[dict[str, Any]], attachments: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        by_name = {a["filename"]: a for a in attachments}
        out = []
        for embed in embeds or []:
            e = copy.deepcopy(embed)
            e.setdefault("type", "rich")
            for key in ("image", "thumbnail"):
                url = (e.get(key) or {}).get("url")
                if isinstance(url, str) and url.startswith("attachment://"):
                    att = by_name.get(url.removeprefix("attachment://"))
                    if att is not None:
                        e[key] = {
                            "url": att["url"],
                            "proxy_url": att["proxy_url"],
                            "width": att.get("width", 0),
                            "height": att.get("height", 0),
                        }
            out.append(e)
        return out

    def _validate_components(self, components: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(components) > 5 and all(c.get("type") == 1 for c in components):
            raise _form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        counter = itertools.count(1)

        def walk(node: dict[str, Any], path: str) -> None:
            node.setdefault("id", next(counter))
            cid = node.get("custom_id")
            if cid is not None and not 1 <= len(cid) <= 100:
                raise _form_error(
                    f"{path}.custom_id",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            label = node.get("label")
            if node.get("type") == 2 and label is not None and len(label) > 80:
                raise _form_error(
                    f"{path}.label", "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length."
                )
            children = node.get("components") or []
            if node.get("type") == 1 and len(children) > 5:
                raise _form_error(
                    f"{path}.components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length."
                )
            for i, child in enumerate(children):
                walk(child, f"{path}.components.{i}")
            for key in ("component", "accessory"):
                if isinstance(node.get(key), dict):
                    walk(node[key], f"{path}.{key}")

        out = copy.deepcopy(components)
        for i, comp in enumerate(out):
            walk(comp, f"components.{i}")
        return out

    def _validate_message(self, msg: dict[str, Any], *, poll: bool = False) -> None:
        content = msg.get("content") or ""
        if len(content) > 2000:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        if len(msg.get("embeds") or []) > 10:
            raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        for i, e in enumerate(msg.get("embeds") or []):
            if len(e.get("title") or "") > 256:
                raise _form_error(
                    f"embeds.{i}.title", "BASE_TYPE_MAX_LENGTH", "Must be 256 or fewer in length."
                )
            if len(e.get("description") or "") > 4096:
                raise _form_error(
                    f"embeds.{i}.description",
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 4096 or fewer in length.",
                )
        if not (
            content
            or msg.get("embeds")
            or msg.get("attachments")
            or msg.get("components")
            or msg.get("sticker_items")
            or poll
        ):
            raise ApiError(400, 50006, "Cannot send an empty message")

    def _compose(
        self, body: dict[str, Any], files: list[Upload], channel_id: str, *, ephemeral: bool
    ) -> dict[str, Any]:
        """Fields of a new message from a discord.py create payload (+ uploads)."""
        self._check_uploads(files)
        flags = int(body.get("flags") or 0) & _SETTABLE_FLAGS
        attachments = self._resolve_attachments(
            body.get("attachments"),
            files,
            channel_id,
            [],
            ephemeral or bool(flags & FLAG_EPHEMERAL),
        )
        fields = {
            "content": body.get("content") or "",
            "attachments": attachments,
            "embeds": self._resolve_embeds(body.get("embeds") or [], attachments),
            "components": self._validate_components(body.get("components") or []),
            "flags": flags,
            "tts": bool(body.get("tts")),
            "mentions": self._mentions_in(body.get("content") or ""),
        }
        if body.get("poll"):
            fields["poll"] = body["poll"]
        self._validate_message(fields, poll=bool(body.get("poll")))
        return fields

    def _apply_edit(self, msg: dict[str, Any], body: dict[str, Any], files: list[Upload]) -> None:
        self._check_uploads(files)
        new = copy.deepcopy(msg)
        if "content" in body:
            new["content"] = body["content"] or ""
            new["mentions"] = self._mentions_in(new["content"])
        if "attachments" in body or files:
            new["attachments"] = self._resolve_attachments(
                body.get("attachments"),
                files,
                msg["channel_id"],
                msg["attachments"],
                bool(msg["flags"] & FLAG_EPHEMERAL),
            )
        if "embeds" in body:
            new["embeds"] = self._resolve_embeds(body["embeds"] or [], new["attachments"])
        if "components" in body:
            new["components"] = self._validate_components(body["components"] or [])
        if body.get("flags") is not None:
            keep = new["flags"] & ~FLAG_SUPPRESS_EMBEDS
            new["flags"] = keep | (int(body["flags"]) & FLAG_SUPPRESS_EMBEDS)
        self._validate_message(new, poll="poll" in new)
        if new["flags"] & FLAG_LOADING:
            new["flags"] &= ~FLAG_LOADING
        else:
            new["edited_timestamp"] = _now_iso()
        msg.clear()
        msg.update(new)

    # ------------------------------------------------------------------ gateway
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, timeout=5.0)
        await ws.prepare(request)
        conn = _Conn(ws)
        self._conns.add(conn)
        await conn.send(
            json.dumps({"op": 10, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}})
        )
        client_close_code: int | None = None
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    await self._on_gateway_frame(conn, json.loads(msg.data))
                elif msg.type is WSMsgType.CLOSE:
                    # The client closed. (A server-side close shows up as CLOSING and, in
                    # aiohttp, sets ws.close_code to 1000 whatever code we sent.)
                    client_close_code = msg.data
                    break
                elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            self._conns.discard(conn)
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                if client_close_code in (1000, 1001):
                    # A clean close by the client ends the session (no RESUME), as on Discord.
                    self._sessions.pop(session.id, None)
        return ws

    async def _on_gateway_frame(self, conn: _Conn, frame: dict[str, Any]) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            await conn.send(json.dumps({"op": 11}))
        elif op == 2:
            await self._identify(conn, d or {})
        elif op == 6:
            await self._resume(conn, d or {})
        elif op == 8:
            await self._request_members(conn, d or {})
        elif op in (3, 4):
            await self._record_ws("presence" if op == 3 else "voice_state", d)

    async def _record_ws(self, kind: str, d: Any) -> None:
        await self._record(Call(kind, "WS", "/gw", {}, d, [], self.now(), status=200))

    async def _identify(self, conn: _Conn, d: dict[str, Any]) -> None:
        self.identify_payloads.append(d)
        await self._record_ws("identify", {k: v for k, v in d.items() if k != "token"})
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        session = _Session(
            id=secrets.token_hex(16),
            intents=int(d.get("intents") or 0),
            shard=d.get("shard") or [0, 1],
        )
        session.conn = conn
        conn.session = session
        self._sessions[session.id] = session
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": gid, "unavailable": True} for gid in self.guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": session.shard,
            "application": {"id": self.app_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        await session.push("READY", ready)
        for guild in self.guilds.values():
            await session.push("GUILD_CREATE", self._guild_payload(guild, session.intents))

    async def _resume(self, conn: _Conn, d: dict[str, Any]) -> None:
        await self._record_ws("resume", {k: v for k, v in d.items() if k != "token"})
        session = self._sessions.get(d.get("session_id") or "")
        if session is None or d.get("token") != self.token:
            await conn.send(json.dumps({"op": 9, "d": False}))
            return
        if session.conn is not None and session.conn is not conn:
            with contextlib.suppress(Exception):
                await session.conn.ws.close(code=4000)
        session.conn = conn
        conn.session = session
        last = int(d.get("seq") or 0)
        for seq, frame in list(session.log):
            if seq > last:
                await conn.send(frame)
        await session.push("RESUMED", {"_trace": ["fake-discord"]})

    async def _request_members(self, conn: _Conn, d: dict[str, Any]) -> None:
        session = conn.session
        gid = str(d.get("guild_id"))
        guild = self.guilds.get(gid)
        if session is None or guild is None:
            return
        wanted = {str(u) for u in (d.get("user_ids") or [])}
        query = (d.get("query") or "").lower()
        members = []
        for uid in guild.members:
            user = self._user(uid)
            if wanted and uid not in wanted:
                continue
            if not wanted and query and not user["username"].lower().startswith(query):
                continue
            members.append(self._member_payload(guild, user))
        limit = int(d.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk = {
            "guild_id": gid,
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": sorted(wanted - {m["user"]["id"] for m in members}),
        }
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await session.push("GUILD_MEMBERS_CHUNK", chunk)

    @property
    def connected(self) -> bool:
        """True when at least one identified gateway session has a live websocket."""
        return any(s.conn is not None for s in self._sessions.values())

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until a client has identified (or resumed) on the gateway."""
        assert self._calls_changed is not None, "use FakeDiscord as an async context manager"
        async with asyncio.timeout(timeout), self._calls_changed:
            await self._calls_changed.wait_for(lambda: self.connected)

    async def dispatch(self, t: str, d: dict[str, Any], *, required: bool = True) -> int:
        """Send a DISPATCH event to every gateway session (filtered by intents). Returns deliveries."""
        if required and not self.connected:
            # Allow a reconnect/RESUME window; otherwise nobody is listening.
            try:
                await self.wait_connected(timeout=self.connect_grace)
            except TimeoutError:
                raise RuntimeError(
                    "no live gateway connection: start a discord.Client against this fake (and "
                    "wait for on_ready) before injecting events"
                ) from None
        delivered = 0
        for session in list(self._sessions.values()):
            payload = self._for_session(session, t, d)
            if payload is None:
                continue
            await session.push(t, payload)
            delivered += 1
        return delivered

    def _for_session(self, session: _Session, t: str, d: dict[str, Any]) -> dict[str, Any] | None:
        if not t.startswith("MESSAGE_") or t.startswith("MESSAGE_REACTION"):
            return d
        in_guild = "guild_id" in d
        needed = INTENT_GUILD_MESSAGES if in_guild else INTENT_DIRECT_MESSAGES
        if not session.intents & needed:
            return None
        if t in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and in_guild:
            author_id = (d.get("author") or {}).get("id")
            mentioned = any(m.get("id") == self.bot_user["id"] for m in d.get("mentions") or [])
            if (
                not session.intents & INTENT_MESSAGE_CONTENT
                and author_id != self.bot_user["id"]
                and not mentioned
            ):
                d = {**d, "content": "", "embeds": [], "attachments": [], "components": []}
        return d

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every live connection (the client should RESUME)."""
        for conn in list(self._conns):
            await conn.send(json.dumps({"op": 7, "d": None}))

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway websocket from the server side with ``code``."""
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=code)

    async def invalidate_sessions(self) -> None:
        """Forget all sessions and send op 9 (the client must IDENTIFY again)."""
        self._sessions.clear()
        for conn in list(self._conns):
            conn.session = None
            await conn.send(json.dumps({"op": 9, "d": False}))

    async def _echo(self, t: str, msg: dict[str, Any]) -> None:
        if not self.echo_bot_messages or msg["flags"] & FLAG_EPHEMERAL:
            return
        if t == "MESSAGE_DELETE":
            d: dict[str, Any] = {"id": msg["id"], "channel_id": msg["channel_id"]}
            gid = self._channel_guild.get(msg["channel_id"])
            if gid is not None:
                d["guild_id"] = gid
        else:
            d = self._event_payload(msg)
        await self.dispatch(t, d, required=False)

    # ------------------------------------------------------------------ event injection
    def _find_command(self, name: str, ctype: int, guild_id: str | None) -> dict[str, Any] | None:
        scopes = [guild_id, None] if guild_id else [None]
        for scope in scopes:
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name and cmd.get("type", 1) == ctype:
                    return cmd
        return None

    def _context(self, user: Any, guild: bool | str, channel_id: str | int | None):
        u = self._user(user)
        if channel_id is not None:
            cid = str(channel_id)
            gid = self._channel_guild.get(cid)
        elif guild:
            gid = self.guild_id if guild is True else str(guild)
            cid = self.guilds[gid].channels[0]["id"]
        else:
            gid, cid = None, self.dm_channel(u)["id"]
        return u, gid, cid

    def _base_interaction(
        self,
        itype: int,
        user: dict[str, Any],
        gid: str | None,
        cid: str,
        locale: str,
        data: dict[str, Any] | None,
    ) -> Interaction:
        iid = self._snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": iid,
            "application_id": self.app_id,
            "type": itype,
            "token": token,
            "version": 1,
            "locale": locale,
            "attachment_size_limit": self.upload_limit,
            "app_permissions": str(self.bot_permissions),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "channel_id": cid,
            "channel": copy.deepcopy(self.channels[cid]),
        }
        if data is not None:
            payload["data"] = data
        if gid is not None:
            guild = self.guilds[gid]
            member = self._member_payload(guild, user)
            member["permissions"] = str(DEFAULT_PERMISSIONS)
            payload.update(
                guild_id=gid,
                guild={"id": gid, "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=member,
                authorizing_integration_owners={"0": gid},
                context=0,
            )
        else:
            payload.update(user=user, authorizing_integration_owners={"0": "0"}, context=1)
        ix = Interaction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            created_at=self.now(),
            user=user,
            channel_id=cid,
            guild_id=gid,
        )
        self.interactions[iid] = ix
        self._by_token[token] = ix
        return ix

    def _build_options(
        self,
        spec: list[dict[str, Any]],
        options: dict[str, Any] | list[dict[str, Any]] | None,
        resolved: dict[str, Any],
        cid: str,
        gid: str | None,
        *,
        focused: str | None = None,
        strict: bool = True,
    ) -> list[dict[str, Any]]:
        if isinstance(options, list):
            return copy.deepcopy(options)
        options = options or {}
        by_name = {o["name"]: o for o in spec}
        if strict and spec:
            unknown = set(options) - set(by_name)
            if unknown:
                raise ValueError(
                    f"options {sorted(unknown)} are not registered ({sorted(by_name)})"
                )
            missing = [o["name"] for o in spec if o.get("required") and o["name"] not in options]
            if missing and focused is None:
                raise ValueError(f"required options missing: {missing}")
        out = []
        for name, value in options.items():
            ospec = by_name.get(name)
            otype = ospec["type"] if ospec else _infer_option_type(value)
            opt: dict[str, Any] = {"name": name, "type": otype}
            if focused is not None:
                opt["value"] = value if name != focused else str(value)
                if name == focused:
                    opt["focused"] = True
            elif otype == 11:
                filename, data, ctype = value
                att = self._store_file(cid, filename, data, ctype, ephemeral=True)
                resolved.setdefault("attachments", {})[att["id"]] = att
                opt["value"] = att["id"]
            elif otype == 6 or (otype == 9 and isinstance(value, dict) and "username" in value):
                user = self._user(value)
                resolved.setdefault("users", {})[user["id"]] = user
                if gid is not None:
                    member = self._member_payload(self.guilds[gid], user, with_user=False)
                    member["permissions"] = str(DEFAULT_PERMISSIONS)
                    resolved.setdefault("members", {})[user["id"]] = member
                opt["value"] = user["id"]
            elif otype == 7:
                chan = self.channels[str(value["id"] if isinstance(value, dict) else value)]
                resolved.setdefault("channels", {})[chan["id"]] = {
                    "id": chan["id"],
                    "type": chan["type"],
                    "name": chan.get("name"),
                    "permissions": str(DEFAULT_PERMISSIONS),
                    "parent_id": chan.get("parent_id"),
                }
                opt["value"] = chan["id"]
            elif otype == 8:
                rid = str(value["id"] if isinstance(value, dict) else value)
                role = next(r for g in self.guilds.values() for r in g.roles if r["id"] == rid)
                resolved.setdefault("roles", {})[rid] = role
                opt["value"] = rid
            else:
                opt["value"] = value
            out.append(opt)
        return out

    def _command_data(
        self,
        name: str,
        options: Any,
        ctype: int,
        gid: str | None,
        cid: str,
        *,
        focused: str | None = None,
        strict: bool = True,
    ) -> dict[str, Any]:
        parts = name.split()
        root = parts[0]
        cmd = self._find_command(root, ctype, gid)
        data: dict[str, Any] = {
            "id": cmd["id"] if cmd else str(int(hashlib.sha1(root.encode()).hexdigest()[:15], 16)),
            "name": root,
            "type": ctype,
        }
        if cmd and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        resolved: dict[str, Any] = {}
        spec = (cmd or {}).get("options", [])
        chain: list[tuple[str, int]] = []
        for sub in parts[1:]:
            node = next((o for o in spec if o["name"] == sub), None)
            kind = node["type"] if node else (2 if sub != parts[-1] else 1)
            chain.append((sub, kind))
            spec = (node or {}).get("options", [])
        leaf = self._build_options(
            spec, options, resolved, cid, gid, focused=focused, strict=strict and cmd is not None
        )
        for sub, kind in reversed(chain):
            leaf = [{"name": sub, "type": kind, "options": leaf}]
        data["options"] = leaf
        if resolved:
            data["resolved"] = resolved
        return data

    async def slash(
        self,
        name: str,
        options: dict[str, Any] | list[dict[str, Any]] | None = None,
        *,
        user: Any = None,
        guild: bool | str = True,
        channel_id: str | int | None = None,
        locale: str = "en-US",
        attachments: dict[str, tuple[str, bytes, str]] | None = None,
        strict: bool = True,
    ) -> Interaction:
        """Dispatch a chat-input command (INTERACTION_CREATE type 2).

        ``name`` may be ``"group sub"``. Option types come from the registered command (or are
        inferred from Python values); attachment options are ``(filename, bytes, content_type)``
        either in ``options`` or in ``attachments``. ``strict`` rejects unknown/missing options.
        """
        u, gid, cid = self._context(user, guild, channel_id)
        opts: Any = options
        if attachments:
            opts = {**(options or {}), **attachments}  # type: ignore[dict-item]
        data = self._command_data(name, opts, 1, gid, cid, strict=strict)
        ix = self._base_interaction(IX_COMMAND, u, gid, cid, locale, data)
        await self.dispatch("INTERACTION_CREATE", ix.payload)
        return ix

    async def autocomplete(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        focused: str,
        user: Any = None,
        guild: bool | str = True,
        channel_id: str | int | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        """Dispatch an autocomplete request (type 4) with ``focused`` option being typed."""
        u, gid, cid = self._context(user, guild, channel_id)
        opts = dict(options or {})
        opts.setdefault(focused, "")
        data = self._command_data(name, opts, 1, gid, cid, focused=focused)
        ix = self._base_interaction(IX_AUTOCOMPLETE, u, gid, cid, locale, data)
        await self.dispatch("INTERACTION_CREATE", ix.payload)
        return ix

    def _message_ref(self, message: Any) -> dict[str, Any]:
        if isinstance(message, dict):
            return self.messages[str(message["id"])]
        mid = getattr(message, "id", message)
        return self.messages[str(mid)]

    async def click(
        self,
        message: Any,
        custom_id: str,
        *,
        user: Any = None,
        values: list[str] | None = None,
        locale: str = "en-US",
        strict: bool = True,
    ) -> Interaction:
        """Dispatch a component interaction (type 3) for ``custom_id`` on a stored message."""
        msg = self._message_ref(message)
        comp = _find_component(msg.get("components") or [], custom_id)
        if comp is None and strict:
            raise ValueError(f"message {msg['id']} has no component with custom_id {custom_id!r}")
        ctype = comp["type"] if comp else 2
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype}
        if values is not None or ctype in (3, 5, 6, 7, 8):
            data["values"] = list(values or [])
        u = self._user(user)
        cid = msg["channel_id"]
        gid = self._channel_guild.get(cid)
        ix = self._base_interaction(IX_COMPONENT, u, gid, cid, locale, data)
        ix.payload["message"] = self._event_payload(msg) if gid else self._render(msg)
        await self.dispatch("INTERACTION_CREATE", ix.payload)
        return ix

    async def context_menu(
        self,
        name: str,
        message: Any = None,
        *,
        target_user: Any = None,
        user: Any = None,
        locale: str = "en-US",
        channel_id: str | int | None = None,
    ) -> Interaction:
        """Dispatch a message (data.type 3) or user (data.type 2) context-menu command."""
        u = self._user(user)
        if message is not None:
            msg = self._message_ref(message)
            cid = str(channel_id or msg["channel_id"])
            ctype, target_id = 3, msg["id"]
            resolved: dict[str, Any] = {"messages": {msg["id"]: self._render(msg)}}
        else:
            target = self._user(target_user)
            cid = str(channel_id or self.channel_id)
            ctype, target_id = 2, target["id"]
            resolved = {"users": {target["id"]: target}}
        gid = self._channel_guild.get(cid)
        if ctype == 2 and gid is not None:
            member = self._member_payload(self.guilds[gid], self._user(target_id), with_user=False)
            member["permissions"] = str(DEFAULT_PERMISSIONS)
            resolved["members"] = {target_id: member}
        cmd = self._find_command(name, ctype, gid)
        data: dict[str, Any] = {
            "id": cmd["id"] if cmd else str(int(hashlib.sha1(name.encode()).hexdigest()[:15], 16)),
            "name": name,
            "type": ctype,
            "target_id": target_id,
            "resolved": resolved,
        }
        if cmd and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        ix = self._base_interaction(IX_COMMAND, u, gid, cid, locale, data)
        await self.dispatch("INTERACTION_CREATE", ix.payload)
        return ix

    async def submit_modal(
        self,
        modal: Interaction | str,
        values: dict[str, str | list[str]],
        *,
        user: Any = None,
        locale: str = "en-US",
    ) -> Interaction:
        """Dispatch a modal submit (type 5). ``modal`` is the Interaction that opened it, or a custom_id."""
        source = modal if isinstance(modal, Interaction) else None
        shown = source.modal if source is not None else None
        if source is not None and shown is None:
            raise ValueError("that interaction did not open a modal")
        custom_id = shown["custom_id"] if shown else str(modal)

        def answer(comp: dict[str, Any]) -> dict[str, Any]:
            cid_ = comp.get("custom_id")
            out: dict[str, Any] = {"type": comp["type"], "id": comp.get("id", 0), "custom_id": cid_}
            val = values.get(cid_ or "", "")
            if comp["type"] == 4:
                out["value"] = val if isinstance(val, str) else ",".join(val)
            else:
                out["values"] = [val] if isinstance(val, str) else list(val)
            return out

        if shown:
            components = []
            for top in shown.get("components", []):
                if top["type"] == 1:
                    components.append(
                        {"type": 1, "components": [answer(c) for c in top.get("components", [])]}
                    )
                elif top["type"] == 18:
                    components.append({"type": 18, "component": answer(top["component"])})
        else:
            components = [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]}
                for k, v in values.items()
            ]
        data = {"custom_id": custom_id, "components": components}
        if source is not None:
            u, gid, cid = self._user(user or source.user), source.guild_id, source.channel_id
        else:
            u, gid, cid = self._context(user, True, None)
        ix = self._base_interaction(IX_MODAL, u, gid, cid, locale, data)
        if source is not None and "message" in source.payload:
            ix.payload["message"] = source.payload["message"]
        await self.dispatch("INTERACTION_CREATE", ix.payload)
        return ix

    async def user_message(
        self,
        channel_id: str | int | None = None,
        user: Any = None,
        content: str = "",
        *,
        attachments: list[tuple[str, bytes, str]] | None = None,
        reply_to: Any = None,
        mention_author: bool = True,
    ) -> dict[str, Any]:
        """A user posts a message (MESSAGE_CREATE). Returns the stored message.

        ``<@id>`` in content mentions users; replying to a message mentions its author unless
        ``mention_author=False`` (as Discord's reply "ping" toggle).
        """
        target = self._message_ref(reply_to) if reply_to is not None else None
        if channel_id is None:
            channel_id = target["channel_id"] if target else self.channel_id
        cid = str(channel_id)
        if cid not in self.channels:
            raise KeyError(f"unknown channel {cid}")
        u = self._user(user)
        gid = self._channel_guild.get(cid)
        if gid is not None:
            self._add_member(self.guilds[gid], u, [])
        atts = [self._store_file(cid, fn, data, ct) for fn, data, ct in attachments or []]
        mentions = self._mentions_in(content)
        reference = None
        if target is not None:
            reference = {"type": 0, "message_id": target["id"], "channel_id": target["channel_id"]}
            if gid is not None:
                reference["guild_id"] = gid
            if mention_author and target["author"] not in mentions:
                mentions.append(target["author"])
        msg = self._new_message(
            cid,
            u,
            content=content,
            attachments=atts,
            type=19 if target is not None else 0,
            reference=reference,
            mentions=mentions,
        )
        msg["mention_everyone"] = "@everyone" in content
        delivered = await self.dispatch("MESSAGE_CREATE", self._event_payload(msg))
        if not delivered:
            log.warning("MESSAGE_CREATE %s reached no session (intents?)", msg["id"])
        return self._render(msg)

    # ------------------------------------------------------------------ REST plumbing
    _ROUTES: ClassVar[list[tuple[str, re.Pattern[str], str, str, bool]]] = []

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        aid = request.match_info["attachment_id"]
        stored = self.files.get(aid)
        call = Call("download", "GET", request.path, dict(request.query), None, [], self.now())
        if stored is None or unquote(request.match_info["filename"]) != stored.filename:
            call.status = 404
            await self._record(call)
            return web.Response(status=404, text="Not Found")
        call.status = 200
        await self._record(call)
        return web.Response(
            body=stored.data,
            headers={"Content-Type": stored.content_type or "application/octet-stream"},
        )

    async def _read_body(self, request: web.Request) -> tuple[Any, list[Upload]]:
        files: list[Upload] = []
        if request.content_type.startswith("multipart/"):
            payload: dict[str, Any] = {}
            reader = await request.multipart()
            async for part in reader:
                if part is None or not hasattr(part, "read"):
                    continue
                data = bytes(await part.read(decode=False))  # type: ignore[union-attr]
                name = part.name or ""
                if name == "payload_json":
                    payload.update(json.loads(data or b"{}"))
                elif part.filename is not None or name.startswith("file"):
                    ctype = part.headers.get("Content-Type")
                    files.append(Upload(name, part.filename or name, ctype, data))
                else:
                    payload[name] = data.decode()
            return payload, files
        raw = await request.read()
        if not raw:
            return None, files
        try:
            return json.loads(raw), files
        except ValueError:
            return raw.decode(errors="replace"), files

    async def _api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        body, files = await self._read_body(request)
        call = Call(
            kind="unknown",
            method=method,
            path=path,
            query=dict(request.query),
            json=body,
            files=files,
            time=self.now(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        )
        if self.down:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the fake Discord is unreachable")
        limit_headers: dict[str, str] = {}
        try:
            for rmethod, pattern, kind, handler, auth in self._ROUTES:
                m = pattern.fullmatch(path)
                if m is None or rmethod != method:
                    continue
                call.kind = kind
                if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                    raise ApiError(401, 0, "401: Unauthorized")
                limit_headers = self._rate_limit(kind, m.groupdict())
                result = await getattr(self, handler)(call, **m.groupdict())
                break
            else:
                raise ApiError(404, 0, "404: Not Found")
        except ApiError as exc:
            call.status, call.response = exc.status, exc.body
            await self._record(call)
            answer = _json_response(exc.body, exc.status)
            answer.headers.update(limit_headers or getattr(exc, "headers", {}))
            return answer
        if isinstance(result, web.StreamResponse):
            call.status = result.status
        elif result is None:
            call.status = 204
            result = web.Response(status=204)
        else:
            call.status, call.response = 200, result
            result = _json_response(result)
        result.headers.update(limit_headers)
        await self._record(call)
        return result

    # ------------------------------------------------------------------ rate limits
    _BUCKETED: ClassVar[dict[str, str]] = {
        "send_message": "channel_id",
        "edit_message": "channel_id",
        "delete_message": "channel_id",
        "followup": "token",
        "edit_webhook_message": "token",
        "delete_webhook_message": "token",
    }

    def _rate_limit(self, kind: str, params: dict[str, str]) -> dict[str, str]:
        """Discord's per-route buckets: `rate_limit` calls per window per channel (messages)
        or per interaction token (its webhook); the X-RateLimit headers say what is left, and
        a call past it is answered 429 with retry_after (discord.py waits before that)."""
        major = self._BUCKETED.get(kind)
        if self.rate_limit is None or major is None:
            return {}
        count, per = self.rate_limit
        key = (kind.split("_")[-1] if major == "channel_id" else "webhook", params[major])
        now = time.monotonic()
        stamps = [t for t in self._buckets.get(key, []) if t > now - per]
        self._buckets[key] = stamps
        bucket = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
        if len(stamps) >= count:
            retry_after = stamps[0] + per - now
            headers = self._limit_headers(bucket, count, 0, retry_after)
            headers["Via"] = "1.1 google"  # a bucket's 429, not a Cloudflare ban
            headers["X-RateLimit-Scope"] = "user"
            error = ApiError(429, 0, "You are being rate limited.")
            error.body["retry_after"] = round(retry_after, 3)
            error.body["global"] = False
            error.headers = headers  # type: ignore[attr-defined]
            self.rate_limited.append((key, now))
            raise error
        stamps.append(now)
        reset_after = stamps[0] + per - now
        return self._limit_headers(bucket, count, count - len(stamps), reset_after)

    @staticmethod
    def _limit_headers(bucket: str, count: int, remaining: int, reset_after: float) -> dict:
        return {
            "X-RateLimit-Limit": str(count),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    # ------------------------------------------------------------------ REST: identity
    async def _h_me(self, call: Call) -> Any:
        return self.bot_user

    async def _h_application(self, call: Call) -> Any:
        return {
            "id": self.app_id,
            "name": self.app_name,
            "description": "",
            "summary": "",
            "icon": None,
            "cover_image": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.owner,
            "team": None,
            "verify_key": hashlib.sha256(self.app_id.encode()).hexdigest(),
            "flags": 0,
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "rpc_origins": [],
            "tags": [],
            "bot": self.bot_user,
            "guild_id": None,
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}},
        }

    async def _h_gateway(self, call: Call) -> Any:
        return {"url": self.gateway_url}

    async def _h_gateway_bot(self, call: Call) -> Any:
        return {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    async def _h_get_user(self, call: Call, user_id: str) -> Any:
        try:
            return self._user(user_id)
        except KeyError:
            raise ApiError(404, 10013, "Unknown User") from None

    async def _h_create_dm(self, call: Call) -> Any:
        try:
            user = self._user(str((call.json or {}).get("recipient_id")))
        except KeyError:
            raise ApiError(400, 50007, "Cannot send messages to this user") from None
        return self.dm_channel(user)

    async def _h_get_guild(self, call: Call, guild_id: str) -> Any:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        payload = self._guild_payload(guild, 0)
        for key in ("channels", "members", "threads", "voice_states", "presences"):
            payload.pop(key, None)
        return payload

    async def _h_get_member(self, call: Call, guild_id: str, user_id: str) -> Any:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        if user_id not in guild.members:
            raise ApiError(404, 10007, "Unknown Member")
        return self._member_payload(guild, self._user(user_id))

    # ------------------------------------------------------------------ REST: commands
    def _check_app(self, app_id: str) -> None:
        if app_id != self.app_id:
            raise ApiError(403, 50001, "Missing Access")

    def _validate_command(self, i: int, cmd: dict[str, Any]) -> None:
        ctype = cmd.get("type", 1)
        name = cmd.get("name") or ""
        if ctype == 1:  # chat input: lowercase, no spaces
            valid_name = bool(_COMMAND_NAME_RE.match(name)) and name == name.lower()
        else:  # context menus: any 1-32 chars
            valid_name = 1 <= len(name) <= 32
        if not valid_name:
            raise _form_error(
                f"{i}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        if ctype == 1 and not 1 <= len(cmd.get("description") or "") <= 100:
            raise _form_error(
                f"{i}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        options = cmd.get("options") or []
        if len(options) > 25:
            raise _form_error(
                f"{i}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        seen_optional = False
        for j, opt in enumerate(options):
            if opt.get("type") in (1, 2):
                continue
            if opt.get("required"):
                if seen_optional:
                    raise _form_error(
                        f"{i}.options.{j}",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
            if len(opt.get("choices") or []) > 25:
                raise _form_error(
                    f"{i}.options.{j}.choices",
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 25 or fewer in length.",
                )

    def _store_command(
        self, scope: str | None, cmd: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Echo a command as Discord stores it; ``id`` survives, ``version`` changes on change."""
        meta = ("id", "application_id", "version")
        stored: dict[str, Any] = {k: v for k, v in cmd.items() if k not in meta}
        stored.setdefault("type", 1)
        stored.setdefault("description", "")
        stored.setdefault("options", [])
        stored.setdefault("default_member_permissions", None)
        stored.setdefault("nsfw", False)
        if scope is not None:
            stored["guild_id"] = scope
        else:
            stored.setdefault("dm_permission", True)
            stored.setdefault("contexts", None)
            stored.setdefault("integration_types", [0])
        unchanged = old is not None and {k: v for k, v in old.items() if k not in meta} == stored
        return {
            "id": old["id"] if old else self._snowflake(),
            "application_id": self.app_id,
            "version": old["version"] if old and unchanged else self._snowflake(),
            **stored,
        }

    async def _put_commands(self, call: Call, scope: str | None) -> Any:
        body = call.json
        if not isinstance(body, list):
            raise _form_error(
                "_root", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
            )
        if len(body) > 100:
            raise _form_error("_root", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        for i, cmd in enumerate(body):
            self._validate_command(i, cmd)
        old = {(c["name"], c.get("type", 1)): c for c in self.commands.get(scope, [])}
        new = [
            self._store_command(scope, cmd, old.get((cmd["name"], cmd.get("type", 1))))
            for cmd in body
        ]
        self.commands[scope] = new
        self.command_puts.append((scope, copy.deepcopy(body)))
        return copy.deepcopy(new)

    async def _h_put_commands(self, call: Call, app_id: str) -> Any:
        self._check_app(app_id)
        return await self._put_commands(call, None)

    async def _h_put_guild_commands(self, call: Call, app_id: str, guild_id: str) -> Any:
        self._check_app(app_id)
        return await self._put_commands(call, guild_id)

    async def _h_get_commands(self, call: Call, app_id: str, guild_id: str | None = None) -> Any:
        self._check_app(app_id)
        return copy.deepcopy(self.commands.get(guild_id, []))

    def _command_by_id(self, scope: str | None, command_id: str) -> dict[str, Any]:
        for cmd in self.commands.get(scope, []):
            if cmd["id"] == command_id:
                return cmd
        raise ApiError(404, 10063, "Unknown application command")

    async def _h_get_command(
        self, call: Call, app_id: str, command_id: str, guild_id: str | None = None
    ) -> Any:
        self._check_app(app_id)
        return copy.deepcopy(self._command_by_id(guild_id, command_id))

    async def _h_upsert_command(self, call: Call, app_id: str, guild_id: str | None = None) -> Any:
        self._check_app(app_id)
        body = call.json or {}
        self._validate_command(0, body)
        cmds = self.commands.setdefault(guild_id, [])
        key = (body.get("name"), body.get("type", 1))
        old = next((c for c in cmds if (c["name"], c.get("type", 1)) == key), None)
        stored = self._store_command(guild_id, body, old)
        if old is not None:
            cmds[cmds.index(old)] = stored
        else:
            cmds.append(stored)
        return copy.deepcopy(stored)

    async def _h_edit_command(
        self, call: Call, app_id: str, command_id: str, guild_id: str | None = None
    ) -> Any:
        self._check_app(app_id)
        old = self._command_by_id(guild_id, command_id)
        merged = {**old, **(call.json or {})}
        self._validate_command(0, merged)
        cmds = self.commands[guild_id]
        stored = self._store_command(guild_id, merged, old)
        cmds[cmds.index(old)] = stored
        return copy.deepcopy(stored)

    async def _h_delete_command(
        self, call: Call, app_id: str, command_id: str, guild_id: str | None = None
    ) -> Any:
        self._check_app(app_id)
        old = self._command_by_id(guild_id, command_id)
        self.commands[guild_id].remove(old)
        return None

    # ------------------------------------------------------------------ REST: interactions
    def _interaction_message_extra(self, ix: Interaction, *, followup: bool) -> dict[str, Any]:
        data = ix.payload.get("data") or {}
        meta: dict[str, Any] = {
            "id": ix.id,
            "type": ix.type,
            "user": ix.user,
            "authorizing_integration_owners": ix.payload["authorizing_integration_owners"],
        }
        if ix.type == IX_COMMAND:
            meta["name"] = data.get("name")
            meta["command_type"] = data.get("type", 1)
        if ix.type == IX_COMPONENT and "message" in ix.payload:
            meta["interacted_message_id"] = ix.payload["message"]["id"]
        if followup and ix.original_message_id:
            meta["original_response_message_id"] = ix.original_message_id
        extra: dict[str, Any] = {
            "webhook_id": self.app_id,
            "application_id": self.app_id,
            "interaction_metadata": meta,
        }
        if ix.type == IX_COMMAND:
            extra["interaction"] = {
                "id": ix.id,
                "type": ix.type,
                "name": data.get("name"),
                "user": ix.user,
            }
        return extra

    def _interaction_message_type(self, ix: Interaction) -> int:
        if ix.type == IX_COMMAND:
            return 23 if (ix.payload.get("data") or {}).get("type", 1) != 1 else 20
        return 0

    async def _h_callback(self, call: Call, interaction_id: str, token: str) -> Any:
        ix = self.interactions.get(interaction_id)
        if ix is None or ix.token != token:
            raise ApiError(404, 10062, "Unknown interaction")
        call.interaction = ix
        if ix.acknowledged:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.now() - ix.created_at > self.ack_deadline:
            raise ApiError(404, 10062, "Unknown interaction")
        body = call.json if isinstance(call.json, dict) else {}
        cb_type = body.get("type")
        data = body.get("data") or {}
        if cb_type not in _ALLOWED_CALLBACKS.get(ix.type, set()):
            raise _form_error(
                "type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
            )
        if cb_type in (CB_DEFERRED_UPDATE, CB_UPDATE) and "message" not in ix.payload:
            raise _form_error(
                "type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
            )
        resource: dict[str, Any] = {"type": cb_type}
        info: dict[str, Any] = {"id": ix.id, "type": ix.type}
        message: dict[str, Any] | None = None
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        if cb_type == CB_MESSAGE:
            fields = self._compose(data, call.files, ix.channel_id, ephemeral=ephemeral)
            message = self._new_message(
                ix.channel_id,
                self.bot_user,
                type=self._interaction_message_type(ix),
                **fields,
                **self._interaction_message_extra(ix, followup=False),
            )
        elif cb_type == CB_DEFERRED:
            message = self._new_message(
                ix.channel_id,
                self.bot_user,
                type=self._interaction_message_type(ix),
                flags=FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0),
                **self._interaction_message_extra(ix, followup=False),
            )
            info["response_message_loading"] = True
        elif cb_type == CB_UPDATE:
            message = self.messages.get(ix.payload["message"]["id"])
            if message is None:
                raise ApiError(404, 10008, "Unknown Message")
            self._apply_edit(message, data, call.files)
        elif cb_type == CB_DEFERRED_UPDATE:
            message = self.messages.get(ix.payload["message"]["id"])
        elif cb_type == CB_AUTOCOMPLETE:
            choices = data.get("choices")
            if not isinstance(choices, list):
                raise _form_error("data.choices", "BASE_TYPE_REQUIRED", "This field is required")
            if len(choices) > 25:
                raise _form_error(
                    "data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            for i, choice in enumerate(choices):
                if not 1 <= len(str(choice.get("name", ""))) <= 100:
                    raise _form_error(
                        f"data.choices.{i}.name",
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 100 in length.",
                    )
        elif cb_type == CB_MODAL:
            if not data.get("custom_id") or not data.get("title"):
                raise _form_error("data", "BASE_TYPE_REQUIRED", "This field is required")
        ix.callbacks.append(
            {"type": cb_type, "data": data, "files": call.files, "time": self.now()}
        )
        if message is not None:
            ix.original_message_id = message["id"]
            info["response_message_id"] = message["id"]
            info["response_message_ephemeral"] = bool(message["flags"] & FLAG_EPHEMERAL)
            if cb_type in (CB_MESSAGE, CB_UPDATE):
                resource["message"] = self._render(message)
            if cb_type in (CB_MESSAGE, CB_DEFERRED):
                await self._echo("MESSAGE_CREATE", message)
            elif cb_type == CB_UPDATE:
                await self._echo("MESSAGE_UPDATE", message)
        if not _truthy(call.query.get("with_response")):
            return None
        return {"interaction": info, "resource": resource}

    def _webhook_ix(self, call: Call, app_id: str, token: str) -> Interaction:
        if app_id != self.app_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        ix = self._by_token.get(token)
        if ix is None:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        call.interaction = ix
        if self._token_expired(ix):
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if not ix.acknowledged:
            raise ApiError(404, 10015, "Unknown Webhook")
        return ix

    def _webhook_message(self, ix: Interaction, message_id: str) -> dict[str, Any]:
        mid = ix.original_message_id if message_id == "@original" else message_id
        if mid is None or mid not in self.messages:
            raise ApiError(404, 10008, "Unknown Message")
        if (
            message_id != "@original"
            and mid not in ix.followup_ids
            and mid != ix.original_message_id
        ):
            raise ApiError(404, 10008, "Unknown Message")
        return self.messages[mid]

    async def _h_followup(self, call: Call, app_id: str, token: str) -> Any:
        ix = self._webhook_ix(call, app_id, token)
        body = call.json if isinstance(call.json, dict) else {}
        original = self.messages.get(ix.original_message_id or "")
        if (
            original is not None
            and original["flags"] & FLAG_LOADING
            and not ix._filled_loading
            and ix.response_type == CB_DEFERRED
        ):
            # Discord: the first follow-up after a deferred response replaces the "thinking" message.
            ix._filled_loading = True
            self._apply_edit(
                original,
                {**body, "flags": None, "content": body.get("content") or ""},
                call.files,
            )
            original["flags"] |= int(body.get("flags") or 0) & FLAG_SUPPRESS_NOTIFICATIONS
            message = original
            await self._echo("MESSAGE_UPDATE", message)
        else:
            fields = self._compose(body, call.files, ix.channel_id, ephemeral=False)
            message = self._new_message(
                ix.channel_id,
                self.bot_user,
                type=self._interaction_message_type(ix),
                **fields,
                **self._interaction_message_extra(ix, followup=True),
            )
            ix.followup_ids.append(message["id"])
            await self._echo("MESSAGE_CREATE", message)
        if not _truthy(call.query.get("wait")):
            return None
        return self._render(message)

    async def _h_webhook_get(self, call: Call, app_id: str, token: str, message_id: str) -> Any:
        ix = self._webhook_ix(call, app_id, token)
        return self._render(self._webhook_message(ix, message_id))

    async def _h_webhook_edit(self, call: Call, app_id: str, token: str, message_id: str) -> Any:
        ix = self._webhook_ix(call, app_id, token)
        msg = self._webhook_message(ix, message_id)
        body = call.json if isinstance(call.json, dict) else {}
        if message_id == "@original" and msg["flags"] & FLAG_LOADING:
            ix._filled_loading = True
        self._apply_edit(msg, body, call.files)
        await self._echo("MESSAGE_UPDATE", msg)
        return self._render(msg)

    async def _h_webhook_delete(self, call: Call, app_id: str, token: str, message_id: str) -> Any:
        ix = self._webhook_ix(call, app_id, token)
        msg = self._webhook_message(ix, message_id)
        del self.messages[msg["id"]]
        await self._echo("MESSAGE_DELETE", msg)
        return None

    # ------------------------------------------------------------------ REST: channels
    def _channel(self, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def _channel_message(self, channel_id: str, message_id: str) -> dict[str, Any]:
        self._channel(channel_id)
        msg = self.messages.get(message_id)
        if msg is None or msg["channel_id"] != channel_id:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    async def _h_get_channel(self, call: Call, channel_id: str) -> Any:
        return copy.deepcopy(self._channel(channel_id))

    async def _h_send_message(self, call: Call, channel_id: str) -> Any:
        self._channel(channel_id)
        body = call.json if isinstance(call.json, dict) else {}
        if int(body.get("flags") or 0) & FLAG_EPHEMERAL:
            raise _form_error("flags", "MESSAGE_FLAGS_INVALID", "Invalid flags")
        fields = self._compose(body, call.files, channel_id, ephemeral=False)
        ref = body.get("message_reference")
        reference = None
        mtype = 0
        if ref and ref.get("message_id"):
            target = self.messages.get(str(ref["message_id"]))
            if target is None:
                if ref.get("fail_if_not_exists", True):
                    raise _form_error(
                        "message_reference",
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    )
            else:
                mtype = 19
                reference = {
                    "type": int(ref.get("type") or 0),
                    "message_id": target["id"],
                    "channel_id": target["channel_id"],
                }
                gid = self._channel_guild.get(target["channel_id"])
                if gid is not None:
                    reference["guild_id"] = gid
                allowed = body.get("allowed_mentions") or {}
                if allowed.get("replied_user", True) and target["author"] not in fields["mentions"]:
                    fields["mentions"].append(target["author"])
        if body.get("nonce") is not None:
            fields["nonce"] = body["nonce"]
        msg = self._new_message(
            channel_id, self.bot_user, type=mtype, reference=reference, **fields
        )
        await self._echo("MESSAGE_CREATE", msg)
        return self._render(msg)

    async def _h_get_message(self, call: Call, channel_id: str, message_id: str) -> Any:
        return self._render(self._channel_message(channel_id, message_id))

    async def _h_get_messages(self, call: Call, channel_id: str) -> Any:
        self._channel(channel_id)
        limit = int(call.query.get("limit", 50))
        msgs = [m for m in self.messages.values() if m["channel_id"] == channel_id]
        msgs.sort(key=lambda m: int(m["id"]), reverse=True)
        if "before" in call.query:
            msgs = [m for m in msgs if int(m["id"]) < int(call.query["before"])]
        if "after" in call.query:
            msgs = [m for m in msgs if int(m["id"]) > int(call.query["after"])]
            msgs = sorted(msgs, key=lambda m: int(m["id"]))[:limit][::-1]
        return [self._render(m) for m in msgs[:limit]]

    async def _h_edit_message(self, call: Call, channel_id: str, message_id: str) -> Any:
        msg = self._channel_message(channel_id, message_id)
        if msg["author"]["id"] != self.bot_user["id"]:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(msg, call.json if isinstance(call.json, dict) else {}, call.files)
        await self._echo("MESSAGE_UPDATE", msg)
        return self._render(msg)

    async def _h_delete_message(self, call: Call, channel_id: str, message_id: str) -> Any:
        msg = self._channel_message(channel_id, message_id)
        del self.messages[message_id]
        await self._echo("MESSAGE_DELETE", msg)
        return None

    async def _h_typing(self, call: Call, channel_id: str) -> Any:
        self._channel(channel_id)
        return None

    async def _h_add_reaction(
        self, call: Call, channel_id: str, message_id: str, emoji: str
    ) -> Any:
        self._channel_message(channel_id, message_id)
        self.reactions.setdefault(message_id, []).append(unquote(emoji))
        return None

    async def _h_remove_reaction(
        self, call: Call, channel_id: str, message_id: str, emoji: str
    ) -> Any:
        self._channel_message(channel_id, message_id)
        with contextlib.suppress(ValueError):
            self.reactions.setdefault(message_id, []).remove(unquote(emoji))
        return None


def _route(method: str, path: str, kind: str, handler: str, auth: bool = True):
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", path)
    return (method, re.compile(regex), kind, handler, auth)


_APP = "/applications/{app_id}"
_GUILD_CMDS = "/applications/{app_id}/guilds/{guild_id}/commands"
_WH_MSG = "/webhooks/{app_id}/{token}/messages/{message_id}"
_CH_MSG = "/channels/{channel_id}/messages/{message_id}"
FakeDiscord._ROUTES = [
    _route("GET", "/users/@me", "get_me", "_h_me"),
    _route("GET", "/oauth2/applications/@me", "get_application", "_h_application"),
    _route("GET", "/applications/@me", "get_application", "_h_application"),
    _route("GET", "/gateway", "get_gateway", "_h_gateway", auth=False),
    _route("GET", "/gateway/bot", "get_gateway", "_h_gateway_bot"),
    _route("POST", "/users/@me/channels", "create_dm", "_h_create_dm"),
    _route("GET", "/users/{user_id}", "get_user", "_h_get_user"),
    _route("GET", "/guilds/{guild_id}", "get_guild", "_h_get_guild"),
    _route("GET", "/guilds/{guild_id}/members/{user_id}", "get_member", "_h_get_member"),
    _route("PUT", f"{_APP}/commands", "sync_commands", "_h_put_commands"),
    _route("GET", f"{_APP}/commands", "get_commands", "_h_get_commands"),
    _route("POST", f"{_APP}/commands", "upsert_command", "_h_upsert_command"),
    _route("GET", f"{_APP}/commands/{{command_id}}", "get_command", "_h_get_command"),
    _route("PATCH", f"{_APP}/commands/{{command_id}}", "edit_command", "_h_edit_command"),
    _route("DELETE", f"{_APP}/commands/{{command_id}}", "delete_command", "_h_delete_command"),
    _route("PUT", _GUILD_CMDS, "sync_commands", "_h_put_guild_commands"),
    _route("GET", _GUILD_CMDS, "get_commands", "_h_get_commands"),
    _route("POST", _GUILD_CMDS, "upsert_command", "_h_upsert_command"),
    _route("GET", f"{_GUILD_CMDS}/{{command_id}}", "get_command", "_h_get_command"),
    _route("PATCH", f"{_GUILD_CMDS}/{{command_id}}", "edit_command", "_h_edit_command"),
    _route("DELETE", f"{_GUILD_CMDS}/{{command_id}}", "delete_command", "_h_delete_command"),
    _route(
        "POST", "/interactions/{interaction_id}/{token}/callback", "callback", "_h_callback", False
    ),
    _route("POST", "/webhooks/{app_id}/{token}", "followup", "_h_followup", False),
    _route("GET", _WH_MSG, "get_webhook_message", "_h_webhook_get", False),
    _route("PATCH", _WH_MSG, "edit_webhook_message", "_h_webhook_edit", False),
    _route("DELETE", _WH_MSG, "delete_webhook_message", "_h_webhook_delete", False),
    _route("GET", "/channels/{channel_id}", "get_channel", "_h_get_channel"),
    _route("POST", "/channels/{channel_id}/messages", "send_message", "_h_send_message"),
    _route("GET", "/channels/{channel_id}/messages", "get_messages", "_h_get_messages"),
    _route("GET", _CH_MSG, "get_message", "_h_get_message"),
    _route("PATCH", _CH_MSG, "edit_message", "_h_edit_message"),
    _route("DELETE", _CH_MSG, "delete_message", "_h_delete_message"),
    _route("POST", "/channels/{channel_id}/typing", "typing", "_h_typing"),
    _route("PUT", f"{_CH_MSG}/reactions/{{emoji}}/@me", "add_reaction", "_h_add_reaction"),
    _route("DELETE", f"{_CH_MSG}/reactions/{{emoji}}/@me", "remove_reaction", "_h_remove_reaction"),
]


def _infer_option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], (bytes, bytearray)):
        return 11
    if isinstance(value, dict) and "username" in value:
        return 6
    return 3


def _find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for comp in components:
        if comp.get("custom_id") == custom_id:
            return comp
        children = list(comp.get("components") or [])
        children += [comp[k] for k in ("component", "accessory") if isinstance(comp.get(k), dict)]
        found = _find_component(children, custom_id)
        if found is not None:
            return found
    return None


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a project dependency
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return None


@contextlib.contextmanager
def patch_discord_urls(fake: FakeDiscord) -> Iterator[FakeDiscord]:
    """Point discord.py's process-global REST base and gateway URL at ``fake``; restore afterwards."""
    import discord.gateway
    import discord.http

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield fake
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

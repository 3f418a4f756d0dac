"""Proves tests/fakes/discord_api.py against the real discord.py (a test of the fake, not of drawbridge)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from PIL import Image

from tests.fakes.discord_api import FakeDiscord, MiB, patch_discord_urls

pytestmark = pytest.mark.timeout(30)

STYLES = ["photo", "painting", "pixel-art", "sketch"]


def png(width: int = 8, height: int = 6, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


OUT_PNG = png(16, 12, "blue")


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as f:
        with patch_discord_urls(f):
            yield f


class AgainView(discord.ui.View):
    def __init__(self, harness: Harness) -> None:
        super().__init__(timeout=None)
        self.harness = harness

    @discord.ui.button(label="Again", style=discord.ButtonStyle.primary, custom_id="draw:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="again!")
        await self.harness.results.put(("again", interaction))


class RefineModal(discord.ui.Modal, title="Refine"):
    prompt: discord.ui.TextInput = discord.ui.TextInput(label="Prompt", custom_id="refine:prompt")

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"refining: {self.prompt.value}")
        await self.harness.results.put(("modal", self.prompt.value))


class StyleSelect(discord.ui.View):
    def __init__(self, harness: Harness) -> None:
        super().__init__(timeout=None)
        self.harness = harness

    @discord.ui.select(
        custom_id="style:pick", options=[discord.SelectOption(label=s) for s in STYLES]
    )
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.defer()  # type 6 for a component
        await interaction.edit_original_response(content=f"style: {select.values[0]}")
        await self.harness.results.put(("select", select.values))


class Harness:
    """A discord.Client + CommandTree whose command bodies report into ``results``."""

    def __init__(self, fake: FakeDiscord, *, sync: bool) -> None:
        self.fake = fake
        self.results: asyncio.Queue[Any] = asyncio.Queue()
        self.messages: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()
        self.client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self.client)
        self.task: asyncio.Task[None] | None = None
        self._register(sync)

    def _register(self, sync: bool) -> None:
        h, client, tree = self, self.client, self.tree

        async def setup_hook() -> None:
            client.add_view(AgainView(h))
            client.add_view(StyleSelect(h))
            if sync:
                await tree.sync()

        client.setup_hook = setup_hook  # type: ignore[method-assign]

        @client.event
        async def on_ready() -> None:
            h.ready.set()

        @client.event
        async def on_resumed() -> None:
            h.resumed.set()

        @client.event
        async def on_message(message: discord.Message) -> None:
            if message.author != client.user:
                await h.messages.put(message)

        @tree.command(name="draw", description="Draw a picture")
        async def draw(
            interaction: discord.Interaction,
            prompt: str,
            steps: int = 20,
            image: discord.Attachment | None = None,
            style: str | None = None,
        ) -> None:
            try:
                await interaction.response.defer()
                source = await image.read() if image else b""
                followup = await interaction.followup.send(
                    f"{prompt} ({steps} steps)",
                    file=discord.File(io.BytesIO(OUT_PNG), "out.png"),
                    view=AgainView(h),
                    wait=True,
                )
                edited = await interaction.edit_original_response(content=f"done: {prompt}")
                await h.results.put(
                    {
                        "source": source,
                        "followup": followup,
                        "edited": edited,
                        "guild_id": interaction.guild_id,
                        "user": interaction.user,
                        "filesize_limit": interaction.filesize_limit,
                        "steps": steps,
                        "style": style,
                    }
                )
            except Exception as exc:
                await h.results.put(exc)

        @draw.autocomplete("style")
        async def style_autocomplete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=s, value=s) for s in STYLES if s.startswith(current)]

        @tree.command(name="limits", description="Run into a platform limit")
        async def limits(interaction: discord.Interaction, case: str) -> None:
            try:
                if case == "late":
                    await asyncio.sleep(h.fake.ack_deadline + 0.15)
                    await interaction.response.defer()
                elif case == "big":
                    await interaction.response.defer(ephemeral=True)
                    big = discord.File(io.BytesIO(b"\0" * (10 * MiB + 1)), "big.bin")
                    await interaction.followup.send(file=big)
                elif case == "expired":
                    await interaction.response.defer()
                    h.fake.expire_token(interaction.token)
                    await interaction.followup.send("too late")
                await h.results.put("no error")
            except Exception as exc:
                await h.results.put(exc)

        @tree.command(name="ping", description="Pong")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong")
            await h.results.put(interaction)

        @tree.command(name="refine", description="Open a modal")
        async def refine(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(RefineModal(h))

        @tree.context_menu(name="Upscale")
        async def upscale(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(f"upscaling {message.id}", ephemeral=True)
            await h.results.put(message)

    async def _first(self, aw: Any, within: float, what: str) -> Any:
        assert self.task is not None
        fut = asyncio.ensure_future(aw)
        done, _ = await asyncio.wait(
            {fut, self.task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
        if fut in done:
            return fut.result()
        fut.cancel()
        if self.task.done():
            self.task.result()  # re-raise whatever killed client.start()
            raise AssertionError(f"client.start() returned while waiting for {what}")
        raise TimeoutError(f"timed out waiting for {what}")

    async def result(self, within: float = 5.0) -> Any:
        return await self._first(self.results.get(), within, "a command result")

    async def message(self, within: float = 5.0) -> discord.Message:
        return await self._first(self.messages.get(), within, "on_message")


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, *, sync: bool = False) -> AsyncIterator[Harness]:
    h = Harness(fake, sync=sync)
    h.task = asyncio.create_task(h.client.start(fake.token))
    try:
        await h._first(h.ready.wait(), 5.0, "on_ready")
        yield h
    finally:
        await h.client.close()
        await asyncio.wait_for(h.task, 5.0)  # a crash inside client.start() fails the test here


async def test_rest_basics_exact_json_content_type_and_auth(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        ok = {"Authorization": f"Bot {fake.token}"}
        async with session.get(f"{fake.api_base}/users/@me", headers=ok) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["id"] == fake.app_id
        bad = {"Authorization": "Bot nope"}
        async with session.get(f"{fake.api_base}/users/@me", headers=bad) as resp:
            assert resp.status == 401
            assert resp.headers["Content-Type"] == "application/json"
        async with session.get(f"{fake.api_base}/gateway/bot", headers=ok) as resp:
            assert (await resp.json())["url"] == fake.gateway_url

    client = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await client.login("wrong-token")
    await client.close()


async def test_ready_sync_slash_defer_followup_edit(fake: FakeDiscord) -> None:
    async with running(fake, sync=True) as h:
        assert fake.command_put_count == 1
        registered = {c["name"]: c for c in fake.commands[None]}
        assert set(registered) == {"draw", "limits", "ping", "refine", "Upscale"}
        assert registered["draw"]["application_id"] == fake.app_id
        guild = h.client.get_guild(int(fake.guild_id))
        assert guild is not None and guild.get_channel(int(fake.channel_id)) is not None

        source = png()
        ix = await fake.slash(
            "draw",
            {"prompt": "a cat", "steps": 30},
            user="alice",
            attachments={"image": ("in.png", source, "image/png")},
        )
        data = ix.payload["data"]
        assert data["id"] == registered["draw"]["id"]
        assert {o["name"]: o["type"] for o in data["options"]} == {
            "prompt": 3,
            "steps": 4,
            "image": 11,
        }

        got = await h.result()
        assert not isinstance(got, Exception), got
        assert got["source"] == source  # Attachment.read() fetched the bytes from the fake
        assert got["steps"] == 30 and got["guild_id"] == int(fake.guild_id)
        assert got["user"].name == "alice"
        assert got["filesize_limit"] == 10 * MiB

        callback = await fake.wait_for("callback", interaction=ix)
        assert callback.json == {"type": 5} and callback.query.get("with_response") == "1"
        assert callback.response["interaction"]["id"] == ix.id
        followup = await fake.wait_for("followup", interaction=ix)
        assert followup.files[0].data == OUT_PNG and followup.query["wait"] == "1"
        await fake.wait_for("edit_webhook_message", interaction=ix)

        # The first follow-up after a defer fills the "thinking" message: same id as @original.
        original = fake.original_message(ix)
        assert original is not None
        assert got["followup"].id == got["edited"].id == int(original["id"])
        assert original["content"] == "done: a cat"
        assert original["flags"] & 128 == 0
        (att,) = original["attachments"]
        assert (att["filename"], att["width"], att["height"]) == ("out.png", 16, 12)
        assert fake.attachment_bytes(att) == OUT_PNG
        buttons = original["components"][0]["components"]
        assert buttons[0]["custom_id"] == "draw:again"
        async with aiohttp.ClientSession() as session, session.get(att["url"]) as resp:
            assert await resp.read() == OUT_PNG

        # A button click reaches the persistent view; type 7 edits the message in place.
        click = await fake.click(original, "draw:again", user="bob")
        kind, interaction = await h.result()
        assert kind == "again" and interaction.user.name == "bob"
        assert click.response_type == 7
        assert fake.message(original["id"])["content"] == "again!"


async def test_autocomplete_and_context_menu(fake: FakeDiscord) -> None:
    async with running(fake, sync=True) as h:
        ix = await fake.autocomplete("draw", {"prompt": "a dog"}, focused="style", user="bob")
        await fake.wait_for("callback", interaction=ix)
        assert ix.response_type == 8
        assert ix.choices == [{"name": s, "value": s} for s in STYLES]

        ix = await fake.autocomplete("draw", {"prompt": "a dog", "style": "p"}, focused="style")
        await fake.wait_for("callback", interaction=ix)
        assert [c["value"] for c in ix.choices or []] == ["photo", "painting", "pixel-art"]

        target = await fake.user_message(content="make this bigger")
        ix = await fake.context_menu("Upscale", target, user="alice")
        message = await h.result()
        assert message.id == int(target["id"]) and message.content == "make this bigger"
        await fake.wait_for("callback", interaction=ix)
        reply = fake.original_message(ix)
        assert reply is not None and reply["flags"] & 64 and reply["content"].endswith(target["id"])


async def test_platform_limits(fake: FakeDiscord) -> None:
    fake.ack_deadline = 0.3
    async with running(fake, sync=True) as h:
        await fake.slash("limits", {"case": "big"})
        err = await h.result()
        assert isinstance(err, discord.HTTPException) and err.status == 413 and err.code == 40005

        await fake.slash("limits", {"case": "late"})
        err = await h.result()
        assert isinstance(err, discord.NotFound) and err.code == 10062

        await fake.slash("limits", {"case": "expired"})
        err = await h.result()
        assert isinstance(err, discord.HTTPException) and err.status == 401 and err.code == 50027

        ix = await fake.slash("ping")
        await h.result()
        url = f"{fake.api_base}/interactions/{ix.id}/{ix.token}/callback"
        async with aiohttp.ClientSession() as session, session.post(url, json={"type": 5}) as r:
            assert r.status == 400 and (await r.json())["code"] == 40060


async def test_dm_slash_and_reply_mentioning_the_bot(fake: FakeDiscord) -> None:
    async with running(fake, sync=True) as h:
        ix = await fake.slash("ping", guild=False, user="bob")
        interaction = await h.result()
        assert interaction.guild is None and isinstance(interaction.channel, discord.DMChannel)
        assert fake.original_message(ix)["channel_id"] == fake.dm_channel("bob")["id"]

        channel = h.client.get_channel(int(fake.channel_id))
        assert isinstance(channel, discord.TextChannel)
        bot_msg = await channel.send("your picture is ready")

        # Without the message-content intent a plain guild message arrives empty ...
        await fake.user_message(fake.channel_id, "alice", "just chatting")
        plain = await h.message()
        assert plain.content == "" and plain.author.name == "alice"

        # ... but a reply that pings the bot carries its content, mention and reference.
        await fake.user_message(fake.channel_id, "alice", "make it blue", reply_to=bot_msg)
        reply = await h.message()
        assert reply.content == "make it blue"
        assert h.client.user in reply.mentions
        assert reply.reference is not None and reply.reference.message_id == bot_msg.id
        assert isinstance(reply.reference.resolved, discord.Message)
        assert reply.reference.resolved.author == h.client.user


async def test_restart_keeps_commands_and_messages(fake: FakeDiscord) -> None:
    async with running(fake, sync=True) as h:
        await fake.slash("draw", {"prompt": "a fox"})
        got = await h.result()
        message_id = got["followup"].id
    assert fake.command_put_count == 1

    async with running(fake, sync=False) as h2:
        assert fake.command_put_count == 1
        commands = await h2.tree.fetch_commands()
        assert {c.name for c in commands} == {"draw", "limits", "ping", "refine", "Upscale"}
        channel = h2.client.get_channel(int(fake.channel_id))
        assert isinstance(channel, discord.TextChannel)
        fetched = await channel.fetch_message(message_id)
        assert fetched.content == "done: a fox" and fetched.attachments[0].filename == "out.png"
        assert await fetched.attachments[0].read() == OUT_PNG

        await fake.click(fetched.id, "draw:again")
        kind, _ = await h2.result()
        assert kind == "again"


async def test_modal_select_and_channel_messages(fake: FakeDiscord) -> None:
    async with running(fake, sync=True) as h:
        opener = await fake.slash("refine")
        await fake.wait_for("callback", interaction=opener)
        assert opener.response_type == 9 and opener.modal["title"] == "Refine"
        await fake.submit_modal(opener, {"refine:prompt": "a red fox"})
        assert await h.result() == ("modal", "a red fox")

        channel = h.client.get_channel(int(fake.channel_id))
        assert isinstance(channel, discord.TextChannel)
        asked = await fake.user_message(content="draw me something")
        original = await channel.fetch_message(int(asked["id"]))
        async with channel.typing():
            sent = await original.reply(
                "pick a style",
                file=discord.File(io.BytesIO(b"preview"), "preview.txt"),
                view=StyleSelect(h),
            )
        call = await fake.wait_for("send_message")
        assert str(call.json["message_reference"]["message_id"]) == asked["id"]
        assert [f.filename for f in call.files] == ["preview.txt"]
        assert sent.type is discord.MessageType.reply and sent.reference is not None
        assert sent.attachments[0].content_type == "text/plain"

        await fake.click(sent, "style:pick", values=["sketch"], user="bob")
        assert await h.result() == ("select", ["sketch"])
        stored = fake.message(sent.id)
        assert stored["content"] == "style: sketch" and stored["attachments"]

        edited = await sent.edit(content="final", attachments=[])
        assert edited.attachments == [] and edited.edited_at is not None
        with pytest.raises(discord.HTTPException) as empty:
            await channel.send("")
        assert (empty.value.status, empty.value.code) == (400, 50006)
        with pytest.raises(discord.HTTPException) as long:
            await channel.send("x" * 2001)
        assert long.value.code == 50035 and "2000" in long.value.text
        await sent.delete()
        assert str(sent.id) not in fake.messages


async def test_reconnect_resumes_and_replays_missed_events(fake: FakeDiscord) -> None:
    async with running(fake) as h:
        await fake.request_reconnect()  # op 7
        resume = await fake.wait_for("resume")
        assert resume.json["session_id"]
        await h._first(h.resumed.wait(), 5.0, "on_resumed")

        # An event dispatched while the socket is being dropped is replayed after RESUME.
        drop = asyncio.create_task(fake.drop_gateway(4000))
        await asyncio.sleep(0)
        await fake.slash("ping")
        await drop
        assert isinstance(await h.result(), discord.Interaction)
        await fake.wait_for("resume")
        assert len(fake.calls_of("identify")) == 1

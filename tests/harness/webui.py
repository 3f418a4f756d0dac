"""Fixtures for tests that need an SD-WebUI: a DevWebUI on a free 127.0.0.1 port and a client.

tests/conftest.py registers them: ask for `devwebui`, `make_devwebui` or `webui_client`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.webui import WebUIClient
from devwebui import DevWebUI

FAST = 0.1  # seconds per generation pass: long enough to observe, short enough for CI
FIELDS_FILE = Path(__file__).parent.parent / "data" / "webui_fields.json"


def contract_fields() -> dict[str, dict[str, dict[str, Any]]]:
    """The contract's request field lists: {model: {name: {json_type, default, nullable}}}."""
    data = json.loads(FIELDS_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def free_port() -> int:
    """A port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="devwebui")
async def devwebui_fixture() -> AsyncIterator[DevWebUI]:
    """A running DevWebUI with a short per-job delay."""
    async with DevWebUI(delay=FAST) as server:
        yield server


@pytest.fixture(name="make_devwebui")
async def make_devwebui_fixture() -> AsyncIterator[Callable[..., Awaitable[DevWebUI]]]:
    """Factory: `server = await make_devwebui(auth=("u", "p"), api=False, …)`; stopped after."""
    servers: list[DevWebUI] = []

    async def make(**options: Any) -> DevWebUI:
        server = DevWebUI(**{"delay": FAST, **options})
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture(name="webui_client")
async def webui_client_fixture(devwebui: DevWebUI) -> AsyncIterator[WebUIClient]:
    """A WebUIClient bound to the `devwebui` fixture."""
    async with WebUIClient(devwebui.url, timeout=30.0, connect_timeout=2.0) as client:
        yield client


FORK_FIELDS_FILE = Path(__file__).parent.parent / "data" / "fork_fields.json"


def fork_fields(flavor: str) -> dict[str, dict[str, dict[str, Any]]]:
    """A fork's request field lists in the contract's shape ("a1111" is the contract itself)."""
    if flavor == "a1111":
        return contract_fields()
    data = json.loads(FORK_FIELDS_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data[flavor].items() if not k.startswith("_")}


async def dead_webui() -> DevWebUI:
    """A WebUI URL nobody listens on any more."""
    webui = DevWebUI()
    await webui.start()
    await webui.kill()
    return webui


def sent(server: DevWebUI, kind: str = "txt2img") -> list[dict[str, Any]]:
    """Bodies of /sdapi/v1/<kind> requests a DevWebUI received."""
    return [body for path, body in server.requests if path == f"/sdapi/v1/{kind}"]


def hue(picture: bytes) -> float:
    """The hue of a picture's top-left pixel (previews are coloured by their job's seed)."""
    import colorsys
    import io

    from PIL import Image

    with Image.open(io.BytesIO(picture)) as img:
        r, g, b = img.convert("RGB").getpixel((0, 0))
    return colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)[0]


def seed_hue(seed: int) -> float:
    """The hue dev-webui gives the previews of a job with this seed."""
    return (seed * 0.6180339887) % 1.0

"""compose.yaml as an operator uses it: `cp .env.example .env`, then each profile.

Rendered by the real compose binary; the bot's resolved environment is then read by the real
Settings in a subprocess, so what is asserted is what the bot in the container would use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.compose_render import container_env, render

SETTINGS = (
    "import json; from bot.settings import Settings; s = Settings(); "
    "print(json.dumps({'database_url': s.database_url, 'data_dir': str(s.data_dir), "
    "'webui_urls': s.webui_urls}))"
)


def bot_settings(project: Any, tmp_path: Path) -> dict[str, Any]:
    """What the real Settings make of the bot container's environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **container_env(project, "bot")}
    proc = subprocess.run(
        [sys.executable, "-c", SETTINGS],
        cwd=tmp_path,  # no .env here: the container has none either, only its environment
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# the bot's healthcheck (compose.yaml and the Dockerfile): /healthz on the container's port
HEALTHZ_CHECK = [
    "CMD",
    "python",
    "-c",
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=10)",
]


def answering_to_webui(project: Any) -> list[str]:
    """Services reachable as http://webui inside the project's network."""
    names = []
    for name, service in project["services"].items():
        aliases = (service.get("networks") or {}).get("default") or {}
        if name == "webui" or "webui" in (aliases.get("aliases") or []):
            names.append(name)
    return names


def gpu_services(project: Any) -> list[str]:
    """Services that reserve a GPU (they cannot start without the NVIDIA runtime)."""
    found = []
    for name, service in project["services"].items():
        devices = (
            ((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
        ).get("devices") or []
        if any("gpu" in (d.get("capabilities") or []) for d in devices):
            found.append(name)
    return found


CASES = {
    # profiles given on the command line (None: COMPOSE_PROFILES from .env, which says gpu)
    "default": (None, {"bot", "webui"}),
    "gpu": (["gpu"], {"bot", "webui"}),
    "dev": (["dev"], {"bot", "dev-webui"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_webui_profile_gives_the_bot_one_webui_and_data_under_the_volume(tmp_path, case):
    profiles, services = CASES[case]
    project = render(tmp_path, profiles)
    assert set(project["services"]) == services
    assert len(answering_to_webui(project)) == 1
    bot = project["services"]["bot"]
    env = container_env(project, "bot")
    assert env["WEBUI_URLS"] == "http://webui:7860"
    assert env["DATA_DIR"] == "/data"
    assert [(v["type"], v["target"]) for v in bot["volumes"]] == [("volume", "/data")]
    assert bot_settings(project, tmp_path) == {
        "database_url": "sqlite+aiosqlite:////data/drawbridge.db",
        "data_dir": "/data",
        "webui_urls": ["http://webui:7860"],
    }
    assert env["HTTP_LISTEN"] == "0.0.0.0:8080"  # Prometheus and the healthcheck reach it
    assert bot["healthcheck"]["test"] == HEALTHZ_CHECK


def test_dev_profile_needs_no_gpu_and_runs_the_placeholder_webui(tmp_path):
    project = render(tmp_path, ["dev"])
    assert gpu_services(project) == []
    dev = project["services"]["dev-webui"]
    assert dev["command"] == ["dev-webui", "--host", "0.0.0.0", "--port", "7860", "--delay", "2"]
    assert "build" in dev  # the same image as the bot: `drawbridge dev-webui`


def test_gpu_profile_reserves_the_gpu_and_keeps_models_in_a_volume(tmp_path):
    project = render(tmp_path, ["gpu"])
    assert gpu_services(project) == ["webui"]
    webui = project["services"]["webui"]
    assert "--api" in webui["command"]
    assert webui["command"][-2:] == ["--port", "7860"]
    assert [(v["source"], v["target"]) for v in webui["volumes"]] == [
        ("webui-models", "/app/stable-diffusion-webui/models")
    ]


def test_postgres_profile_points_the_bot_at_its_server(tmp_path):
    project = render(tmp_path, ["dev", "postgres"], ["POSTGRES_PASSWORD=s3cr@t/:x"])
    assert set(project["services"]) == {"bot", "dev-webui", "postgres"}
    postgres = project["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "s3cr@t/:x"
    assert postgres["environment"]["POSTGRES_USER"] == "drawbridge"
    assert [(v["source"], v["target"]) for v in postgres["volumes"]] == [
        ("postgres-data", "/var/lib/postgresql/data")
    ]
    bot = project["services"]["bot"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = container_env(project, "bot")
    # the password goes as PGPASSWORD, so any character works and the URL never carries it
    assert env["PGPASSWORD"] == "s3cr@t/:x"
    assert bot_settings(project, tmp_path)["database_url"] == (
        "postgresql+asyncpg://drawbridge@postgres:5432/drawbridge"
    )


def test_every_service_of_every_profile_has_a_healthcheck(tmp_path):
    project = render(tmp_path, ["gpu", "dev", "postgres"], ["POSTGRES_PASSWORD=x"])
    assert set(project["services"]) == {"bot", "webui", "dev-webui", "postgres"}
    for name, service in project["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_container_settings_beat_what_an_old_env_file_says(tmp_path):
    # the .env.example of before: a relative data folder broke the bot in its container
    project = render(tmp_path, ["dev"], ["DATA_DIR=data"])
    assert container_env(project, "bot")["DATA_DIR"] == "/data"
    assert bot_settings(project, tmp_path)["database_url"] == (
        "sqlite+aiosqlite:////data/drawbridge.db"
    )


def test_a_webui_elsewhere_is_one_uncommented_line(tmp_path):
    lines = ["COMPOSE_PROFILES=", "WEBUI_URLS=http://gpu1:7860,http://gpu2:7860"]
    project = render(tmp_path, None, lines)
    assert set(project["services"]) == {"bot"}
    assert bot_settings(project, tmp_path)["webui_urls"] == [
        "http://gpu1:7860",
        "http://gpu2:7860",
    ]

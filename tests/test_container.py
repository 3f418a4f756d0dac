"""The container, simulated without an engine: installed as root, run as another user.

As the image does it: drawbridge is installed by root into a root-owned prefix, then run as an
unprivileged user, from a folder it cannot write, with no home, with the environment compose
gives the bot (rendered by the real compose binary for the dev profile, the image's ENV under
it), `/data` standing for a folder that user owns. It must start, answer a /draw through a
fake Telegram with dev-webui as the backend, stop on SIGTERM, and write nothing outside /data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devwebui import DevWebUI
from tests.compose_render import container_env, render
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.cli import free_port

ROOT = Path(__file__).resolve().parent.parent
USER = 65534  # nobody / nogroup: no home, owns nothing
PIP = [sys.executable, "-m", "pip", "--quiet"]

pytestmark = [
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="simulating the image needs root: install as root, then run as another user",
    ),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv"),
    pytest.mark.timeout(240),
]


def _files(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*")}


def _install_as_root(base: Path) -> Path:
    """A root-owned venv with drawbridge installed from a wheel, as `pip install .` in the image."""
    source = base / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "tests", "bench", "data", "outputs", "build", "*.egg-info",
            "__pycache__", ".*_cache",
        ),
    )  # fmt: skip
    wheels = base / "wheels"
    subprocess.run(
        [
            *PIP,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    venv = base / "venv"
    interpreter = _interpreter_for_user()
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    (wheel,) = wheels.glob("drawbridge-*.whl")
    subprocess.run(
        [*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    # The pinned dependencies: the image installs them from requirements.lock; here they are
    # this test run's (installed from requirements-test.lock: the same pins), read-only.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    if not _user_can_run(str(python), "import sqlalchemy, pydantic_core, aiohttp"):
        pytest.skip("this test run's dependencies are not readable by an unprivileged user")
    return venv


AS_USER = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", "--"]


def _user_can_run(python: str, code: str = "pass") -> bool:
    # exactly as the test runs it: a clean environment, nothing inherited
    probe = subprocess.run(
        [*AS_USER, "env", "-i", python, "-c", code], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def _interpreter_for_user() -> str:
    """A Python of this version that the unprivileged user may run (as /usr/local/bin/python
    in the image); this one may live in root's home, which that user cannot enter."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        sys.executable,
        getattr(sys, "_base_executable", sys.executable),
        f"/usr/local/bin/python{version}",
        f"/usr/bin/python{version}",
    ]
    for candidate in candidates:
        if Path(candidate).exists() and _user_can_run(candidate):
            return candidate
    pytest.skip(f"no Python {version} here that an unprivileged user may run")


@pytest.fixture(name="box")
def fixture_box() -> Iterator[Path]:
    """A folder every user may traverse (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="drawbridge-container-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_installed_as_root_runs_as_a_user_and_writes_only_under_data(box):
    venv = await asyncio.to_thread(_install_as_root, box)
    app = box / "app"  # WORKDIR: root's, not writable by the bot
    app.mkdir()
    data = box / "data"  # stands for the /data volume, owned by the bot's user
    data.mkdir()
    os.chown(data, USER, USER)
    tmp = box / "tmp"  # /tmp of the container: watched, must stay empty
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    before = {"venv": _files(venv), "app": _files(app)}

    project = await asyncio.to_thread(render, box, ["dev"])
    env = {k: v.replace("/data", str(data)) for k, v in container_env(project, "bot").items()}
    assert env["DATA_DIR"] == str(data) and env["DATABASE_URL"] == ""
    assert env["HTTP_LISTEN"] == "0.0.0.0:8080"
    healthcheck = project["services"]["bot"]["healthcheck"]["test"]
    port = free_port()  # the same server, but on this machine's loopback and a free port
    env["HTTP_LISTEN"] = f"127.0.0.1:{port}"

    async with FakeTelegram() as fake, DevWebUI(delay=0.05) as webui:
        env.update(
            # `webui` and api.telegram.org are not reachable from here: their stand-ins are
            WEBUI_URLS=webui.url,
            TELEGRAM_TOKEN=fake.token,
            TELEGRAM_API_BASE_URL=fake.root,
            PATH=f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
            HOME="/nonexistent",
            TMPDIR=str(tmp),
        )
        command = [*AS_USER, "env", "-i", *(f"{k}={v}" for k, v in env.items())]
        proc = await asyncio.create_subprocess_exec(
            *command, f"{venv}/bin/drawbridge", "run", cwd=app, stderr=asyncio.subprocess.PIPE
        )
        try:
            started = asyncio.create_task(fake.wait_for("deleteWebhook", timeout=60))
            exited = asyncio.create_task(proc.wait())
            await asyncio.wait([started, exited], return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                assert proc.stderr is not None
                raise AssertionError(f"exited at start: {(await proc.stderr.read()).decode()}")
            await started
            ann = fake.user(2001, "Ann")
            fake.send_text(ann, ann, "/draw a harbour at dusk --seed 5 --size 256x256")
            (photo,) = await fake.wait_for(
                "sendPhoto", lambda c: "🌱" in (c.params.get("caption") or ""), timeout=60
            )
            assert photo.params["caption"].startswith("a harbour at dusk\n🌱 5")
            # compose's healthcheck, run as the container's user: /healthz answers 200
            probe = [arg.replace(":8080/", f":{port}/") for arg in healthcheck[1:]]
            assert probe[0] == "python"
            health = await asyncio.create_subprocess_exec(
                *command, f"{venv}/bin/python", *probe[1:], cwd=app
            )
            assert await asyncio.wait_for(health.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            assert proc.stderr is not None
            stderr = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
            code = await asyncio.wait_for(proc.wait(), 60)
        assert code == 0, stderr
        assert "Traceback" not in stderr and "PermissionError" not in stderr, stderr

        # the healthcheck compose runs in the same container works too
        check = await asyncio.create_subprocess_exec(
            *command, f"{venv}/bin/drawbridge", "db", "check", cwd=app,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await check.communicate()
        assert check.returncode == 0 and out.decode().startswith("database ok:")

    written = _files(data)
    assert "drawbridge.db" in written
    assert any(name.startswith("images/") for name in written), written
    assert all(p.stat().st_uid == USER for p in data.rglob("*"))
    assert {"venv": _files(venv), "app": _files(app)} == before
    assert _files(tmp) == set()

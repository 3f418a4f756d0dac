"""What can be checked of the image and the installs without a Docker engine.

Every dependency pyproject.toml declares is pinned, with hashes, in the lock the image installs
(and the test extras in the lock `make` installs), at a version the declaration accepts; both
locks agree; the Dockerfile installs the lock before copying the code and has a HEALTHCHECK;
the Makefile installs from its lock. The license and metadata are what pyproject says.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(lock: str) -> dict[str, tuple[Version, int]]:
    """{package: (version, number of hashes)} of a pip-compile lock with hashes."""
    text = (ROOT / lock).read_text()
    found: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s\\]+)", block)
        if match:
            name, version = canonicalize_name(match[1]), Version(match[2])
            found[name] = (version, block.count("--hash=sha256:"))
    return found


def _declared(requirements: list[str]) -> list[Requirement]:
    return [Requirement(r) for r in requirements]


def _assert_pinned(requirements: list[Requirement], lock: dict[str, tuple[Version, int]]) -> None:
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is not in the lock: run `make lock`"
        version, hashes = lock[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"the lock pins {req.name}=={version}, pyproject asks {req.specifier}: `make lock`"
        )
        assert hashes >= 1, f"{req.name} has no hash in the lock"


def test_every_runtime_dependency_is_pinned_with_hashes_in_the_image_lock():
    lock = pins("requirements.lock")
    runtime = _declared(PYPROJECT["project"]["dependencies"])
    _assert_pinned(runtime, lock)
    # the PostgreSQL driver is in the image, and so is the build backend `pip install .` uses
    assert "asyncpg" in lock
    _assert_pinned(_declared(PYPROJECT["build-system"]["requires"]), lock)
    assert all(hashes for _, hashes in lock.values()), "every pin needs its hashes"


def test_the_test_lock_pins_the_test_extras_and_agrees_with_the_image_lock():
    image, test = pins("requirements.lock"), pins("requirements-test.lock")
    _assert_pinned(_declared(PYPROJECT["project"]["optional-dependencies"]["test"]), test)
    _assert_pinned(_declared(PYPROJECT["project"]["dependencies"]), test)
    for name, (version, _) in image.items():
        assert test.get(name, (None,))[0] == version, f"the locks disagree on {name}"


def test_dockerfile_installs_the_lock_in_a_layer_before_the_code():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    copy_lock = lines.index("COPY requirements.lock ./")
    install_lock = next(i for i, line in enumerate(lines) if "-r requirements.lock" in line)
    copy_code = lines.index("COPY . .")
    install_code = next(i for i, line in enumerate(lines) if "pip install --no-deps" in line)
    assert copy_lock < install_lock < copy_code < install_code
    assert "--require-hashes" in lines[install_lock]
    (check,) = [line for line in lines if line.startswith("HEALTHCHECK ")]
    # the same probe as compose's: /healthz on the port the image listens on
    probe = json.loads(check.split(" CMD ", 1)[1])
    assert probe[:2] == ["python", "-c"] and "http://127.0.0.1:8080/healthz" in probe[2]
    assert "ENV HTTP_LISTEN=0.0.0.0:8080" in lines
    assert "ENV DATA_DIR=/data" in lines
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    # what the image must not contain
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "data"} <= set(ignored)


def test_makefile_installs_from_the_test_lock_and_can_refresh_both():
    makefile = (ROOT / "Makefile").read_text()
    assert "TEST_LOCK := requirements-test.lock" in makefile
    assert "LOCK := requirements.lock" in makefile
    assert "pip install --quiet --require-hashes -r $(TEST_LOCK)" in makefile
    assert "--no-deps" in makefile  # drawbridge itself adds nothing unpinned
    assert re.search(r"^lock:", makefile, re.M)
    assert "-o $(LOCK) pyproject.toml" in makefile and "-o $(TEST_LOCK) pyproject.toml" in makefile


def test_license_and_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert "drawbridge contributors" in license_text
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    from bot import __version__

    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bot.__version__"}
    assert Version(__version__)

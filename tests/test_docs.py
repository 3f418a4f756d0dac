"""Every setting is documented where an operator looks: .env.example and the README table."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_env_example_and_readme():
    fields = {name.upper() for name in Settings.model_fields}
    env = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    readme = set(re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "README.md").read_text(), re.M))
    assert fields - env == set(), "add these to .env.example with a comment"
    assert env - fields == set(), "these in .env.example are not settings"
    assert fields - readme == set(), "add these to the README configuration table"


def test_every_env_example_setting_has_a_comment():
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z_]+=", line):
            assert lines[i - 1].startswith("#"), f"{line} needs a comment above it"


def test_env_example_itself_is_valid_settings(tmp_path):
    Settings(_env_file=ROOT / ".env.example")

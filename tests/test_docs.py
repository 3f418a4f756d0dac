"""Every setting is documented where an operator looks: .env.example and the README table."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


# a setting's line, or a commented-out one showing its default: `NAME=value` / `# NAME=value`
SETTING_LINE = r"^(?:# )?([A-Z][A-Z0-9_]+)="


def compose_variables() -> set[str]:
    """What compose itself reads from .env: its COMPOSE_* options and compose.yaml's ${VARS}."""
    text = (ROOT / "compose.yaml").read_text()
    return {"COMPOSE_PROFILES"} | set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


def test_every_setting_is_in_env_example_and_readme():
    fields = {name.upper() for name in Settings.model_fields}
    env = set(re.findall(SETTING_LINE, (ROOT / ".env.example").read_text(), re.M))
    readme = set(re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "README.md").read_text(), re.M))
    assert fields - env == set(), "add these to .env.example with a comment"
    assert env - fields - compose_variables() == set(), "these in .env.example are not settings"
    assert fields - readme == set(), "add these to the README configuration table"


def test_every_env_example_setting_has_a_comment():
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(SETTING_LINE, line):
            above = lines[i - 1]
            assert above.startswith("#") and not re.match(SETTING_LINE, above), (
                f"{line} needs a comment above it"
            )


def test_env_example_itself_is_valid_settings(tmp_path):
    Settings(_env_file=ROOT / ".env.example")

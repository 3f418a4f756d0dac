"""POLICY_FILE: read the TOML, check every key, build the Policy; a bad file is one
PolicyFileError naming the file, the line or key, and what is wrong (the caller keeps the old
policy)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import DrawbridgeError
from bot.policy.moderation import Moderation
from bot.policy.tiers import NUMBERS, Tier

MODERATION_KEYS = {
    "banned_words",
    "banned_regex",
    "strip_words",
    "negative_prefix",
    "banned_models",
}
WHO_KEYS = ("discord_roles", "discord_users", "telegram_users", "telegram_chats")
TIER_KEYS = {*WHO_KEYS, *NUMBERS, "models", "presets", "priority", "admin"}
TOP_KEYS = {"moderation", "tiers", "nsfw"}
NSFW_KEYS = {"telegram_chats"}


class PolicyFileError(DrawbridgeError):
    """POLICY_FILE cannot be used; `detail` names the file, where and what."""

    key = "policy.bad_file"


@dataclass(frozen=True)
class Policy:
    """The operator's rules, as loaded (empty: nothing moderated, no tiers)."""

    moderation: Moderation = field(default_factory=Moderation)
    tiers: tuple[Tier, ...] = ()
    nsfw_telegram_chats: frozenset[str] = frozenset()
    source: str = ""


def load_policy(path: Path | None) -> Policy:
    """The policy in `path` (none: the empty policy); PolicyFileError if it is wrong."""
    if path is None:
        return Policy()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad(path, "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path, f"is not valid TOML: {exc}") from None
    return parse_policy(data, path)


def parse_policy(data: dict[str, Any], path: Path) -> Policy:
    """Check the parsed TOML key by key and build the Policy."""
    _unknown(path, "", data, TOP_KEYS)
    mod = data.get("moderation", {})
    if not isinstance(mod, dict):
        raise _bad(path, "[moderation] must be a table")
    _unknown(path, "moderation.", mod, MODERATION_KEYS)
    regexes = []
    for i, text in enumerate(_strings(path, "moderation.banned_regex", mod)):
        try:
            regexes.append(re.compile(text, re.IGNORECASE))
        except re.error as exc:
            raise _bad(
                path, f"moderation.banned_regex[{i}] {text!r} is not a regex: {exc}"
            ) from None
    prefix = mod.get("negative_prefix", "")
    if not isinstance(prefix, str):
        raise _bad(path, "moderation.negative_prefix must be a string")
    moderation = Moderation.build(
        banned_words=_strings(path, "moderation.banned_words", mod),
        banned_regex=regexes,
        strip_words=_strings(path, "moderation.strip_words", mod),
        negative_prefix=prefix,
        banned_models=_strings(path, "moderation.banned_models", mod),
    )
    tiers_table = data.get("tiers", {})
    if not isinstance(tiers_table, dict):
        raise _bad(path, "[tiers] must hold tables like [tiers.NAME]")
    tiers = tuple(_tier(path, name, table) for name, table in tiers_table.items())
    nsfw = data.get("nsfw", {})
    if not isinstance(nsfw, dict):
        raise _bad(path, "[nsfw] must be a table")
    _unknown(path, "nsfw.", nsfw, NSFW_KEYS)
    chats = frozenset(_ids(path, "nsfw.telegram_chats", nsfw))
    return Policy(moderation, tiers, chats, source=str(path))


def _tier(path: Path, name: str, table: Any) -> Tier:
    where = f"tiers.{name}"
    if not isinstance(table, dict):
        raise _bad(path, f"[{where}] must be a table")
    _unknown(path, f"{where}.", table, TIER_KEYS)
    numbers: dict[str, int | None] = {}
    for key in NUMBERS:
        value = table.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise _bad(path, f"{where}.{key} must be a whole number ≥ 0, not {value!r}")
        numbers[key] = value
    priority = table.get("priority", 1)
    if isinstance(priority, bool) or not isinstance(priority, int | float) or priority <= 0:
        raise _bad(path, f"{where}.priority must be a number > 0, not {priority!r}")
    admin = table.get("admin", False)
    if not isinstance(admin, bool):
        raise _bad(path, f"{where}.admin must be true or false, not {admin!r}")
    models = table.get("models")
    presets = table.get("presets")
    return Tier(
        name,
        discord_roles=frozenset(_ids(path, f"{where}.discord_roles", table)),
        discord_users=frozenset(_ids(path, f"{where}.discord_users", table)),
        telegram_users=frozenset(_ids(path, f"{where}.telegram_users", table)),
        telegram_chats=frozenset(_ids(path, f"{where}.telegram_chats", table)),
        models=None if models is None else frozenset(_strings(path, f"{where}.models", table)),
        presets=None if presets is None else frozenset(_strings(path, f"{where}.presets", table)),
        priority=float(priority),
        admin=admin,
        **numbers,  # type: ignore[arg-type]
    )


def _strings(path: Path, key: str, table: dict[str, Any]) -> list[str]:
    value = table.get(key.rsplit(".", 1)[-1], [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(path, f"{key} must be a list of strings")
    return list(value)


def _ids(path: Path, key: str, table: dict[str, Any]) -> list[str]:
    """Ids may be written as numbers or strings (Discord's are too long for some editors)."""
    value = table.get(key.rsplit(".", 1)[-1], [])
    ok = isinstance(value, list) and all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    )
    if not ok:
        raise _bad(path, f"{key} must be a list of ids (numbers or strings)")
    return [str(v).strip() for v in value]


def _unknown(path: Path, prefix: str, table: dict[str, Any], known: set[str]) -> None:
    for key in table:
        if key not in known:
            raise _bad(path, f"unknown key {prefix}{key} (known: {', '.join(sorted(known))})")


def _bad(path: Path, what: str) -> PolicyFileError:
    return PolicyFileError(detail=f"{path}: {what}")

"""Tiers of users: who is in one (Discord roles and ids, Telegram ids and chats) and what it
allows. A user in several tiers gets the most generous value of each field; a field no tier of
the user sets keeps the operator's setting (DAILY_CREDITS, MAX_QUEUED_PER_USER, …)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

NUMBERS = ("daily_credits", "max_queued", "max_pixels", "max_steps", "max_images")


@dataclass(frozen=True)
class Who:
    """Who a tier is for, as the platform names them (ids as strings)."""

    platform: str
    user_id: str
    chat_id: str = ""
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tier:
    """One [tiers.NAME] table (None: not set by this tier)."""

    name: str
    discord_roles: frozenset[str] = frozenset()
    discord_users: frozenset[str] = frozenset()
    telegram_users: frozenset[str] = frozenset()
    telegram_chats: frozenset[str] = frozenset()
    daily_credits: int | None = None
    max_queued: int | None = None
    max_pixels: int | None = None
    max_steps: int | None = None
    max_images: int | None = None
    models: frozenset[str] | None = None  # None: every model
    presets: frozenset[str] | None = None  # None: every preset
    priority: float = 1.0
    admin: bool = False
    names: tuple[str, ...] = field(default=())  # the tiers merged into this one

    def includes(self, who: Who) -> bool:
        """Whether `who` is in this tier."""
        if who.platform == "discord":
            return who.user_id in self.discord_users or bool(self.discord_roles & set(who.roles))
        if who.platform == "telegram":
            return who.user_id in self.telegram_users or who.chat_id in self.telegram_chats
        return False

    @property
    def label(self) -> str:
        """The tier's name as /quota shows it ("gold + helpers" for several)."""
        return " + ".join(self.names or (self.name,))


NO_TIER = Tier("")


def tier_of(tiers: Iterable[Tier], who: Who) -> Tier:
    """The merged tier of `who`: the most generous of each field across their tiers."""
    mine = [tier for tier in tiers if tier.includes(who)]
    if not mine:
        return NO_TIER
    if len(mine) == 1:
        return mine[0]
    numbers: dict[str, int | None] = {}
    for name in NUMBERS:
        values = [v for tier in mine if (v := getattr(tier, name)) is not None]
        numbers[name] = max(values) if values else None
    return Tier(
        "+".join(t.name for t in mine),
        models=_union(t.models for t in mine),
        presets=_union(t.presets for t in mine),
        priority=max(t.priority for t in mine),
        admin=any(t.admin for t in mine),
        names=tuple(t.name for t in mine),
        **numbers,  # type: ignore[arg-type]
    )


def _union(sets: Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    """Allowed names across tiers: None (everything) wins."""
    merged: set[str] = set()
    for allowed in sets:
        if allowed is None:
            return None
        merged |= allowed
    return frozenset(merged)

"""The operator's rules at run time: the loaded policy (reloaded whole, or not at all), pause,
bans with their once-per-period notice, tiers, and the admin notices.

The engine asks it about every job before anything is charged (`admit`), and the adapters,
through the service, about every command (`ban_notice`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.checkpoints import model_key
from bot.errors import Banned, Paused, TierRefused
from bot.payload import Resolved
from bot.policy import Policy, Tier, Who, load_policy, tier_of
from bot.settings import Settings
from bot.types import Requester
from storage.db import Database
from storage.models import Ban, utcnow

log = logging.getLogger(__name__)

BAN_NOTICE_PERIOD = 600.0  # a banned user hears why at most once per this many seconds
BAN_REFRESH = 2.0  # seconds between reads of the bans table (`drawbridge ban` from the CLI)
# users whose last roles and chat are remembered for tiers by key (the oldest seen go first)
SEEN_MAX = 50_000

Notify = Callable[[str, dict[str, object]], None]  # catalogue key, its parameters


@dataclass(frozen=True)
class BanNotice:
    """What a banned user's input gets: `line` to say privately, or nothing (None)."""

    banned: bool
    line: Banned | None = None


def who_of(requester: Requester) -> Who:
    """A requester as tiers see them."""
    return Who(requester.platform, requester.user_id, requester.chat_id, requester.roles)


class Governor:
    """Policy, pause, bans, tiers; `notify` hands admin notices to the adapters."""

    def __init__(self, settings: Settings, db: Database, *, seen_max: int = SEEN_MAX) -> None:
        self.settings = settings
        self._seen_max = seen_max
        self.db = db
        self.policy: Policy = load_policy(settings.policy_file)
        self.paused: str | None = None
        self._noticed: dict[str, float] = {}
        self._seen: dict[str, Requester] = {}  # the last requester of each key (their roles)
        self._listeners: list[Notify] = []
        self._health: dict[int, bool] = {}  # backend index → up, as last seen
        self._told: dict[int, tuple[bool, float]] = {}  # … as last told the admins, and when
        self._later: dict[int, asyncio.TimerHandle] = {}
        # bans in memory: every command and press is checked, without a database round trip
        # (which would also let later updates overtake earlier ones)
        self._bans: dict[str, Ban] = {}
        self._changes = 0  # bans and unbans of this process, so a read in flight cannot undo them
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the bans, then keep reading them every BAN_REFRESH seconds."""
        await self.refresh_bans()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="bans")

    async def stop(self) -> None:
        """Stop reading the bans."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(BAN_REFRESH)
            try:
                await self.refresh_bans()
            except Exception as exc:  # the database is away: the bans known stay in force
                log.info("bans not read again: %s", exc)

    async def refresh_bans(self) -> None:
        """Read every ban (the CLI of another process may have changed them)."""
        changes = self._changes
        found = {ban.user_key: ban for ban in await self.db.bans.all()}
        if changes == self._changes:  # else a ban written meanwhile would be lost: next time
            self._bans = found

    def banned(self, ban: Ban) -> None:
        """A ban this process wrote: in force at once."""
        self._changes += 1
        self._bans[ban.user_key] = ban

    def unbanned(self, user_key: str) -> None:
        """A ban this process lifted."""
        self._changes += 1
        self._bans.pop(user_key, None)

    # --- notices ---------------------------------------------------------------------
    def listen(self, notify: Notify) -> None:
        """Hear admin notices (each adapter sends them to its admins)."""
        self._listeners.append(notify)

    def notify(self, key: str, **params: object) -> None:
        """Tell every listener; a failing listener does not stop the others."""
        for listener in self._listeners:
            try:
                listener(key, params)
            except Exception as exc:  # a notice is never worth failing the caller
                log.warning("admin notice %s not handed over: %s", key, exc)

    def backend_changed(self, index: int, name: str, up: bool) -> None:
        """A backend went down or came back: tell the admins, at most one notice per backend
        per ADMIN_NOTICE_DEBOUNCE seconds (a flapping backend; its state at the end of the
        quiet period is told then, if it differs from the last one told)."""
        self._health[index] = up
        last = self._told.get(index)
        if last is not None and last[0] == up:
            return
        now = time.monotonic()
        quiet = self.settings.admin_notice_debounce
        if last is not None and now - last[1] < quiet:
            if index not in self._later:
                loop = asyncio.get_running_loop()
                self._later[index] = loop.call_later(
                    quiet - (now - last[1]), self._tell_later, index, name
                )
            return
        self._told[index] = (up, now)
        self.notify("notice.backend_up" if up else "notice.backend_down", backend=name)

    def _tell_later(self, index: int, name: str) -> None:
        self._later.pop(index, None)
        self.backend_changed(index, name, self._health[index])

    # --- the policy file ---------------------------------------------------------------
    def reload(self) -> Policy:
        """Read POLICY_FILE again; a bad file keeps the old policy, tells the admins and
        raises PolicyFileError."""
        try:
            policy = load_policy(self.settings.policy_file)
        except Exception as exc:
            detail = str(getattr(exc, "params", {}).get("detail", exc))
            log.warning("policy not reloaded, the old one stays: %s", detail)
            self.notify("notice.policy_bad", detail=detail)
            raise
        self.policy = policy
        log.info("policy reloaded from %s", self.settings.policy_file)
        return policy

    # --- pause -------------------------------------------------------------------------
    def pause(self, reason: str) -> None:
        """Refuse new jobs with `reason`; queued ones wait."""
        self.paused = reason
        self.notify("notice.paused", reason=reason or "-")

    def resume(self) -> bool:
        """Take jobs again; False if it was not paused."""
        was, self.paused = self.paused is not None, None
        if was:
            self.notify("notice.resumed")
        return was

    # --- who may do what ---------------------------------------------------------------
    def tier(self, requester: Requester) -> Tier:
        """The user's merged tier (the empty tier when in none)."""
        if requester.roles or requester.chat_id:
            seen = self._seen
            if seen.get(requester.key) is not requester:
                seen.pop(requester.key, None)  # to the end: the most recently seen
                seen[requester.key] = requester
                if len(seen) > self._seen_max:
                    del seen[next(iter(seen))]
        return tier_of(self.policy.tiers, who_of(requester))

    def allowance_by_key(self, user_key: str) -> int:
        """Daily credits of a user known by key only (the daily reset, the CLI): their tier by
        id, or by the roles they last came with."""
        seen = self._seen.get(user_key)
        if seen is None:
            platform, _, user_id = user_key.partition(":")
            seen = Requester(platform, user_id, is_admin=self.settings.is_admin(user_key))
        return self.allowance(seen)

    def is_admin(self, requester: Requester) -> bool:
        """ADMIN_IDS, or a tier marked admin = true."""
        return requester.is_admin or self.tier(requester).admin

    def allowance(self, requester: Requester) -> int:
        """Daily credits: the tier's, else the settings'."""
        tier = self.tier(requester)
        if tier.daily_credits is not None:
            return tier.daily_credits
        return self.settings.allowance_for(requester.key)

    def max_queued(self, requester: Requester) -> int:
        """Jobs the user may have queued at once."""
        tier = self.tier(requester)
        return self.settings.max_queued_per_user if tier.max_queued is None else tier.max_queued

    def admit(self, requester: Requester, spec: Resolved) -> Resolved:
        """The job as it may run (stripped words gone, negative prefix added), or raise:
        Paused, PolicyRefused or TierRefused; nothing is charged yet."""
        if self.paused is not None:
            raise Paused(reason=self.paused or "-")
        moderation = self.policy.moderation
        prompt = moderation.cleaned(spec.prompt)
        moderation.check(prompt, spec.negative, spec.model)
        self._within_tier(self.tier(requester), spec)
        negative = moderation.negative(spec.negative)
        if prompt == spec.prompt and negative == spec.negative:
            return spec
        return dataclasses.replace(spec, prompt=prompt, negative=negative)

    def _within_tier(self, tier: Tier, spec: Resolved) -> None:
        width, height = spec.width, spec.height
        if tier.max_pixels is not None and width * height > tier.max_pixels:
            raise TierRefused("tier.too_big", pixels=tier.max_pixels, tier=tier.label)
        if tier.max_steps is not None and spec.steps > tier.max_steps:
            raise TierRefused("tier.too_many_steps", steps=tier.max_steps, tier=tier.label)
        if tier.max_images is not None and spec.count > tier.max_images:
            raise TierRefused("tier.too_many_images", images=tier.max_images, tier=tier.label)
        if tier.models is not None and spec.model:
            allowed = {model_key(m) for m in tier.models}
            if model_key(spec.model) not in allowed:
                raise TierRefused("tier.model", tier=tier.label)
        if tier.presets is not None and spec.preset and spec.preset not in tier.presets:
            if spec.preset != "default":
                raise TierRefused("tier.preset", tier=tier.label)

    # --- bans --------------------------------------------------------------------------
    async def ban_of(self, user_key: str) -> Ban | None:
        """The ban in force on `user_key`, if any (from memory: no database round trip)."""
        ban = self._bans.get(user_key)
        if ban is None or (ban.until is not None and ban.until <= utcnow()):
            return None
        return ban

    async def check_ban(self, requester: Requester) -> None:
        """Raise Banned when the user is banned."""
        ban = await self.ban_of(requester.key)
        if ban is not None:
            raise Banned(until=until_text(ban.until))

    async def ban_notice(self, requester: Requester) -> BanNotice:
        """For a command or press: whether the user is banned, and the one line to say (None
        when they were told within BAN_NOTICE_PERIOD: then nothing at all is said)."""
        ban = await self.ban_of(requester.key)
        if ban is None:
            return BanNotice(False)
        now = time.monotonic()
        if now - self._noticed.get(requester.key, -BAN_NOTICE_PERIOD) < BAN_NOTICE_PERIOD:
            return BanNotice(True)
        self._noticed[requester.key] = now
        return BanNotice(True, Banned(until=until_text(ban.until)))


def until_text(until: datetime | None) -> str:
    """The end of a ban as users read it ("2026-12-08 14:00 UTC", or "-" when none)."""
    return "-" if until is None else f"{until:%Y-%m-%d %H:%M} UTC"

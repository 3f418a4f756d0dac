"""A burst of jobs from one user in one chat, shown in ONE status message.

    1st job queued ──► its own status message, exactly as a single /draw
    2nd job queued while the 1st still waits ──► a Burst of both: the 1st's message becomes
        "⏳ Your 2 jobs are queued: #3, #4 — the next starts in about 20 s."
    more jobs queued ──► join the Burst (their own status is never sent)
    a member starts ──► leaves the list (its result follows in its own message, as today; one
        that runs long enough for progress and previews gets its own status, as today)
    the last one leaves ──► the message is deleted, or says "Cancelled" when they were

The message is a `StatusMessage`: its first showing goes at `Priority.RESULT` (it is the
acknowledgement), its edits at `Priority.PROGRESS`, coalesced to the newest state and spaced by
the chat's edit gap, as a single job's; while the next job starts within that gap, positions
that merely moved up are not edited in (as a single job's "starts soon"). A button on it
cancels every job it lists.

Platform-neutral: the adapter gives each job a `Seat` (its replier) and each burst a `Board`
(how the message is sent, edited and deleted, with the platform's cancel button).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.kit.outbox import Lane, Outbox, Priority
from adapters.kit.status import StatusMessage, StatusView
from bot.i18n import t
from bot.texts import eta_text

BurstKey = Hashable  # (chat, topic, user): whose jobs, where
LISTED = 10  # positions listed in the message; the rest are "…"


class Seat(Protocol):
    """A job's replier, as a burst sees it."""

    def joined(self, burst: Burst) -> None:
        """It is shown in `burst` from now on: stop showing its own status; never waits."""

    def hand_over(self) -> Any | None:
        """Its own status message, given to the burst (it keeps none), or None."""

    def placed(self, message: Any) -> None:
        """The burst's message is `message` now: stored with the job, so that after a
        restart the job edits it rather than leave it behind; never waits."""


class Board(Protocol):
    """The platform's calls for one burst's message."""

    async def show(self, message: Any | None, text: str, cancel: int) -> Any | None:
        """Edit `message` (None: send one) to `text`, with a button cancelling `cancel` jobs
        (0: none); the message shown, None if it is gone."""

    def drop(self, message: Any) -> None:
        """Delete `message` (through the outbox; never waits)."""


@dataclass(frozen=True)
class Place:
    """Where a waiting job is: its position, when it should start, what its status notes."""

    position: int
    eta: float = 0.0
    notes: tuple[str, ...] = ()
    no_backend: bool = False


@dataclass(eq=False)
class _Member:
    seat: Seat
    position: int = 0
    eta: float = 0.0
    notes: tuple[str, ...] = ()  # the job's notes ("runs relaxed", a model replaced, …)
    no_backend: bool = False  # it waits for a backend to come back
    adopted: bool = False  # its own status message was handed over (or had none)
    placed: Any | None = None  # the burst message stored with the job


class Burst:
    """One user's waiting jobs in one chat, in one coalesced status message."""

    def __init__(
        self, bursts: Bursts, key: BurstKey, lane: Lane, locale: str | None, board: Board
    ) -> None:
        self.bursts = bursts
        self.key = key
        self.locale = locale
        self.board = board
        self.members: dict[str, _Member] = {}  # in the order they joined
        self.message: Any | None = None
        # credits of members cancelled (None: none was): said when the last one leaves
        self.cancelled: int | None = None
        self.said_soon = False  # the message says the next job starts within an edit gap
        self.status = StatusMessage(self._show, bursts.outbox, lane, label=f"burst {key}")

    def job_ids(self) -> list[str]:
        """The jobs it lists (a cancel button cancels these)."""
        return list(self.members)

    def queued(self, job_id: str, place: Place) -> None:
        """A member's new place in the queue."""
        member = self.members.get(job_id)
        if member is None:
            return
        moved = (member.notes, member.no_backend) == (place.notes, place.no_backend)
        member.position, member.eta = place.position, place.eta
        member.notes, member.no_backend = place.notes, place.no_backend
        if moved and self.said_soon and self._soon():
            return  # the next starts before this edit would be seen for long: one call less
        self._want()

    def leave(self, job_id: str, *, cancelled: int | None = None) -> None:
        """A member started or ended; `cancelled`: it was cancelled, refunding that many
        credits."""
        if self.members.pop(job_id, None) is None:
            return
        if cancelled is not None:
            self.cancelled = (self.cancelled or 0) + cancelled
        if self.members:
            self._want()
            return
        self.bursts.forget(self)
        if self.cancelled is not None:  # the message stays, saying so (no member edits it any more)
            text = t(self.locale, "queue.cancelled", credits=self.cancelled)
            self.status.want(text, None, cancel=False)
            return
        self.status.closed = True
        self.bursts.outbox.cancel(self.status.lane, self.status.key)
        self.bursts.outbox.post(
            self.status.lane,
            self._drop,
            what="burst status deletion",
            priority=Priority.CLEANUP,
            counts=False,
        )

    def _add(self, job_id: str, member: _Member) -> None:
        member.seat.joined(self)
        self.members[job_id] = member
        self._want()

    def _soon(self) -> bool:
        first = min(self.members.values(), key=lambda m: m.position, default=None)
        gap = self.bursts.outbox.progress_gap(self.status.lane)
        return first is not None and (first.position <= 1 or first.eta < gap)

    def text(self) -> str:
        """What the message says now."""
        waiting = sorted(self.members.values(), key=lambda m: m.position)
        lines = list(dict.fromkeys(n for m in waiting for n in m.notes))
        if waiting:
            listed = ", ".join(f"#{m.position}" for m in waiting[:LISTED])
            if len(waiting) > LISTED:
                listed += ", …"
            first = waiting[0]
            if any(m.no_backend for m in waiting):
                line = t(self.locale, "burst.waiting_no_backend", count=len(waiting), jobs=listed)
            elif first.position <= 1:
                line = t(self.locale, "burst.queued_next", count=len(waiting), jobs=listed)
            else:
                eta = eta_text(self.locale, first.eta)
                line = t(self.locale, "burst.queued", count=len(waiting), jobs=listed, eta=eta)
            lines.append(line)
        return "\n".join(lines)

    def _want(self) -> None:
        self.said_soon = self._soon()
        self.status.want(self.text(), None, cancel=True)

    async def _show(self, view: StatusView) -> bool:
        # Adopt here, in the chat's lane: a member's own status sent just before it joined
        # has been answered by now, so its message is known and becomes (or makes way for)
        # the burst's.
        for member in self.members.values():
            if member.adopted:
                continue
            member.adopted = True
            handed = member.seat.hand_over()
            if handed is None or handed == self.message:  # after a restart several hold it
                continue
            if self.message is None:
                self.message = handed
            else:
                self.board.drop(handed)
        cancel = len(self.members) if view.cancel else 0
        shown = await self.board.show(self.message, view.text, cancel)
        self.message = shown
        if shown is None:
            return False
        for member in self.members.values():
            if member.placed != shown:
                member.placed = shown
                member.seat.placed(shown)
        return True

    async def _drop(self) -> None:
        # after the last edit in flight (the same lane): the message it may have just sent
        if self.message is not None:
            message, self.message = self.message, None
            self.board.drop(message)


class Bursts:
    """Every burst of one adapter, by (chat, topic, user), and the single jobs that would
    start one."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._bursts: dict[BurstKey, Burst] = {}
        # the one waiting job of a (chat, topic, user) that shows its own status
        # (and how its burst's message would reply to its command)
        self._single: dict[BurstKey, tuple[str, _Member, Callable[[], Board]]] = {}

    def queued(
        self,
        key: BurstKey,
        lane: Lane,
        job_id: str,
        seat: Seat,
        place: Place,
        *,
        locale: str | None,
        board: Callable[[], Board],
    ) -> Burst | None:
        """A job waits at `place`: the burst it is shown in now, or None (it is the user's
        only waiting job here, and shows its own status)."""
        burst = self._bursts.get(key)
        member = _Member(seat, place.position, place.eta, place.notes, place.no_backend)
        if burst is not None:
            if job_id in burst.members:
                burst.queued(job_id, place)
            else:
                burst._add(job_id, member)
            return burst
        single = self._single.get(key)
        if single is None or single[0] == job_id:
            self._single[key] = (job_id, member, board)
            return None
        del self._single[key]
        first_id, first, first_board = single
        burst = self._bursts[key] = Burst(self, key, lane, locale, first_board())
        burst._add(first_id, first)
        burst._add(job_id, member)
        return burst

    def waits_no_more(self, key: BurstKey, job_id: str) -> None:
        """A job that showed its own status runs or ended: it starts no burst."""
        single = self._single.get(key)
        if single is not None and single[0] == job_id:
            del self._single[key]

    def find(self, key: BurstKey) -> Burst | None:
        """The burst of (chat, topic, user), if one is shown."""
        return self._bursts.get(key)

    def forget(self, burst: Burst) -> None:
        """The burst has no members any more."""
        if self._bursts.get(burst.key) is burst:
            del self._bursts[burst.key]

    def __len__(self) -> int:
        return len(self._bursts)

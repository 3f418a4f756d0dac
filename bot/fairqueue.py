"""Per-user queues served fairly on job cost (start-time fair queuing).

Each job gets a virtual finish tag when it is queued: ``start = max(V, the user's last tag)``,
``tag = start + cost / weight`` (weight: the user's tier priority, 1 by default), where V is
the start tag of the job most recently taken. Jobs leave in tag order, so a user who queues
100 jobs gets tags far in the future while another user's single job is tagged near V and
goes next: it waits for about one job per active user, whatever the burst.

A job's tag never changes while it is queued, so the fair order of ALL queued jobs is one sorted
sequence: `Ranked` keeps it (sorted blocks of at most 2 × LOAD jobs with a cost sum per block;
counts and costs of the blocks before one in Fenwick trees, brought up to date when a position
is asked for). Push, take and position are O(log n); the next job and the first k in order are
O(1) and O(k). Per user the queue keeps a count and the last tag.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

LOAD = 256  # jobs per block: a block splits at 2 × LOAD


@dataclass(slots=True, eq=False)
class Entry:
    """A queued job as the queue sees it."""

    job_id: str
    user: str
    cost: float
    model: str | None = None
    item: Any = None
    needs: Any = None  # what it needs of a backend (bot.backends.Needs), for routing
    tag: float = field(default=0.0)
    seq: int = 0
    skips: int = 0
    # the user's tier priority: a weight-2 job advances its user's virtual time half as far
    weight: float = 1.0
    relax: bool = False  # a free relax job: bot.relaxqueue keeps those in a lane of their own

    @property
    def span(self) -> float:
        """How far the job moves its user's virtual time: cost over weight."""
        return self.cost / self.weight if self.weight > 0 else self.cost

    @property
    def order(self) -> tuple[float, int]:
        """Sort key: virtual finish tag, then arrival (ties go to the earlier job)."""
        return (self.tag, self.seq)


def _last_seq(block: list[Entry]) -> int:
    return block[-1].seq


_seq_of = attrgetter("seq")


class Ranked:
    """Entries sorted by (tag, seq), with rank and cost-before lookups (an order-statistic list).

    The sort keys are the tags alone (floats bisect twice as fast as tuples): an entry is
    inserted after every entry with an equal tag, and seq only grows, so entries with equal
    tags lie in seq order and an entry is found among them by bisecting on seq.

    Push and pop are the hot path (every submit, every job start): a push is two C bisects,
    two list inserts and a note of which block grew; the head leaves from the first block,
    which no tree covers. The Fenwick trees over the other blocks take the noted changes when
    a rank is asked for (O(log n) each), or are rebuilt (O(blocks)) after blocks split or
    vanished or when more changes were noted than a rebuild costs."""

    __slots__ = (
        "_fen_c",
        "_fen_n",
        "_items",
        "_keys",
        "_len",
        "_maxes",
        "_noted",
        "_noted_c",
        "_split_at",
        "_stale",
        "_totals",
    )

    def __init__(self, load: int = LOAD) -> None:
        self._split_at = 2 * load
        self._keys: list[list[float]] = []  # per block: the entries' tags, in order
        self._items: list[list[Entry]] = []
        self._totals: list[float] = []  # per block: the sum of its costs
        self._maxes: list[float] = []  # per block: its last tag
        # Fenwick trees over the blocks after the first: how many entries, and their cost
        self._fen_n: list[int] = [0]
        self._fen_c: list[float] = [0.0]
        # changes not in the trees yet: the block (~block for a removal) and the cost
        self._noted: list[int] = []
        self._noted_c: list[float] = []
        self._stale = True  # blocks split or vanished since the trees were built
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def _note(self, block: int, cost: float) -> None:
        """Remember that an entry of `cost` came into a block after the first (`block`) or
        left it (`~block`, cost negated), for the trees; past a rebuild's worth, rebuild."""
        if self._stale:
            return
        self._noted.append(block)
        self._noted_c.append(cost)
        if len(self._noted) > len(self._keys) + 32:
            self._stale = True

    def _catch_up(self) -> None:
        """Bring the trees up to date, before a rank."""
        if self._stale:
            self._rebuild()
            return
        fen_n, fen_c = self._fen_n, self._fen_c
        size = len(fen_n) - 1
        for i, cost in zip(self._noted, self._noted_c, strict=True):
            count = 1 if i > 0 else -1
            i = i if i > 0 else ~i
            while i <= size:
                fen_n[i] += count
                fen_c[i] += cost
                i += i & -i
        self._noted.clear()
        self._noted_c.clear()

    def _rebuild(self) -> None:
        size = len(self._keys) - 1
        fen_n = [0] * (size + 1)
        fen_c = [0.0] * (size + 1)
        for i in range(1, size + 1):
            fen_n[i] += len(self._keys[i])
            fen_c[i] += self._totals[i]
            up = i + (i & -i)
            if up <= size:
                fen_n[up] += fen_n[i]
                fen_c[up] += fen_c[i]
        self._fen_n, self._fen_c = fen_n, fen_c
        self._noted.clear()
        self._noted_c.clear()
        self._stale = False

    def _before(self, block: int) -> tuple[int, float]:
        """(entries, cost) in the blocks before `block` (the trees up to date)."""
        if block == 0:
            return 0, 0.0
        count, cost = len(self._keys[0]), self._totals[0]
        i = block - 1
        while i > 0:
            count += self._fen_n[i]
            cost += self._fen_c[i]
            i -= i & -i
        return count, cost

    def add(self, entry: Entry) -> None:
        """Insert an entry at its place: after every entry with a tag up to its own (its seq
        is the newest, so ties stay in seq order)."""
        tag = entry.tag
        maxes = self._maxes
        self._len += 1
        if not maxes:
            self._keys.append([tag])
            self._items.append([entry])
            self._totals.append(entry.cost)
            maxes.append(tag)
            self._stale = True
            return
        b = bisect_right(maxes, tag)
        if b == len(maxes):
            b -= 1
            maxes[b] = tag  # at or past every entry: the new last of the last block
        keys = self._keys[b]
        j = bisect_right(keys, tag)
        keys.insert(j, tag)
        self._items[b].insert(j, entry)
        self._totals[b] += entry.cost
        if len(keys) > self._split_at:
            self._split(b)
        elif b:
            self._note(b, entry.cost)

    def _split(self, b: int) -> None:
        keys, items = self._keys[b], self._items[b]
        half = len(keys) // 2
        self._keys.insert(b + 1, keys[half:])
        self._items.insert(b + 1, items[half:])
        del keys[half:], items[half:]
        upper = sum(e.cost for e in self._items[b + 1])
        self._totals[b : b + 1] = [self._totals[b] - upper, upper]
        self._maxes.insert(b + 1, self._maxes[b])
        self._maxes[b] = keys[-1]
        self._stale = True

    def _locate(self, entry: Entry) -> tuple[int, int]:
        tag, seq, maxes = entry.tag, entry.seq, self._maxes
        b = bisect_left(maxes, tag)
        if b < len(maxes) and maxes[b] == tag:
            # equal tags may run on over several blocks: the one whose last seq reaches it
            run_end = bisect_right(maxes, tag, b)
            b = bisect_left(self._items, seq, b, run_end, key=_last_seq)
        if b < len(maxes):
            keys = self._keys[b]
            lo = bisect_left(keys, tag)
            hi = bisect_right(keys, tag, lo)
            items = self._items[b]
            j = bisect_left(items, seq, lo, hi, key=_seq_of)
            if j < hi and items[j] is entry:
                return b, j
        raise KeyError(entry.job_id)

    def _drop_block(self, b: int) -> None:
        del self._keys[b], self._items[b], self._totals[b], self._maxes[b]
        self._stale = True

    def discard(self, entry: Entry) -> None:
        """Remove an entry (KeyError if it is not here)."""
        if self._items and self._items[0][0] is entry:
            self.pop_first()  # the head: the common case, no search
            return
        b, j = self._locate(entry)
        keys = self._keys[b]
        del keys[j]
        del self._items[b][j]
        self._len -= 1
        if not keys:
            self._drop_block(b)
            return
        if j == len(keys):
            self._maxes[b] = keys[-1]
        self._totals[b] -= entry.cost
        if b:
            self._note(~b, -entry.cost)

    def pop_first(self) -> Entry | None:
        """Remove and return the lowest entry (it lives in the first block)."""
        items = self._items
        if not items:
            return None
        first = items[0]
        entry = first.pop(0)
        self._len -= 1
        if first:
            del self._keys[0][0]
            self._totals[0] -= entry.cost
        else:
            self._drop_block(0)
        return entry

    def rank(self, entry: Entry) -> tuple[int, float]:
        """(entries, total cost) ordered before this one."""
        b, j = self._locate(entry)
        if self._stale or self._noted:
            self._catch_up()
        count, cost = self._before(b)
        items = self._items[b]
        if 2 * j <= len(items):  # the shorter side of the block: at most LOAD entries summed
            return count + j, cost + sum(e.cost for e in items[:j])
        return count + j, cost + self._totals[b] - sum(e.cost for e in items[j:])

    def first(self) -> Entry | None:
        """The lowest entry."""
        return self._items[0][0] if self._items else None

    def __iter__(self) -> Iterator[Entry]:
        return itertools.chain.from_iterable(self._items)


class FairQueue:
    """Fair queue over users; not thread-safe, used from the event loop only."""

    __slots__ = ("_by_id", "_last", "_ranked", "_seq", "_users", "vtime")

    def __init__(self, *, load: int = LOAD) -> None:
        # per user, how many jobs are queued (the jobs themselves are in `_ranked`, in order)
        self._users: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._ranked = Ranked(load)
        self._by_id: dict[str, Entry] = {}
        self._seq = itertools.count()
        self.vtime = 0.0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._by_id

    def get(self, job_id: str) -> Entry | None:
        """The queued entry for a job id."""
        return self._by_id.get(job_id)

    def count(self, user: str) -> int:
        """How many jobs this user has queued."""
        return self._users.get(user, 0)

    def users(self) -> int:
        """Users with at least one queued job."""
        return len(self._users)

    def push(self, entry: Entry) -> None:
        """Queue a job behind the user's other jobs, tagged fairly."""
        user = entry.user
        last = self._last.get(user, 0.0)
        vtime = self.vtime
        tag = entry.tag = (last if last > vtime else vtime) + entry.span
        entry.seq = next(self._seq)
        self._last[user] = tag
        self._by_id[entry.job_id] = entry
        users = self._users
        users[user] = users.get(user, 0) + 1
        self._ranked.add(entry)

    def push_front(self, entry: Entry) -> None:
        """Put a job back at the very head (a retry after its backend failed)."""
        head = self._ranked.first()
        entry.tag = min(self.vtime, head.tag if head is not None else self.vtime) - 1e-9
        entry.seq = next(self._seq)
        self._by_id[entry.job_id] = entry
        self._users[entry.user] = self._users.get(entry.user, 0) + 1
        self._ranked.add(entry)

    def peek(self) -> Entry | None:
        """The job that would be taken next."""
        return self._ranked.first()

    def pop(self) -> Entry | None:
        """Take the next job in fair order."""
        entry = self._ranked.pop_first()
        if entry is None:
            return None
        del self._by_id[entry.job_id]
        self._unlist(entry)
        start = entry.tag - entry.span
        if start > self.vtime:
            self.vtime = start
        return entry

    def take(self, job_id: str) -> Entry | None:
        """Take a particular job (the dispatcher's model-aware pick); advances virtual time."""
        entry = self.remove(job_id)
        if entry is not None:
            self.vtime = max(self.vtime, entry.tag - entry.span)
        return entry

    def remove(self, job_id: str) -> Entry | None:
        """Drop a job (cancelled); returns it, or None if it was not queued."""
        entry = self._by_id.pop(job_id, None)
        if entry is None:
            return None
        self._unlist(entry)
        self._ranked.discard(entry)
        return entry

    def _unlist(self, entry: Entry) -> None:
        users, user = self._users, entry.user
        left = users[user] - 1
        if left:
            users[user] = left
        else:
            del users[user]

    def in_order(self, limit: int | None = None) -> Iterator[Entry]:
        """Queued jobs in the order they would be taken (up to `limit`)."""
        return itertools.islice(self._ranked, limit)

    def first_matching(self, predicate: Callable[[Entry], bool], depth: int) -> Entry | None:
        """The first of the next `depth` jobs (fair order) that satisfies `predicate`."""
        for entry in self.in_order(depth):
            if predicate(entry):
                return entry
        return None

    def ahead(self, job_id: str) -> tuple[int, float]:
        """(jobs, total cost) that would be taken before this one."""
        entry = self._by_id.get(job_id)
        if entry is None:
            return 0, 0.0
        return self._ranked.rank(entry)

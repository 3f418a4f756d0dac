"""Per-user queues served fairly on job cost (start-time fair queuing).

Each job gets a virtual finish tag when it is queued: ``start = max(V, the user's last tag)``,
``tag = start + cost / weight`` (weight: the user's tier priority, 1 by default), where V is the start tag of the job most recently taken. Jobs leave in tag
order, so a user who queues 100 jobs gets tags far in the future while another user's single job
is tagged near V and goes next: it waits for about one job per active user, whatever the burst.

Only the head of each user's queue sits in the heap, so push and pop are O(log users).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


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


class FairQueue:
    """Fair queue over users; not thread-safe, used from the event loop only."""

    def __init__(self) -> None:
        self._users: dict[str, deque[Entry]] = {}
        self._last: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
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
        q = self._users.get(user)
        return len(q) if q else 0

    def users(self) -> int:
        """Users with at least one queued job."""
        return len(self._users)

    def _publish_head(self, user: str) -> None:
        q = self._users.get(user)
        if not q:
            self._users.pop(user, None)
            return
        heapq.heappush(self._heap, (q[0].tag, q[0].seq, user))

    def push(self, entry: Entry) -> None:
        """Queue a job behind the user's other jobs, tagged fairly."""
        start = max(self.vtime, self._last.get(entry.user, 0.0))
        entry.tag = start + entry.span
        entry.seq = next(self._seq)
        self._last[entry.user] = entry.tag
        q = self._users.get(entry.user)
        self._by_id[entry.job_id] = entry
        if q:
            q.append(entry)
        else:
            self._users[entry.user] = deque([entry])
            self._publish_head(entry.user)

    def push_front(self, entry: Entry) -> None:
        """Put a job back at the very head (a retry after its backend failed)."""
        heads = [q[0].tag for q in self._users.values()]
        entry.tag = min([self.vtime, *heads]) - 1e-9
        entry.seq = next(self._seq)
        self._by_id[entry.job_id] = entry
        q = self._users.setdefault(entry.user, deque())
        q.appendleft(entry)
        self._publish_head(entry.user)

    def _valid_top(self) -> tuple[float, int, str] | None:
        while self._heap:
            tag, seq, user = self._heap[0]
            q = self._users.get(user)
            if q and q[0].seq == seq and q[0].tag == tag:
                return self._heap[0]
            heapq.heappop(self._heap)  # stale: that head left or changed
        return None

    def peek(self) -> Entry | None:
        """The job that would be taken next."""
        top = self._valid_top()
        return self._users[top[2]][0] if top else None

    def pop(self) -> Entry | None:
        """Take the next job in fair order."""
        top = self._valid_top()
        if top is None:
            return None
        return self.take(self._users[top[2]][0].job_id)

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
        q = self._users[entry.user]
        was_head = q[0] is entry
        q.remove(entry)
        if was_head or not q:
            self._publish_head(entry.user)
        return entry

    def in_order(self, limit: int | None = None) -> Iterator[Entry]:
        """Queued jobs in the order they would be taken (up to `limit`)."""
        heads = [(q[0].tag, q[0].seq, user, 0) for user, q in self._users.items()]
        heapq.heapify(heads)
        produced = 0
        while heads and (limit is None or produced < limit):
            _tag, _seq, user, pos = heapq.heappop(heads)
            q = self._users[user]
            yield q[pos]
            produced += 1
            if pos + 1 < len(q):
                nxt = q[pos + 1]
                heapq.heappush(heads, (nxt.tag, nxt.seq, user, pos + 1))

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
        jobs, total = 0, 0.0
        key = entry.order
        for q in self._users.values():
            for other in q:
                if other.order >= key:
                    break  # tags rise along each user's queue
                jobs += 1
                total += other.cost
        return jobs, total

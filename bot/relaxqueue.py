"""The queue in two lanes: jobs with credits, and relax jobs (free, RELAX_MODE) behind them.

The credited lane is the fair queue itself (this class extends it); relax jobs wait in a fair
queue of their own. A relax job is taken only when no credited job waits at all: the
dispatcher chooses late (when a backend is about to be free), and `peek` and `first_matching`
see the relax lane only while the credited one is empty, so "no credited job waits" is judged
at that moment, exactly. Positions of relax jobs count every credited job as ahead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bot.fairqueue import Entry, FairQueue


class LaneQueue(FairQueue):
    """Credited jobs first (this queue), relax jobs (`entry.relax`) only when none is queued."""

    def __init__(self) -> None:
        super().__init__()
        self.relaxed = FairQueue()

    def _credited(self) -> int:
        return super().__len__()

    def __len__(self) -> int:
        return self._credited() + len(self.relaxed)

    def __contains__(self, job_id: object) -> bool:
        return super().__contains__(job_id) or job_id in self.relaxed

    def get(self, job_id: str) -> Entry | None:
        """The queued entry for a job id."""
        return super().get(job_id) or self.relaxed.get(job_id)

    def count(self, user: str) -> int:
        """How many jobs this user has queued, in both lanes."""
        return super().count(user) + self.relaxed.count(user)

    def users(self) -> int:
        """Users with a queued job, per lane (one with jobs in both counts twice)."""
        return super().users() + self.relaxed.users()

    def push(self, entry: Entry) -> None:
        """Queue a job in its lane, tagged fairly there."""
        if entry.relax:
            self.relaxed.push(entry)
        else:
            super().push(entry)

    def push_front(self, entry: Entry) -> None:
        """Put a job back at the head of its lane (a retry)."""
        if entry.relax:
            self.relaxed.push_front(entry)
        else:
            super().push_front(entry)

    def peek(self) -> Entry | None:
        """The job that would be taken next: credited first."""
        return super().peek() if self._credited() else self.relaxed.peek()

    def pop(self) -> Entry | None:
        """Take the next job: credited first."""
        return super().pop() if self._credited() else self.relaxed.pop()

    def take(self, job_id: str) -> Entry | None:
        """Take a particular job."""
        if job_id in self.relaxed:
            return self.relaxed.take(job_id)
        return super().take(job_id)

    def remove(self, job_id: str) -> Entry | None:
        """Drop a job (cancelled)."""
        if job_id in self.relaxed:
            return self.relaxed.remove(job_id)
        return super().remove(job_id)

    def in_order(self, limit: int | None = None) -> Iterator[Entry]:
        """Queued jobs in the order they would be taken: credited, then relax."""
        produced = 0
        for entry in super().in_order(limit):
            yield entry
            produced += 1
        if limit is None or produced < limit:
            yield from self.relaxed.in_order(None if limit is None else limit - produced)

    def first_matching(self, predicate: Callable[[Entry], bool], depth: int) -> Entry | None:
        """The first of the next `depth` jobs that satisfies `predicate` in the lane jobs are
        taken from now (relax jobs only when no credited job waits)."""
        if not self._credited():
            return self.relaxed.first_matching(predicate, depth)
        # not super().first_matching: it walks self.in_order, which goes on into relax jobs
        for entry in super().in_order(depth):
            if predicate(entry):
                return entry
        return None

    def ahead(self, job_id: str) -> tuple[int, float]:
        """(jobs, total cost) that would be taken before this one."""
        if job_id not in self.relaxed:
            return super().ahead(job_id)
        jobs, cost = self.relaxed.ahead(job_id)
        credited = list(super().in_order())
        return jobs + len(credited), cost + sum(e.cost for e in credited)

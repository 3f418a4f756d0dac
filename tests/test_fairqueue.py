"""Fair queue order, removal, retries and positions (no event loop involved)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.fairqueue import Entry, FairQueue


def _drain(q: FairQueue) -> list[str]:
    out = []
    while (e := q.pop()) is not None:
        out.append(e.job_id)
    return out


def test_light_user_overtakes_a_burst():
    q = FairQueue()
    for i in range(100):
        q.push(Entry(f"h{i}", "heavy", 1.0))
    assert q.pop().job_id == "h0"  # one heavy job already started
    q.push(Entry("light", "light", 1.0))
    order = _drain(q)
    assert order.index("light") <= 1


def test_fair_on_cost_not_count():
    q = FairQueue()
    for i in range(4):
        q.push(Entry(f"big{i}", "a", 4.0))
    for i in range(16):
        q.push(Entry(f"small{i}", "b", 1.0))
    first = _drain(q)[:10]
    # in the same span of cost, b gets about four small jobs for each big one of a
    assert sum(j.startswith("big") for j in first) == 2


def test_round_robin_among_three_users():
    q = FairQueue()
    for user in "abc":
        for i in range(3):
            q.push(Entry(f"{user}{i}", user, 1.0))
    assert _drain(q) == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_remove_and_positions():
    q = FairQueue()
    for i in range(3):
        q.push(Entry(f"a{i}", "a", 1.0))
    q.push(Entry("b0", "b", 2.5))
    assert q.ahead("a2") == (3, 4.5)
    assert q.remove("a0").job_id == "a0"
    assert q.remove("a0") is None
    assert q.ahead("b0") == (1, 1.0)
    assert q.count("a") == 2 and len(q) == 3
    assert _drain(q) == ["a1", "b0", "a2"]


def test_push_front_goes_first():
    q = FairQueue()
    q.push(Entry("a0", "a", 1.0))
    q.push(Entry("b0", "b", 1.0))
    retry = Entry("r", "c", 1.0)
    q.push_front(retry)
    assert q.pop().job_id == "r"


def test_first_matching_looks_ahead_in_fair_order():
    q = FairQueue()
    for i in range(6):
        q.push(Entry(f"j{i}", "u", 1.0, model="A" if i % 2 else "B"))
    match = q.first_matching(lambda e: e.model == "A", depth=4)
    assert match.job_id == "j1"
    assert q.take("j1").job_id == "j1"
    assert [e.job_id for e in q.in_order()] == ["j0", "j2", "j3", "j4", "j5"]


# --- the indexed queue against a naive reference ----------------------------------------------
# The reference keeps every job in one list and sorts or scans it for each question; the real
# queue must give the same order, positions and costs after any mix of operations.


class _Naive:
    def __init__(self) -> None:
        self.jobs: list[Entry] = []
        self.last: dict[str, float] = {}
        self.vtime = 0.0
        self.seq = 0

    def _key(self, e: Entry) -> tuple[float, int]:
        return (e.tag, e.seq)

    def push(self, job_id: str, user: str, cost: float) -> None:
        e = Entry(job_id, user, cost)
        e.tag = max(self.vtime, self.last.get(user, 0.0)) + cost
        e.seq, self.seq = self.seq, self.seq + 1
        self.last[user] = e.tag
        self.jobs.append(e)

    def push_front(self, e: Entry) -> None:
        e.tag = min([self.vtime, *(j.tag for j in self.jobs)]) - 1e-9
        e.seq, self.seq = self.seq, self.seq + 1
        self.jobs.append(e)

    def order(self) -> list[str]:
        return [e.job_id for e in sorted(self.jobs, key=self._key)]

    def take(self, job_id: str) -> Entry | None:
        found = [e for e in self.jobs if e.job_id == job_id]
        if not found:
            return None
        self.jobs.remove(found[0])
        self.vtime = max(self.vtime, found[0].tag - found[0].cost)
        return found[0]

    def remove(self, job_id: str) -> Entry | None:
        found = [e for e in self.jobs if e.job_id == job_id]
        if found:
            self.jobs.remove(found[0])
        return found[0] if found else None

    def ahead(self, job_id: str) -> tuple[int, float]:
        me = next(e for e in self.jobs if e.job_id == job_id)
        before = [e for e in self.jobs if self._key(e) < self._key(me)]
        return len(before), sum(e.cost for e in before)


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["push", "push", "push", "pop", "take", "remove", "retry"]),
        st.integers(0, 7),  # user
        st.integers(1, 6),  # cost
        st.integers(0, 10_000),  # which queued job, for take/remove
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(_OPS, st.sampled_from([1, 2, 3, 256]))
def test_indexed_queue_matches_the_naive_reference(ops, load) -> None:
    """Order, positions, costs ahead and per-user counts equal the naive reference's after
    every operation (small block sizes make blocks split and vanish often)."""
    q, ref = FairQueue(load=load), _Naive()
    for n, (op, user, cost, pick) in enumerate(ops):
        queued = ref.order()
        if op == "push":
            q.push(Entry(f"j{n}", f"u{user}", float(cost)))
            ref.push(f"j{n}", f"u{user}", float(cost))
        elif op == "pop":
            got = q.pop()
            want = ref.take(queued[0]) if queued else None
            assert (got and got.job_id) == (want and want.job_id)
        elif op in ("take", "remove") and queued:
            job = queued[pick % len(queued)]
            assert getattr(q, op)(job).job_id == getattr(ref, op)(job).job_id
        elif op == "retry" and queued:
            job = queued[pick % len(queued)]
            entry, mirror = q.take(job), ref.take(job)
            q.push_front(entry)
            ref.push_front(Entry(mirror.job_id, mirror.user, mirror.cost))
        order = ref.order()
        assert [e.job_id for e in q.in_order()] == order
        assert [e.job_id for e in q.in_order(5)] == order[:5]
        assert (q.peek() and q.peek().job_id) == (order[0] if order else None)
        assert len(q) == len(order)
        for job in order:
            assert q.ahead(job) == ref.ahead(job)
        for u in range(8):
            assert q.count(f"u{u}") == sum(e.user == f"u{u}" for e in ref.jobs)
        assert q.users() == len({e.user for e in ref.jobs})


def test_positions_stay_exact_across_many_blocks() -> None:
    """10 000 jobs of 1 000 users (dozens of blocks): every position and cost ahead is exact."""
    q = FairQueue(load=16)
    for i in range(10_000):
        q.push(Entry(f"j{i}", f"u{i % 1000}", float(1 + i % 3)))
    for _ in range(2_500):
        q.pop()
    order = list(q.in_order())
    total = 0.0
    for i, entry in enumerate(order):
        assert q.ahead(entry.job_id) == (i, total)
        total += entry.cost
    assert q.ahead("gone") == (0, 0.0)


def test_equal_tags_across_many_blocks_are_found_by_arrival() -> None:
    """1 000 users with one job each all share one tag (a run over hundreds of small blocks):
    any of them can be taken, removed or ranked, and the rest keep their arrival order."""
    q = FairQueue(load=2)
    for i in range(1_000):
        q.push(Entry(f"j{i}", f"u{i}", 1.0))
    assert len({e.tag for e in q.in_order()}) == 1
    gone = {f"j{i}" for i in range(0, 1_000, 7)}
    for job in sorted(gone, key=lambda j: -int(j[1:])):
        assert q.remove(job).job_id == job
    assert q.take("j500").job_id == "j500"
    left = [f"j{i}" for i in range(1_000) if f"j{i}" not in gone and i != 500]
    assert [e.job_id for e in q.in_order()] == left
    for i, job in enumerate(left):
        assert q.ahead(job) == (i, float(i))
    assert q.remove("j0") is None and q.ahead("j7") == (0, 0.0)


@pytest.mark.parametrize("every", [1, 7, 400])
def test_positions_after_many_changes_between_lookups(every: int) -> None:
    """Positions asked for rarely (after 1, 7 or 400 changes, the last more than the trees
    keep notes of) are as exact as positions asked for after every change."""
    rng = random.Random(every)
    q, ref = FairQueue(load=4), _Naive()
    for n in range(2_000):
        queued = ref.order()
        if queued and rng.random() < 0.3:
            job = queued[rng.randrange(len(queued))]
            assert q.remove(job).job_id == ref.remove(job).job_id
        elif queued and rng.random() < 0.2:
            assert q.pop().job_id == ref.take(queued[0]).job_id
        else:
            user, cost = f"u{rng.randrange(30)}", float(rng.randint(1, 4))
            q.push(Entry(f"j{n}", user, cost))
            ref.push(f"j{n}", user, cost)
        if n % every == 0:
            for job in rng.sample(ref.order(), min(20, len(ref.order()))):
                assert q.ahead(job) == ref.ahead(job)
    assert [e.job_id for e in q.in_order()] == ref.order()
    assert all(q.ahead(job) == ref.ahead(job) for job in ref.order())

"""Fair queue order, removal, retries and positions (no event loop involved)."""

from __future__ import annotations

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

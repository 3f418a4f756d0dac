"""The engine's job table: by id like a dict, by user through its index."""

from __future__ import annotations

import pytest

from bot.jobtable import JobTable


def _table() -> JobTable[tuple[str, str]]:
    return JobTable(lambda job: job[0])


def test_jobs_of_a_user_in_the_order_added():
    t = _table()
    for i, user in enumerate("abab"):
        t[f"j{i}"] = (user, f"j{i}")
    assert [j[1] for j in t.of("a")] == ["j0", "j2"]
    assert t.pop("j0") == ("a", "j0")
    del t["j2"]
    assert t.of("a") == [] and [j[1] for j in t.of("b")] == ["j1", "j3"]
    assert t.pop("nope", None) is None and len(t) == 2
    with pytest.raises(KeyError):
        t.pop("nope")


def test_replacing_a_job_moves_it_between_users():
    t = _table()
    t["j"] = ("a", "j")
    t["j"] = ("b", "j")
    assert t.of("a") == [] and t.of("b") == [("b", "j")]


def test_methods_that_would_bypass_the_index_are_refused():
    t = _table()
    for change in (lambda: t.update(j=("a", "j")), lambda: t.setdefault("j", ("a", "j")), t.clear):
        with pytest.raises(TypeError):
            change()
    assert t.of("a") == []
